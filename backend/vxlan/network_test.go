package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/subnet"
)

func peersPeer(sn, public string) peers.Peer {
	return peers.Peer{Subnet: netip.MustParsePrefix(sn), PublicIP: netip.MustParseAddr(public)}
}

func mustMAC(s string) kernel.MAC {
	m, err := kernel.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// fakeLeases is a LeaseManager that hands out one subnet and records what it is told.
type fakeLeases struct {
	mu        sync.Mutex
	subnet    netip.Prefix
	subnet6   netip.Prefix
	acquired  []subnet.LeaseAttrs
	updated   []subnet.LeaseAttrs
	updateErr error
}

func (f *fakeLeases) AcquireLease(ctx context.Context, attrs subnet.LeaseAttrs) (*subnet.Lease,
	error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquired = append(f.acquired, attrs)
	return &subnet.Lease{Subnet: f.subnet, IPv6Subnet: f.subnet6, Attrs: attrs}, nil
}

func (f *fakeLeases) UpdateLeaseAttrs(ctx context.Context, attrs subnet.LeaseAttrs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updateErr != nil {
		err := f.updateErr
		f.updateErr = nil
		return err
	}
	f.updated = append(f.updated, attrs)
	return nil
}

func (f *fakeLeases) updates() []subnet.LeaseAttrs {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.updated)
}

// fakeDevice is a device on a fake kernel. The test deletes or changes it, then kicks
// the watcher, as the kernel's link notifications would.
type fakeDevice struct {
	fake *kerneltest.Fake
	name string

	mu   sync.Mutex
	link kernel.Link
	mac  kernel.MAC
	// nextMAC, when set, is the MAC the device gets when it is next created, as if
	// someone else had created it first.
	nextMAC kernel.MAC
}

func (d *fakeDevice) ensure(mac kernel.MAC) (deviceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.link.Index != 0 {
		return deviceInfo{Link: d.link, MAC: d.mac}, nil
	}
	d.link = d.fake.AddLink(d.name)
	d.mac = mac
	if !d.nextMAC.IsZero() {
		d.mac, d.nextMAC = d.nextMAC, kernel.MAC{}
	}
	return deviceInfo{Link: d.link, MAC: d.mac, Changed: true}, nil
}

// fakeWatcher passes on the test's kicks.
type fakeWatcher struct {
	kicks chan struct{}
}

func (w *fakeWatcher) subscribe(done <-chan struct{}) (<-chan struct{}, error) {
	out := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case <-w.kicks:
				select {
				case out <- struct{}{}:
				case <-done:
					return
				}
			}
		}
	}()
	return out, nil
}

// fakeDrift stands in for the kernel's deletion watch: each kick from the test is a
// signal, and the filter the network passes is kept for the test to inspect.
type fakeDrift struct {
	kicks chan struct{}

	mu     sync.Mutex
	filter *kernel.DriftFilter
}

func (d *fakeDrift) start(ctx context.Context, filter *kernel.DriftFilter,
	out chan<- struct{}) <-chan struct{} {
	d.mu.Lock()
	d.filter = filter
	d.mu.Unlock()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.kicks:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return stopped
}

func (d *fakeDrift) match(del kernel.Deletion) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.filter.Match(del)
}

// remove deletes the device from the fake kernel, as `ip link del` would.
func (d *fakeDevice) remove() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fake.DeleteLink(d.link.Index)
	d.link = kernel.Link{}
}

func (d *fakeDevice) current() (kernel.Link, kernel.MAC) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.link, d.mac
}

// netRig runs a vxlan network on a fake kernel.
type netRig struct {
	fake   *kerneltest.Fake
	dev    *fakeDevice
	dev6   *fakeDevice
	watch  *fakeWatcher
	drift  *fakeDrift
	leases *fakeLeases
	n      *network
	events chan []subnet.Event
	logBuf *logbuf.Buffer
	cancel context.CancelFunc
	done   chan error
}

// kick tells the network that a device changed.
func (r *netRig) kick() { r.watch.kicks <- struct{}{} }

var (
	ownMAC  = mustMAC("02:00:00:00:01:01")
	overlay = netip.MustParsePrefix("198.19.0.0/16")
)

var (
	ownMAC6   = mustMAC("02:00:00:00:06:01")
	overlayV6 = netip.MustParsePrefix("2001:2:0:100::/56")
)

