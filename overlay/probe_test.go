package overlay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

func TestProbeEtcd(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	trusted := x509.NewCertPool()
	trusted.AddCert(srv.Certificate())
	https := "https://" + srv.Listener.Addr().String()
	refused := "http://" + freeAddr(t)

	tests := []struct {
		name      string
		endpoints []string
		tc        *tls.Config
		wantErr   []string
	}{
		{name: "trusted", endpoints: []string{https}, tc: &tls.Config{RootCAs: trusted}},
		{name: "one of two", endpoints: []string{refused, https},
			tc: &tls.Config{RootCAs: trusted}},
		{name: "untrusted", endpoints: []string{https}, tc: &tls.Config{RootCAs: x509.NewCertPool()},
			wantErr: []string{https + ": etcd's certificate is not trusted by -etcd-cafile " +
				"/etc/weft/ca.pem", "certificate signed by unknown authority"}},
		{name: "wrong name", endpoints: []string{strings.Replace(https, "127.0.0.1",
			"localhost", 1)}, tc: &tls.Config{RootCAs: trusted},
			wantErr: []string{"etcd's certificate is not for this address"}},
		{name: "refused", endpoints: []string{refused},
			wantErr: []string{refused + ": dial tcp", "connection refused"}},
		{name: "both fail", endpoints: []string{refused, https},
			tc:      &tls.Config{RootCAs: x509.NewCertPool()},
			wantErr: []string{"connection refused; " + https + ": etcd's certificate"}},
		{name: "not a URL we probe", endpoints: []string{"unix:///run/etcd.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probeEtcd(context.Background(), tt.endpoints, tt.tc)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("probe: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("probe succeeded, want an error")
			}
			msg := describeProbe(err, subnet.EtcdOptions{CAFile: "/etc/weft/ca.pem"})
			for _, w := range tt.wantErr {
				if !strings.Contains(msg, w) {
					t.Errorf("described as %q, want %q in it", msg, w)
				}
			}
		})
	}
}

// TestWaitReachable waits for an endpoint that refuses at first, logging that once, and
// returns as soon as it listens; cancelled, it returns at once.
func TestWaitReachable(t *testing.T) {
	addr := freeAddr(t)
	log, logs := captureLog(t)
	o := subnet.EtcdOptions{Endpoints: []string{"http://" + addr}}
	var states []string
	done := make(chan error, 1)
	go func() {
		done <- waitReachable(context.Background(), o, log, func(s string) {
			states = append(states, s)
		})
	}()
	eventually(t, "a warning", 5*time.Second, func() bool {
		return len(logs.lines("cannot reach etcd", "connection refused")) == 1
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitReachable: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waitReachable did not return once etcd's address listened")
	}
	if len(logs.lines("cannot reach etcd")) != 1 || len(logs.lines("reachable again")) != 1 ||
		len(states) != 1 {
		t.Errorf("log:\n%s\nstates %q", logs.String(), states)
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		o := subnet.EtcdOptions{Endpoints: []string{"http://" + freeAddr(t)}}
		done := make(chan error, 1)
		go func() { done <- waitReachable(ctx, o, discard(), func(string) {}) }()
		time.Sleep(200 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("waitReachable = %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("waitReachable did not return within 2s of cancel")
		}
	})
}
