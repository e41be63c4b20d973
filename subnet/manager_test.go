package subnet

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// runManager starts m.Run until the test ends.
func runManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.Run(ctx); err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// nextChange waits for a lease on m.Changes.
func nextChange(t *testing.T, m *Manager, d time.Duration) Lease {
	t.Helper()
	select {
	case l := <-m.Changes():
		return l
	case <-time.After(d):
		t.Fatalf("no lease on Changes within %v", d)
	}
	return Lease{}
}

func newTestManager(t *testing.T, c *clientv3.Client,
	opts ManagerOptions) (*Manager, *Registry, *logbuf.Buffer) {
	t.Helper()
	log, logs := newLogger(t)
	r := NewRegistry(c, "/weft-test", log)
	if opts.Config == nil {
		opts.Config = mustConfig(t, testNet)
	}
	opts.Log = log
	return NewManager(r, opts), r, logs
}

func TestManagerAcquiresAndPrefersSubnetEnv(t *testing.T) {
	srv := startEtcd(t)
	prev := netip.MustParsePrefix("198.19.42.0/24")
	m, r, _ := newTestManager(t, srv.Client, ManagerOptions{Prev: Env{Subnet: prev}})
	if m.Lease() != nil {
		t.Fatal("Lease before AcquireLease is not nil")
	}
	if err := m.UpdateLeaseAttrs(testCtx(t), attrsFor("198.18.0.1")); err == nil {
		t.Error("UpdateLeaseAttrs before AcquireLease succeeded")
	}
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != prev || m.Lease().Subnet != prev {
		t.Errorf("acquired %s (Lease %s), want subnet.env's %s", l.Subnet, m.Lease().Subnet, prev)
	}
	if ttl := ttlOf(t, srv.Client, r.LeaseKey(prev, netip.Prefix{})); ttl < 86390 {
		t.Errorf("TTL %d, want about 86400", ttl)
	}
}

func TestManagerRenews(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	m, r, logs := newTestManager(t, srv.Client, ManagerOptions{RenewMargin: 2 * time.Second})
	r.ttl = 3
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	first := l.EtcdLease
	runManager(t, m)

	// Well past the TTL the key is still there, on a newer etcd lease; the replaced
	// leases were revoked rather than left to expire.
	start := time.Now()
	time.Sleep(5 * time.Second)
	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
	_, id, found := getKV(t, srv.Client, key)
	if !found {
		t.Fatalf("%s expired although the manager runs", key)
	}
	if id == first {
		t.Errorf("%s still carries its first etcd lease", key)
	}
	if n := logs.Count("lease renewed"); n < 3 {
		t.Errorf("%d renewals in %v with a 3s TTL renewed 2s early, want at least 3",
			n, time.Since(start))
	}
	resp, err := srv.Client.Leases(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Leases) > 2 {
		t.Errorf("etcd holds %d leases, want the current one (and at most one being replaced)",
			len(resp.Leases))
	}
	if logs.Count("lease lost") != 0 {
		t.Errorf("the lease was lost while renewing")
	}
}

func TestManagerReacquiresDeletedLease(t *testing.T) {
	srv := startEtcd(t)
	m, r, logs := newTestManager(t, srv.Client, ManagerOptions{})
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	time.Sleep(200 * time.Millisecond) // let the own-key watch start

	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
	del(t, srv.Client, key)
	got := nextChange(t, m, 5*time.Second)
	if got.Subnet != l.Subnet {
		t.Errorf("re-acquired %s, want the same subnet %s", got.Subnet, l.Subnet)
	}
	v, id, found := getKV(t, srv.Client, key)
	if !found || id == 0 || !strings.Contains(v, `"VtepMAC":"c6:d2:32:6f:8f:44"`) {
		t.Errorf("after re-acquisition %s = %q (etcd lease %d), want the same attributes", key, v, id)
	}
	if m.Lease().EtcdLease != id {
		t.Errorf("Lease().EtcdLease = %d, want %d", m.Lease().EtcdLease, id)
	}
	if logs.Count("lease lost") != 1 || logs.Count("lease acquired again", "same_subnet=true") != 1 {
		t.Errorf("the loss and the re-acquisition were not logged once each")
	}
}

