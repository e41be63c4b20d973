package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// labHost is a lab host running the vxlan backend.
type labHost struct {
	*kerneltest.Host
	leases  *fakeLeases
	net     *network
	counter *kerneltest.Counter
	events  chan []subnet.Event
	log     *logbuf.Buffer
}

func testConfig(backendJSON string) *subnet.Config {
	return &subnet.Config{
		EnableIPv4:  true,
		Network:     overlay,
		SubnetLen:   24,
		BackendType: TypeName,
		Backend:     []byte(backendJSON),
	}
}

func newLabBackend(h *kerneltest.Host, log *slog.Logger, resync time.Duration) *vxlanBackend {
	b := newBackend(backend.Params{Ext: h.Ext, Log: log}, sys{h: h.Handle, ns: h.NS})
	b.resync = resync
	return b
}

// register runs RegisterNetwork on h for subnet sn and starts Run; Run stops when the
// test ends.
func register(t *testing.T, h *kerneltest.Host, sn string, cfg *subnet.Config,
	resync time.Duration) *labHost {
	t.Helper()
	lh := &labHost{
		Host:   h,
		leases: &fakeLeases{subnet: netip.MustParsePrefix(sn)},
		events: make(chan []subnet.Event),
		log:    &logbuf.Buffer{},
	}
	log := slog.New(slog.NewTextHandler(lh.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newLabBackend(h, log, resync)
	b.wrapOps = func(ops kernel.Ops) kernel.Ops {
		lh.counter = kerneltest.Count(ops)
		return lh.counter
	}
	n, err := b.RegisterNetwork(context.Background(), cfg, lh.leases)
	if err != nil {
		t.Fatalf("RegisterNetwork: %v", err)
	}
	lh.net = n.(*network)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, lh.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Once an empty batch is taken, Run has loaded the kernel state.
	lh.feed()
	return lh
}

// feed sends a batch and waits until Run has handled it.
func (lh *labHost) feed(events ...subnet.Event) {
	lh.events <- events
	lh.events <- nil
}

// ownLease is the lease h acquired, as its peers see it.
func (lh *labHost) ownLease() subnet.Lease {
	return *lh.net.Lease()
}

// state lists the device's entries through netlink.
func (lh *labHost) state(t *testing.T) kernel.Entries {
	t.Helper()
	ops := kernel.NewNetlink(lh.Handle)
	link, err := ops.LinkByName(lh.net.stacks[0].link.Name)
	if err != nil {
		t.Fatal(err)
	}
	var e kernel.Entries
	if e.Neighs, err = ops.Neighs(link.Index, kernel.IPv4); err != nil {
		t.Fatal(err)
	}
	if e.FDB, err = ops.FDB(link.Index); err != nil {
		t.Fatal(err)
	}
	if e.Routes, err = ops.Routes(link.Index, kernel.IPv4); err != nil {
		t.Fatal(err)
	}
	// Only the permanent neighbours are the backend's; the kernel may add others.
	e.Neighs = slices.DeleteFunc(e.Neighs, func(n kernel.Neigh) bool { return !n.Permanent })
	return e
}

func macOf(t *testing.T, l subnet.Lease) kernel.MAC {
	t.Helper()
	d, err := ParseBackendData(l.Attrs.BackendData)
	if err != nil {
		t.Fatal(err)
	}
	return d.VtepMAC
}

// wantPeer is the state a host must have with exactly one peer p.
func wantPeer(t *testing.T, link int, p subnet.Lease) kernel.Entries {
	t.Helper()
	e := peerEntries(link, peers.Peer{Subnet: p.Subnet, PublicIP: p.Attrs.PublicIP}, macOf(t, p))
	e.Neighs[0].Permanent = true
	e.FDB[0].Permanent = true
	return e
}

func TestTwoHostsLab(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan","VNI":2000}`)
	a := register(t, h1, "198.19.1.0/24", cfg, time.Hour)
	b := register(t, h2, "198.19.2.0/24", cfg, time.Hour)

	// The device is as flanneld makes it.
	for _, lh := range []*labHost{a, b} {
		l, err := lh.Handle.LinkByName("flannel.2000")
		if err != nil {
			t.Fatal(err)
		}
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			t.Fatalf("flannel.2000 is a %s", l.Type())
		}
		mac := macOf(t, lh.ownLease())
		if vx.VxlanId != 2000 || vx.Port != 8472 || vx.Learning || vx.GBP ||
			vx.VtepDevIndex != lh.Ext.Index || !vx.SrcAddr.Equal(lh.Ext.ExtAddr.AsSlice()) ||
			vx.MTU != 1450 || vx.Flags&net.FlagUp == 0 ||
			vx.HardwareAddr.String() != mac.String() {
			t.Errorf("device %+v; want VNI 2000, port 8472, nolearning, local %s on eth0, "+
				"MTU 1450, up, MAC %s", vx, lh.Ext.ExtAddr, mac)
		}
		addrs, err := lh.Handle.AddrList(l, netlink.FAMILY_V4)
		want := subnetAddr(lh.ownLease().Subnet).String()
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != want {
			t.Errorf("device addresses %v, %v; want %s", addrs, err, want)
		}
		var ra []byte
		nstest.Do(t, lh.NS, func() {
			ra, err = os.ReadFile("/proc/sys/net/ipv6/conf/flannel.2000/accept_ra")
		})
		if err == nil && strings.TrimSpace(string(ra)) != "0" {
			t.Errorf("accept_ra is %q, want 0", ra)
		}
		if lh.net.MTU() != 1450 {
			t.Errorf("MTU() = %d, want 1450", lh.net.MTU())
		}
		got := string(lh.leases.acquired[0].BackendData)
		if wantData := `{"VNI":2000,"VtepMAC":"` + mac.String() + `"}`; got != wantData {
			t.Errorf("BackendData %s, want %s", got, wantData)
		}
	}

	// Each host learns of the other: exactly three entries, at the cost of three writes
	// and no listing.
	a.counter.Reset()
	b.counter.Reset()
	a.feed(added(b.ownLease()))
	b.feed(added(a.ownLease()))
	for _, c := range []*kerneltest.Counter{a.counter, b.counter} {
		if c.Writes() != 3 || c.Reads() != 0 {
			t.Errorf("a new peer cost %d writes and %d reads, want 3 and 0", c.Writes(), c.Reads())
		}
	}
	if got, want := a.state(t), wantPeer(t, a.net.stacks[0].link.Index, b.ownLease()); !got.Equal(want) {
		t.Errorf("host 1 entries:\n  %+v\nwant:\n  %+v", got, want)
	}
	if got, want := b.state(t), wantPeer(t, b.net.stacks[0].link.Index, a.ownLease()); !got.Equal(want) {
		t.Errorf("host 2 entries:\n  %+v\nwant:\n  %+v", got, want)
	}

	// Pods on each side reach each other through the tunnel.
	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"))
	h2.AddBridge(t, netip.MustParsePrefix("198.19.2.1/24"))
	pod1, pod2 := netip.MustParseAddr("198.19.1.1"), netip.MustParseAddr("198.19.2.1")
	if err := h1.Ping(t, pod1, pod2, 3*time.Second); err != nil {
		t.Error(err)
	}
	if err := kerneltest.Exchange(t, h2, pod2, h1, pod1); err != nil {
		t.Error(err)
	}

	// A renewal costs nothing.
	a.counter.Reset()
	a.feed(added(b.ownLease()))
	if a.counter.Writes() != 0 {
		t.Errorf("a renewal cost %d writes", a.counter.Writes())
	}

	// Removal takes the entries away, and the pods can no longer talk.
	a.feed(removed(b.ownLease()))
	if got := a.state(t); got.Len() != 0 {
		t.Errorf("entries left after removal: %+v", got)
	}
	if err := h1.Ping(t, pod1, pod2, 300*time.Millisecond); err == nil {
		t.Error("ping still works after the peer was removed")
	}
}

func TestDeviceKeptAcrossRestart(t *testing.T) {
	nstest.RequireRoot(t)
	h1, _ := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan"}`)
	leases := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
	log := slog.New(slog.DiscardHandler)

	n1, err := newLabBackend(h1, log, time.Hour).RegisterNetwork(context.Background(), cfg, leases)
	if err != nil {
		t.Fatal(err)
	}
	first := n1.(*network)

	// A restarted daemon finds the device: same index, same MAC, nothing recreated.
	n2, err := newLabBackend(h1, log, time.Hour).RegisterNetwork(context.Background(), cfg, leases)
	if err != nil {
		t.Fatal(err)
	}
	second := n2.(*network)
	was, is := first.stacks[0], second.stacks[0]
	if is.link != was.link || is.mac != was.mac {
		t.Errorf("after a restart: %v %s; want %v %s", is.link, is.mac, was.link, was.mac)
	}
	if a := leases.acquired; len(a) != 2 || string(a[0].BackendData) != string(a[1].BackendData) {
		t.Errorf("acquired with %v", a)
	}
}

func TestDeviceRecreatedWhenIncompatible(t *testing.T) {
	nstest.RequireRoot(t)
	h1, _ := kerneltest.Pair(t)

	// flannel.1 exists on another port, with a MAC weft would never pick.
	stranger, _ := net.ParseMAC("00:11:22:33:44:55")
	err := h1.Handle.LinkAdd(&netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "flannel.1", HardwareAddr: stranger},
		VxlanId:      1,
		VtepDevIndex: h1.Ext.Index,
		SrcAddr:      h1.Ext.ExtAddr.AsSlice(),
		Port:         4789,
	})
	if err != nil {
		t.Fatal(err)
	}

	buf := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(buf, nil))
	leases := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
	n, err := newLabBackend(h1, log, time.Hour).RegisterNetwork(context.Background(),
		testConfig(`{"Type":"vxlan"}`), leases)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(),
		`level=INFO msg="device exists with an incompatible configuration; recreating it" `+
			`backend=vxlan device=flannel.1 reason="UDP port 4789, want 8472"`) {
		t.Errorf("no Info log with the reason:\n%s", buf)
	}
	l, err := h1.Handle.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	got := n.(*network).stacks[0].mac
	if vx.Port != 8472 || got.String() == stranger.String() || vx.HardwareAddr.String() != got.String() {
		t.Errorf("device port %d MAC %s (advertised %s); want 8472 and a new MAC", vx.Port,
			vx.HardwareAddr, got)
	}
}

