package overlay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
)

// probeTimeout bounds one connection attempt to one endpoint.
const probeTimeout = 5 * time.Second

// waitReachable returns once one of etcd's endpoints takes a TCP connection and, for an
// https endpoint, completes a TLS handshake with the configured client certificate and
// CA. Until then it retries with a backoff of 1 to 10 s, logging at Warn what is wrong
// with each endpoint whenever that changes: refused, unreachable, or a certificate the
// CA file does not trust. It returns ctx.Err() when ctx is done first. Endpoints it
// cannot probe (an unknown scheme, TLS files that do not load) count as reachable, and
// the etcd client reports them.
//
// TODO: this exists because subnet.NewEtcdClient, given a user name, authenticates
// inside clientv3.New without any deadline: while etcd cannot be reached, or its
// certificate is not trusted, it blocks silently and no signal short of a second one
// stops the daemon. The probe narrows that to etcd failing between the probe and the
// client; a client that authenticates lazily (or takes a context) would make the probe
// a diagnosis only. It also rebuilds the client's TLS settings from the same files,
// because subnet does not export them.
func waitReachable(ctx context.Context, o subnet.EtcdOptions, log *slog.Logger,
	status func(string)) error {
	var tc *tls.Config
	if o.UsesTLS() {
		var err error
		if tc, err = probeTLSConfig(o); err != nil {
			return nil
		}
	}
	bo := backoff{min: acquireBackoffMin, max: acquireBackoffMax}
	last := ""
	for {
		// On a goroutine of its own, the probe runs on one of the process's threads and
		// dials from their network namespace, as the etcd client does, and not from the
		// one the caller's thread may be locked into.
		errc := make(chan error, 1)
		go func() { errc <- probeEtcd(ctx, o.Endpoints, tc) }()
		err := <-errc
		if err == nil {
			if last != "" {
				log.Info("etcd is reachable again", "endpoints", joinEndpoints(o.Endpoints))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := describeProbe(err, o)
		if msg != last {
			log.Warn("cannot reach etcd; retrying", "endpoints", joinEndpoints(o.Endpoints),
				"err", msg)
			status("cannot reach etcd: " + msg)
			last = msg
		}
		if err := sleep(ctx, bo.next()); err != nil {
			return err
		}
	}
}

// probeTLSConfig is the TLS side of subnet.NewEtcdClient's client, for the probe.
func probeTLSConfig(o subnet.EtcdOptions) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no certificate", o.CAFile)
		}
	}
	return tc, nil
}

// endpointError is why one endpoint could not be reached.
type endpointError struct {
	endpoint string
	err      error
}

func (e *endpointError) Error() string { return e.endpoint + ": " + e.err.Error() }
func (e *endpointError) Unwrap() error { return e.err }

// probeEtcd connects to each endpoint in turn and returns nil at the first that works,
// or every endpoint's error joined.
func probeEtcd(ctx context.Context, endpoints []string, tc *tls.Config) error {
	var errs []error
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "2379")
		}
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err = probeOne(cctx, u.Scheme, host, u.Hostname(), tc)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, &endpointError{endpoint: ep, err: err})
	}
	return errors.Join(errs...)
}

func probeOne(ctx context.Context, scheme, addr, serverName string, tc *tls.Config) error {
	if scheme == "https" {
		c := tc.Clone()
		if c == nil {
			c = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.ServerName = serverName
		d := tls.Dialer{Config: c}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// describeProbe says what a failed probe means, naming the CA file when etcd's
// certificate is not trusted.
func describeProbe(err error, o subnet.EtcdOptions) string {
	var parts []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		ep := ""
		var ee *endpointError
		if errors.As(err, &ee) {
			ep = ee.endpoint + ": "
		}
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		var invalid x509.CertificateInvalidError
		ca := "the system's CAs (no -etcd-cafile)"
		if o.CAFile != "" {
			ca = "-etcd-cafile " + o.CAFile
		}
		switch {
		case errors.As(err, &unknown):
			parts = append(parts, fmt.Sprintf("%setcd's certificate is not trusted by %s: "+
				"%v", ep, ca, unknown))
		case errors.As(err, &host):
			parts = append(parts, fmt.Sprintf("%setcd's certificate is not for this "+
				"address: %v", ep, host))
		case errors.As(err, &invalid):
			parts = append(parts, fmt.Sprintf("%setcd's certificate is not valid: %v", ep,
				invalid))
		default:
			parts = append(parts, err.Error())
		}
	}
	walk(err)
	return strings.Join(parts, "; ")
}
