// Package etcdtest runs a real etcd server inside the test process, for tests that need a
// datastore. It is never a mock: every call goes through etcd's gRPC API.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Server is one in-process etcd member listening on loopback.
type Server struct {
	// Endpoints are the client URLs, for -etcd-endpoints.
	Endpoints []string
	// Client is connected to the server and closed with it.
	Client *clientv3.Client

	etcd *embed.Etcd
}

// Config returns a fresh embed configuration with its data in dir, listening for clients
// on clientURL, quiet except for errors.
func Config(dir, name string, clientURL, peerURL *url.URL) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", name, peerURL)
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	return cfg
}

// Start runs an etcd server for the length of the test. The server and its client are
// stopped in the test's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	clientURL := &url.URL{Scheme: "http", Host: freeAddr(t)}
	peerURL := &url.URL{Scheme: "http", Host: freeAddr(t)}
	cfg := Config(t.TempDir(), "weft-test", clientURL, peerURL)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd did not become ready within 30s")
	}

	s := &Server{Endpoints: []string{clientURL.String()}, etcd: e}
	s.Client, err = clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		e.Close()
		t.Fatalf("connecting to etcd: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the client and the server. It is safe to call more than once.
func (s *Server) Close() {
	if s.Client != nil {
		s.Client.Close()
		s.Client = nil
	}
	if s.etcd != nil {
		s.etcd.Close()
		s.etcd = nil
	}
}

// NewClient returns another client of the server, closed in the test's cleanup; tests
// that model several hosts give each host its own.
func (s *Server) NewClient(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("connecting to etcd: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Compact compacts the server's history up to its current revision, so that a watch
// from an older revision fails with ErrCompacted.
func (s *Server) Compact(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Client.Get(ctx, "compact-probe")
	if err != nil {
		t.Fatalf("reading revision: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := s.Client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compacting to revision %d: %v", rev, err)
	}
	return rev
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
