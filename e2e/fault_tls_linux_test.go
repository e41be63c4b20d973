package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netlab"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// file is the CA certificate in PEM.
	file string
}

var serial int64

func newSerial() *big.Int {
	serial++
	return big.NewInt(time.Now().UnixNano() + serial)
}

// newCA makes a self-signed CA and writes its certificate to dir.
func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate signed by ca for cn (and ips, for a server) and writes it
// and its key to dir; it returns the two file names.
func (ca *testCA) issue(t *testing.T, dir, cn string, ips []net.IP,
	usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsEtcd is an etcd of the test's own inside a lab's wan namespace, beside the lab's:
// it takes clients only over TLS with a certificate of its CA, and only with a user
// name and password.
type tlsEtcd struct {
	lab                   string
	endpoint              string
	ca                    *testCA
	clientCert, clientKey string
	// client is the test's own, as root.
	client *clientv3.Client
}

const (
	tlsPrefix   = "/weft-tls"
	tlsUser     = "weft"
	tlsPassword = "s3cret-Pa55-for-weft"
	rootPass    = "r00t-Pa55-for-etcd"
)

// startTLSEtcd starts the etcd on 198.18.0.254:2479 in lab's wan namespace, with a
// network config at tlsPrefix readable and writable by tlsUser, and stops it when the
// test ends.
func startTLSEtcd(t *testing.T, lab string, dir string) *tlsEtcd {
	t.Helper()
	ca := newCA(t, dir, "weft-test-ca")
	serverCert, serverKey := ca.issue(t, dir, "etcd", []net.IP{wanAddr.AsSlice()},
		x509.ExtKeyUsageServerAuth)
	te := &tlsEtcd{lab: lab, ca: ca}
	te.clientCert, te.clientKey = ca.issue(t, dir, "weft-client", nil,
		x509.ExtKeyUsageClientAuth)

	client := &url.URL{Scheme: "https", Host: net.JoinHostPort(wanAddr.String(), "2479")}
	peer := &url.URL{Scheme: "http", Host: net.JoinHostPort(wanAddr.String(), "2480")}
	te.endpoint = client.String()
	cfg := etcdtest.Config(filepath.Join(dir, "etcd"), "weft-tls", client, peer)
	cfg.EnableGRPCGateway = false
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       serverCert,
		KeyFile:        serverKey,
		TrustedCAFile:  ca.file,
		ClientCertAuth: true,
	}

	// The listeners are opened from a thread inside the wan namespace, which stays
	// there until etcd stops and then ends with its goroutine.
	ns, err := netlab.Open(WanNS(lab))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	leave := make(chan struct{})
	var wg sync.WaitGroup
	var e *embed.Etcd
	wg.Go(func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			started <- err
			return
		}
		var err error
		e, err = embed.StartEtcd(cfg)
		started <- err
		<-leave
	})
	if err := <-started; err != nil {
		close(leave)
		wg.Wait()
		ns.Close()
		t.Fatalf("starting the TLS etcd: %v", err)
	}
	t.Cleanup(func() {
		if te.client != nil {
			te.client.Close()
		}
		e.Close()
		close(leave)
		wg.Wait()
		ns.Close()
	})
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("the TLS etcd is not ready after 30s")
	}

	te.client = te.newClient(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := te.client.UserAdd(ctx, "root", rootPass); return err },
		func() error { _, err := te.client.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := te.client.RoleAdd(ctx, tlsUser); return err },
		func() error {
			_, err := te.client.RoleGrantPermission(ctx, tlsUser, tlsPrefix+"/",
				clientv3.GetPrefixRangeEnd(tlsPrefix+"/"),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := te.client.UserAdd(ctx, tlsUser, tlsPassword); return err },
		func() error { _, err := te.client.UserGrantRole(ctx, tlsUser, tlsUser); return err },
		func() error {
			_, err := te.client.Put(ctx, tlsPrefix+"/config",
				`{"Network": "198.19.0.0/16", "Backend": {"Type": "alloc"}}`)
			return err
		},
		func() error { _, err := te.client.AuthEnable(ctx); return err },
	}
	for k, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setting up the TLS etcd, step %d: %v", k+1, err)
		}
	}
	te.client.Close()
	te.client = te.newClient(t, "root", rootPass)
	return te
}