func TestManagerLeaseTakenOver(t *testing.T) {
	srv := startEtcd(t)
	m, r, _ := newTestManager(t, srv.Client, ManagerOptions{})
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)

	ctx, cancel := context.WithCancel(context.Background())
	peers := make(chan []Event, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = m.WatchPeers(ctx, peers)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	time.Sleep(300 * time.Millisecond)

	// Another host now holds our key (our lease expired while we were cut off, say).
	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
	theirs := leaseValue("198.18.0.2")
	put(t, srv.Client, key, theirs, 600)

	got := nextChange(t, m, 5*time.Second)
	if got.Subnet == l.Subnet {
		t.Fatalf("re-acquired %s, which another host holds", got.Subnet)
	}
	if v, _, _ := getKV(t, srv.Client, key); v != theirs {
		t.Errorf("the other host's lease became %q", v)
	}
	if _, _, found := getKV(t, srv.Client, r.LeaseKey(got.Subnet, got.IPv6Subnet)); !found {
		t.Errorf("the new lease %s is not in etcd", got.Key())
	}

	// The peers watch now shows the other host on the old subnet, and never our own.
	select {
	case evs := <-peers:
		if want := "added:" + l.Key() + "@198.18.0.2"; brief(evs) != want {
			t.Errorf("peer events %q, want %q", brief(evs), want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peers watch did not deliver the other host's lease")
	}
	select {
	case evs := <-peers:
		t.Errorf("unexpected peer events %q", brief(evs))
	case <-time.After(300 * time.Millisecond):
	}
}

func TestManagerRenewAfterExpiry(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	m, r, logs := newTestManager(t, srv.Client, ManagerOptions{RenewMargin: time.Second})
	r.ttl = 2
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		_, _, found := getKV(t, srv.Client, key)
		return !found
	})

	runManager(t, m)
	got := nextChange(t, m, 5*time.Second)
	if got.Subnet != l.Subnet {
		t.Errorf("re-acquired %s, want the same subnet %s", got.Subnet, l.Subnet)
	}
	if logs.Count("lease lost") != 1 {
		t.Errorf("the loss was not logged once")
	}
}

func TestManagerAdoptsReservation(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	m, r, logs := newTestManager(t, srv.Client, ManagerOptions{RenewMargin: 1500 * time.Millisecond})
	r.ttl = 2
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	time.Sleep(200 * time.Millisecond)

	// The operator pins the lease: the same value, without an etcd lease.
	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)
	value, _, _ := getKV(t, srv.Client, key)
	put(t, srv.Client, key, value, 0)
	eventually(t, 5*time.Second, "the reservation to be adopted", func() bool {
		return m.Lease().Reserved()
	})

	time.Sleep(3 * time.Second) // longer than the old TTL
	v, id, found := getKV(t, srv.Client, key)
	if !found || id != 0 || v != value {
		t.Errorf("%s = %q with etcd lease %d, want the reservation unchanged", key, v, id)
	}
	if logs.Count("lease lost") != 0 {
		t.Error("the reservation was taken for a loss")
	}

	// Attributes can still change, and it stays a reservation.
	attrs := attrsFor("198.18.0.1")
	attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:55"}`)
	if err := m.UpdateLeaseAttrs(testCtx(t), attrs); err != nil {
		t.Fatal(err)
	}
	v, id, _ = getKV(t, srv.Client, key)
	if id != 0 || !strings.Contains(v, "8f:55") {
		t.Errorf("after UpdateLeaseAttrs %s = %q with etcd lease %d, want a reservation", key, v, id)
	}
}

