package kernel

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
)

// Scope is the part of the kernel that one Reconciler owns. Entries outside it are
// never listed, compared or removed; an entry inside it that no owner wants is removed.
type Scope struct {
	// Network bounds routes and neighbours: only those whose destination lies inside it
	// are considered. It also gives the family.
	Network netip.Prefix
	// Keep lists prefixes inside Network that are never touched, such as the host's own
	// subnet.
	Keep []netip.Prefix

	// Neigh is the link whose neighbour entries are managed; Index 0 for none.
	Neigh Link
	// FDB is the VXLAN link whose forwarding entries are managed; Index 0 for none.
	FDB Link
	// Routes are the links whose routes are managed: a route inside Network with a next
	// hop, out of one of them, is owned.
	Routes []Link
}

// Family returns the family of the scope's Network.
func (s Scope) Family() Family { return FamilyOf(s.Network.Addr()) }

// LinkName returns the name of the link with index, as the scope knows it.
func (s Scope) LinkName(index int) string {
	for _, l := range append([]Link{s.Neigh, s.FDB}, s.Routes...) {
		if l.Index == index && index != 0 {
			return l.String()
		}
	}
	return Link{Index: index}.String()
}

func (s Scope) inNetwork(p netip.Prefix) bool {
	if !p.IsValid() || !s.Network.IsValid() ||
		p.Bits() < s.Network.Bits() || !s.Network.Contains(p.Addr()) {
		return false
	}
	for _, k := range s.Keep {
		if k.Overlaps(p) {
			return false
		}
	}
	return true
}

// ownsRoute reports whether r is one of the scope's routes: a route with a next hop,
// inside Network, out of one of the scope's route links.
func (s Scope) ownsRoute(r Route) bool {
	if !r.Gw.IsValid() || !s.inNetwork(r.Dst) {
		return false
	}
	return slices.ContainsFunc(s.Routes, func(l Link) bool { return l.Index == r.LinkIndex })
}

// seesNeigh reports whether n is considered at all; ownsNeigh whether it may be removed.
// Entries the kernel learnt by itself are replaced when wanted, never removed.
func (s Scope) seesNeigh(n Neigh) bool {
	return s.Neigh.Index != 0 && n.LinkIndex == s.Neigh.Index && n.IP.IsValid() &&
		s.inNetwork(netip.PrefixFrom(n.IP, n.IP.BitLen()))
}

func (s Scope) ownsNeigh(n Neigh) bool { return s.seesNeigh(n) && n.Permanent }

func (s Scope) seesFDB(e FDBEntry) bool {
	return s.FDB.Index != 0 && e.LinkIndex == s.FDB.Index && e.Dst.IsValid() && !e.MAC.IsZero()
}

func (s Scope) ownsFDB(e FDBEntry) bool { return s.seesFDB(e) && e.Permanent && e.MAC.IsUnicast() }

// Filter returns the entries of e that the scope considers.
func (s Scope) Filter(e Entries) Entries {
	var out Entries
	for _, n := range e.Neighs {
		if s.seesNeigh(n) {
			out.Neighs = append(out.Neighs, n)
		}
	}
	for _, f := range e.FDB {
		if s.seesFDB(f) {
			out.FDB = append(out.FDB, f)
		}
	}
	for _, r := range e.Routes {
		if s.ownsRoute(r) {
			out.Routes = append(out.Routes, r)
		}
	}
	return out
}

// Kind is the kind of entry an Op changes.
type Kind int

const (
	// KindNeigh is a neighbour entry.
	KindNeigh Kind = iota
	// KindFDB is a forwarding entry.
	KindFDB
	// KindRoute is a route.
	KindRoute
)

// Action is what an Op does.
type Action int

const (
	// Replace installs an entry, overwriting the one with the same identity.
	Replace Action = iota
	// Delete removes an entry.
	Delete
)

// Op is one change to kernel state. Exactly the field that Kind names is set.
type Op struct {
	Action Action
	Kind   Kind
	Neigh  Neigh
	FDB    FDBEntry
	Route  Route
	// Owner is the owner of a replaced entry; empty for deletes.
	Owner string
}