// newClient connects from the wan namespace with the client certificate.
func (te *tlsEtcd) newClient(t *testing.T, user, password string) *clientv3.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(te.clientCert, te.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(te.ca.cert)
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{te.endpoint},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool},
		Username:    user,
		Password:    password,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(te.dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dial connects from the lab's wan namespace, where the etcd address is.
func (te *tlsEtcd) dial(ctx context.Context, addr string) (net.Conn, error) {
	return netlab.Dial(ctx, WanNS(te.lab), "tcp", addr)
}

// startWeftd stops the lab's daemon of host i and starts weftd there instead, with
// args after the lab's usual -iface, -subnet-file and health options. The daemon is
// stopped when the test ends; its log is returned.
func startWeftd(t *testing.T, l *Lab, i int, args ...string) (Proc, string) {
	t.Helper()
	ctx := context.Background()
	if err := l.StopDaemon(ctx, i, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h := l.host(i)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "weftd.log")
	argv := append([]string{bins.weftd, "-iface", h.Dev,
		"-subnet-file", filepath.Join(dir, "subnet.env"),
		"-healthz-ip", "127.0.0.1", "-healthz-port", fmt.Sprint(h.HealthPort), "-v", "1"},
		args...)
	p, cmd, err := startProc(h.NS, argv, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(context.Background(), cmd, 10*time.Second); err != nil {
			t.Error(err)
		}
	})
	return p, logPath
}

// TestFaultEtcdTLS runs weftd against an etcd that wants TLS with a client certificate
// and a user name and password, with a CA made for the test: weftd acquires its lease
// there, a weftd given the wrong CA says that etcd's certificate is not trusted, and
// the password is in no log line of either.
func TestFaultEtcdTLS(t *testing.T) {
	o := faultOptions(t, "tls")
	o.Backend, o.Hosts = "alloc", 2
	l := upLab(t, o)
	ctx := context.Background()
	dir := t.TempDir()
	te := startTLSEtcd(t, l.Name(), dir)
	wrongCA := newCA(t, dir, "another-ca")

	common := []string{"-etcd-endpoints", te.endpoint, "-etcd-prefix", tlsPrefix,
		"-etcd-keyfile", te.clientKey, "-etcd-certfile", te.clientCert,
		"-etcd-username", tlsUser, "-etcd-password", tlsPassword}
	good, goodLog := startWeftd(t, l, 1, append(common, "-etcd-cafile", te.ca.file)...)
	bad, badLog := startWeftd(t, l, 2, append(common, "-etcd-cafile", wrongCA.file)...)

	waitFor(t, "weftd ready over TLS", 30*time.Second, func() bool {
		if !good.alive() {
			t.Fatalf("weftd over TLS exited; its log ends:\n%s", tailFile(goodLog, 20))
		}
		_, err := l.HealthGet(ctx, 1, "/readyz")
		return err == nil
	})
	resp, err := te.client.Get(ctx, tlsPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value),
		`"PublicIP":"198.18.0.1"`) {
		t.Errorf("leases in the TLS etcd: %v, want h1's", resp.Kvs)
	}

	took := waitFor(t, "a log line saying etcd's certificate is not trusted", 30*time.Second,
		func() bool {
			data, _ := os.ReadFile(badLog)
			return strings.Contains(string(data), "etcd's certificate is not trusted by "+
				"-etcd-cafile "+wrongCA.file+": x509: certificate signed by unknown authority")
		})
	t.Logf("weftd with the wrong CA said so after %v:\n%s", took.Round(time.Millisecond),
		tailFile(badLog, 5))
	if !bad.alive() {
		t.Errorf("weftd with the wrong CA exited instead of waiting for etcd")
	}
	if _, err := l.HealthGet(ctx, 2, "/readyz"); err == nil {
		t.Errorf("weftd with the wrong CA says it is ready")
	}

	for _, log := range []string{goodLog, badLog} {
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), tlsPassword) {
			t.Errorf("the etcd password is in %s", log)
		}
		if !strings.Contains(string(data), "etcd-password=<redacted>") {
			t.Errorf("%s does not show the password option as redacted", log)
		}
	}
}
