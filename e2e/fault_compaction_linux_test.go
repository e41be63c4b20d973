package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/subnet"
)

// TestFaultCompaction compacts etcd's history past the revision the hosts' lease
// watches stand at: etcd restarts while the hosts are cut off from the underlay, a
// lease appears and etcd compacts, and then the hosts come back. Each watch must find
// its revision gone, list the leases again and pick up the new lease, without
// removing, even for a moment, a route to a peer that is still there.
func TestFaultCompaction(t *testing.T) {
	o := faultOptions(t, "compact")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 3, 1
	l := upLab(t, o)
	ctx := context.Background()
	hosts := []int{1, 2, 3}

	leases := map[int]subnet.Lease{}
	for _, i := range hosts {
		lease, err := l.HostLease(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		leases[i] = lease
	}
	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Fatalf("pods do not reach each other before the compaction: %v", failed)
	}

	// Watch every host's routes to its peers from now until the end.
	wctx, stopWatching := context.WithCancel(ctx)
	var lost atomic.Int64
	var wg sync.WaitGroup
	for _, i := range hosts {
		h, err := netlab.NewHandle(HostNS(l.Name(), i))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		wg.Go(func() {
			for wctx.Err() == nil {
				for _, j := range hosts {
					if j != i && len(routesTo(t, h, leases[j])) == 0 {
						lost.Add(1)
						t.Errorf("h%d lost its route to h%d's %s", i, j, leases[j].Subnet)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	defer func() {
		stopWatching()
		wg.Wait()
	}()

	if err := l.StopEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	for _, i := range hosts {
		if err := l.SetHostLink(i, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}

	// Two writes move the revision past the watches' resume point (compaction keeps the
	// revision it compacts to), then the history goes.
	putLease(t, l, fakePeer.Key(), fakePeerValue())
	putLease(t, l, "198.19.251.0-24", `{"PublicIP":"198.18.0.251","PublicIPv6":null}`)
	deleteKey(t, l, "198.19.251.0-24")
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "compact-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted to revision %d", resp.Header.Revision)
	for _, i := range hosts {
		if err := l.SetHostLink(i, true); err != nil {
			t.Fatal(err)
		}
	}

	for _, i := range hosts {
		took := waitFor(t, "the watch resynced after the compaction", 60*time.Second,
			func() bool {
				return metric(t, l, i, "weft_etcd_watch_restarts_total", "watch", "leases",
					"reason", "compacted") >= 1
			})
		waitFor(t, "a route to the lease written during the partition", 10*time.Second,
			func() bool { return hasRoute(t, l, i, fakePeer) })
		t.Logf("h%d resynced %v after it came back", i, took.Round(time.Millisecond))
	}
	stopWatching()
	wg.Wait()
	if n := lost.Load(); n > 0 {
		t.Errorf("routes to live peers went missing %d times", n)
	}

	m, err = PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Errorf("pods do not reach each other after the resync: %v", failed)
	}
	daemonsAlive(t, l)
}
