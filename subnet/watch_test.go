package subnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/weftnet/weft/internal/etcdtest"
)

// watcher runs WatchLeases in the background and collects its batches.
type watcher struct {
	t    *testing.T
	out  chan []Event
	stop func()
}

func startWatch(t *testing.T, r *Registry, opts WatchOptions) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, out: make(chan []Event, 100)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.WatchLeases(ctx, opts, w.out); err != nil {
			t.Errorf("WatchLeases returned %v, want nil after cancel", err)
		}
	}()
	w.stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(w.stop)
	return w
}

// next returns the next batch, failing the test after d.
func (w *watcher) next(d time.Duration) string {
	w.t.Helper()
	select {
	case evs := <-w.out:
		if len(evs) == 0 {
			w.t.Fatal("WatchLeases delivered an empty batch")
		}
		return brief(evs)
	case <-time.After(d):
		w.t.Fatalf("no lease events within %v", d)
	}
	return ""
}

// expect fails unless the next batch is want.
func (w *watcher) expect(want string) {
	w.t.Helper()
	if got := w.next(10 * time.Second); got != want {
		w.t.Fatalf("events %q, want %q", got, want)
	}
}

// quiet fails if a batch arrives within d.
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	select {
	case evs := <-w.out:
		w.t.Fatalf("unexpected events %q", brief(evs))
	case <-time.After(d):
	}
}