func newNetRig(t *testing.T, opts Options, resync time.Duration) *netRig {
	return newNetRigStacks(t, opts, resync, false)
}

// newNetRigStacks is newNetRig, with an IPv6 stack beside the IPv4 one when v6 is set.
func newNetRigStacks(t *testing.T, opts Options, resync time.Duration, v6 bool) *netRig {
	t.Helper()
	fake := kerneltest.NewFake()
	eth := fake.AddLink("eth0", netip.MustParsePrefix("198.18.0.0/24"),
		netip.MustParsePrefix("2001:2::/64"))
	dev := &fakeDevice{fake: fake, name: DeviceName(opts.VNI)}
	info, _ := dev.ensure(ownMAC)
	leases := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
	ext := backend.ExternalInterface{
		Name:        "eth0",
		Index:       eth.Index,
		MTU:         1500,
		IfaceAddr:   netip.MustParseAddr("198.18.0.1"),
		ExtAddr:     netip.MustParseAddr("198.18.0.1"),
		IfaceV6Addr: netip.MustParseAddr("2001:2::1"),
		ExtV6Addr:   netip.MustParseAddr("2001:2::1"),
	}
	stacks := []*stack{{
		dev:     dev,
		network: overlay,
		own:     leases.subnet,
		link:    info.Link,
		mac:     info.MAC,
	}}
	var dev6 *fakeDevice
	mac6 := kernel.MAC{}
	if v6 {
		dev6 = &fakeDevice{fake: fake, name: DeviceNameV6(opts.VNI)}
		info6, _ := dev6.ensure(ownMAC6)
		leases.subnet6 = netip.MustParsePrefix("2001:2:0:101::/64")
		stacks = append(stacks, &stack{
			v6:      true,
			dev:     dev6,
			network: overlayV6,
			own:     leases.subnet6,
			link:    info6.Link,
			mac:     info6.MAC,
		})
		mac6 = info6.MAC
	}
	attrs := leaseAttrs(ext, opts.VNI, ownMAC, mac6)
	lease, _ := leases.AcquireLease(context.Background(), attrs)
	buf := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	watch := &fakeWatcher{kicks: make(chan struct{})}
	drift := &fakeDrift{kicks: make(chan struct{})}
	n := newNetwork(networkConfig{
		lease:     lease,
		mtu:       1450,
		opts:      opts,
		ext:       ext,
		lm:        leases,
		ops:       fake,
		watch:     watch,
		drift:     drift.start,
		log:       log,
		stacks:    stacks,
		published: attrs,
		resync:    resync,
	})
	n.maxBackoff = 20 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	r := &netRig{fake: fake, dev: dev, dev6: dev6, watch: watch, drift: drift, leases: leases,
		n: n, events: make(chan []subnet.Event), logBuf: buf, cancel: cancel,
		done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx, r.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	// Let the first device check, which follows the subscription, happen before the
	// test starts counting calls.
	r.feed()
	time.Sleep(10 * time.Millisecond)
	r.feed()
	fake.ResetCalls()
	return r
}

// feed sends a batch and then an empty one: once the second is taken, Run has finished
// the first.
func (r *netRig) feed(events ...subnet.Event) {
	r.events <- events
	r.events <- nil
}

// writes feeds events and returns the writes they caused, checking that they caused no
// listing of the kernel (a route lookup for DirectRouting is allowed).
func (r *netRig) writes(t *testing.T, events ...subnet.Event) []string {
	t.Helper()
	r.fake.ResetCalls()
	r.feed(events...)
	for _, read := range r.fake.Reads() {
		if strings.Contains(read, " show ") {
			t.Errorf("handling events listed the kernel: %q", read)
		}
	}
	return r.fake.Writes()
}

func vxlanLease(sn, public, mac string) subnet.Lease {
	attrs := subnet.LeaseAttrs{
		PublicIP:    netip.MustParseAddr(public),
		BackendType: TypeName,
		BackendData: BackendData{VNI: 1, VtepMAC: mustMAC(mac)}.Marshal(),
	}
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: attrs}
}

func added(l subnet.Lease) subnet.Event   { return subnet.Event{Type: subnet.EventAdded, Lease: l} }
func removed(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.EventRemoved, Lease: l} }