// failingLeases fails AcquireLease.
type failingLeases struct{ fakeLeases }

func (f *failingLeases) AcquireLease(context.Context, subnet.LeaseAttrs) (*subnet.Lease, error) {
	return nil, errors.New("etcd unavailable")
}

func TestFailedRegistrationLeavesNoDevice(t *testing.T) {
	nstest.RequireRoot(t)
	h1, _ := kerneltest.Pair(t)
	_, err := newLabBackend(h1, slog.New(slog.DiscardHandler), time.Hour).RegisterNetwork(
		context.Background(), testConfig(`{"Type":"vxlan"}`), &failingLeases{})
	if err == nil || !strings.Contains(err.Error(), "acquiring lease: etcd unavailable") {
		t.Fatalf("RegisterNetwork error %v", err)
	}
	if _, err := h1.Handle.LinkByName("flannel.1"); err == nil {
		t.Error("flannel.1 left behind")
	}
}

func TestDeviceDeletedFromOutside(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan"}`)
	a := register(t, h1, "198.19.1.0/24", cfg, time.Hour)
	b := register(t, h2, "198.19.2.0/24", cfg, time.Hour)
	a.feed(added(b.ownLease()))
	b.feed(added(a.ownLease()))
	old, err := h1.Handle.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}

	// Deleted by hand: restored with the same MAC, and every peer is back.
	if err := h1.Handle.LinkDel(old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device and its peer to come back", func() bool {
		l, err := h1.Handle.LinkByName("flannel.1")
		return err == nil && l.Attrs().Index != old.Attrs().Index &&
			a.state(t).Len() == 3
	})
	l, _ := h1.Handle.LinkByName("flannel.1")
	if l.Attrs().HardwareAddr.String() != old.Attrs().HardwareAddr.String() {
		t.Errorf("MAC %s after recreation, want %s", l.Attrs().HardwareAddr,
			old.Attrs().HardwareAddr)
	}
	if u := a.leases.updates(); len(u) != 0 {
		t.Errorf("published %v for an unchanged MAC", u)
	}
	pod1, pod2 := netip.MustParseAddr("198.19.1.1"), netip.MustParseAddr("198.19.2.1")
	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"))
	h2.AddBridge(t, netip.MustParsePrefix("198.19.2.1/24"))
	if err := h1.Ping(t, pod1, pod2, 3*time.Second); err != nil {
		t.Error(err)
	}

	// Its MAC changed by hand: the new one is published, and once the peer learns it the
	// pods talk again.
	newMAC, _ := net.ParseMAC("02:aa:bb:cc:dd:ee")
	if err := h1.Handle.LinkSetHardwareAddr(l, newMAC); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new MAC published", func() bool { return len(a.leases.updates()) == 1 })
	published := a.leases.updates()[0]
	if got := macOf(t, subnet.Lease{Attrs: published}); got.String() != newMAC.String() {
		t.Errorf("published VtepMAC %s, want %s", got, newMAC)
	}
	renewed := a.ownLease()
	renewed.Attrs = published
	b.feed(added(renewed))
	if err := h1.Ping(t, pod1, pod2, 3*time.Second); err != nil {
		t.Error(err)
	}
	if got, want := a.state(t), wantPeer(t, a.net.stacks[0].link.Index, b.ownLease()); !got.Equal(want) {
		t.Errorf("entries after the MAC change:\n  %+v\nwant:\n  %+v", got, want)
	}
	if got, want := b.state(t), wantPeer(t, b.net.stacks[0].link.Index, renewed); !got.Equal(want) {
		t.Errorf("peer entries after the MAC change:\n  %+v\nwant:\n  %+v", got, want)
	}
}

