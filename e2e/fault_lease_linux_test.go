package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// TestFaultLeaseDeleted deletes a running host's lease by hand: that host acquires a
// lease again within 5 s, on its old subnet since it is free, and the other hosts
// program it again.
func TestFaultLeaseDeleted(t *testing.T) {
	o := faultOptions(t, "lease")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 3, 1
	l := upLab(t, o)
	ctx := context.Background()

	old, err := l.HostLease(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	deleteKey(t, l, old.Key())
	deleted := time.Now()

	took := waitFor(t, "h3 holding a lease again", 5*time.Second, func() bool {
		lease, err := l.HostLease(ctx, 3)
		return err == nil && lease.ModRevision > old.ModRevision
	})
	t.Logf("h3 acquired a lease again %v after the deletion", took.Round(time.Millisecond))
	now, err := l.HostLease(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if now.Subnet != old.Subnet {
		t.Errorf("h3 acquired %s, want its old subnet %s, which was free", now.Subnet,
			old.Subnet)
	}
	for _, i := range []int{1, 2} {
		waitFor(t, "the others programming h3 again", 10*time.Second, func() bool {
			return peerEntries(t, HostNS(o.Name, i), now) == entries{true, true, true}
		})
	}
	t.Logf("h1 and h2 have h3's route, ARP and FDB entries %v after the deletion",
		time.Since(deleted).Round(time.Millisecond))

	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Errorf("pods do not reach each other after the lease came back: %v", failed)
	}
	if n := metric(t, l, 3, "weft_lease_losses_total"); n != 1 {
		t.Errorf("h3: weft_lease_losses_total %v, want 1", n)
	}
	daemonsAlive(t, l)
}

// TestFaultMalformedKeys writes a key under subnets/ that is no lease key, and a lease
// key whose value is no lease: the daemons log a warning naming each and keep every
// route, where flanneld would drop all its peers.
func TestFaultMalformedKeys(t *testing.T) {
	o := faultOptions(t, "junk")
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
	allRoutes := func() (int, int, bool) {
		for _, i := range hosts {
			for _, j := range hosts {
				if i != j && !hasRoute(t, l, i, leases[j]) {
					return i, j, false
				}
			}
		}
		return 0, 0, true
	}
	// A host is ready once it has its own lease; the others' routes follow from the
	// watch.
	waitFor(t, "every host's routes to the others", 10*time.Second, func() bool {
		_, _, ok := allRoutes()
		return ok
	})

	const badKey, badValueKey = "not-a-lease", "198.19.250.0-24"
	putLease(t, l, badKey, `{"PublicIP":"198.18.0.250"}`)
	putLease(t, l, badValueKey, `{"PublicIP":""}`)
	defer deleteKey(t, l, badKey)
	defer deleteKey(t, l, badValueKey)

	// Every route stays while the daemons read the junk.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if i, j, ok := allRoutes(); !ok {
			t.Fatalf("h%d lost its route to h%d after the junk was written", i, j)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, h := range l.State().Hosts {
		log, err := os.ReadFile(h.Daemon.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{badKey, badValueKey} {
			if !strings.Contains(string(log), "ignoring a key under the subnets prefix") ||
				!strings.Contains(string(log), "/subnets/"+key) {
				t.Errorf("%s's log has no warning about %s:\n%s", h.Name(), key,
					tailFile(h.Daemon.Log, 10))
			}
		}
		if n := metric(t, l, h.Index, "weft_log_messages_total", "level", "warn",
			"subsystem", "registry"); n < 1 {
			t.Errorf("%s: no registry warning counted", h.Name())
		}
	}
	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Errorf("pods do not reach each other with junk under subnets/: %v", failed)
	}
	daemonsAlive(t, l)
}