// Command renders o as the iproute2 command that does the same, naming links through
// scope: "ip neigh replace 198.19.2.0 lladdr <mac> dev flannel.1 nud permanent".
func (o Op) Command(scope Scope) string {
	switch o.Kind {
	case KindNeigh:
		dev := scope.LinkName(o.Neigh.LinkIndex)
		if o.Action == Delete {
			return "ip neigh del " + o.Neigh.IP.String() + " dev " + dev
		}
		return "ip neigh replace " + NeighArgs(o.Neigh, dev) + " nud permanent"
	case KindFDB:
		dev := scope.LinkName(o.FDB.LinkIndex)
		if o.Action == Delete {
			return "bridge fdb del " + FDBArgs(o.FDB, dev) + " self"
		}
		return "bridge fdb replace " + FDBArgs(o.FDB, dev) + " self permanent"
	default:
		dev := scope.LinkName(o.Route.LinkIndex)
		if o.Action == Delete {
			return "ip route del " + RouteArgs(o.Route, dev)
		}
		return "ip route replace " + RouteArgs(o.Route, dev)
	}
}

type routeKey struct {
	dst    netip.Prefix
	metric int
}

type neighKey struct {
	link int
	ip   netip.Addr
}

type fdbKey struct {
	link int
	mac  MAC
}

func routeKeyOf(r Route) routeKey { return routeKey{r.Dst, r.Metric} }
func neighKeyOf(n Neigh) neighKey { return neighKey{n.LinkIndex, n.IP} }
func fdbKeyOf(e FDBEntry) fdbKey  { return fdbKey{e.LinkIndex, e.MAC} }

func compareRouteKeys(a, b routeKey) int {
	return cmp.Or(a.dst.Addr().Compare(b.dst.Addr()), cmp.Compare(a.dst.Bits(), b.dst.Bits()),
		cmp.Compare(a.metric, b.metric))
}

func compareNeighKeys(a, b neighKey) int {
	return cmp.Or(cmp.Compare(a.link, b.link), a.ip.Compare(b.ip))
}

func compareFDBKeys(a, b fdbKey) int {
	return cmp.Or(cmp.Compare(a.link, b.link), slices.Compare(a.mac[:], b.mac[:]))
}

// Diff returns the operations that turn the installed entries have into the entries
// that the owners in want ask for, within scope. Entries of have outside the scope are
// left alone. When two owners want different entries with the same identity (a route to
// the same destination, two peers claiming one MAC), the owner that sorts first wins.
//
// The order is: neighbour, FDB and route replacements, then route, FDB and neighbour
// deletions, each sorted. So a route is added only after the entries it relies on, and
// nothing is removed before its replacement is in place. An entry that is installed
// exactly as wanted gives no operation.
func Diff(scope Scope, want map[string]Entries, have Entries) []Op {
	neighs := newTable[neighKey, Neigh]()
	fdb := newTable[fdbKey, FDBEntry]()
	routes := newTable[routeKey, Route]()
	for _, o := range slices.Sorted(maps.Keys(want)) {
		for _, n := range want[o].Neighs {
			neighs.claimSorted(neighKeyOf(n), o)
		}
		for _, e := range want[o].FDB {
			fdb.claimSorted(fdbKeyOf(e), o)
		}
		for _, r := range want[o].Routes {
			routes.claimSorted(routeKeyOf(r), o)
		}
	}
	neighs.load(have.Neighs, neighKeyOf, nil)
	fdb.load(have.FDB, fdbKeyOf, nil)
	routes.load(have.Routes, routeKeyOf, nil)
	neighs.markAll()
	fdb.markAll()
	routes.markAll()

	var d differ
	d.diff(scope, want, &neighs, &fdb, &routes)
	return d.ops()
}

// differ computes the operations for the marked identities of three tables, in the
// order that Diff documents. A differ is used for one pass and not kept: a steady state
// gives no operation and so no garbage, and the thousands of a first programming are
// not worth holding for the next.
type differ struct {
	// adds holds the replacements, which the kinds' loops make in the order of ops.
	adds []Op
	dels [3][]Op
	// stale holds deletions of the extra destinations of wanted FDB entries, which
	// precede those of unwanted entries.
	stale []Op
}