func TestResyncRepairsDrift(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan"}`)
	a := register(t, h1, "198.19.1.0/24", cfg, 50*time.Millisecond)
	b := register(t, h2, "198.19.2.0/24", cfg, time.Hour)
	a.feed(added(b.ownLease()))
	want := wantPeer(t, a.net.stacks[0].link.Index, b.ownLease())

	// A route deleted by hand comes back.
	ops := kernel.NewNetlink(h1.Handle)
	if err := ops.DeleteRoute(want.Routes[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the route to come back", func() bool { return a.state(t).Equal(want) })

	// In steady state, resyncs write nothing.
	a.counter.Reset()
	time.Sleep(300 * time.Millisecond)
	if a.counter.Writes() != 0 || a.counter.Reads() == 0 {
		t.Errorf("steady state: %d writes, %d reads; want 0 writes and some reads",
			a.counter.Writes(), a.counter.Reads())
	}
}

func TestDirectRoutingLab(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan","DirectRouting":true}`)
	a := register(t, h1, "198.19.1.0/24", cfg, time.Hour)
	b := register(t, h2, "198.19.2.0/24", cfg, time.Hour)
	a.feed(added(b.ownLease()))
	b.feed(added(a.ownLease()))

	// The peers share eth0's subnet: a plain route, no tunnel entries.
	if got := a.state(t); got.Len() != 0 {
		t.Errorf("tunnel entries with DirectRouting: %+v", got)
	}
	rs, err := kernel.NewNetlink(h1.Handle).Routes(h1.Ext.Index, kernel.IPv4)
	want := kernel.Route{Dst: b.ownLease().Subnet, Gw: h2.Ext.ExtAddr, LinkIndex: h1.Ext.Index}
	if err != nil || !slices.Contains(rs, want) {
		t.Errorf("routes on eth0: %+v, %v; want %+v", rs, err, want)
	}
	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"))
	h2.AddBridge(t, netip.MustParsePrefix("198.19.2.1/24"))
	if err := kerneltest.Exchange(t, h1, netip.MustParseAddr("198.19.1.1"), h2,
		netip.MustParseAddr("198.19.2.1")); err != nil {
		t.Error(err)
	}
}

// benchLeases returns count vxlan peer leases in 198.19.0.0/16, /26 each.
func benchLeases(count int) []subnet.Lease {
	var out []subnet.Lease
	for i := 1; i <= count; i++ {
		out = append(out, subnet.Lease{
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i / 4),
				byte(i % 4 * 64)}), 26),
			Attrs: leaseAttrs(backend.ExternalInterface{
				ExtAddr: netip.AddrFrom4([4]byte{198, 18, 1 + byte(i/250), byte(i%250 + 1)}),
			}, 1, randomMACFrom([6]byte{0, 0, 0, 0, byte(i >> 8), byte(i)}), kernel.MAC{}),
		})
	}
	return out
}

