package kernel_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/internal/nstest"
)

// netlinkRig is a namespace with an underlay device on 198.18.0.1/24 (one end of a veth
// pair, as the kernel may lack the veth driver) and a VXLAN device on top of it.
type netlinkRig struct {
	ns       netns.NsHandle
	ops      *kernel.Netlink
	eth, vx  kernel.Link
	underlay netip.Prefix
}

func newNetlinkRig(t testing.TB) *netlinkRig {
	t.Helper()
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth: %v", err)
	}
	for _, name := range []string{"eth0", "eth0p"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("setting %s up: %v", name, err)
		}
	}
	addr, _ := netlink.ParseAddr("198.18.0.1/24")
	if err := h.AddrAdd(veth, addr); err != nil {
		t.Fatal(err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "flannel.1", MTU: 1450},
		VxlanId:      1,
		VtepDevIndex: veth.Attrs().Index,
		SrcAddr:      net.ParseIP("198.18.0.1"),
	}
	if err := h.LinkAdd(vx); err != nil {
		t.Fatalf("adding vxlan device: %v", err)
	}
	if err := h.LinkSetUp(vx); err != nil {
		t.Fatal(err)
	}

	ops := kernel.NewNetlink(h)
	eth, err := ops.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	vxl, err := ops.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	return &netlinkRig{ns: ns, ops: ops, eth: eth, vx: vxl,
		underlay: netip.MustParsePrefix("198.18.0.0/24")}
}

func TestNetlinkLinks(t *testing.T) {
	r := newNetlinkRig(t)
	if _, err := r.ops.LinkByName("flannel.9"); !errors.Is(err, kernel.ErrLinkNotFound) {
		t.Errorf("LinkByName of a missing link: %v, want ErrLinkNotFound", err)
	}
	if _, err := r.ops.LinkByIndex(9999); !errors.Is(err, kernel.ErrLinkNotFound) {
		t.Errorf("LinkByIndex of a missing link: %v, want ErrLinkNotFound", err)
	}
	l, err := r.ops.LinkByIndex(r.vx.Index)
	if err != nil || l != r.vx {
		t.Errorf("LinkByIndex(%d) = %v, %v; want %v", r.vx.Index, l, err, r.vx)
	}
}

