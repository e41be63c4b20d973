package kernel_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/kernel"
)

// startDriftWatch runs a DriftWatch on r's namespace for scopes until the test ends,
// and returns its signal channel.
func startDriftWatch(t *testing.T, r *netlinkRig, scopes ...kernel.Scope) <-chan struct{} {
	t.Helper()
	out := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := kernel.DriftWatch{
		NS:     r.ns,
		Filter: kernel.NewDriftFilter(scopes...),
		Log:    slog.New(slog.DiscardHandler),
	}.Start(ctx, out)
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return out
}

// quiet reports whether no signal arrives on out within d.
func quiet(out <-chan struct{}, d time.Duration) bool {
	select {
	case <-out:
		return false
	case <-time.After(d):
		return true
	}
}

func TestDriftWatch(t *testing.T) {
	r := newNetlinkRig(t)
	peer := vxlanPeer(r.vx, "198.19.2.0/24", macA, "198.18.0.2")
	route := func(dst, gw string, link int, onlink bool) kernel.Route {
		return kernel.Route{Dst: netip.MustParsePrefix(dst), Gw: netip.MustParseAddr(gw),
			LinkIndex: link, Onlink: onlink}
	}
	// Entries outside the scope: routes on another link or outside the network, a
	// route to the host's own subnet, an ARP entry outside the network.
	outside := kernel.Entries{
		Routes: []kernel.Route{
			route("198.19.3.0/24", "198.18.0.3", r.eth.Index, false),
			route("10.9.0.0/16", "10.9.0.1", r.vx.Index, true),
			route("198.19.1.0/24", "198.19.1.0", r.vx.Index, true),
		},
		Neighs: []kernel.Neigh{{LinkIndex: r.vx.Index, IP: netip.MustParseAddr("10.9.0.1"),
			MAC: macB}},
	}
	install := func(e kernel.Entries) {
		t.Helper()
		for _, n := range e.Neighs {
			if err := r.ops.ReplaceNeigh(n); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range e.FDB {
			if err := r.ops.ReplaceFDB(f); err != nil {
				t.Fatal(err)
			}
		}
		for _, rt := range e.Routes {
			if err := r.ops.ReplaceRoute(rt); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(peer)
	install(outside)
	out := startDriftWatch(t, r, vxlanScope(r.vx))

	// Neither new entries nor deletions outside the scope signal.
	install(vxlanPeer(r.vx, "198.19.4.0/24", macC, "198.18.0.4"))
	for _, rt := range outside.Routes {
		if err := r.ops.DeleteRoute(rt); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ops.DeleteNeigh(outside.Neighs[0]); err != nil {
		t.Fatal(err)
	}
	if !quiet(out, 300*time.Millisecond) {
		t.Error("signalled for additions or for deletions outside the scope")
	}

	// Each of a peer's entries deleted signals.
	for _, tt := range []struct {
		name string
		del  func() error
	}{
		{name: "route", del: func() error { return r.ops.DeleteRoute(peer.Routes[0]) }},
		{name: "FDB entry", del: func() error { return r.ops.DeleteFDB(peer.FDB[0]) }},
		{name: "ARP entry", del: func() error { return r.ops.DeleteNeigh(peer.Neighs[0]) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.del(); err != nil {
				t.Fatal(err)
			}
			if quiet(out, time.Second) {
				t.Errorf("no signal within 1s of deleting the peer's %s", tt.name)
			}
		})
	}
}
