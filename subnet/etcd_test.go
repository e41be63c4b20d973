package subnet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/weftnet/weft/internal/etcdtest"
)

func TestSplitEndpoints(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{in: DefaultEtcdEndpoints, want: []string{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}},
		{in: "https://a:2379", want: []string{"https://a:2379"}},
		{in: " http://a:1 , ,http://b:2,", want: []string{"http://a:1", "http://b:2"}},
		{in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := SplitEndpoints(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("SplitEndpoints(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEtcdOptionsNeverShowPassword(t *testing.T) {
	o := EtcdOptions{Endpoints: []string{"http://e:2379"}, Username: "root", Password: "s3cret-pw"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("etcd", "opts", o, "ptr", &o)
	for name, s := range map[string]string{
		"String":         o.String(),
		"%v":             fmt.Sprintf("%v", o),
		"%+v":            fmt.Sprintf("%+v", o),
		"%#v":            fmt.Sprintf("%#v", o),
		"%+v of pointer": fmt.Sprintf("%+v", &o),
		"slog":           logged.String(),
	} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s shows the password: %s", name, s)
		}
		if !strings.Contains(s, "root") || !strings.Contains(s, "http://e:2379") {
			t.Errorf("%s lacks the username or endpoint: %s", name, s)
		}
	}
}

func TestEtcdOptionsWarnings(t *testing.T) {
	tests := []struct {
		name string
		o    EtcdOptions
		want []string
	}{
		{name: "plain", o: EtcdOptions{}, want: []string{"without TLS"}},
		{name: "ca alone", o: EtcdOptions{CAFile: "/ca.pem"},
			want: []string{"CA file /ca.pem is ignored", "without TLS"}},
		{name: "key alone", o: EtcdOptions{KeyFile: "/k.pem"},
			want: []string{"key file /k.pem is ignored", "without TLS"}},
		{name: "cert alone", o: EtcdOptions{CertFile: "/c.pem"},
			want: []string{"cert file /c.pem is ignored", "without TLS"}},
		{name: "tls", o: EtcdOptions{KeyFile: "/k", CertFile: "/c", CAFile: "/ca"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.o.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings = %q, want %d of them", got, len(tt.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// writeTestPKI writes a CA and a client certificate and key signed by it into dir, and
// returns the paths.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "weft test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}

	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER),
		write("key.pem", "EC PRIVATE KEY", keyDER)
}

func TestNewEtcdClientTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	ep := []string{"https://127.0.0.1:1"}

	tests := []struct {
		name    string
		o       EtcdOptions
		wantErr string // empty: success
	}{
		{name: "tls", o: EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: cert, CAFile: ca}},
		{name: "tls with system roots", o: EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: cert}},
		{name: "ca alone is ignored", o: EtcdOptions{Endpoints: ep, CAFile: missing}},
		{name: "no endpoints", o: EtcdOptions{}, wantErr: "no etcd endpoints"},
		{name: "empty endpoint", o: EtcdOptions{Endpoints: []string{"http://a:1", ""}},
			wantErr: "empty entry"},
		{name: "missing cert", o: EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: missing},
			wantErr: "reading etcd cert file: open " + missing},
		{name: "missing key", o: EtcdOptions{Endpoints: ep, KeyFile: missing, CertFile: cert},
			wantErr: "reading etcd key file: open " + missing},
		{name: "missing ca",
			o:       EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: cert, CAFile: missing},
			wantErr: "reading etcd CA file: open " + missing},
		{name: "garbage cert", o: EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: garbage},
			wantErr: "etcd cert file " + garbage + " holds no PEM certificate"},
		{name: "garbage key", o: EtcdOptions{Endpoints: ep, KeyFile: garbage, CertFile: cert},
			wantErr: "loading etcd key file " + garbage},
		{name: "key is a certificate", o: EtcdOptions{Endpoints: ep, KeyFile: ca, CertFile: cert},
			wantErr: "loading etcd key file " + ca},
		{name: "garbage ca",
			o:       EtcdOptions{Endpoints: ep, KeyFile: key, CertFile: cert, CAFile: garbage},
			wantErr: "etcd CA file " + garbage + " holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Password = "s3cret-pw"
			c, err := NewEtcdClient(tt.o)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewEtcdClient: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("NewEtcdClient succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// startEtcdWith runs an etcd configured by adjust, for the length of the test.
func startEtcdWith(t *testing.T, scheme string, adjust func(*embed.Config)) string {
	t.Helper()
	addr := func(scheme string) *url.URL {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return &url.URL{Scheme: scheme, Host: l.Addr().String()}
	}
	clientURL := addr(scheme)
	cfg := etcdtest.Config(t.TempDir(), "weft-tls", clientURL, addr("http"))
	adjust(cfg)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not become ready")
	}
	return clientURL.String()
}

func TestNewEtcdClientTLS(t *testing.T) {
	ca, cert, key := writeTestPKI(t, t.TempDir())
	endpoint := startEtcdWith(t, "https", func(cfg *embed.Config) {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       cert,
			KeyFile:        key,
			TrustedCAFile:  ca,
			ClientCertAuth: true,
		}
	})

	c, err := NewEtcdClient(EtcdOptions{Endpoints: []string{endpoint},
		KeyFile: key, CertFile: cert, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/weft-test/tls", "ok"); err != nil {
		t.Fatalf("writing over TLS with a client certificate: %v", err)
	}

	// Given only the CA file, which flanneld ignores too, the client speaks plain HTTP
	// and gets nowhere.
	plain, err := NewEtcdClient(EtcdOptions{Endpoints: []string{endpoint}, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if _, err := plain.Get(ctx2, "/weft-test/tls"); err == nil {
		t.Error("a client without a certificate could read from a TLS etcd")
	}
}

func TestNewEtcdClientAuth(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	if _, err := srv.Client.UserAdd(ctx, "root", "s3cret-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}

	c, err := NewEtcdClient(EtcdOptions{Endpoints: srv.Endpoints, Username: "root",
		Password: "s3cret-pw"})
	if err != nil {
		t.Fatalf("NewEtcdClient with the right password: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/weft-test/auth", "ok"); err != nil {
		t.Fatalf("writing as root: %v", err)
	}

	wrong, err := NewEtcdClient(EtcdOptions{Endpoints: srv.Endpoints, Username: "root",
		Password: "wrong-pw"})
	if err == nil {
		defer wrong.Close()
		_, err = wrong.Get(ctx, "/weft-test/auth")
	}
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("the error shows the password: %v", err)
	}
}