// diff fills d with the operations that make the marked identities of the tables what
// the owners want, within scope. A marked identity is wanted when it has a claim whose
// owner, in owners, has an entry with that identity: the first such owner in claim
// order wins, and its first entry with the identity.
func (d *differ) diff(scope Scope, owners map[string]Entries, neighs *table[neighKey, Neigh],
	fdb *table[fdbKey, FDBEntry], routes *table[routeKey, Route]) {
	// Each kind's identities are visited in map order and its operations sorted after,
	// stably, so that those of one identity keep their order: the same result as a
	// visit in sorted order, without a sorted copy of every identity.
	start := len(d.adds)
	for k := range neighs.marked() {
		hs := neighs.visible(k, scope.seesNeigh)
		if o, w, ok := wanted(neighs.claims[k], owners, k, entriesNeighs, neighKeyOf); ok {
			w.Permanent = true
			if !installedAs(hs, w) {
				d.adds = append(d.adds, Op{Kind: KindNeigh, Neigh: w, Owner: o})
			}
			continue
		}
		for _, h := range hs {
			if scope.ownsNeigh(h) {
				d.dels[KindNeigh] = append(d.dels[KindNeigh],
					Op{Action: Delete, Kind: KindNeigh, Neigh: h})
			}
		}
	}

	sortOps(d.adds[start:], func(o Op) neighKey { return neighKeyOf(o.Neigh) }, compareNeighKeys)
	sortOps(d.dels[KindNeigh], func(o Op) neighKey { return neighKeyOf(o.Neigh) },
		compareNeighKeys)

	start = len(d.adds)
	for k := range fdb.marked() {
		hs := fdb.visible(k, scope.seesFDB)
		if o, w, ok := wanted(fdb.claims[k], owners, k, entriesFDB, fdbKeyOf); ok {
			w.Permanent = true
			if installedAs(hs, w) {
				continue
			}
			d.adds = append(d.adds, Op{Kind: KindFDB, FDB: w, Owner: o})
			// Replace rewrites the entry's first destination, unless w's is among them
			// already. With several destinations, every other one is stale.
			for _, h := range hs {
				if len(hs) > 1 && h.Dst != w.Dst && scope.ownsFDB(h) {
					d.stale = append(d.stale, Op{Action: Delete, Kind: KindFDB, FDB: h})
				}
			}
			continue
		}
		for _, h := range hs {
			if scope.ownsFDB(h) {
				d.dels[KindFDB] = append(d.dels[KindFDB], Op{Action: Delete, Kind: KindFDB, FDB: h})
			}
		}
	}

	sortOps(d.adds[start:], func(o Op) fdbKey { return fdbKeyOf(o.FDB) }, compareFDBKeys)
	sortOps(d.stale, func(o Op) fdbKey { return fdbKeyOf(o.FDB) }, compareFDBKeys)
	sortOps(d.dels[KindFDB], func(o Op) fdbKey { return fdbKeyOf(o.FDB) }, compareFDBKeys)

	start = len(d.adds)
	for k := range routes.marked() {
		hs := routes.visible(k, scope.ownsRoute)
		if o, w, ok := wanted(routes.claims[k], owners, k, entriesRoutes, routeKeyOf); ok {
			if !installedAs(hs, w) {
				d.adds = append(d.adds, Op{Kind: KindRoute, Route: w, Owner: o})
			}
			continue
		}
		for _, h := range hs {
			d.dels[KindRoute] = append(d.dels[KindRoute], Op{Action: Delete, Kind: KindRoute, Route: h})
		}
	}
	sortOps(d.adds[start:], func(o Op) routeKey { return routeKeyOf(o.Route) }, compareRouteKeys)
	sortOps(d.dels[KindRoute], func(o Op) routeKey { return routeKeyOf(o.Route) },
		compareRouteKeys)
}

// sortOps sorts ops by the identity of their entries, keeping the order of the
// operations on one identity.
func sortOps[K any](ops []Op, key func(Op) K, compare func(a, b K) int) {
	slices.SortStableFunc(ops, func(a, b Op) int { return compare(key(a), key(b)) })
}

// ops returns the operations of diff in one slice, nil for none.
func (d *differ) ops() []Op {
	ops := append(d.adds, d.dels[KindRoute]...)
	ops = append(ops, d.stale...)
	ops = append(ops, d.dels[KindFDB]...)
	return append(ops, d.dels[KindNeigh]...)
}

func entriesNeighs(e Entries) []Neigh { return e.Neighs }
func entriesFDB(e Entries) []FDBEntry { return e.FDB }
func entriesRoutes(e Entries) []Route { return e.Routes }

// wanted returns the entry with identity k that the first of claims to want one asks
// for, and that owner.
func wanted[K comparable, E any](claims []string, owners map[string]Entries, k K,
	entries func(Entries) []E, key func(E) K) (string, E, bool) {
	for _, o := range claims {
		for _, e := range entries(owners[o]) {
			if key(e) == k {
				return o, e, true
			}
		}
	}
	var zero E
	return "", zero, false
}

// installedAs reports whether the installed entries with one identity are exactly w.
func installedAs[E comparable](have []E, w E) bool {
	return len(have) == 1 && have[0] == w
}

func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	return slices.SortedFunc(maps.Keys(m), compare)
}
