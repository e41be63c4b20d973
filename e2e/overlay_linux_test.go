package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/subnet"
)

// testVNI is the VNI of the tests' VXLAN labs; their device is flannel.7.
const testVNI = 7

var vxlanDev = fmt.Sprintf("flannel.%d", testVNI)

// hostFlag is a flag for one lab host's daemon and a text the daemon logs because of it.
type hostFlag struct{ flag, log string }

// TestPodMatrix checks that every pod reaches every other pod, on its own host and
// across hosts, with each backend.
func TestPodMatrix(t *testing.T) {
	tests := []struct {
		name    string
		backend string
		vni     int
		// hosts gives host I a flag, and a text its daemon logs because of it.
		hosts map[int]hostFlag
	}{
		{name: "vxlan", backend: "vxlan", vni: testVNI},
		{name: "host-gw", backend: "host-gw"},
		{name: "udp", backend: "udp"},
		// Every udp data path speaks the same wire format.
		{name: "udp-datapaths", backend: "udp", hosts: map[int]hostFlag{
			2: {"-udp-datapath=one-packet", "plain=true"},
			3: {"-udp-datapath=no-offload", "vnet_hdr=false"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := labOptions(t, "m-"+tt.name)
			o.Backend, o.VNI, o.Hosts, o.Pods = tt.backend, tt.vni, 3, 2
			o.HostFlags = map[int][]string{}
			for i, h := range tt.hosts {
				o.HostFlags[i] = []string{h.flag}
			}
			l := upLab(t, o)
			ctx := context.Background()

			m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 3})
			if err != nil {
				t.Fatal(err)
			}
			if failed := m.Failed(); len(failed) > 0 {
				t.Errorf("%d of 30 pod pairs failed:\n%v", len(failed), failed)
			}

			for i, h := range tt.hosts {
				log := l.State().Hosts[i-1].Daemon.Log
				data, err := os.ReadFile(log)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(data), h.log) {
					t.Errorf("h%d with %s: its log %s lacks %q", i, h.flag, log, h.log)
				}
			}

			if tt.backend != "vxlan" {
				return
			}
			// Each lease advertises the real MAC of its host's VXLAN device.
			for _, h := range l.State().Hosts {
				lease, err := l.HostLease(ctx, h.Index)
				if err != nil {
					t.Fatal(err)
				}
				mac := deviceMAC(t, h.NS, vxlanDev)
				if got := vtepMAC(lease.Attrs.BackendData); got != mac {
					t.Errorf("%s: lease VtepMAC %s, device %s has %s", h.Name(), got, vxlanDev, mac)
				}
			}
		})
	}
}