// startBench registers the vxlan backend on h, as a daemon starting up would, and runs
// it until stop is called.
func startBench(b *testing.B, h *kerneltest.Host) (lh *labHost, stop func()) {
	b.Helper()
	lh = &labHost{Host: h, leases: &fakeLeases{subnet: netip.MustParsePrefix("198.19.255.0/24")},
		events: make(chan []subnet.Event)}
	bk := newLabBackend(h, slog.New(slog.DiscardHandler), time.Hour)
	bk.wrapOps = func(ops kernel.Ops) kernel.Ops {
		lh.counter = kerneltest.Count(ops)
		return lh.counter
	}
	cfg := testConfig(`{"Type":"vxlan"}`)
	n, err := bk.RegisterNetwork(context.Background(), cfg, lh.leases)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, lh.events) }()
	return lh, func() {
		cancel()
		<-done
	}
}

// BenchmarkProgramPeers programs 1,000 peers into a device in one batch; each iteration
// is that batch, after which the peers are removed again outside the timing. It also
// reports the netlink writes and reads that one more peer costs with 1,000 present.
func BenchmarkProgramPeers(b *testing.B) {
	nstest.RequireRoot(b)
	h1, _ := kerneltest.Pair(b)
	lh, stop := startBench(b, h1)
	defer stop()

	const count = 1000
	var adds, dels []subnet.Event
	for _, l := range benchLeases(count + 1) {
		adds = append(adds, added(l))
		dels = append(dels, removed(l))
	}
	extra, adds := adds[count], adds[:count]

	b.ResetTimer()
	for range b.N {
		lh.counter.Reset()
		lh.feed(adds...)
		b.StopTimer()
		if w := lh.counter.Writes(); w != 3*count {
			b.Fatalf("%d writes for %d peers", w, count)
		}

		lh.counter.Reset()
		lh.feed(extra)
		b.ReportMetric(float64(lh.counter.Writes()), "writes/new-peer")
		b.ReportMetric(float64(lh.counter.Reads()), "reads/new-peer")

		// The removals are seen as deletions too, and cost one comparison with the
		// kernel; it is waited for, so that it does not land in the next iteration.
		lh.counter.Reset()
		lh.feed(dels...)
		waitListed(b, lh)
		b.ReportMetric(float64(lh.counter.Reads()), "reads/1001-removals")
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/1000-peers")
}

// BenchmarkRestartWithPeers is a daemon restart with 1,000 peers programmed by the run
// before: registration adopts the device, Run lists the kernel, and the initial batch of
// 1,000 leases finds every entry in place. Each iteration is one restart, up to the
// initial batch handled; it must cost no write.
func BenchmarkRestartWithPeers(b *testing.B) {
	nstest.RequireRoot(b)
	h1, _ := kerneltest.Pair(b)
	var adds []subnet.Event
	for _, l := range benchLeases(1000) {
		adds = append(adds, added(l))
	}
	lh, stop := startBench(b, h1)
	lh.feed(adds...)
	stop()

	b.ResetTimer()
	for range b.N {
		lh, stop := startBench(b, h1)
		lh.feed(adds...)
		b.StopTimer()
		if w := lh.counter.Writes(); w != 0 {
			b.Fatalf("a restart with every entry in place cost %d writes", w)
		}
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/restart")
}

func TestNewWorksInTheCallersNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	h1, _ := kerneltest.Pair(t)

	// New called on a thread inside the namespace binds the backend to it, so that
	// RegisterNetwork works there from any goroutine.
	var b backend.Backend
	var err error
	nstest.Do(t, h1.NS, func() { b, err = New(backend.Params{Ext: h1.Ext}) })
	if err != nil {
		t.Fatal(err)
	}
	vb := b.(*vxlanBackend)
	if !vb.sys.ns.Equal(h1.NS) {
		t.Fatalf("New bound namespace %s, want %s", vb.sys.ns, h1.NS)
	}
	t.Cleanup(func() {
		vb.sys.h.Close()
		vb.sys.ns.Close()
	})
	if _, err := b.RegisterNetwork(context.Background(), testConfig(`{"Type":"vxlan"}`),
		&fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Handle.LinkByName("flannel.1"); err != nil {
		t.Errorf("flannel.1 not in the namespace: %v", err)
	}
}

func TestDualStackLab(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan"}`)
	cfg.EnableIPv6 = true
	cfg.IPv6Network = netip.MustParsePrefix("2001:2:0:100::/56")
	cfg.IPv6SubnetLen = 64
	reg := func(h *kerneltest.Host, n int) *labHost {
		lh := &labHost{
			Host: h,
			leases: &fakeLeases{
				subnet:  netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", n)),
				subnet6: netip.MustParsePrefix(fmt.Sprintf("2001:2:0:1%02d::/64", n)),
			},
			events: make(chan []subnet.Event),
			log:    &logbuf.Buffer{},
		}
		log := slog.New(slog.NewTextHandler(lh.log, nil))
		nw, err := newLabBackend(h, log, time.Hour).RegisterNetwork(context.Background(), cfg,
			lh.leases)
		if err != nil {
			t.Fatalf("RegisterNetwork: %v", err)
		}
		lh.net = nw.(*network)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- nw.Run(ctx, lh.events) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		return lh
	}
	a, b := reg(h1, 1), reg(h2, 2)

	// Both devices, and a lease value that a dual-stack flanneld reads.
	l6, err := h1.Handle.LinkByName("flannel-v6.1")
	if err != nil {
		t.Fatal(err)
	}
	vx6 := l6.(*netlink.Vxlan)
	if !vx6.SrcAddr.Equal(h1.Ext.ExtV6Addr.AsSlice()) || vx6.VxlanId != 1 || vx6.MTU != 1430 {
		t.Errorf("flannel-v6.1: local %s VNI %d MTU %d; want %s, 1, 1430", vx6.SrcAddr,
			vx6.VxlanId, vx6.MTU, h1.Ext.ExtV6Addr)
	}
	if a.net.MTU() != 1430 {
		t.Errorf("MTU() = %d, want 1430 so that packets fit both tunnels", a.net.MTU())
	}
	got, _ := json.Marshal(a.leases.acquired[0])
	mac4, _ := h1.Handle.LinkByName("flannel.1")
	want := fmt.Sprintf(`{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan",`+
		`"BackendData":{"VNI":1,"VtepMAC":"%s"},"BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}`,
		mac4.Attrs().HardwareAddr, vx6.HardwareAddr)
	if string(got) != want {
		t.Errorf("lease value %s\nwant        %s", got, want)
	}

	a.feed(added(b.ownLease()))
	b.feed(added(a.ownLease()))
	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"),
		netip.MustParsePrefix("2001:2:0:101::1/64"))
	h2.AddBridge(t, netip.MustParsePrefix("198.19.2.1/24"),
		netip.MustParsePrefix("2001:2:0:102::1/64"))
	for _, pod := range [][2]string{
		{"198.19.1.1", "198.19.2.1"},
		{"2001:2:0:101::1", "2001:2:0:102::1"},
	} {
		if err := kerneltest.Exchange(t, h1, netip.MustParseAddr(pod[0]), h2,
			netip.MustParseAddr(pod[1])); err != nil {
			t.Error(err)
		}
	}
}
