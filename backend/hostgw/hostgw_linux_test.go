package hostgw

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

type labHost struct {
	*kerneltest.Host
	lease   subnet.Lease
	events  chan []subnet.Event
	counter *kerneltest.Counter
}

func register(t *testing.T, h *kerneltest.Host, sn string) *labHost {
	t.Helper()
	return registerDual(t, h, sn, "")
}

// registerDual is register with an IPv6 subnet sn6 too, unless it is empty.
func registerDual(t *testing.T, h *kerneltest.Host, sn, sn6 string) *labHost {
	t.Helper()
	cfg := &subnet.Config{EnableIPv4: true, Network: overlay, BackendType: TypeName}
	lm := &fakeLeases{subnet: netip.MustParsePrefix(sn)}
	if sn6 != "" {
		cfg.EnableIPv6, cfg.IPv6Network = true, overlay6
		lm.subnet6 = netip.MustParsePrefix(sn6)
	}
	counter := kerneltest.Count(kernel.NewNetlink(h.Handle))
	b := newBackend(backend.Params{Ext: h.Ext, Log: slog.New(slog.DiscardHandler)}, counter)
	b.drift = watchDrift(h.NS, b.log)
	n, err := b.RegisterNetwork(context.Background(), cfg, lm)
	if err != nil {
		t.Fatal(err)
	}
	lh := &labHost{Host: h, lease: *n.Lease(), events: make(chan []subnet.Event),
		counter: counter}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, lh.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return lh
}

func (lh *labHost) feed(events ...subnet.Event) {
	lh.events <- events
	lh.events <- nil
}

// overlayRoutes lists the routes on eth0 inside the overlay network.
func (lh *labHost) overlayRoutes(t *testing.T) []kernel.Route {
	t.Helper()
	rs, err := kernel.NewNetlink(lh.Handle).Routes(lh.Ext.Index, kernel.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(rs, func(r kernel.Route) bool { return !overlay.Contains(r.Dst.Addr()) })
}

func TestTwoHostsLab(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	a := register(t, h1, "198.19.1.0/24")
	b := register(t, h2, "198.19.2.0/24")
	if a.lease.Attrs.BackendType != TypeName || a.lease.Attrs.PublicIP != h1.Ext.ExtAddr {
		t.Errorf("lease attrs %+v", a.lease.Attrs)
	}

	a.feed(added(b.lease))
	b.feed(added(a.lease))
	wantA := []kernel.Route{{Dst: b.lease.Subnet, Gw: h2.Ext.ExtAddr, LinkIndex: h1.Ext.Index}}
	wantB := []kernel.Route{{Dst: a.lease.Subnet, Gw: h1.Ext.ExtAddr, LinkIndex: h2.Ext.Index}}
	if got := a.overlayRoutes(t); !slices.Equal(got, wantA) {
		t.Errorf("host 1 routes %+v, want %+v", got, wantA)
	}
	if got := b.overlayRoutes(t); !slices.Equal(got, wantB) {
		t.Errorf("host 2 routes %+v, want %+v", got, wantB)
	}

	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"))
	h2.AddBridge(t, netip.MustParsePrefix("198.19.2.1/24"))
	pod1, pod2 := netip.MustParseAddr("198.19.1.1"), netip.MustParseAddr("198.19.2.1")
	if err := h1.Ping(t, pod1, pod2, 3*time.Second); err != nil {
		t.Error(err)
	}
	if err := kerneltest.Exchange(t, h2, pod2, h1, pod1); err != nil {
		t.Error(err)
	}

	a.feed(removed(b.lease))
	if got := a.overlayRoutes(t); len(got) != 0 {
		t.Errorf("routes left after removal: %+v", got)
	}
	if err := h1.Ping(t, pod1, pod2, 300*time.Millisecond); err == nil {
		t.Error("ping still works after the peer was removed")
	}
}

func TestDualStackLab(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	a := registerDual(t, h1, "198.19.1.0/24", "fd00:198:19:1::/64")
	b := registerDual(t, h2, "198.19.2.0/24", "fd00:198:19:2::/64")
	a.feed(added(b.lease))
	b.feed(added(a.lease))

	rs, err := kernel.NewNetlink(h1.Handle).Routes(h1.Ext.Index, kernel.IPv6)
	want := kernel.Route{Dst: b.lease.IPv6Subnet, Gw: h2.Ext.ExtV6Addr, LinkIndex: h1.Ext.Index}
	if err != nil || !slices.Contains(rs, want) {
		t.Errorf("IPv6 routes on eth0: %+v, %v; want %+v among them", rs, err, want)
	}
	h1.AddBridge(t, netip.MustParsePrefix("fd00:198:19:1::1/64"))
	h2.AddBridge(t, netip.MustParsePrefix("fd00:198:19:2::1/64"))
	if err := kerneltest.Exchange(t, h1, netip.MustParseAddr("fd00:198:19:1::1"), h2,
		netip.MustParseAddr("fd00:198:19:2::1")); err != nil {
		t.Error(err)
	}
}

func TestDeletedRouteRestoredPromptly(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	a := register(t, h1, "198.19.1.0/24")
	b := register(t, h2, "198.19.2.0/24")
	a.feed(added(b.lease))
	want := []kernel.Route{{Dst: b.lease.Subnet, Gw: h2.Ext.ExtAddr, LinkIndex: h1.Ext.Index}}
	if got := a.overlayRoutes(t); !slices.Equal(got, want) {
		t.Fatalf("routes %+v, want %+v", got, want)
	}

	// Deleted by hand through a handle of its own, as `ip route del` would, the route
	// is back long before the resync period.
	byHand := kernel.NewNetlink(h1.Handle)
	if err := byHand.DeleteRoute(want[0]); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for !slices.Equal(a.overlayRoutes(t), want) {
		if time.Since(deleted) > time.Second {
			t.Fatalf("the route is not back 1s after its deletion: %+v", a.overlayRoutes(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("route back after %s", time.Since(deleted).Round(time.Millisecond))

	// Routes on another link, or outside the network, deleted by hand stay deleted and
	// cost no write.
	h1.AddBridge(t, netip.MustParsePrefix("198.19.1.1/24"))
	br, err := byHand.LinkByName("cni0")
	if err != nil {
		t.Fatal(err)
	}
	others := []kernel.Route{
		{Dst: netip.MustParsePrefix("198.19.9.0/24"), Gw: netip.MustParseAddr("198.19.1.9"),
			LinkIndex: br.Index},
		{Dst: netip.MustParsePrefix("10.9.0.0/16"), Gw: netip.MustParseAddr("198.18.0.254"),
			LinkIndex: h1.Ext.Index},
	}
	for _, r := range others {
		if err := byHand.ReplaceRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	a.counter.Reset()
	for _, r := range others {
		if err := byHand.DeleteRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if w, r := a.counter.Writes(), a.counter.Reads(); w != 0 || r != 0 {
		t.Errorf("deletions outside the scope cost %d writes and %d reads, want none", w, r)
	}
	for _, link := range []int{br.Index, h1.Ext.Index} {
		rs, err := byHand.Routes(link, kernel.IPv4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range others {
			if slices.Contains(rs, r) {
				t.Errorf("route %+v came back", r)
			}
		}
	}
	if got := a.overlayRoutes(t); !slices.Equal(got, want) {
		t.Errorf("routes %+v, want %+v", got, want)
	}
}
