package kernel

import (
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// The functions below are the straightforward form of the comparison, with maps built
// afresh for every pass: referenceDiff is what Diff computes, and wantDirty and haveDirty
// what the Reconciler hands it for the marked identities. TestDiffMatchesReference holds
// the allocation-lean forms to them.

func referenceDiff(scope Scope, want map[string]Entries, have Entries) []Op {
	have = scope.Filter(have)
	owners := slices.Sorted(maps.Keys(want))

	wantNeigh := map[neighKey]Op{}
	wantFDB := map[fdbKey]Op{}
	wantRoute := map[routeKey]Op{}
	for _, o := range owners {
		for _, n := range want[o].Neighs {
			n.Permanent = true
			k := neighKeyOf(n)
			if _, ok := wantNeigh[k]; !ok {
				wantNeigh[k] = Op{Kind: KindNeigh, Neigh: n, Owner: o}
			}
		}
		for _, e := range want[o].FDB {
			e.Permanent = true
			k := fdbKeyOf(e)
			if _, ok := wantFDB[k]; !ok {
				wantFDB[k] = Op{Kind: KindFDB, FDB: e, Owner: o}
			}
		}
		for _, r := range want[o].Routes {
			k := routeKeyOf(r)
			if _, ok := wantRoute[k]; !ok {
				wantRoute[k] = Op{Kind: KindRoute, Route: r, Owner: o}
			}
		}
	}

	haveNeigh := group(have.Neighs, neighKeyOf)
	haveFDB := group(have.FDB, fdbKeyOf)
	haveRoute := group(have.Routes, routeKeyOf)

	var adds, dels [3][]Op
	for _, k := range sortedKeys(wantNeigh, compareNeighKeys) {
		if w := wantNeigh[k]; !installedAs(haveNeigh[k], w.Neigh) {
			adds[KindNeigh] = append(adds[KindNeigh], w)
		}
	}
	for _, k := range sortedKeys(wantFDB, compareFDBKeys) {
		w, hs := wantFDB[k], haveFDB[k]
		if installedAs(hs, w.FDB) {
			continue
		}
		adds[KindFDB] = append(adds[KindFDB], w)
		// Replace rewrites the entry's first destination, unless w's is among them
		// already. With several destinations, every other one is stale.
		for _, h := range hs {
			if len(hs) > 1 && h.Dst != w.FDB.Dst && scope.ownsFDB(h) {
				dels[KindFDB] = append(dels[KindFDB], Op{Action: Delete, Kind: KindFDB, FDB: h})
			}
		}
	}
	for _, k := range sortedKeys(wantRoute, compareRouteKeys) {
		if w := wantRoute[k]; !installedAs(haveRoute[k], w.Route) {
			adds[KindRoute] = append(adds[KindRoute], w)
		}
	}

	for _, k := range sortedKeys(haveRoute, compareRouteKeys) {
		if _, ok := wantRoute[k]; !ok {
			for _, h := range haveRoute[k] {
				dels[KindRoute] = append(dels[KindRoute],
					Op{Action: Delete, Kind: KindRoute, Route: h})
			}
		}
	}
	for _, k := range sortedKeys(haveFDB, compareFDBKeys) {
		if _, ok := wantFDB[k]; !ok {
			for _, h := range haveFDB[k] {
				if scope.ownsFDB(h) {
					dels[KindFDB] = append(dels[KindFDB], Op{Action: Delete, Kind: KindFDB, FDB: h})
				}
			}
		}
	}
	for _, k := range sortedKeys(haveNeigh, compareNeighKeys) {
		if _, ok := wantNeigh[k]; !ok {
			for _, h := range haveNeigh[k] {
				if scope.ownsNeigh(h) {
					dels[KindNeigh] = append(dels[KindNeigh],
						Op{Action: Delete, Kind: KindNeigh, Neigh: h})
				}
			}
		}
	}

	ops := slices.Concat(adds[KindNeigh], adds[KindFDB], adds[KindRoute])
	return slices.Concat(ops, dels[KindRoute], dels[KindFDB], dels[KindNeigh])
}

func group[K comparable, E any](es []E, key func(E) K) map[K][]E {
	m := make(map[K][]E, len(es))
	for _, e := range es {
		k := key(e)
		m[k] = append(m[k], e)
	}
	return m
}

// wantDirty returns, for each owner, its wanted entries whose identity is marked.
func (r *Reconciler) wantDirty() map[string]Entries {
	want := map[string]Entries{}
	add := func(owner string, f func(*Entries)) {
		e := want[owner]
		f(&e)
		want[owner] = e
	}
	for k := range marked(&r.neighs) {
		for _, o := range r.neighs.claims[k] {
			for _, n := range r.owners[o].Neighs {
				if neighKeyOf(n) == k {
					add(o, func(e *Entries) { e.Neighs = append(e.Neighs, n) })
				}
			}
		}
	}
	for k := range marked(&r.fdb) {
		for _, o := range r.fdb.claims[k] {
			for _, f := range r.owners[o].FDB {
				if fdbKeyOf(f) == k {
					add(o, func(e *Entries) { e.FDB = append(e.FDB, f) })
				}
			}
		}
	}
	for k := range marked(&r.routes) {
		for _, o := range r.routes.claims[k] {
			for _, rt := range r.owners[o].Routes {
				if routeKeyOf(rt) == k {
					add(o, func(e *Entries) { e.Routes = append(e.Routes, rt) })
				}
			}
		}
	}
	return want
}

// haveDirty returns the installed entries whose identity is marked.
func (r *Reconciler) haveDirty() Entries {
	var have Entries
	for k := range marked(&r.neighs) {
		have.Neighs = append(have.Neighs, r.neighs.have[k]...)
	}
	for k := range marked(&r.fdb) {
		have.FDB = append(have.FDB, r.fdb.have[k]...)
	}
	for k := range marked(&r.routes) {
		have.Routes = append(have.Routes, r.routes.have[k]...)
	}
	return have
}

// randomEntries returns up to max entries of each kind drawn from small pools, so that
// identities collide, some entries lie outside vxlanTestScope and some are learnt.
func randomEntries(rng *rand.Rand, max int) Entries {
	addrs := []netip.Addr{
		netip.MustParseAddr("198.19.1.0"), netip.MustParseAddr("198.19.2.0"),
		netip.MustParseAddr("198.19.3.0"), netip.MustParseAddr("198.20.0.1"), {},
	}
	dsts := []netip.Addr{
		netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3"),
		netip.MustParseAddr("198.18.0.4"), {},
	}
	macs := []MAC{{2, 0, 0, 0, 0, 0xa}, {2, 0, 0, 0, 0, 0xb}, {1, 0, 0x5e, 0, 0, 1}, {}}
	prefixes := []netip.Prefix{
		netip.MustParsePrefix("198.19.2.0/24"), netip.MustParsePrefix("198.19.3.0/24"),
		netip.MustParsePrefix("198.19.1.0/24"), netip.MustParsePrefix("198.19.0.0/16"),
		netip.MustParsePrefix("198.20.0.0/24"),
	}
	links := []int{5, 6}
	pick := func(n int) int { return rng.IntN(n) }

	var e Entries
	for range pick(max + 1) {
		e.Neighs = append(e.Neighs, Neigh{LinkIndex: links[pick(2)], IP: addrs[pick(len(addrs))],
			MAC: macs[pick(len(macs))], Permanent: pick(2) == 0})
	}
	for range pick(max + 1) {
		e.FDB = append(e.FDB, FDBEntry{LinkIndex: links[pick(2)], MAC: macs[pick(len(macs))],
			Dst: dsts[pick(len(dsts))], Permanent: pick(2) == 0})
	}
	for range pick(max + 1) {
		e.Routes = append(e.Routes, Route{Dst: prefixes[pick(len(prefixes))],
			Gw: addrs[pick(len(addrs))], LinkIndex: links[pick(2)], Onlink: pick(2) == 0,
			Metric: 100 * pick(2)})
	}
	return e
}

var vxlanTestScope = Scope{
	Network: netip.MustParsePrefix("198.19.0.0/16"),
	Keep:    []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")},
	Neigh:   Link{Index: 5, Name: "flannel.1"},
	FDB:     Link{Index: 5, Name: "flannel.1"},
	Routes:  []Link{{Index: 5, Name: "flannel.1"}},
}

func TestDiffMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	owners := []string{"a", "b", "c", "d"}

	t.Run("Diff", func(t *testing.T) {
		for i := range 5000 {
			want := map[string]Entries{}
			for _, o := range owners[:rng.IntN(len(owners)+1)] {
				want[o] = randomEntries(rng, 3)
			}
			have := randomEntries(rng, 6)
			got, ref := Diff(vxlanTestScope, want, have), referenceDiff(vxlanTestScope, want, have)
			if !slices.Equal(got, ref) {
				t.Fatalf("case %d: want %+v, have %+v:\nDiff      %+v\nreference %+v",
					i, want, have, got, ref)
			}
		}
	})

	t.Run("Reconciler", func(t *testing.T) {
		for i := range 5000 {
			r := NewReconciler(nil, vxlanTestScope, slog.New(slog.DiscardHandler))
			for _, o := range owners[:rng.IntN(len(owners)+1)] {
				r.Set(o, randomEntries(rng, 3))
			}
			// A replace may leave a wanted entry outside the scope in have.
			have := randomEntries(rng, 6)
			r.neighs.load(have.Neighs, neighKeyOf, nil)
			r.fdb.load(have.FDB, fdbKeyOf, nil)
			r.routes.load(have.Routes, routeKeyOf, nil)
			switch rng.IntN(3) {
			case 0: // as Sync
				r.neighs.markAll()
				r.fdb.markAll()
				r.routes.markAll()
			case 1: // as Repair, after Set marked identities of its own
				r.neighs.markClaimed()
				r.fdb.markClaimed()
				r.routes.markClaimed()
			default: // as after Set and Remove
				markSome(rng, &r.neighs)
				markSome(rng, &r.fdb)
				markSome(rng, &r.routes)
			}

			ref := referenceDiff(vxlanTestScope, r.wantDirty(), r.haveDirty())
			var d differ
			d.diff(vxlanTestScope, r.owners, &r.neighs, &r.fdb, &r.routes)
			if got := d.ops(); !slices.Equal(got, ref) {
				t.Fatalf("case %d: owners %+v, have %+v:\ndiffer    %+v\nreference %+v",
					i, r.owners, have, got, ref)
			}
		}
	})
}

// markSome marks a random part of the identities of t that are claimed or installed.
func markSome[K comparable, E comparable](rng *rand.Rand, t *table[K, E]) {
	clear(t.dirty)
	for k := range t.claims {
		if rng.IntN(2) == 0 {
			t.dirty[k] = true
		}
	}
	for k := range t.have {
		if rng.IntN(2) == 0 {
			t.dirty[k] = true
		}
	}
}

// marked returns every identity that t marks, one by one or in bulk.
func marked[K comparable, E comparable](t *table[K, E]) map[K]bool {
	m := maps.Clone(t.dirty)
	if t.all || t.claimed {
		for k := range t.claims {
			m[k] = true
		}
	}
	if t.all {
		for k := range t.have {
			m[k] = true
		}
	}
	return m
}