func checkCmds(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("writes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestNetworkPeers(t *testing.T) {
	r := newNetRig(t, Options{VNI: 1}, time.Hour)
	p2 := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:02")

	// A new peer costs exactly three writes, route last.
	checkCmds(t, r.writes(t, added(p2)),
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:02 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:02 dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
	)

	// The same lease re-announced costs nothing.
	checkCmds(t, r.writes(t, added(p2)))

	// A new VtepMAC: the old FDB entry goes, after the new one is in.
	moved := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:22")
	checkCmds(t, r.writes(t, added(moved)),
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:22 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:22 dev flannel.1 dst 198.18.0.2 self permanent",
		"bridge fdb del 02:00:00:00:00:02 dev flannel.1 dst 198.18.0.2 self",
	)

	// Malformed leases and leases of other types are skipped; the rest of the batch is
	// programmed.
	bad := vxlanLease("198.19.3.0/24", "198.18.0.3", "02:00:00:00:00:03")
	bad.Attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"bogus"}`)
	noIP := vxlanLease("198.19.4.0/24", "198.18.0.4", "02:00:00:00:00:04")
	noIP.Attrs.PublicIP = netip.IPv4Unspecified()
	hostgw := vxlanLease("198.19.5.0/24", "198.18.0.5", "02:00:00:00:00:05")
	hostgw.Attrs.BackendType = "host-gw"
	hostgw.Attrs.BackendData = nil
	p6 := vxlanLease("198.19.6.0/24", "198.18.0.6", "02:00:00:00:00:06")
	checkCmds(t, r.writes(t, added(bad), added(noIP), added(hostgw), added(p6)),
		"ip neigh replace 198.19.6.0 lladdr 02:00:00:00:00:06 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:06 dev flannel.1 dst 198.18.0.6 self permanent",
		"ip route replace 198.19.6.0/24 via 198.19.6.0 dev flannel.1 onlink",
	)
	for _, want := range []string{
		`level=WARN msg="skipping peer lease" lease=198.19.3.0-24 ` +
			`err="BackendData: VtepMAC: parsing MAC \"bogus\"`,
		`level=WARN msg="skipping peer lease" lease=198.19.4.0-24 err="public IP \"0.0.0.0\"`,
		`msg="ignoring lease of another backend type" lease=198.19.5.0-24 backend_type=host-gw`,
	} {
		if !strings.Contains(r.logBuf.String(), want) {
			t.Errorf("log lacks %s\n%s", want, r.logBuf)
		}
	}

	// Removal deletes the three entries, route first.
	checkCmds(t, r.writes(t, removed(moved)),
		"ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:22 dev flannel.1 dst 198.18.0.2 self",
		"ip neigh del 198.19.2.0 dev flannel.1",
	)
}

func TestNetworkRepairsDrift(t *testing.T) {
	r := newNetRig(t, Options{VNI: 1}, 30*time.Millisecond)
	p2 := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:02")
	r.feed(added(p2))
	state := r.fake.State()
	if len(state.Routes) != 1 {
		t.Fatalf("routes: %+v", state.Routes)
	}

	// A route deleted by hand comes back at the next resync.
	r.fake.Drop(kernel.Entries{Routes: state.Routes})
	waitFor(t, "the route to come back", func() bool {
		return len(r.fake.State().Routes) == 1
	})

	// In steady state resyncs read but never write.
	r.fake.ResetCalls()
	time.Sleep(100 * time.Millisecond)
	if w := r.fake.Writes(); len(w) > 0 {
		t.Errorf("steady state wrote %q", w)
	}
	if len(r.fake.Reads()) == 0 {
		t.Error("no resync read the kernel")
	}
}

