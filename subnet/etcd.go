package subnet

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultEtcdEndpoints is flanneld's default -etcd-endpoints value.
const DefaultEtcdEndpoints = "http://127.0.0.1:4001,http://127.0.0.1:2379"

// DefaultPrefix is flanneld's default -etcd-prefix: the network config lives at
// <prefix>/config and the leases below <prefix>/subnets/.
const DefaultPrefix = "/coreos.com/network"

// EtcdOptions are flanneld's etcd flags.
type EtcdOptions struct {
	// Endpoints are the etcd client URLs, as SplitEndpoints returns them from
	// -etcd-endpoints.
	Endpoints []string
	// Prefix is -etcd-prefix; NewRegistry takes it. NewEtcdClient ignores it.
	Prefix string

	// KeyFile, CertFile and CAFile are PEM files. TLS is used only when both KeyFile
	// and CertFile are set; CAFile then replaces the system roots.
	KeyFile  string
	CertFile string
	CAFile   string

	// Username and Password turn on etcd v3 authentication when Username is set.
	Username string
	Password string
}

// SplitEndpoints splits an -etcd-endpoints value at its commas, as flanneld does. It
// also trims spaces around each entry and drops empty ones, which flanneld would pass
// on to the client as unusable endpoints.
func SplitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// String renders the options for a log line, with the password replaced by "<redacted>"
// when one is set. fmt's %v and %+v use it, so printing the options never shows the
// password.
func (o EtcdOptions) String() string {
	pw := ""
	if o.Password != "" {
		pw = "<redacted>"
	}
	return fmt.Sprintf("{Endpoints:%s Prefix:%s KeyFile:%s CertFile:%s CAFile:%s Username:%s "+
		"Password:%s}", strings.Join(o.Endpoints, ","), o.Prefix, o.KeyFile, o.CertFile,
		o.CAFile, o.Username, pw)
}

// GoString is String, so that %#v does not show the password either.
func (o EtcdOptions) GoString() string { return o.String() }

// LogValue renders the options as a slog group without the password.
func (o EtcdOptions) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("endpoints", strings.Join(o.Endpoints, ",")),
		slog.String("prefix", o.Prefix),
	}
	if o.KeyFile != "" || o.CertFile != "" || o.CAFile != "" {
		attrs = append(attrs,
			slog.String("keyfile", o.KeyFile),
			slog.String("certfile", o.CertFile),
			slog.String("cafile", o.CAFile))
	}
	if o.Username != "" {
		attrs = append(attrs, slog.String("username", o.Username))
	}
	if o.Password != "" {
		attrs = append(attrs, slog.String("password", "<redacted>"))
	}
	return slog.GroupValue(attrs...)
}

// UsesTLS reports whether NewEtcdClient will connect with TLS: both KeyFile and CertFile
// are set.
func (o EtcdOptions) UsesTLS() bool { return o.KeyFile != "" && o.CertFile != "" }

// Warnings lists what a daemon should log before connecting: files that are ignored
// because the other half of the TLS pair is missing (flanneld silently ignores them),
// and plain-HTTP connections. The texts name files and endpoints, never the password.
func (o EtcdOptions) Warnings() []string {
	var w []string
	switch {
	case o.UsesTLS():
		return nil
	case o.KeyFile != "":
		w = append(w, fmt.Sprintf("etcd key file %s is ignored: TLS also needs a cert file",
			o.KeyFile))
	case o.CertFile != "":
		w = append(w, fmt.Sprintf("etcd cert file %s is ignored: TLS also needs a key file",
			o.CertFile))
	}
	if o.CAFile != "" {
		w = append(w, fmt.Sprintf("etcd CA file %s is ignored: TLS needs both a key file "+
			"and a cert file", o.CAFile))
	}
	w = append(w, "no etcd client certificate given: connecting to etcd without TLS, "+
		"which is insecure")
	return w
}

// NewEtcdClient returns an etcd v3 client for o. Like flanneld's it dials lazily, with no
// dial timeout and no endpoint auto-sync, so it succeeds while etcd is down; requests
// block until a connection is ready or their context ends. A TLS file that cannot be
// read or parsed is an error naming the file. The client's own logging is discarded:
// callers log the errors it returns.
func NewEtcdClient(o EtcdOptions) (*clientv3.Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints given")
	}
	for _, e := range o.Endpoints {
		if strings.TrimSpace(e) == "" {
			return nil, fmt.Errorf("etcd endpoint list %q has an empty entry",
				strings.Join(o.Endpoints, ","))
		}
	}

	cfg := clientv3.Config{
		Endpoints: o.Endpoints,
		Username:  o.Username,
		Password:  o.Password,
		Logger:    zap.NewNop(),
	}
	if o.UsesTLS() {
		tc, err := etcdTLSConfig(o)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}

	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating etcd client for %s: %w",
			strings.Join(o.Endpoints, ","), err)
	}
	return c, nil
}

func etcdTLSConfig(o EtcdOptions) (*tls.Config, error) {
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return nil, fmt.Errorf("reading etcd cert file: %w", err)
	}
	if !hasPEMBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("etcd cert file %s holds no PEM certificate", o.CertFile)
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading etcd key file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading etcd key file %s with cert file %s: %w",
			o.KeyFile, o.CertFile, err)
	}

	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}
	if o.CAFile != "" {
		caPEM, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("etcd CA file %s holds no PEM certificate", o.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func hasPEMBlock(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ {
			return true
		}
	}
}
