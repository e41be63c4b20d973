package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// etcdOutage is how long TestFaultEtcdOutage keeps etcd away: a minute, many times every
// retry and backoff on the way (the daemons' etcd backoff tops out at 10 s, the watch's at
// 5 s).
const etcdOutage = 60 * time.Second

// TestFaultEtcdOutage stops etcd for etcdOutage under a running lab: pods keep talking
// across hosts without losing a packet, the daemons stay up and ready, they follow the
// leases again once etcd is back, and each renews its lease when the renewal falls
// due (a renew margin of 1439 minutes makes it due a minute after acquisition).
func TestFaultEtcdOutage(t *testing.T) {
	o := faultOptions(t, "etcd")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 2, 1
	o.Daemon = []string{bins.weftd, "-subnet-lease-renew-margin", "1439"}
	l := upLab(t, o)
	ctx := context.Background()

	before := map[int]subnet.Lease{}
	for _, i := range []int{1, 2} {
		lease, err := l.HostLease(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = lease
	}
	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Fatalf("pods do not reach each other before the outage: %v", failed)
	}

	stop := steadyPings(t, l.Pods())
	if err := l.StopEtcd(ctx); err != nil {
		stop()
		t.Fatal(err)
	}
	time.Sleep(etcdOutage)
	daemonsAlive(t, l)
	for _, i := range []int{1, 2} {
		if _, err := l.HealthGet(ctx, i, "/readyz"); err != nil {
			t.Errorf("h%d not ready while etcd is away: %v", i, err)
		}
	}
	if err := l.StartEtcd(ctx); err != nil {
		stop()
		t.Fatal(err)
	}
	results := stop()
	checkNoLoss(t, results, int(etcdOutage/(50*time.Millisecond))*9/10)

	// The daemons follow the leases again: a new peer gets its route.
	putLease(t, l, fakePeer.Key(), fakePeerValue())
	for _, i := range []int{1, 2} {
		took := waitFor(t, "a route to a lease written after the outage", 30*time.Second,
			func() bool { return hasRoute(t, l, i, fakePeer) })
		t.Logf("h%d follows the leases again %v after the write", i, took.Round(time.Millisecond))
	}
	deleteKey(t, l, fakePeer.Key())

	// Each lease is renewed with a fresh etcd lease when its renewal falls due.
	for _, i := range []int{1, 2} {
		waitFor(t, "the lease renewed", 90*time.Second, func() bool {
			lease, err := l.HostLease(ctx, i)
			return err == nil && lease.EtcdLease != before[i].EtcdLease
		})
		lease, _ := l.HostLease(ctx, i)
		if lease.Subnet != before[i].Subnet {
			t.Errorf("h%d: subnet %s after the outage, %s before", i, lease.Subnet,
				before[i].Subnet)
		}
		if n := metric(t, l, i, "weft_lease_renewals_total"); n < 1 {
			t.Errorf("h%d: weft_lease_renewals_total %v after a renewal", i, n)
		}
		st := hostStatus(t, l, i)
		if st.Lease == nil || time.Until(st.Lease.Expiration) < 23*time.Hour ||
			st.LeaseRenewals < 1 {
			t.Errorf("h%d: /status after the renewal: %+v", i, st)
		}
	}
	daemonsAlive(t, l)
}