func TestNetworkRepairsDeletions(t *testing.T) {
	r := newNetRig(t, Options{VNI: 1}, time.Hour)
	p2 := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:02")
	r.feed(added(p2))
	want := r.fake.State()
	if want.Len() != 3 {
		t.Fatalf("entries: %+v", want)
	}

	// The peer's entries deleted from outside come back after the watch's signal, with
	// one listing and three writes, long before the resync an hour away.
	r.fake.Drop(want)
	r.fake.ResetCalls()
	r.drift.kicks <- struct{}{}
	waitFor(t, "the entries to come back", func() bool { return r.fake.State().Equal(want) })
	time.Sleep(2 * peers.DefaultDebounce)
	if w, rd := r.fake.Writes(), r.fake.Reads(); len(w) != 3 || len(rd) != 3 {
		t.Errorf("the repair wrote %q and read %q; want 3 writes and one listing", w, rd)
	}

	// The watch follows the device when it is created again.
	old, _ := r.dev.current()
	onDevice := func(link kernel.Link) kernel.Deletion {
		return kernel.Deletion{Kind: kernel.KindRoute, Route: peerEntries(link.Index,
			peersPeer("198.19.2.0/24", "198.18.0.2"), mustMAC("02:00:00:00:00:02")).Routes[0]}
	}
	if !r.drift.match(onDevice(old)) {
		t.Error("the filter does not match a deletion on the device")
	}
	r.dev.remove()
	r.kick()
	waitFor(t, "the peer on the new device", func() bool { return r.fake.State().Len() == 3 })
	renewed, _ := r.dev.current()
	if r.drift.match(onDevice(old)) || !r.drift.match(onDevice(renewed)) {
		t.Errorf("after recreation the filter matches the old device %t, the new %t; "+
			"want false, true", r.drift.match(onDevice(old)), r.drift.match(onDevice(renewed)))
	}
}

func TestNetworkRecreatesDevice(t *testing.T) {
	r := newNetRig(t, Options{VNI: 1}, time.Hour)
	p2 := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:02")
	p3 := vxlanLease("198.19.3.0/24", "198.18.0.3", "02:00:00:00:00:03")
	r.feed(added(p2), added(p3))
	oldLink, _ := r.dev.current()

	// The device is deleted from outside and comes back with the same MAC, so nothing
	// needs publishing; every peer is programmed on the new device.
	r.dev.remove()
	r.kick()
	waitFor(t, "both peers on the new device", func() bool {
		return len(r.fake.State().Routes) == 2
	})
	link, mac := r.dev.current()
	if link.Index == oldLink.Index || mac != ownMAC {
		t.Errorf("device after recreation: %v %s; want a new index and MAC %s", link, mac, ownMAC)
	}
	for _, rt := range r.fake.State().Routes {
		if rt.LinkIndex != link.Index {
			t.Errorf("route %+v not on the new device %d", rt, link.Index)
		}
	}
	if u := r.leases.updates(); len(u) != 0 {
		t.Errorf("published %d updates for an unchanged MAC", len(u))
	}
	if !strings.Contains(r.logBuf.String(), "VXLAN device recreated; programming every peer again") {
		t.Errorf("recreation not logged:\n%s", r.logBuf)
	}

	// Now someone else recreates it first, with another MAC: the new MAC is published,
	// once the first attempt to publish it has failed and been retried.
	other := mustMAC("02:00:00:00:09:09")
	r.leases.mu.Lock()
	r.leases.updateErr = errors.New("etcd unavailable")
	r.leases.mu.Unlock()
	r.dev.mu.Lock()
	r.dev.nextMAC = other
	r.dev.mu.Unlock()
	r.dev.remove()
	r.kick()
	waitFor(t, "the new VtepMAC published", func() bool { return len(r.leases.updates()) == 1 })
	got := r.leases.updates()[0]
	data, err := ParseBackendData(got.BackendData)
	if err != nil || data.VtepMAC != other || got.BackendType != TypeName ||
		got.PublicIP != netip.MustParseAddr("198.18.0.1") {
		t.Errorf("published %+v (%+v, %v); want VtepMAC %s", got, data, err, other)
	}
	waitFor(t, "both peers on the third device", func() bool {
		return len(r.fake.State().Routes) == 2
	})
}

func TestNetworkDirectRouting(t *testing.T) {
	r := newNetRig(t, Options{VNI: 1, DirectRouting: true}, time.Hour)

	// A peer on the external interface's subnet gets a plain route via its public IP.
	near := vxlanLease("198.19.2.0/24", "198.18.0.2", "02:00:00:00:00:02")
	checkCmds(t, r.writes(t, added(near)), "ip route replace 198.19.2.0/24 via 198.18.0.2 dev eth0")

	// One elsewhere goes through the tunnel.
	far := vxlanLease("198.19.3.0/24", "203.0.113.3", "02:00:00:00:00:03")
	checkCmds(t, r.writes(t, added(far)),
		"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:03 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:03 dev flannel.1 dst 203.0.113.3 self permanent",
		"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
	)

	checkCmds(t, r.writes(t, removed(near)), "ip route del 198.19.2.0/24 via 198.18.0.2 dev eth0")
}

