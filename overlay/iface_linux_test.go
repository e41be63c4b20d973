package overlay

import (
	"net"
	"net/netip"
	"regexp"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/nstest"
)

// addLink creates an up veth link (the kernel may lack the dummy driver) in the
// namespace behind h.
func addLink(t *testing.T, h *netlink.Handle, name string, mtu int) netlink.Link {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, PeerName: name + "p"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("reading back %s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("setting %s up: %v", name, err)
	}
	return l
}

// addAddr adds cidr to l; lifetimes of 0 make it permanent.
func addAddr(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string, preferred, valid int) {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	a := &netlink.Addr{
		IPNet: &net.IPNet{
			IP:   p.Addr().AsSlice(),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		},
		PreferedLft: preferred,
		ValidLft:    valid,
	}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("adding %s to %s: %v", cidr, l.Attrs().Name, err)
	}
}

func addDefaultRoute(t *testing.T, h *netlink.Handle, l netlink.Link, v6 bool) {
	t.Helper()
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if v6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("adding default route via %s: %v", l.Attrs().Name, err)
	}
}

// TestChooseInterfaceKernel runs the selection rules against links, addresses and
// routes that the kernel reports in a namespace of the test's own.
func TestChooseInterfaceKernel(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	h := nstest.Handle(t, ns)

	wt0 := addLink(t, h, "wt0", 1400)
	addAddr(t, h, wt0, "198.18.5.9/24", 3600, 3600) // dynamic, primary of its subnet
	addAddr(t, h, wt0, "198.18.5.1/24", 0, 0)       // permanent, secondary
	addAddr(t, h, wt0, "198.18.7.1/24", 0, 3600)    // deprecated: preferred lifetime over
	addAddr(t, h, wt0, "198.18.6.1/24", 0, 0)       // permanent, primary
	wt1 := addLink(t, h, "wt1", 1500)
	addAddr(t, h, wt1, "198.18.8.1/24", 0, 0)
	addAddr(t, h, wt1, "2001:db8:8::1/64", 0, 0)
	addDefaultRoute(t, h, wt1, false)
	addDefaultRoute(t, h, wt1, true)

	ip := netip.MustParseAddr
	tests := []struct {
		name string
		spec InterfaceSpec
		want backend.ExternalInterface
	}{{
		name: "default route",
		spec: InterfaceSpec{},
		want: backend.ExternalInterface{Name: "wt1", Index: wt1.Attrs().Index, MTU: 1500,
			IfaceAddr: ip("198.18.8.1"), ExtAddr: ip("198.18.8.1")},
	}, {
		name: "default route dual stack",
		spec: InterfaceSpec{IPv6: true},
		want: backend.ExternalInterface{Name: "wt1", Index: wt1.Attrs().Index, MTU: 1500,
			IfaceAddr: ip("198.18.8.1"), ExtAddr: ip("198.18.8.1"),
			IfaceV6Addr: ip("2001:db8:8::1"), ExtV6Addr: ip("2001:db8:8::1")},
	}, {
		name: "name orders permanent primary first",
		spec: InterfaceSpec{Ifaces: []string{"wt9", "wt0"}},
		want: backend.ExternalInterface{Name: "wt0", Index: wt0.Attrs().Index, MTU: 1400,
			IfaceAddr: ip("198.18.6.1"), ExtAddr: ip("198.18.6.1")},
	}, {
		name: "public IP owner",
		spec: InterfaceSpec{PublicIP: ip("198.18.5.1")},
		want: backend.ExternalInterface{Name: "wt0", Index: wt0.Attrs().Index, MTU: 1400,
			IfaceAddr: ip("198.18.5.1"), ExtAddr: ip("198.18.5.1")},
	}, {
		name: "regex on the name",
		spec: InterfaceSpec{Regexes: []*regexp.Regexp{regexp.MustCompile(`^wt1$`)}},
		want: backend.ExternalInterface{Name: "wt1", Index: wt1.Attrs().Index, MTU: 1500,
			IfaceAddr: ip("198.18.8.1"), ExtAddr: ip("198.18.8.1")},
	}, {
		name: "can-reach uses the route's source",
		spec: InterfaceSpec{CanReach: ip("198.18.5.77")},
		want: backend.ExternalInterface{Name: "wt0", Index: wt0.Attrs().Index, MTU: 1400,
			IfaceAddr: ip("198.18.5.9"), ExtAddr: ip("198.18.5.9")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseInterface(h, tt.spec, discard())
			if err != nil {
				t.Fatalf("ChooseInterface: %v", err)
			}
			if got != tt.want {
				t.Errorf("ChooseInterface =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}

	t.Run("deprecated address is not chosen", func(t *testing.T) {
		_, err := ChooseInterface(h, InterfaceSpec{
			Regexes: []*regexp.Regexp{regexp.MustCompile(`^198\.18\.7\.`)},
		}, discard())
		if err == nil {
			t.Fatal("a regex matching only a deprecated address chose an interface")
		}
	})
}
