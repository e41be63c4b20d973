package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/subnet"
)

func TestTapHandler(t *testing.T) {
	var m Metrics
	var out strings.Builder
	inner := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})
	log := slog.New(newTapHandler(inner, &m))

	log.With("subsystem", "lease").Info("lease renewed", "lease", "198.19.1.0-24")
	log.With("subsystem", "lease").Warn("renewing the lease failed; retrying", "err", "x")
	log.With("subsystem", "registry").Debug("watching leases failed; retrying", "err", "eof")
	log.Info("the lease watch fell behind an etcd compaction; listing all leases again",
		"subsystem", "registry")
	be := log.With("subsystem", "backend")
	be.Warn("programming peers", "err", fmt.Errorf("adding route 198.19.2.0/24: %w",
		errors.Join(syscall.EEXIST, fmt.Errorf("adding FDB entry: %w", syscall.ENODEV))))
	be.Warn("skipping peer lease", "err", errors.New("no VtepMAC"))
	be.Debug("per-event chatter")
	log.With("subsystem", "rules").Error("installing rules", "err", syscall.EPERM)
	log.With("subsystem", "lease").Warn("watching the own lease failed; retrying")

	checks := []struct {
		name string
		got  uint64
		want uint64
	}{
		{name: "renewals", got: m.renewals.Load(), want: 1},
		{name: "renewal failures", got: m.renewalFailures.Load(), want: 1},
		{name: "watch errors (at Debug)", got: m.watchErrors.Load(), want: 1},
		{name: "compactions", got: m.watchCompacted.Load(), want: 1},
		{name: "own watch errors", got: m.ownWatchErrors.Load(), want: 1},
		{name: "netlink errors", got: m.netlinkErrorTotal(), want: 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s := out.String(); strings.Contains(s, "per-event chatter") ||
		strings.Contains(s, "watching leases failed") || !strings.Contains(s, "lease renewed") {
		t.Errorf("the daemon's handler got the wrong records:\n%s", s)
	}

	recent := m.recentLog()
	if len(recent) != 5 {
		t.Fatalf("%d recent entries, want the 5 warnings and errors: %+v", len(recent), recent)
	}
	if r := recent[3]; r.Level != "error" || r.Subsystem != "rules" ||
		r.Message != "installing rules" || r.Err != "operation not permitted" {
		t.Errorf("recent[3] = %+v", r)
	}

	var b strings.Builder
	m.WriteText(&b, false)
	for _, want := range []string{
		"weft_lease_renewals_total 1\n",
		"weft_lease_renewal_failures_total 1\n",
		`weft_etcd_watch_restarts_total{watch="leases",reason="error"} 1` + "\n",
		`weft_etcd_watch_restarts_total{watch="leases",reason="compacted"} 1` + "\n",
		`weft_etcd_watch_restarts_total{watch="own-lease",reason="error"} 1` + "\n",
		`weft_netlink_errors_total{subsystem="backend"} 2` + "\n",
		`weft_netlink_errors_total{subsystem="rules"} 1` + "\n",
		`weft_log_messages_total{level="warn",subsystem="backend"} 2` + "\n",
		`weft_log_messages_total{level="error",subsystem="rules"} 1` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}

	t.Run("recent is bounded", func(t *testing.T) {
		for i := range 2 * maxRecent {
			log.Warn("again", "n", i)
		}
		if r := m.recentLog(); len(r) != maxRecent || r[0].Time.After(r[len(r)-1].Time) {
			t.Errorf("recent = %+v", r)
		}
	})
}

func TestCountErrnos(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "nil", err: nil, want: 0},
		{name: "bare", err: syscall.ENOENT, want: 1},
		{name: "wrapped twice", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", syscall.EBUSY)),
			want: 1},
		{name: "joined", err: errors.Join(syscall.EEXIST, errors.New("x"), syscall.EPERM),
			want: 2},
		{name: "none", err: errors.New("lease has no VtepMAC"), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countErrnos(tt.err); got != tt.want {
				t.Errorf("countErrnos(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestTapCountsSubnetEvents runs the real lease manager and registry against etcd with
// the tap in their logger, and checks that a renewal, a failed renewal, a watch that
// fell behind a compaction and a lost lease are counted: the messages the tap
// recognises are still the ones package subnet logs.
func TestTapCountsSubnetEvents(t *testing.T) {
	etcd := etcdtest.Start(t)
	proxy := startProxy(t, strings.TrimPrefix(etcd.Endpoints[0], "http://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cli, err := subnet.NewEtcdClient(subnet.EtcdOptions{Endpoints: []string{proxy.url()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var m Metrics
	log, logs := captureLog(t)
	log = slog.New(newTapHandler(log.Handler(), &m))
	const prefix = "/weft/tap"
	reg := subnet.NewRegistry(cli, prefix, log)
	cfg, err := subnet.ParseConfig([]byte(`{"Network": "198.19.0.0/16"}`))
	if err != nil {
		t.Fatal(err)
	}
	mgr := subnet.NewManager(reg, subnet.ManagerOptions{Config: cfg, Log: log})
	lease, err := mgr.AcquireLease(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("198.18.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	key := reg.LeaseKey(lease.Subnet, lease.IPv6Subnet)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { mgr.Run(ctx) })
	out := make(chan []subnet.Event)
	wg.Go(func() { mgr.WatchPeers(ctx, out) })
	wg.Go(func() {
		for {
			select {
			case <-out:
			case <-ctx.Done():
				return
			}
		}
	})

	// soon rewrites the own lease, as an operator might, with an etcd lease that runs
	// out the default renew margin plus d from now: the manager adopts it and renews
	// it d later.
	soon := func(d time.Duration) {
		t.Helper()
		g, err := etcd.Client.Grant(ctx, int64((subnet.DefaultRenewMargin+d)/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcd.Client.Put(ctx, key, `{"PublicIP":"198.18.0.1","PublicIPv6":null}`,
			clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}

	soon(2 * time.Second)
	eventually(t, "a renewal counted", 20*time.Second, func() bool {
		return m.renewals.Load() == 1
	})

	// Cut off from etcd, the manager fails to renew, and the watch falls behind a
	// change and a compaction.
	soon(3 * time.Second)
	eventually(t, "the rewrite adopted", 10*time.Second, func() bool {
		return len(logs.lines("adopting it")) == 2
	})
	proxy.pause()
	// Compaction keeps the revision it compacts to: two writes put the watch's
	// resume revision below it.
	for _, s := range []string{"198.19.250.0-24", "198.19.251.0-24"} {
		if _, err := etcd.Client.Put(ctx, prefix+"/subnets/"+s,
			`{"PublicIP":"198.18.0.250","PublicIPv6":null}`); err != nil {
			t.Fatal(err)
		}
	}
	etcd.Compact(t)
	eventually(t, "a failed renewal counted", 30*time.Second, func() bool {
		return m.renewalFailures.Load() >= 1
	})
	proxy.resume()
	eventually(t, "the compaction counted", 30*time.Second, func() bool {
		return m.watchCompacted.Load() >= 1
	})

	if _, err := etcd.Client.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the loss counted", 20*time.Second, func() bool {
		return m.leaseLosses.Load() >= 1
	})
}