// dualLease is a dual-stack vxlan lease; mac6 empty leaves out BackendV6Data.
func dualLease(n int, mac, mac6 string) subnet.Lease {
	l := vxlanLease(fmt.Sprintf("198.19.%d.0/24", n), fmt.Sprintf("198.18.0.%d", n), mac)
	l.IPv6Subnet = netip.MustParsePrefix(fmt.Sprintf("2001:2:0:1%02d::/64", n))
	l.Attrs.PublicIPv6 = netip.MustParseAddr(fmt.Sprintf("2001:2::%d", n))
	if mac6 != "" {
		l.Attrs.BackendV6Data = BackendData{VNI: 1, VtepMAC: mustMAC(mac6)}.Marshal()
	}
	return l
}

func TestNetworkDualStack(t *testing.T) {
	r := newNetRigStacks(t, Options{VNI: 1}, time.Hour, true)
	p2 := dualLease(2, "02:00:00:00:00:02", "02:00:00:00:06:02")
	checkCmds(t, r.writes(t, added(p2)),
		"ip neigh replace 198.19.2.0 lladdr 02:00:00:00:00:02 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:02 dev flannel.1 dst 198.18.0.2 self permanent",
		"ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"ip neigh replace 2001:2:0:102:: lladdr 02:00:00:00:06:02 dev flannel-v6.1 nud permanent",
		"bridge fdb replace 02:00:00:00:06:02 dev flannel-v6.1 dst 2001:2::2 self permanent",
		"ip route replace 2001:2:0:102::/64 via 2001:2:0:102:: dev flannel-v6.1 onlink",
	)

	// Without BackendV6Data the IPv4 part is programmed and the IPv6 part skipped; an
	// IPv4-only lease is simply IPv4 only.
	p3 := dualLease(3, "02:00:00:00:00:03", "")
	p4 := vxlanLease("198.19.4.0/24", "198.18.0.4", "02:00:00:00:00:04")
	checkCmds(t, r.writes(t, added(p3), added(p4)),
		"ip neigh replace 198.19.3.0 lladdr 02:00:00:00:00:03 dev flannel.1 nud permanent",
		"ip neigh replace 198.19.4.0 lladdr 02:00:00:00:00:04 dev flannel.1 nud permanent",
		"bridge fdb replace 02:00:00:00:00:03 dev flannel.1 dst 198.18.0.3 self permanent",
		"bridge fdb replace 02:00:00:00:00:04 dev flannel.1 dst 198.18.0.4 self permanent",
		"ip route replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink",
		"ip route replace 198.19.4.0/24 via 198.19.4.0 dev flannel.1 onlink",
	)
	want := `level=WARN msg="skipping peer lease" lease=198.19.3.0-24&2001:2:0:103::-64 ` +
		`err="BackendV6Data: missing"`
	if !strings.Contains(r.logBuf.String(), want) {
		t.Errorf("log lacks %s\n%s", want, r.logBuf)
	}

	checkCmds(t, r.writes(t, removed(p2)),
		"ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink",
		"bridge fdb del 02:00:00:00:00:02 dev flannel.1 dst 198.18.0.2 self",
		"ip neigh del 198.19.2.0 dev flannel.1",
		"ip route del 2001:2:0:102::/64 via 2001:2:0:102:: dev flannel-v6.1 onlink",
		"bridge fdb del 02:00:00:00:06:02 dev flannel-v6.1 dst 2001:2::2 self",
		"ip neigh del 2001:2:0:102:: dev flannel-v6.1",
	)

	// The IPv6 device comes back with another MAC: the lease keeps the IPv4 part and
	// gets the new BackendV6Data.
	other := mustMAC("02:00:00:00:06:99")
	r.dev6.mu.Lock()
	r.dev6.nextMAC = other
	r.dev6.mu.Unlock()
	r.dev6.remove()
	r.kick()
	waitFor(t, "the new VtepMAC published", func() bool { return len(r.leases.updates()) == 1 })
	got, _ := json.Marshal(r.leases.updates()[0])
	wantJSON := `{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:01:01"},` +
		`"BackendV6Data":{"VNI":1,"VtepMAC":"02:00:00:00:06:99"}}`
	if string(got) != wantJSON {
		t.Errorf("published %s\nwant      %s", got, wantJSON)
	}
}
