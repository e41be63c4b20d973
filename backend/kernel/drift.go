package kernel

import (
	"slices"
	"sync"
)

// Deletion is an entry that the kernel reports deleted. Exactly the field that Kind
// names is set.
type Deletion struct {
	Kind  Kind
	Neigh Neigh
	FDB   FDBEntry
	Route Route
}

// Concerns reports whether the deletion d may have taken away an entry that the scope
// manages, so that a Sync may have something to restore: a route the scope owns (inside
// Network, outside Keep, with a next hop, out of one of its route links), a neighbour
// inside Network on its Neigh link, or an FDB entry with a destination on its FDB link.
// A deletion reports no permanence (the kernel marks an entry failed before it drops
// it), so every neighbour and FDB entry in reach counts.
func (s Scope) Concerns(d Deletion) bool {
	switch d.Kind {
	case KindRoute:
		return s.ownsRoute(d.Route)
	case KindNeigh:
		return s.seesNeigh(d.Neigh)
	case KindFDB:
		return s.seesFDB(d.FDB)
	}
	return false
}

// DriftFilter holds the scopes whose deletions a watch of the kernel passes on, so that
// the owner of the Reconcilers can replace them (a device created again has a new
// index) while the watch runs. It is safe for concurrent use.
type DriftFilter struct {
	mu     sync.Mutex
	scopes []Scope
}

// NewDriftFilter returns a filter that matches deletions concerning any of scopes.
func NewDriftFilter(scopes ...Scope) *DriftFilter {
	f := &DriftFilter{}
	f.Set(scopes...)
	return f
}

// Set replaces the scopes the filter matches.
func (f *DriftFilter) Set(scopes ...Scope) {
	cp := slices.Clone(scopes)
	for i := range cp {
		cp[i].Keep = slices.Clone(cp[i].Keep)
		cp[i].Routes = slices.Clone(cp[i].Routes)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scopes = cp
}

// Match reports whether d concerns one of the filter's scopes; see Scope.Concerns.
func (f *DriftFilter) Match(d Deletion) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.scopes, func(s Scope) bool { return s.Concerns(d) })
}

// String renders d as what was deleted in iproute2's words, naming the link by index:
// "route 198.19.2.0/24 via 198.19.2.0 dev if7 onlink".
func (d Deletion) String() string {
	switch d.Kind {
	case KindNeigh:
		return "neigh " + NeighArgs(d.Neigh, Link{Index: d.Neigh.LinkIndex}.String())
	case KindFDB:
		return "fdb " + FDBArgs(d.FDB, Link{Index: d.FDB.LinkIndex}.String())
	default:
		return "route " + RouteArgs(d.Route, Link{Index: d.Route.LinkIndex}.String())
	}
}

// needsNeighs reports whether some scope manages neighbour or FDB entries, so that a
// watch must follow neighbour changes too.
func (f *DriftFilter) needsNeighs() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.scopes, func(s Scope) bool {
		return s.Neigh.Index != 0 || s.FDB.Index != 0
	})
}