// TestLeaseRemoval stops a host's daemon, deletes its lease, and expects the other hosts
// to drop its route, ARP and FDB entries within a second.
func TestLeaseRemoval(t *testing.T) {
	o := labOptions(t, "rm")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 3, 1
	l := upLab(t, o)
	ctx := context.Background()

	gone, err := l.HostLease(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Fatalf("pods do not reach each other before the removal: %v", failed)
	}
	for _, i := range []int{1, 2} {
		if got := peerEntries(t, HostNS(o.Name, i), gone); got != (entries{true, true, true}) {
			t.Fatalf("h%d before the removal: %+v, want route, ARP and FDB entries of h3", i, got)
		}
	}

	if err := l.StopDaemon(ctx, 3, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	key := path.Join(l.State().EtcdPrefix, "subnets", gone.Key())
	resp, err := c.Delete(ctx, key)
	if err != nil || resp.Deleted != 1 {
		t.Fatalf("deleting %s: %v (deleted %d)", key, err, resp.Deleted)
	}
	deleted := time.Now()

	for _, i := range []int{1, 2} {
		ns := HostNS(o.Name, i)
		var got entries
		for {
			got = peerEntries(t, ns, gone)
			if got == (entries{}) || time.Since(deleted) > time.Second {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got != (entries{}) {
			t.Errorf("h%d still has entries of h3's lease 1s after its deletion: %+v", i, got)
		}
	}
	t.Logf("entries gone %s after the lease", time.Since(deleted).Round(time.Millisecond))

	// The others still reach each other.
	pods := l.Pods()[:2]
	m, err = PingMatrix(ctx, pods, MatrixOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Errorf("h1 and h2 lost each other: %v", failed)
	}
}

// TestDaemonRestart kills a daemon with SIGKILL and starts it again: it keeps its subnet
// and VtepMAC, and steady pings between the other hosts' pods and to and from its own pod
// lose nothing meanwhile.
func TestDaemonRestart(t *testing.T) {
	o := labOptions(t, "rs")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 3, 1
	l := upLab(t, o)
	ctx := context.Background()
	pods := l.Pods() // h1-p1, h2-p1, h3-p1

	before, err := l.HostLease(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := PingMatrix(ctx, pods, MatrixOptions{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Fatalf("pods do not reach each other before the restart: %v", failed)
	}

	// 20 requests a second on every pair that matters.
	pairs := [][2]int{{1, 2}, {2, 1}, {0, 1}, {1, 0}, {0, 2}, {2, 0}}
	pctx, stop := context.WithCancel(ctx)
	results := make([]netlab.PingResult, len(pairs))
	var wg sync.WaitGroup
	for k, pr := range pairs {
		p, err := netlab.NewPinger(pods[pr[0]].NS)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = p.Ping(pctx, pods[pr[1]].Addr, netlab.PingOptions{
				Interval: 50 * time.Millisecond,
				Timeout:  time.Second,
			})
		}()
	}

	time.Sleep(500 * time.Millisecond)
	killErr := l.StopDaemon(ctx, 1, syscall.SIGKILL)
	var startErr error
	if killErr == nil {
		startErr = l.StartDaemon(ctx, 1)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	if killErr != nil || startErr != nil {
		t.Fatalf("restarting h1's daemon: kill %v, start %v", killErr, startErr)
	}

	for k, r := range results {
		from, to := pods[pairs[k][0]], pods[pairs[k][1]]
		if r.Sent < 20 || !r.OK() {
			t.Errorf("%s -> %s during the restart: %d sent, %d answered (lost %v: %v)",
				from.Name, to.Name, r.Sent, r.Received, r.Lost, r.Err)
		}
	}

	after, err := l.HostLease(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if after.Subnet != before.Subnet {
		t.Errorf("subnet after the restart %s, before %s", after.Subnet, before.Subnet)
	}
	if a, b := vtepMAC(after.Attrs.BackendData), vtepMAC(before.Attrs.BackendData); a != b {
		t.Errorf("VtepMAC after the restart %s, before %s", a, b)
	}
}

// TestRouteRestored deletes a peer's route by hand and expects the daemon to put it back
// within 10 s.
func TestRouteRestored(t *testing.T) {
	o := labOptions(t, "rr")
	o.Backend, o.VNI, o.Hosts, o.Pods = "vxlan", testVNI, 2, 1
	l := upLab(t, o)
	ctx := context.Background()

	peer, err := l.HostLease(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlab.NewHandle(HostNS(o.Name, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	routes := routesTo(t, h, peer)
	if len(routes) != 1 {
		t.Fatalf("h1 has %d routes to %s, want 1", len(routes), peer.Subnet)
	}
	// Equivalent to: ip -n wt-e-rr-h1 route del <h2's subnet>
	if err := h.RouteDel(&routes[0]); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if len(routesTo(t, h, peer)) != 0 {
		t.Fatal("the route is still there after deleting it")
	}

	for len(routesTo(t, h, peer)) == 0 {
		if time.Since(deleted) > 10*time.Second {
			t.Fatalf("the route to %s is not back 10s after it was deleted", peer.Subnet)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("route back after %s", time.Since(deleted).Round(time.Millisecond))

	m, err := PingMatrix(ctx, l.Pods(), MatrixOptions{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if failed := m.Failed(); len(failed) > 0 {
		t.Errorf("pods do not reach each other after the repair: %v", failed)
	}
}

// entries says which kernel entries for one peer lease a host has.
type entries struct {
	Route, ARP, FDB bool
}

// peerEntries reads, in namespace ns, the route to lease's subnet, the ARP entry for its
// subnet address on the VXLAN device and the FDB entry for its VtepMAC.
func peerEntries(t *testing.T, ns string, lease subnet.Lease) entries {
	t.Helper()
	h, err := netlab.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	var e entries
	e.Route = len(routesTo(t, h, lease)) > 0
	dev, err := h.LinkByName(vxlanDev)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	neighs, err := netlab.Retry(func() ([]netlink.Neigh, error) {
		return h.NeighList(dev.Attrs().Index, netlink.FAMILY_V4)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.String() == lease.Subnet.Addr().String() {
			e.ARP = true
		}
	}
	fdb, err := netlab.Retry(func() ([]netlink.Neigh, error) {
		return h.NeighList(dev.Attrs().Index, syscall.AF_BRIDGE)
	})
	if err != nil {
		t.Fatal(err)
	}
	mac := vtepMAC(lease.Attrs.BackendData)
	for _, n := range fdb {
		if n.HardwareAddr.String() == mac {
			e.FDB = true
		}
	}
	return e
}

// routesTo returns the main-table routes whose destination is lease's subnet.
func routesTo(t *testing.T, h *netlink.Handle, lease subnet.Lease) []netlink.Route {
	t.Helper()
	filter := &netlink.Route{Dst: netlab.IPNet(lease.Subnet)}
	routes, err := netlab.Retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_DST)
	})
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// deviceMAC returns the MAC address of the link called dev in namespace ns.
func deviceMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	h, err := netlab.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	return net.HardwareAddr(link.Attrs().HardwareAddr).String()
}
