package overlay

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
)

// fixedView is a kernelView with fixed contents, for the selection rules.
type fixedView struct {
	ifaces   []ifaceInfo
	default4 int
	default6 int
	routes   map[netip.Addr]route
}

type route struct {
	index int
	src   netip.Addr
}

func (v fixedView) interfaces() ([]ifaceInfo, error) { return v.ifaces, nil }

func (v fixedView) defaultRoute(v6 bool) (int, error) {
	if v6 {
		return v.default6, nil
	}
	return v.default4, nil
}

func (v fixedView) routeTo(dst netip.Addr) (int, netip.Addr, error) {
	r, ok := v.routes[dst]
	if !ok {
		return 0, netip.Addr{}, errors.New("network is unreachable")
	}
	return r.index, r.src, nil
}

func perm(s string) ifaceAddr {
	return ifaceAddr{Addr: netip.MustParseAddr(s), Permanent: true}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestUsableAddrs(t *testing.T) {
	tests := []struct {
		name  string
		addrs []ifaceAddr
		v6    bool
		want  []netip.Addr
	}{{
		name: "global before link-local before loopback",
		addrs: []ifaceAddr{perm("127.0.0.5"), perm("169.254.3.4"), perm("198.18.0.1"),
			perm("fe80::1")},
		want: addrs("198.18.0.1", "169.254.3.4", "127.0.0.5"),
	}, {
		name: "permanent before dynamic",
		addrs: []ifaceAddr{{Addr: netip.MustParseAddr("198.18.0.9")},
			perm("198.18.0.2")},
		want: addrs("198.18.0.2", "198.18.0.9"),
	}, {
		name: "primary before secondary",
		addrs: []ifaceAddr{{Addr: netip.MustParseAddr("198.18.0.3"), Permanent: true,
			Secondary: true}, perm("198.18.0.4")},
		want: addrs("198.18.0.4", "198.18.0.3"),
	}, {
		name: "deprecated left out",
		addrs: []ifaceAddr{{Addr: netip.MustParseAddr("198.18.0.5"), Permanent: true,
			Deprecated: true}, perm("169.254.0.1")},
		want: addrs("169.254.0.1"),
	}, {
		name:  "kernel order kept among equals",
		addrs: []ifaceAddr{perm("198.18.0.7"), perm("198.18.0.6")},
		want:  addrs("198.18.0.7", "198.18.0.6"),
	}, {
		name:  "IPv6 global before link-local",
		addrs: []ifaceAddr{perm("fe80::1"), perm("198.18.0.1"), perm("2001:db8::7")},
		v6:    true,
		want:  addrs("2001:db8::7", "fe80::1"),
	}, {
		name:  "none of the family",
		addrs: []ifaceAddr{perm("2001:db8::7")},
		want:  nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := usableAddrs(tt.addrs, tt.v6)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("usableAddrs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChooseInterface(t *testing.T) {
	view := fixedView{
		ifaces: []ifaceInfo{
			{Name: "lo", Index: 1, MTU: 65536, Addrs: []ifaceAddr{perm("127.0.0.1"),
				perm("::1")}},
			{Name: "eth0", Index: 2, MTU: 1500, Addrs: []ifaceAddr{perm("198.18.0.1"),
				perm("198.18.0.11"), perm("2001:db8::1"), perm("fe80::1")}},
			{Name: "eth1", Index: 3, MTU: 9000, Addrs: []ifaceAddr{perm("198.18.1.1"),
				perm("fe80::2")}},
			{Name: "zero", Index: 4, MTU: 0, Addrs: []ifaceAddr{perm("198.18.2.1")}},
			{Name: "bare", Index: 5, MTU: 1500},
			{Name: "v6only", Index: 6, MTU: 1500, Addrs: []ifaceAddr{perm("2001:db8:6::1")}},
			{Name: "v4only", Index: 7, MTU: 1500, Addrs: []ifaceAddr{perm("198.18.7.1")}},
		},
		default4: 3,
		default6: 3,
		routes: map[netip.Addr]route{
			netip.MustParseAddr("198.18.9.9"): {index: 2, src: netip.MustParseAddr("198.18.0.11")},
			netip.MustParseAddr("198.18.8.8"): {index: 3},
		},
	}
	ip := netip.MustParseAddr
	tests := []struct {
		name    string
		spec    InterfaceSpec
		want    backend.ExternalInterface
		wantErr []string
	}{{
		name: "default route",
		spec: InterfaceSpec{},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1")},
	}, {
		name: "default route dual stack uses link-local when nothing better",
		spec: InterfaceSpec{IPv6: true},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1"),
			IfaceV6Addr: ip("fe80::2"), ExtV6Addr: ip("fe80::2")},
	}, {
		name: "public IP picks its owner",
		spec: InterfaceSpec{PublicIP: ip("198.18.0.11")},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.11"), ExtAddr: ip("198.18.0.11")},
	}, {
		name:    "public IP nobody owns",
		spec:    InterfaceSpec{PublicIP: ip("203.0.113.7")},
		wantErr: []string{"-public-ip 203.0.113.7", "no interface has address 203.0.113.7"},
	}, {
		name: "iface name with public IP behind NAT",
		spec: InterfaceSpec{Ifaces: []string{"eth0"}, PublicIP: ip("203.0.113.7")},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.1"), ExtAddr: ip("203.0.113.7")},
	}, {
		name: "iface by address",
		spec: InterfaceSpec{Ifaces: []string{"198.18.0.11"}},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.11"), ExtAddr: ip("198.18.0.11")},
	}, {
		name: "first usable iface wins",
		spec: InterfaceSpec{Ifaces: []string{"eth9", "zero", "bare", "eth1", "eth0"}},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1")},
	}, {
		name: "iface by IPv6 address, dual stack",
		spec: InterfaceSpec{Ifaces: []string{"2001:db8::1"}, IPv6: true,
			PublicIPv6: ip("2001:db8:ff::1")},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.1"), ExtAddr: ip("198.18.0.1"),
			IfaceV6Addr: ip("2001:db8::1"), ExtV6Addr: ip("2001:db8:ff::1")},
	}, {
		name: "regex matches addresses before names",
		spec: InterfaceSpec{Regexes: []*regexp.Regexp{regexp.MustCompile(`^eth|\.1\.1$`)}},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1")},
	}, {
		name: "regex by name",
		spec: InterfaceSpec{Regexes: []*regexp.Regexp{regexp.MustCompile(`^eth`)}},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.1"), ExtAddr: ip("198.18.0.1")},
	}, {
		name: "regex on a secondary-ranked address keeps that address",
		spec: InterfaceSpec{Regexes: []*regexp.Regexp{regexp.MustCompile(`\.11$`)}},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.11"), ExtAddr: ip("198.18.0.11")},
	}, {
		name: "iface tried before regex",
		spec: InterfaceSpec{Ifaces: []string{"eth1"},
			Regexes: []*regexp.Regexp{regexp.MustCompile(`^eth0$`)}},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1")},
	}, {
		name: "can-reach takes the route's source",
		spec: InterfaceSpec{CanReach: ip("198.18.9.9")},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.11"), ExtAddr: ip("198.18.0.11")},
	}, {
		name: "can-reach without a source takes the interface's address",
		spec: InterfaceSpec{CanReach: ip("198.18.8.8")},
		want: backend.ExternalInterface{Name: "eth1", Index: 3, MTU: 9000,
			IfaceAddr: ip("198.18.1.1"), ExtAddr: ip("198.18.1.1")},
	}, {
		name: "can-reach after iface and regex",
		spec: InterfaceSpec{Ifaces: []string{"nope"},
			Regexes: []*regexp.Regexp{regexp.MustCompile(`^nope`)}, CanReach: ip("198.18.9.9")},
		want: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: ip("198.18.0.11"), ExtAddr: ip("198.18.0.11")},
	}, {
		name: "nothing matches names every try",
		spec: InterfaceSpec{Ifaces: []string{"eth9", "zero", "bare"},
			Regexes:  []*regexp.Regexp{regexp.MustCompile(`^wl`)},
			CanReach: ip("203.0.113.1")},
		wantErr: []string{"no usable interface", "-iface eth9: no such interface",
			"-iface zero: interface zero has MTU 0",
			"-iface bare: interface bare has no usable IPv4 address",
			"-iface-regex ^wl: matches no interface name or address",
			"-iface-can-reach 203.0.113.1: network is unreachable"},
	}, {
		name: "dual stack needs an IPv6 address",
		spec: InterfaceSpec{Ifaces: []string{"v4only", "zero"}, IPv6: true},
		wantErr: []string{"-iface v4only: interface v4only has no usable IPv6 address",
			"-iface zero: interface zero has MTU 0"},
	}, {
		name:    "dual stack on an interface without IPv4",
		spec:    InterfaceSpec{Ifaces: []string{"v6only"}, IPv6: true},
		wantErr: []string{"interface v6only has no usable IPv4 address"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseInterface(view, tt.spec, discard())
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("chooseInterface = %+v, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("chooseInterface: %v", err)
			}
			if got != tt.want {
				t.Errorf("chooseInterface =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestChooseInterfaceDualStackDefaultRoutesDiffer(t *testing.T) {
	view := fixedView{
		ifaces: []ifaceInfo{
			{Name: "eth0", Index: 2, MTU: 1500, Addrs: []ifaceAddr{perm("198.18.0.1")}},
			{Name: "eth1", Index: 3, MTU: 1500, Addrs: []ifaceAddr{perm("2001:db8::1")}},
		},
		default4: 2,
		default6: 3,
	}
	_, err := chooseInterface(view, InterfaceSpec{IPv6: true}, discard())
	want := "IPv4 default route uses eth0 and the IPv6 one eth1"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one naming both default-route interfaces", err)
	}

	view.default4 = 0
	_, err = chooseInterface(view, InterfaceSpec{}, discard())
	if err == nil || !strings.Contains(err.Error(), "no IPv4 default route") {
		t.Errorf("err = %v, want one saying there is no default route", err)
	}
}