func TestNetlinkEntries(t *testing.T) {
	r := newNetlinkRig(t)
	peer := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	n, f, rt := peer.Neighs[0], peer.FDB[0], peer.Routes[0]

	for name, step := range map[string]func() error{
		"neigh": func() error { return r.ops.ReplaceNeigh(n) },
		"fdb":   func() error { return r.ops.ReplaceFDB(f) },
		"route": func() error { return r.ops.ReplaceRoute(rt) },
		// Replacing again is no error.
		"neigh again": func() error { return r.ops.ReplaceNeigh(n) },
		"fdb again":   func() error { return r.ops.ReplaceFDB(f) },
		"route again": func() error { return r.ops.ReplaceRoute(rt) },
	} {
		if err := step(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	ns, err := r.ops.Neighs(r.vx.Index, kernel.IPv4)
	n.Permanent = true
	if err != nil || len(ns) != 1 || ns[0] != n {
		t.Errorf("Neighs = %+v, %v; want [%+v]", ns, err, n)
	}
	fs, err := r.ops.FDB(r.vx.Index)
	f.Permanent = true
	if err != nil || len(fs) != 1 || fs[0] != f {
		t.Errorf("FDB = %+v, %v; want [%+v]", fs, err, f)
	}
	rs, err := r.ops.Routes(r.vx.Index, kernel.IPv4)
	if err != nil || len(rs) != 1 || rs[0] != rt {
		t.Errorf("Routes = %+v, %v; want [%+v]", rs, err, rt)
	}

	// The kernel reaches the underlay directly and the peer subnet through its route.
	direct, err := r.ops.LookupRoute(netip.MustParseAddr("198.18.0.2"))
	if err != nil || len(direct) != 1 || direct[0].Gw.IsValid() ||
		direct[0].LinkIndex != r.eth.Index {
		t.Errorf("LookupRoute(198.18.0.2) = %+v, %v; want direct on eth0", direct, err)
	}
	via, err := r.ops.LookupRoute(netip.MustParseAddr("198.19.2.7"))
	if err != nil || len(via) != 1 || via[0].Gw != rt.Gw || via[0].LinkIndex != r.vx.Index {
		t.Errorf("LookupRoute(198.19.2.7) = %+v, %v; want via %s on flannel.1", via, err, rt.Gw)
	}

	// Deletes succeed, and succeed again when there is nothing left to delete.
	for range 2 {
		if err := r.ops.DeleteRoute(rt); err != nil {
			t.Errorf("DeleteRoute: %v", err)
		}
		if err := r.ops.DeleteFDB(f); err != nil {
			t.Errorf("DeleteFDB: %v", err)
		}
		if err := r.ops.DeleteNeigh(n); err != nil {
			t.Errorf("DeleteNeigh: %v", err)
		}
	}
	if ns, _ := r.ops.Neighs(r.vx.Index, kernel.IPv4); len(ns) != 0 {
		t.Errorf("neighbours left: %+v", ns)
	}
	if fs, _ := r.ops.FDB(r.vx.Index); len(fs) != 0 {
		t.Errorf("FDB entries left: %+v", fs)
	}
	if rs, _ := r.ops.Routes(r.vx.Index, kernel.IPv4); len(rs) != 0 {
		t.Errorf("routes left: %+v", rs)
	}
}

func TestNetlinkFDBReplaceRewritesDestination(t *testing.T) {
	r := newNetlinkRig(t)
	f := kernel.FDBEntry{LinkIndex: r.vx.Index, MAC: macA, Dst: netip.MustParseAddr("198.18.0.2")}
	if err := r.ops.ReplaceFDB(f); err != nil {
		t.Fatal(err)
	}
	f.Dst = netip.MustParseAddr("198.18.0.3")
	if err := r.ops.ReplaceFDB(f); err != nil {
		t.Fatal(err)
	}
	fs, err := r.ops.FDB(r.vx.Index)
	f.Permanent = true
	if err != nil || len(fs) != 1 || fs[0] != f {
		t.Errorf("FDB after replace = %+v, %v; want [%+v]", fs, err, f)
	}
}

func TestNetlinkReconcilerMatchesKernel(t *testing.T) {
	r := newNetlinkRig(t)
	rec := kernel.NewReconciler(r.ops, vxlanScope(r.vx), discard())
	if err := rec.Load(); err != nil {
		t.Fatal(err)
	}
	rec.Set("a", vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2"))
	rec.Set("b", vxlanPeer(r.vx, "198.19.3.0/24", macB, "198.18.0.3"))
	if n, err := rec.Apply(); err != nil || n != 6 {
		t.Fatalf("Apply: %d writes, %v; want 6", n, err)
	}

	// What the reconciler believes is what a fresh listing finds, so a Sync is free.
	believed := rec.Installed()
	if n, err := rec.Sync(); err != nil || n != 0 {
		t.Errorf("Sync after Apply: %d writes, %v; want none", n, err)
	}
	if got := rec.Installed(); !got.Equal(believed) {
		t.Errorf("listing:\n  %+v\nbelieved:\n  %+v", got, believed)
	}

	// A route deleted by hand comes back at the next Sync.
	if err := r.ops.DeleteRoute(believed.Routes[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := rec.Sync(); err != nil || n != 1 {
		t.Errorf("Sync after drift: %d writes, %v; want 1", n, err)
	}
	rs, _ := r.ops.Routes(r.vx.Index, kernel.IPv4)
	if len(rs) != 2 {
		t.Errorf("routes after repair: %+v", rs)
	}
}

// TestFakeMatchesKernel runs one sequence of calls against the kernel and against
// kerneltest.Fake and compares what each lists afterwards, so that transcript tests on
// the fake stand for the kernel's behaviour.
func TestFakeMatchesKernel(t *testing.T) {
	r := newNetlinkRig(t)
	fake := kerneltest.NewFake()
	fakeLinks := map[int]kernel.Link{}
	for _, l := range []kernel.Link{r.eth, r.vx} {
		fakeLinks[l.Index] = fake.AddLink(l.Name, r.underlay)
	}

	mac := func(i byte) kernel.MAC { return kernel.MAC{2, 0, 0, 0, 0, i} }
	ip := netip.MustParseAddr
	steps := []func(ops kernel.Ops, vx, eth int) error{
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceNeigh(kernel.Neigh{LinkIndex: vx, IP: ip("198.19.2.0"), MAC: mac(2)})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceNeigh(kernel.Neigh{LinkIndex: vx, IP: ip("198.19.2.0"), MAC: mac(3)})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceFDB(kernel.FDBEntry{LinkIndex: vx, MAC: mac(2), Dst: ip("198.18.0.2")})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceFDB(kernel.FDBEntry{LinkIndex: vx, MAC: mac(2), Dst: ip("198.18.0.9")})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceFDB(kernel.FDBEntry{LinkIndex: vx, MAC: mac(4), Dst: ip("198.18.0.4")})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.DeleteFDB(kernel.FDBEntry{LinkIndex: vx, MAC: mac(4), Dst: ip("198.18.0.5")})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceRoute(kernel.Route{Dst: netip.MustParsePrefix("198.19.2.0/24"),
				Gw: ip("198.19.2.0"), LinkIndex: vx, Onlink: true})
		},
		// The same destination via another link and gateway replaces it.
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceRoute(kernel.Route{Dst: netip.MustParsePrefix("198.19.2.0/24"),
				Gw: ip("198.18.0.2"), LinkIndex: eth})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.ReplaceRoute(kernel.Route{Dst: netip.MustParsePrefix("198.19.3.0/24"),
				Gw: ip("198.18.0.3"), LinkIndex: eth, Metric: 7})
		},
		// A delete naming another gateway leaves the route alone.
		func(ops kernel.Ops, vx, eth int) error {
			return ops.DeleteRoute(kernel.Route{Dst: netip.MustParsePrefix("198.19.3.0/24"),
				Gw: ip("198.18.0.4"), LinkIndex: eth, Metric: 7})
		},
		func(ops kernel.Ops, vx, eth int) error {
			return ops.DeleteNeigh(kernel.Neigh{LinkIndex: vx, IP: ip("198.19.9.0")})
		},
	}

	list := func(ops kernel.Ops, vx, eth int) string {
		var out []string
		ns, err := ops.Neighs(vx, kernel.IPv4)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			out = append(out, fmt.Sprintf("neigh %s %s perm=%v", n.IP, n.MAC, n.Permanent))
		}
		fs, err := ops.FDB(vx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			out = append(out, fmt.Sprintf("fdb %s %s perm=%v", f.MAC, f.Dst, f.Permanent))
		}
		for _, l := range []int{vx, eth} {
			rs, err := ops.Routes(l, kernel.IPv4)
			if err != nil {
				t.Fatal(err)
			}
			for _, rt := range rs {
				if rt.Gw.IsValid() {
					out = append(out, fmt.Sprintf("route %s via %s onlink=%v metric %d on %v",
						rt.Dst, rt.Gw, rt.Onlink, rt.Metric, l == vx))
				}
			}
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}

	fvx, feth := fakeLinks[r.vx.Index].Index, fakeLinks[r.eth.Index].Index
	for i, step := range steps {
		kerr := step(r.ops, r.vx.Index, r.eth.Index)
		ferr := step(fake, fvx, feth)
		if (kerr == nil) != (ferr == nil) {
			t.Errorf("step %d: kernel error %v, fake error %v", i, kerr, ferr)
		}
		if k, f := list(r.ops, r.vx.Index, r.eth.Index), list(fake, fvx, feth); k != f {
			t.Fatalf("after step %d the kernel holds:\n%s\nthe fake:\n%s", i, k, f)
		}
	}
}

func TestNetlinkIPv6RoundTrip(t *testing.T) {
	r := newNetlinkRig(t)
	h := r.ops.Handle()
	vx6 := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "flannel-v6.1", MTU: 1430},
		VxlanId:      1,
		VtepDevIndex: r.eth.Index,
		SrcAddr:      net.ParseIP("2001:2::1"),
	}
	if err := h.LinkAdd(vx6); err != nil {
		t.Fatalf("adding IPv6 vxlan device: %v", err)
	}
	if err := h.LinkSetUp(vx6); err != nil {
		t.Fatal(err)
	}
	vx, err := r.ops.LinkByName("flannel-v6.1")
	if err != nil {
		t.Fatal(err)
	}
	r.vx = vx
	scope := kernel.Scope{
		Network: netip.MustParsePrefix("2001:2:0:100::/56"),
		Keep:    []netip.Prefix{netip.MustParsePrefix("2001:2:0:101::/64")},
		Neigh:   r.vx,
		FDB:     r.vx,
		Routes:  []kernel.Link{r.vx},
	}
	rec := kernel.NewReconciler(r.ops, scope, discard())
	if err := rec.Load(); err != nil {
		t.Fatal(err)
	}
	sn := netip.MustParsePrefix("2001:2:0:102::/64")
	rec.Set("a", kernel.Entries{
		Neighs: []kernel.Neigh{{LinkIndex: r.vx.Index, IP: sn.Addr(), MAC: macA}},
		FDB: []kernel.FDBEntry{{LinkIndex: r.vx.Index, MAC: macA,
			Dst: netip.MustParseAddr("2001:2::2")}},
		Routes: []kernel.Route{{Dst: sn, Gw: sn.Addr(), LinkIndex: r.vx.Index, Onlink: true}},
	})
	if n, err := rec.Apply(); err != nil || n != 3 {
		t.Fatalf("Apply: %d writes, %v; want 3", n, err)
	}

	// The kernel stores the route with metric 1024; listing it again must find it
	// installed as wanted, or every resync would rewrite and then delete it.
	for range 2 {
		if n, err := rec.Sync(); err != nil || n != 0 {
			t.Errorf("Sync: %d writes, %v; want none", n, err)
		}
	}
	rs, err := r.ops.Routes(r.vx.Index, kernel.IPv6)
	if err != nil || !slices.ContainsFunc(rs, func(rt kernel.Route) bool { return rt.Dst == sn }) {
		t.Errorf("IPv6 routes %+v, %v; want one to %s", rs, err, sn)
	}
}

// TestNetlinkCountsWrites checks that Writes counts each accepted change once, deletes of
// entries already gone included, and neither listings nor refused changes.
func TestNetlinkCountsWrites(t *testing.T) {
	r := newNetlinkRig(t)
	peer := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	n, f, rt := peer.Neighs[0], peer.FDB[0], peer.Routes[0]

	before := kernel.Writes()
	for name, step := range map[string]func() error{
		"replace neigh": func() error { return r.ops.ReplaceNeigh(n) },
		"replace fdb":   func() error { return r.ops.ReplaceFDB(f) },
		"replace route": func() error { return r.ops.ReplaceRoute(rt) },
		"delete route":  func() error { return r.ops.DeleteRoute(rt) },
		"delete fdb":    func() error { return r.ops.DeleteFDB(f) },
		"delete neigh":  func() error { return r.ops.DeleteNeigh(n) },
		"delete again":  func() error { return r.ops.DeleteNeigh(n) },
	} {
		if err := step(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if got := kernel.Writes() - before; got != 7 {
		t.Errorf("7 accepted changes counted as %d writes", got)
	}

	before = kernel.Writes()
	if _, err := r.ops.Routes(r.vx.Index, kernel.IPv4); err != nil {
		t.Fatal(err)
	}
	bad := rt
	bad.LinkIndex = 9999
	if err := r.ops.ReplaceRoute(bad); err == nil {
		t.Fatal("ReplaceRoute on a link that does not exist succeeded")
	}
	if got := kernel.Writes() - before; got != 0 {
		t.Errorf("a listing and a refused route counted as %d writes, want 0", got)
	}
}

// BenchmarkNetlinkSyncSteady is one full comparison of 1,000 VXLAN peers against a
// namespace's kernel that holds all their entries: three netlink dumps, their decoding
// and the diff, with nothing to change.
func BenchmarkNetlinkSyncSteady(b *testing.B) {
	r := newNetlinkRig(b)
	rec := kernel.NewReconciler(r.ops, vxlanScope(r.vx), discard())
	benchSync(b, rec, r.vx, func() {})
}