func leaseValue(ip string) string {
	return fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"vxlan"}`, ip)
}

func TestWatchLeases(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	c := srv.Client
	r, logs := newTestRegistry(t, c)
	p := r.SubnetsPrefix()

	put(t, c, p+"198.19.1.0-24", leaseValue("198.18.0.1"), 600)
	put(t, c, p+"198.19.2.0-24", leaseValue("198.18.0.2"), 0)
	own := netip.MustParsePrefix("198.19.3.0/24")
	put(t, c, p+"198.19.3.0-24", leaseValue("198.18.0.3"), 600)

	w := startWatch(t, r, WatchOptions{Skip: func(l *Lease) bool { return l.Subnet == own }})
	w.expect("added:198.19.1.0-24@198.18.0.1 added:198.19.2.0-24@198.18.0.2")

	t.Run("add", func(t *testing.T) {
		put(t, c, p+"198.19.4.0-24", leaseValue("198.18.0.4"), 600)
		w.expect("added:198.19.4.0-24@198.18.0.4")
	})
	t.Run("renewal is quiet", func(t *testing.T) {
		put(t, c, p+"198.19.4.0-24", leaseValue("198.18.0.4"), 600)
		put(t, c, p+"198.19.3.0-24", leaseValue("198.18.0.3"), 600)
		w.quiet(300 * time.Millisecond)
	})
	t.Run("change", func(t *testing.T) {
		put(t, c, p+"198.19.4.0-24", leaseValue("198.18.0.44"), 600)
		w.expect("added:198.19.4.0-24@198.18.0.44")
	})
	t.Run("delete carries the last value", func(t *testing.T) {
		del(t, c, p+"198.19.4.0-24")
		w.expect("removed:198.19.4.0-24@198.18.0.44")
	})
	t.Run("malformed keys and values remove nothing", func(t *testing.T) {
		put(t, c, p+"garbage", leaseValue("198.18.0.9"), 0)
		put(t, c, p+"198.19.1.0-24", `{"PublicIP":""}`, 0)
		put(t, c, p+"198.19.9.0-24", `not json`, 0)
		put(t, c, p+"nested/198.19.8.0-24", leaseValue("198.18.0.8"), 0)
		put(t, c, r.Prefix()+"/subnets-other/198.19.7.0-24", leaseValue("198.18.0.7"), 0)
		del(t, c, p+"garbage")
		del(t, c, p+"198.19.9.0-24")
		w.quiet(300 * time.Millisecond)
		if n := logs.Count("not a valid lease", "198.19.1.0-24"); n != 1 {
			t.Errorf("the bad value was logged %d times, want once", n)
		}
		// The overwritten lease still counts as held and is removed by its delete.
		del(t, c, p+"198.19.1.0-24")
		w.expect("removed:198.19.1.0-24@198.18.0.1")
	})
	t.Run("delete of a key never delivered", func(t *testing.T) {
		del(t, c, p+"198.19.3.0-24")
		del(t, c, p+"198.19.99.0-24")
		w.quiet(300 * time.Millisecond)
	})
	t.Run("expiry", func(t *testing.T) {
		other, _ := newTestRegistry(t, srv.NewClient(t))
		other.ttl = 2
		l, err := other.Acquire(testCtx(t), AcquireRequest{Config: mustConfig(t, testNet),
			Attrs: attrsFor("198.18.0.5")})
		if err != nil {
			t.Fatal(err)
		}
		w.expect("added:" + l.Key() + "@198.18.0.5")
		if got := w.next(10 * time.Second); got != "removed:"+l.Key()+"@198.18.0.5" {
			t.Fatalf("events %q, want the expired lease removed", got)
		}
	})
}

func TestWatchLeasesCompaction(t *testing.T) {
	srv := startEtcd(t)
	c := srv.Client
	r, logs := newTestRegistry(t, c)
	p := r.SubnetsPrefix()

	put(t, c, p+"198.19.1.0-24", leaseValue("198.18.0.1"), 600)
	put(t, c, p+"198.19.2.0-24", leaseValue("198.18.0.2"), 600)
	put(t, c, p+"198.19.3.0-24", leaseValue("198.18.0.3"), 600)

	// Between the first listing and the first watch, the leases change and etcd
	// compacts the history the watch would start from.
	var once sync.Once
	r.beforeWatch = func(rev int64) {
		once.Do(func() {
			del(t, c, p+"198.19.1.0-24")
			put(t, c, p+"198.19.2.0-24", leaseValue("198.18.0.22"), 600)
			put(t, c, p+"198.19.3.0-24", `{"PublicIP":"garbage"}`, 600)
			put(t, c, p+"198.19.4.0-24", leaseValue("198.18.0.4"), 600)
			srv.Compact(t)
		})
	}
	w := startWatch(t, r, WatchOptions{})
	w.expect("added:198.19.1.0-24@198.18.0.1 added:198.19.2.0-24@198.18.0.2 " +
		"added:198.19.3.0-24@198.18.0.3")
	w.expect("removed:198.19.1.0-24@198.18.0.1 added:198.19.2.0-24@198.18.0.22 " +
		"added:198.19.4.0-24@198.18.0.4")
	if logs.Count("fell behind an etcd compaction") != 1 {
		t.Errorf("compaction was not logged once")
	}

	// A compaction under a watch that is keeping up changes nothing.
	put(t, c, r.Prefix()+"/unrelated", "x", 0)
	srv.Compact(t)
	put(t, c, p+"198.19.5.0-24", leaseValue("198.18.0.5"), 600)
	w.expect("added:198.19.5.0-24@198.18.0.5")
}

// restartableEtcd is an etcd server that a test can stop and start again on the same
// address and data.
type restartableEtcd struct {
	t   *testing.T
	cfg *embed.Config
	mu  sync.Mutex
	e   *embed.Etcd
}

func startRestartableEtcd(t *testing.T) (*restartableEtcd, []string) {
	t.Helper()
	addr := func() *url.URL {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return &url.URL{Scheme: "http", Host: l.Addr().String()}
	}
	clientURL, peerURL := addr(), addr()
	cfg := etcdtest.Config(filepath.Join(t.TempDir(), "etcd"), "weft-restart", clientURL, peerURL)
	s := &restartableEtcd{t: t, cfg: cfg}
	s.start()
	t.Cleanup(s.stop)
	return s, []string{clientURL.String()}
}

func (s *restartableEtcd) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := embed.StartEtcd(s.cfg)
	if err != nil {
		s.t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		s.t.Fatal("etcd did not become ready")
	}
	s.e = e
}

func (s *restartableEtcd) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

func TestWatchLeasesSurvivesEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd; skipped in -short mode")
	}
	t.Parallel()
	srv, endpoints := startRestartableEtcd(t)
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := newTestRegistry(t, c)
	p := r.SubnetsPrefix()

	put(t, c, p+"198.19.1.0-24", leaseValue("198.18.0.1"), 600)
	w := startWatch(t, r, WatchOptions{})
	w.expect("added:198.19.1.0-24@198.18.0.1")

	srv.stop()
	time.Sleep(time.Second)
	srv.start()

	put(t, c, p+"198.19.2.0-24", leaseValue("198.18.0.2"), 600)
	w.expect("added:198.19.2.0-24@198.18.0.2")
	del(t, c, p+"198.19.1.0-24")
	w.expect("removed:198.19.1.0-24@198.18.0.1")
}
