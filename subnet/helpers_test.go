package subnet

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
)

func newLogger(t testing.TB) (*slog.Logger, *logbuf.Buffer) {
	t.Helper()
	b := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// testNet is the network config most tests use: 198.19.0.0/16 in /24 leases.
const testNet = `{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan"}}`

// newTestRegistry returns a registry over c under prefix /weft-test, with its log.
func newTestRegistry(t testing.TB, c *clientv3.Client) (*Registry, *logbuf.Buffer) {
	t.Helper()
	log, buf := newLogger(t)
	return NewRegistry(c, "/weft-test", log), buf
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func attrsFor(ip string) LeaseAttrs {
	return LeaseAttrs{
		PublicIP:    netip.MustParseAddr(ip),
		BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`),
	}
}

// put writes a raw key and value, with an etcd lease of ttl seconds when ttl > 0.
func put(t testing.TB, c *clientv3.Client, key, value string, ttl int64) clientv3.LeaseID {
	t.Helper()
	ctx := testCtx(t)
	var opts []clientv3.OpOption
	var id clientv3.LeaseID
	if ttl > 0 {
		g, err := c.Grant(ctx, ttl)
		if err != nil {
			t.Fatalf("granting: %v", err)
		}
		id = g.ID
		opts = append(opts, clientv3.WithLease(id))
	}
	if _, err := c.Put(ctx, key, value, opts...); err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
	return id
}

func del(t testing.TB, c *clientv3.Client, key string) {
	t.Helper()
	if _, err := c.Delete(testCtx(t), key); err != nil {
		t.Fatalf("deleting %s: %v", key, err)
	}
}

// getKV reads one key; nil when absent.
func getKV(t testing.TB, c *clientv3.Client, key string) (value string, lease int64, found bool) {
	t.Helper()
	resp, err := c.Get(testCtx(t), key)
	if err != nil {
		t.Fatalf("getting %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, true
}

// ttlOf returns the remaining TTL in seconds of the etcd lease of key.
func ttlOf(t testing.TB, c *clientv3.Client, key string) int64 {
	t.Helper()
	_, id, ok := getKV(t, c, key)
	if !ok {
		t.Fatalf("%s does not exist", key)
	}
	if id == 0 {
		return 0
	}
	resp, err := c.TimeToLive(testCtx(t), clientv3.LeaseID(id))
	if err != nil {
		t.Fatalf("TimeToLive of %s: %v", key, err)
	}
	return resp.TTL
}

// startEtcd runs a test etcd.
func startEtcd(t testing.TB) *etcdtest.Server {
	t.Helper()
	return etcdtest.Start(t)
}

// eventually polls cond every 50ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
