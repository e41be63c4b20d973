package kernel_test

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/kernel"
)

func TestScopeConcerns(t *testing.T) {
	vx := kernel.Link{Index: 5, Name: "flannel.1"}
	eth := kernel.Link{Index: 2, Name: "eth0"}
	hostgw := kernel.Scope{Network: network, Keep: []netip.Prefix{own}, Routes: []kernel.Link{eth}}
	peer := vxlanPeer(vx, "198.19.2.0/24", macA, "198.18.0.2")
	route := func(dst, gw string, link int) kernel.Deletion {
		r := kernel.Route{Dst: netip.MustParsePrefix(dst), LinkIndex: link}
		if gw != "" {
			r.Gw = netip.MustParseAddr(gw)
		}
		return kernel.Deletion{Kind: kernel.KindRoute, Route: r}
	}
	neigh := func(ip string, link int) kernel.Deletion {
		return kernel.Deletion{Kind: kernel.KindNeigh,
			Neigh: kernel.Neigh{LinkIndex: link, IP: netip.MustParseAddr(ip), MAC: macA}}
	}
	fdb := func(mac kernel.MAC, dst string, link int) kernel.Deletion {
		return kernel.Deletion{Kind: kernel.KindFDB,
			FDB: kernel.FDBEntry{LinkIndex: link, MAC: mac, Dst: netip.MustParseAddr(dst)}}
	}

	tests := []struct {
		name  string
		scope kernel.Scope
		d     kernel.Deletion
		want  bool
	}{
		{name: "vxlan: a peer's route", scope: vxlanScope(vx),
			d: kernel.Deletion{Kind: kernel.KindRoute, Route: peer.Routes[0]}, want: true},
		{name: "vxlan: a peer's ARP entry", scope: vxlanScope(vx),
			d: kernel.Deletion{Kind: kernel.KindNeigh, Neigh: peer.Neighs[0]}, want: true},
		{name: "vxlan: a peer's FDB entry", scope: vxlanScope(vx),
			d: kernel.Deletion{Kind: kernel.KindFDB, FDB: peer.FDB[0]}, want: true},
		{name: "vxlan: a route on another link", scope: vxlanScope(vx),
			d: route("198.19.2.0/24", "198.19.2.0", 7)},
		{name: "vxlan: a route outside the network", scope: vxlanScope(vx),
			d: route("10.0.2.0/24", "10.0.2.0", vx.Index)},
		{name: "vxlan: a route to the own subnet", scope: vxlanScope(vx),
			d: route("198.19.1.0/24", "198.19.1.0", vx.Index)},
		{name: "vxlan: a connected route without a next hop", scope: vxlanScope(vx),
			d: route("198.19.2.0/24", "", vx.Index)},
		{name: "vxlan: an ARP entry outside the network", scope: vxlanScope(vx),
			d: neigh("198.18.0.7", vx.Index)},
		{name: "vxlan: an ARP entry on another link", scope: vxlanScope(vx),
			d: neigh("198.19.2.0", eth.Index)},
		{name: "vxlan: an FDB entry on another link", scope: vxlanScope(vx),
			d: fdb(macA, "198.18.0.2", eth.Index)},
		{name: "vxlan: the all-zeros FDB entry", scope: vxlanScope(vx),
			d: fdb(kernel.MAC{}, "198.18.0.2", vx.Index)},
		{name: "host-gw: a peer's route", scope: hostgw,
			d: route("198.19.2.0/24", "198.18.0.2", eth.Index), want: true},
		{name: "host-gw: a route outside the network", scope: hostgw,
			d: route("10.9.0.0/16", "198.18.0.254", eth.Index)},
		{name: "host-gw: the default route", scope: hostgw,
			d: route("0.0.0.0/0", "198.18.0.254", eth.Index)},
		{name: "host-gw: a route on another link", scope: hostgw,
			d: route("198.19.2.0/24", "198.18.0.2", vx.Index)},
		{name: "host-gw: an ARP entry", scope: hostgw,
			d: neigh("198.19.2.0", eth.Index)},
		{name: "host-gw: an IPv6 route", scope: hostgw,
			d: route("2001:2:0:102::/64", "2001:2::2", eth.Index)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.scope.Concerns(tt.d); got != tt.want {
				t.Errorf("Concerns(%s) = %t, want %t", tt.d, got, tt.want)
			}
		})
	}
}

func TestDriftFilter(t *testing.T) {
	old := kernel.Link{Index: 5, Name: "flannel.1"}
	renewed := kernel.Link{Index: 9, Name: "flannel.1"}
	onOld := kernel.Deletion{Kind: kernel.KindRoute,
		Route: vxlanPeer(old, "198.19.2.0/24", macA, "198.18.0.2").Routes[0]}
	onNew := kernel.Deletion{Kind: kernel.KindRoute,
		Route: vxlanPeer(renewed, "198.19.2.0/24", macA, "198.18.0.2").Routes[0]}
	v6 := kernel.Link{Index: 6, Name: "flannel-v6.1"}
	onV6 := kernel.Deletion{Kind: kernel.KindNeigh, Neigh: kernel.Neigh{LinkIndex: v6.Index,
		IP: netip.MustParseAddr("2001:2:0:102::"), MAC: macB}}
	v6Scope := kernel.Scope{Network: netip.MustParsePrefix("2001:2:0:100::/56"),
		Neigh: v6, FDB: v6, Routes: []kernel.Link{v6}}

	f := kernel.NewDriftFilter(vxlanScope(old), v6Scope)
	if !f.Match(onOld) || f.Match(onNew) || !f.Match(onV6) {
		t.Errorf("before Set: old %t, new %t, v6 %t; want true, false, true",
			f.Match(onOld), f.Match(onNew), f.Match(onV6))
	}

	// The device was created again: deletions on the new index count, on the old not.
	f.Set(vxlanScope(renewed), v6Scope)
	if f.Match(onOld) || !f.Match(onNew) || !f.Match(onV6) {
		t.Errorf("after Set: old %t, new %t, v6 %t; want false, true, true",
			f.Match(onOld), f.Match(onNew), f.Match(onV6))
	}

	// The filter keeps its own copy of the scopes.
	scope := vxlanScope(renewed)
	f.Set(scope)
	scope.Routes[0] = old
	if !f.Match(onNew) {
		t.Error("changing the caller's scope changed the filter")
	}
	if kernel.NewDriftFilter().Match(onNew) {
		t.Error("a filter without scopes matched")
	}
}