func TestManagerUpdateLeaseAttrs(t *testing.T) {
	srv := startEtcd(t)
	m, r, _ := newTestManager(t, srv.Client, ManagerOptions{})
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	key := r.LeaseKey(l.Subnet, l.IPv6Subnet)

	attrs := attrsFor("198.18.0.1")
	attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:66"}`)
	if err := m.UpdateLeaseAttrs(testCtx(t), attrs); err != nil {
		t.Fatal(err)
	}
	v, id, _ := getKV(t, srv.Client, key)
	if !strings.Contains(v, "8f:66") || id == l.EtcdLease || m.Lease().EtcdLease != id {
		t.Errorf("%s = %q on etcd lease %d (Lease has %d, was %d)", key, v, id,
			m.Lease().EtcdLease, l.EtcdLease)
	}
	if ttl := ttlOf(t, srv.Client, key); ttl < 86390 {
		t.Errorf("TTL after the update %d, want about 86400", ttl)
	}
	old, err := srv.Client.TimeToLive(testCtx(t), clientv3.LeaseID(l.EtcdLease))
	if err != nil || old.TTL != -1 {
		t.Errorf("the replaced etcd lease has TTL %d (%v), want it revoked", old.TTL, err)
	}

	// Bad attributes write nothing.
	if err := m.UpdateLeaseAttrs(testCtx(t), LeaseAttrs{}); err == nil {
		t.Error("UpdateLeaseAttrs accepted attributes without a PublicIP")
	}
	if v2, _, _ := getKV(t, srv.Client, key); v2 != v {
		t.Errorf("a rejected update changed the value to %q", v2)
	}

	// An update that finds the lease gone says so and writes nothing; Run then
	// acquires a lease again with the new attributes.
	del(t, srv.Client, key)
	attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:77"}`)
	if err := m.UpdateLeaseAttrs(testCtx(t), attrs); err == nil ||
		!strings.Contains(err.Error(), "no longer held") {
		t.Errorf("UpdateLeaseAttrs of a deleted lease = %v", err)
	}
	if _, _, found := getKV(t, srv.Client, key); found {
		t.Errorf("UpdateLeaseAttrs of a deleted lease wrote %s", key)
	}
	runManager(t, m)
	got := nextChange(t, m, 5*time.Second)
	v, _, _ = getKV(t, srv.Client, r.LeaseKey(got.Subnet, got.IPv6Subnet))
	if got.Subnet != l.Subnet || !strings.Contains(v, "8f:77") {
		t.Errorf("re-acquired %s = %q, want %s with the new attributes", got.Key(), v, l.Key())
	}
}

func TestManagerRenewalRetriesWhileEtcdIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd; skipped in -short mode")
	}
	t.Parallel()
	srv, endpoints := startRestartableEtcd(t)
	c, err := NewEtcdClient(EtcdOptions{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, r, logs := newTestManager(t, c, ManagerOptions{
		RenewMargin:   4 * time.Second,
		RetryInterval: 300 * time.Millisecond,
	})
	r.ttl = 6
	r.rpcTimeout = time.Second
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)

	srv.stop()
	eventually(t, 10*time.Second, "a failed renewal", func() bool {
		return logs.Count("renewing the lease failed") > 0
	})
	srv.start()
	eventually(t, 15*time.Second, "a renewal after etcd came back", func() bool {
		return logs.Count("lease renewed") > 0
	})
	if m.Lease().Subnet != l.Subnet {
		t.Errorf("the lease moved from %s to %s", l.Subnet, m.Lease().Subnet)
	}
}

func TestManagerWatchPeersLeavesOutOwnLeases(t *testing.T) {
	srv := startEtcd(t)
	m, r, _ := newTestManager(t, srv.Client, ManagerOptions{})
	l, err := m.AcquireLease(testCtx(t), attrsFor("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	p := r.SubnetsPrefix()
	put(t, srv.Client, p+"198.19.200.0-24", leaseValue("198.18.0.2"), 600)
	// A second lease of this host's public IP, left over from an earlier run.
	put(t, srv.Client, p+"198.19.201.0-24", leaseValue("198.18.0.1"), 600)

	ctx, cancel := context.WithCancel(context.Background())
	peers := make(chan []Event, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.WatchPeers(ctx, peers); err != nil {
			t.Errorf("WatchPeers = %v, want nil after cancel", err)
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	select {
	case evs := <-peers:
		if got, want := brief(evs), "added:198.19.200.0-24@198.18.0.2"; got != want {
			t.Errorf("peer events %q, want %q (own lease %s)", got, want, l.Key())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no peer events")
	}
}
