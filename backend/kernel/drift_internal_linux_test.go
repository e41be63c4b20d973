package kernel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nstest"
)

func TestDeletionOfUpdates(t *testing.T) {
	mac := MAC{2, 0, 0, 0, 0, 0x0a}
	dst := &net.IPNet{IP: net.IPv4(198, 19, 2, 0).To4(), Mask: net.CIDRMask(24, 32)}
	mainRoute := netlink.Route{LinkIndex: 5, Dst: dst, Gw: net.IPv4(198, 19, 2, 0).To4(),
		Flags: int(netlink.FLAG_ONLINK), Family: netlink.FAMILY_V4,
		Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}
	want := Route{Dst: netip.MustParsePrefix("198.19.2.0/24"),
		Gw: netip.MustParseAddr("198.19.2.0"), LinkIndex: 5, Onlink: true}
	v6Route := netlink.Route{LinkIndex: 6,
		Dst:    &net.IPNet{IP: net.ParseIP("2001:2:0:102::"), Mask: net.CIDRMask(64, 128)},
		Gw:     net.ParseIP("2001:2:0:102::"),
		Family: netlink.FAMILY_V6, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
		Priority: 1024}
	local := mainRoute
	local.Table = unix.RT_TABLE_LOCAL
	blackhole := mainRoute
	blackhole.Type = unix.RTN_BLACKHOLE

	tests := []struct {
		name   string
		route  *netlink.RouteUpdate
		neigh  *netlink.NeighUpdate
		want   Deletion
		wantOK bool
	}{
		{
			name:   "a deleted route",
			route:  &netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: mainRoute},
			want:   Deletion{Kind: KindRoute, Route: want},
			wantOK: true,
		},
		{
			name:  "a deleted IPv6 route, with the kernel's default metric",
			route: &netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: v6Route},
			want: Deletion{Kind: KindRoute, Route: Route{
				Dst: netip.MustParsePrefix("2001:2:0:102::/64"),
				Gw:  netip.MustParseAddr("2001:2:0:102::"), LinkIndex: 6}},
			wantOK: true,
		},
		{
			name:  "a new route",
			route: &netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: mainRoute},
		},
		{
			name:  "a route of another table",
			route: &netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: local},
		},
		{
			name:  "a blackhole route",
			route: &netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: blackhole},
		},
		{
			name: "a deleted ARP entry",
			neigh: &netlink.NeighUpdate{Type: unix.RTM_DELNEIGH, Neigh: netlink.Neigh{
				LinkIndex: 5, Family: netlink.FAMILY_V4, State: netlink.NUD_FAILED,
				IP: net.IPv4(198, 19, 2, 0).To4(), HardwareAddr: mac.HardwareAddr()}},
			want: Deletion{Kind: KindNeigh, Neigh: Neigh{LinkIndex: 5,
				IP: netip.MustParseAddr("198.19.2.0"), MAC: mac}},
			wantOK: true,
		},
		{
			name: "a deleted FDB entry",
			neigh: &netlink.NeighUpdate{Type: unix.RTM_DELNEIGH, Neigh: netlink.Neigh{
				LinkIndex: 5, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				IP: net.IPv4(198, 18, 0, 2).To4(), HardwareAddr: mac.HardwareAddr()}},
			want: Deletion{Kind: KindFDB, FDB: FDBEntry{LinkIndex: 5, MAC: mac,
				Dst: netip.MustParseAddr("198.18.0.2")}},
			wantOK: true,
		},
		{
			name: "a deleted FDB entry without a destination",
			neigh: &netlink.NeighUpdate{Type: unix.RTM_DELNEIGH, Neigh: netlink.Neigh{
				LinkIndex: 5, Family: unix.AF_BRIDGE, HardwareAddr: mac.HardwareAddr()}},
		},
		{
			name: "an ARP entry that changed",
			neigh: &netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: netlink.Neigh{
				LinkIndex: 5, Family: netlink.FAMILY_V4, State: netlink.NUD_FAILED,
				IP: net.IPv4(198, 19, 2, 0).To4()}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Deletion
			var ok bool
			if tt.route != nil {
				got, ok = routeDeletion(*tt.route)
			} else {
				got, ok = neighDeletion(*tt.neigh)
			}
			if ok != tt.wantOK || ok && got != tt.want {
				t.Errorf("got %s, %t; want %s, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDriftWatchSubscribesAgain(t *testing.T) {
	nstest.RequireRoot(t)
	buf := &logbuf.Buffer{}
	w := DriftWatch{
		NS:     nstest.New(t),
		Filter: NewDriftFilter(),
		Log:    slog.New(slog.NewTextHandler(buf, nil)),
	}

	// A subscription that failed is made again after a delay, and since deletions may
	// have gone unseen meanwhile, that signals.
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, out, nil, errors.New("receive failed: no buffer space available"), true)
	}()
	select {
	case <-out:
	case <-time.After(5 * time.Second):
		t.Error("no signal after subscribing again")
	}
	cancel()
	<-done
	for _, want := range []string{
		`level=WARN msg="watching for deleted routes and neighbours" ` +
			`err="receive failed: no buffer space available" retry_in=100ms`,
		`level=INFO msg="watching for deleted routes and neighbours again"`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf)
		}
	}
}

func TestDriftWatchWithoutNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	buf := &logbuf.Buffer{}
	// A descriptor number far above any open one, so that no file opened meanwhile
	// takes it.
	const bad = 1 << 20

	// A namespace that cannot be entered: Start still returns, the failure is logged,
	// and the watch stops when told to.
	ctx, cancel := context.WithCancel(context.Background())
	stopped := DriftWatch{
		NS:     netns.NsHandle(bad),
		Filter: NewDriftFilter(),
		Log:    slog.New(slog.NewTextHandler(buf, nil)),
	}.Start(ctx, make(chan struct{}, 1))
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not stop")
	}
	const want = `level=WARN msg="watching for deleted routes and neighbours" ` +
		`err="subscribing to route changes: `
	if !strings.Contains(buf.String(), want) {
		t.Errorf("log lacks %s:\n%s", want, buf)
	}
}

func TestDriftFilterNeedsNeighs(t *testing.T) {
	network := netip.MustParsePrefix("198.19.0.0/16")
	eth := Link{Index: 2, Name: "eth0"}
	vx := Link{Index: 5, Name: "flannel.1"}
	tests := []struct {
		name   string
		scopes []Scope
		want   bool
	}{
		{name: "none"},
		{name: "host-gw", scopes: []Scope{{Network: network, Routes: []Link{eth}}}},
		{name: "vxlan", want: true, scopes: []Scope{{Network: network, Neigh: vx, FDB: vx,
			Routes: []Link{vx}}}},
		{name: "host-gw and vxlan", want: true, scopes: []Scope{
			{Network: network, Routes: []Link{eth}},
			{Network: network, Neigh: vx, Routes: []Link{vx}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewDriftFilter(tt.scopes...).needsNeighs(); got != tt.want {
				t.Errorf("needsNeighs() = %t, want %t", got, tt.want)
			}
		})
	}
}
