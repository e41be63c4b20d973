package vxlan

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/kerneltest"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// listing is the number of reads of one comparison of an IPv4 stack with the kernel:
// its neighbours, FDB entries and routes.
const listing = 3

// waitListed waits until lh's counter shows one comparison with the kernel, which
// follows deletions by a debounce period, and then as long again for any further one.
func waitListed(tb testing.TB, lh *labHost) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for lh.counter.Reads() < listing {
		if time.Now().After(deadline) {
			tb.Fatalf("no comparison with the kernel within 5s of the deletions")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(3 * peers.DefaultDebounce)
}

// restoredWithin deletes an entry by hand and returns how long it took lh to put it
// back, failing the test if that is more than limit.
func restoredWithin(t *testing.T, lh *labHost, limit time.Duration, del func() error) {
	t.Helper()
	want := lh.state(t)
	if err := del(); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if lh.state(t).Equal(want) {
		t.Fatal("the entry is still there after deleting it")
	}
	for !lh.state(t).Equal(want) {
		if time.Since(deleted) > limit {
			t.Fatalf("not restored %s after the deletion; entries:\n  %+v\nwant:\n  %+v",
				limit, lh.state(t), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("restored after %s", time.Since(deleted).Round(time.Millisecond))
}

func TestDeletedEntriesRestoredPromptly(t *testing.T) {
	nstest.RequireRoot(t)
	h1, h2 := kerneltest.Pair(t)
	cfg := testConfig(`{"Type":"vxlan"}`)
	// Resyncs an hour apart: only the deletion watch can repair anything in time.
	a := register(t, h1, "198.19.1.0/24", cfg, time.Hour)
	b := register(t, h2, "198.19.2.0/24", cfg, time.Hour)
	a.feed(added(b.ownLease()))
	want := wantPeer(t, a.net.stacks[0].link.Index, b.ownLease())
	if got := a.state(t); !got.Equal(want) {
		t.Fatalf("entries:\n  %+v\nwant:\n  %+v", got, want)
	}

	// Deleted by hand, through a handle of its own, as `ip` would.
	byHand := kernel.NewNetlink(h1.Handle)
	for _, tt := range []struct {
		name string
		del  func() error
	}{
		{name: "route", del: func() error { return byHand.DeleteRoute(want.Routes[0]) }},
		{name: "ARP entry", del: func() error { return byHand.DeleteNeigh(want.Neighs[0]) }},
		{name: "FDB entry", del: func() error { return byHand.DeleteFDB(want.FDB[0]) }},
	} {
		t.Run(tt.name, func(t *testing.T) { restoredWithin(t, a, time.Second, tt.del) })
	}

	// Routes outside the scope, on another link or outside the network, deleted by
	// hand, stay deleted and cost no write.
	vx := a.net.stacks[0].link.Index
	others := []kernel.Route{
		{Dst: netip.MustParsePrefix("198.19.9.0/24"), Gw: netip.MustParseAddr("198.18.0.9"),
			LinkIndex: h1.Ext.Index},
		{Dst: netip.MustParsePrefix("10.9.0.0/16"), Gw: netip.MustParseAddr("10.9.0.1"),
			LinkIndex: vx, Onlink: true},
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
	for _, link := range []int{h1.Ext.Index, vx} {
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
	if got := a.state(t); !got.Equal(want) {
		t.Errorf("the peer's entries changed:\n  %+v\nwant:\n  %+v", got, want)
	}
}

// TestOwnRemovalsCostOneComparison removes 1,000 peers in one batch: the deletion watch
// sees every one of the backend's own deletions, and the burst costs one comparison
// with the kernel and no write beyond the deletions. Steady state, a renewal and a new
// peer still cost 0, 0 and 3 writes.
func TestOwnRemovalsCostOneComparison(t *testing.T) {
	nstest.RequireRoot(t)
	h1, _ := kerneltest.Pair(t)
	a := register(t, h1, "198.19.255.0/24", testConfig(`{"Type":"vxlan"}`), time.Hour)

	const count = 1000
	leases := benchLeases(count + 1)
	var adds, dels []subnet.Event
	for _, l := range leases[:count] {
		adds = append(adds, added(l))
		dels = append(dels, removed(l))
	}
	a.feed(adds...)
	if n := a.state(t).Len(); n != 3*count {
		t.Fatalf("%d entries for %d peers", n, count)
	}

	a.counter.Reset()
	a.feed(dels...)
	waitListed(t, a)
	if w, r := a.counter.Writes(), a.counter.Reads(); w != 3*count || r != listing {
		t.Errorf("removing %d peers cost %d writes and %d reads; want %d and %d (one "+
			"comparison)", count, w, r, 3*count, listing)
	}
	if n := a.state(t).Len(); n != 0 {
		t.Errorf("%d entries left after the removals", n)
	}

	one := leases[count]
	a.feed(added(one))
	time.Sleep(3 * peers.DefaultDebounce)
	for _, step := range []struct {
		name   string
		do     func()
		writes int64
	}{
		{name: "steady state", do: func() { time.Sleep(3 * peers.DefaultDebounce) }},
		{name: "renewal", do: func() { a.feed(added(one)) }},
		{name: "new peer", do: func() { a.feed(added(leases[0])) }, writes: 3},
	} {
		a.counter.Reset()
		step.do()
		if w, r := a.counter.Writes(), a.counter.Reads(); w != step.writes || r != 0 {
			t.Errorf("%s: %d writes and %d reads, want %d and 0", step.name, w, r, step.writes)
		}
	}
}
