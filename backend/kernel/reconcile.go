package kernel

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
)

// Reconciler keeps the kernel entries of one Scope equal to what a set of owners (the
// peers of a backend) want. Set and Remove change what an owner wants and cost no kernel
// call; Apply then writes only the difference for the identities that changed, so an
// unchanged lease re-announced costs nothing and a new peer costs one write per entry.
// Sync lists the kernel again and repairs any drift; Repair lists it and puts back only
// what is missing. The Reconciler remembers what it believes is installed: the last
// listing, updated by every write that succeeded.
//
// A Reconciler is not safe for concurrent use.
type Reconciler struct {
	ops   Ops
	scope Scope
	log   *slog.Logger

	// owners holds what each owner wants, as last Set.
	owners map[string]Entries

	neighs table[neighKey, Neigh]
	fdb    table[fdbKey, FDBEntry]
	routes table[routeKey, Route]
}

// table tracks one kind of entry by identity: the owners that want an entry with that
// identity, the entries installed with it, and the identities whose state may differ
// from what is wanted (marked).
type table[K comparable, E comparable] struct {
	claims map[K][]string
	have   map[K][]E

	// dirty holds marked identities one by one; all marks every identity claimed or
	// installed, and claimed every one claimed, without a map as large as the table.
	dirty   map[K]bool
	all     bool
	claimed bool

	// seen is scratch space of visible.
	seen []E
}

func newTable[K comparable, E comparable]() table[K, E] {
	return table[K, E]{claims: map[K][]string{}, have: map[K][]E{}, dirty: map[K]bool{}}
}

func (t *table[K, E]) claim(k K, owner string) {
	if !slices.Contains(t.claims[k], owner) {
		t.claims[k] = append(t.claims[k], owner)
		slices.Sort(t.claims[k])
	}
	t.dirty[k] = true
}

func (t *table[K, E]) unclaim(k K, owner string) {
	t.claims[k] = slices.DeleteFunc(t.claims[k], func(o string) bool { return o == owner })
	if len(t.claims[k]) == 0 {
		delete(t.claims, k)
	}
	t.dirty[k] = true
}

// claimSorted adds owner to the claims of k, for owners given in sorted order.
func (t *table[K, E]) claimSorted(k K, owner string) {
	if cl := t.claims[k]; len(cl) == 0 || cl[len(cl)-1] != owner {
		t.claims[k] = append(cl, owner)
	}
}

// load takes the entries of es that sees accepts (all of them when sees is nil) as
// everything installed. The slices of the previous load are reused.
func (t *table[K, E]) load(es []E, key func(E) K, sees func(E) bool) {
	for k, hs := range t.have {
		t.have[k] = hs[:0]
	}
	for _, e := range es {
		if sees == nil || sees(e) {
			k := key(e)
			t.have[k] = append(t.have[k], e)
		}
	}
	maps.DeleteFunc(t.have, func(_ K, hs []E) bool { return len(hs) == 0 })
}

// marked yields every marked identity once, in no particular order.
func (t *table[K, E]) marked() iter.Seq[K] {
	return func(yield func(K) bool) {
		if t.all || t.claimed {
			for k := range t.claims {
				if !yield(k) {
					return
				}
			}
		}
		if t.all {
			for k := range t.have {
				if _, ok := t.claims[k]; !ok && !yield(k) {
					return
				}
			}
		}
		for k := range t.dirty {
			if !t.markedInBulk(k) && !yield(k) {
				return
			}
		}
	}
}

// markedInBulk reports whether all or claimed marks k.
func (t *table[K, E]) markedInBulk(k K) bool {
	if !t.all && !t.claimed {
		return false
	}
	if _, ok := t.claims[k]; ok {
		return true
	}
	_, ok := t.have[k]
	return t.all && ok
}

// pending reports whether some identity is marked.
func (t *table[K, E]) pending() bool {
	return len(t.dirty) > 0 || (t.all || t.claimed) && len(t.claims) > 0 ||
		t.all && len(t.have) > 0
}

// unmark clears every mark.
func (t *table[K, E]) unmark() {
	if len(t.dirty) > 0 {
		// A new map rather than clear, which would keep the size of, say, the first
		// programming's marks for the life of the table.
		t.dirty = map[K]bool{}
	}
	t.all, t.claimed = false, false
}

// visible returns the installed entries with identity k that sees accepts. The slice is
// valid until the next call.
func (t *table[K, E]) visible(k K, sees func(E) bool) []E {
	t.seen = t.seen[:0]
	for _, h := range t.have[k] {
		if sees(h) {
			t.seen = append(t.seen, h)
		}
	}
	return t.seen
}

// markClaimed marks the identities that some owner wants.
func (t *table[K, E]) markClaimed() { t.claimed = true }

// markAll marks the identities that some owner wants or that are installed.
func (t *table[K, E]) markAll() { t.all = true }

// replaced records a successful replace: the kernel now holds w under its identity,
// and, when rest is given, those of the earlier entries that rest keeps.
func (t *table[K, E]) replaced(k K, w E, rest func(E) bool) {
	hs := t.have[k]
	t.have[k] = []E{w}
	if rest != nil && len(hs) > 1 {
		for _, h := range hs[1:] {
			if rest(h) {
				t.have[k] = append(t.have[k], h)
			}
		}
	}
}

func (t *table[K, E]) deleted(k K, e E) {
	t.have[k] = slices.DeleteFunc(t.have[k], func(h E) bool { return h == e })
	if len(t.have[k]) == 0 {
		delete(t.have, k)
	}
}

func (t *table[K, E]) installed(compare func(a, b K) int) []E {
	var out []E
	for _, k := range sortedKeys(t.have, compare) {
		out = append(out, t.have[k]...)
	}
	return out
}

// NewReconciler returns a Reconciler for scope that calls ops. It believes nothing is
// installed until Load or Sync lists the kernel.
func NewReconciler(ops Ops, scope Scope, log *slog.Logger) *Reconciler {
	return &Reconciler{
		ops:    ops,
		scope:  scope,
		log:    log,
		owners: map[string]Entries{},
		neighs: newTable[neighKey, Neigh](),
		fdb:    newTable[fdbKey, FDBEntry](),
		routes: newTable[routeKey, Route](),
	}
}

// Scope returns the scope the Reconciler manages.
func (r *Reconciler) Scope() Scope { return r.scope }

// Set records that owner wants exactly the entries e, replacing what it wanted before.
// Nothing changes in the kernel until Apply. Setting the same entries again is free.
// It reports whether the owner's wanted entries changed.
func (r *Reconciler) Set(owner string, e Entries) bool {
	e = normalize(e)
	old, had := r.owners[owner]
	if had && old.Equal(e) {
		return false
	}
	r.unclaimAll(owner, old)
	r.owners[owner] = e
	for _, n := range e.Neighs {
		r.neighs.claim(neighKeyOf(n), owner)
	}
	for _, f := range e.FDB {
		k := fdbKeyOf(f)
		r.fdb.claim(k, owner)
		if len(r.fdb.claims[k]) > 1 {
			r.log.Warn("two peers claim one VTEP MAC; the first keeps it",
				"mac", f.MAC, "peers", r.fdb.claims[k])
		}
	}
	for _, rt := range e.Routes {
		r.routes.claim(routeKeyOf(rt), owner)
	}
	return true
}

// Remove records that owner wants nothing any more; Apply removes its entries.
func (r *Reconciler) Remove(owner string) {
	old, ok := r.owners[owner]
	if !ok {
		return
	}
	r.unclaimAll(owner, old)
	delete(r.owners, owner)
}

func (r *Reconciler) unclaimAll(owner string, e Entries) {
	for _, n := range e.Neighs {
		r.neighs.unclaim(neighKeyOf(n), owner)
	}
	for _, f := range e.FDB {
		r.fdb.unclaim(fdbKeyOf(f), owner)
	}
	for _, rt := range e.Routes {
		r.routes.unclaim(routeKeyOf(rt), owner)
	}
}

func normalize(e Entries) Entries {
	out := Entries{
		Neighs: slices.Clone(e.Neighs),
		FDB:    slices.Clone(e.FDB),
		Routes: slices.Clone(e.Routes),
	}
	for i := range out.Neighs {
		out.Neighs[i].Permanent = true
	}
	for i := range out.FDB {
		out.FDB[i].Permanent = true
	}
	return out
}

// Owners returns the owners that want entries, sorted.
func (r *Reconciler) Owners() []string {
	out := make([]string, 0, len(r.owners))
	for o := range r.owners {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Pending reports whether some identity may differ from what is wanted: Apply has work
// to do, or failed on it last time.
func (r *Reconciler) Pending() bool {
	return r.neighs.pending() || r.fdb.pending() || r.routes.pending()
}

// Installed returns what the Reconciler believes the kernel holds within its scope: the
// last listing, updated by every write since.
func (r *Reconciler) Installed() Entries {
	return Entries{
		Neighs: r.neighs.installed(compareNeighKeys),
		FDB:    r.fdb.installed(compareFDBKeys),
		Routes: r.routes.installed(compareRouteKeys),
	}
}

// Load lists the scope's entries from the kernel and takes them as installed. It makes
// no change; entries installed but not wanted stay until Sync.
func (r *Reconciler) Load() error {
	var have Entries
	fam := r.scope.Family()
	if r.scope.Neigh.Index != 0 {
		ns, err := r.ops.Neighs(r.scope.Neigh.Index, fam)
		if err != nil {
			return fmt.Errorf("listing neighbours on %s: %w", r.scope.Neigh, err)
		}
		have.Neighs = ns
	}
	if r.scope.FDB.Index != 0 {
		fs, err := r.ops.FDB(r.scope.FDB.Index)
		if err != nil {
			return fmt.Errorf("listing FDB entries on %s: %w", r.scope.FDB, err)
		}
		have.FDB = fs
	}
	for _, l := range r.scope.Routes {
		rs, err := r.ops.Routes(l.Index, fam)
		if err != nil {
			return fmt.Errorf("listing routes on %s: %w", l, err)
		}
		if have.Routes == nil {
			have.Routes = rs
		} else {
			have.Routes = append(have.Routes, rs...)
		}
	}

	r.neighs.load(have.Neighs, neighKeyOf, r.scope.seesNeigh)
	r.fdb.load(have.FDB, fdbKeyOf, r.scope.seesFDB)
	r.routes.load(have.Routes, routeKeyOf, r.scope.ownsRoute)
	return nil
}

// Sync lists the kernel and then applies every difference, as Apply, including entries
// inside the scope that no owner wants, which it removes. Call it only once the owners
// are complete, or it removes the entries of owners not yet Set.
func (r *Reconciler) Sync() (int, error) {
	if err := r.Load(); err != nil {
		return 0, err
	}
	r.neighs.markAll()
	r.fdb.markAll()
	r.routes.markAll()
	return r.Apply()
}

// Repair lists the kernel and then writes every wanted entry that is missing or differs,
// as Sync does, but removes no entry that no owner wants. It is what an entry deleted
// from outside calls for (a deletion can only take wanted entries away), and it is safe
// before the owners are complete. It returns the number of writes, as Apply.
//
// Equivalent to: ip neigh show dev flannel.1; bridge fdb show dev flannel.1; ip route
// show dev flannel.1; then ip neigh replace, bridge fdb replace and ip route replace of
// each wanted entry missing from those listings.
func (r *Reconciler) Repair() (int, error) {
	if err := r.Load(); err != nil {
		return 0, err
	}
	r.neighs.markClaimed()
	r.fdb.markClaimed()
	r.routes.markClaimed()
	return r.Apply()
}

// Apply writes the difference between wanted and installed entries for every identity
// that Set, Remove or Sync marked, and returns the number of writes. On failure it
// returns every error joined; the identities that failed stay marked for the next Apply,
// a route is not added while an entry of the same owner it relies on failed, and
// Installed reports the state actually reached.
func (r *Reconciler) Apply() (int, error) {
	var d differ
	d.diff(r.scope, r.owners, &r.neighs, &r.fdb, &r.routes)
	ops := d.ops()

	// From here on the marks are those of the identities that failed.
	r.neighs.unmark()
	r.fdb.unmark()
	r.routes.unmark()
	var failedOwners map[string]bool
	var errs []error
	writes := 0

	for _, op := range ops {
		if op.Kind == KindRoute && op.Action == Replace && failedOwners[op.Owner] {
			r.routes.dirty[routeKeyOf(op.Route)] = true
			continue
		}

		writes++
		err := r.do(op)
		if err != nil {
			errs = append(errs, err)
			if op.Action == Replace {
				if failedOwners == nil {
					failedOwners = map[string]bool{}
				}
				failedOwners[op.Owner] = true
			}
		}
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("kernel change", "cmd", op.Command(r.scope), "err", err)
		}

		switch op.Kind {
		case KindNeigh:
			k := neighKeyOf(op.Neigh)
			switch {
			case err != nil:
				r.neighs.dirty[k] = true
			case op.Action == Replace:
				r.neighs.replaced(k, op.Neigh, nil)
			default:
				r.neighs.deleted(k, op.Neigh)
			}
		case KindFDB:
			k := fdbKeyOf(op.FDB)
			switch {
			case err != nil:
				r.fdb.dirty[k] = true
			case op.Action == Replace:
				// The first destination was rewritten, or w's was there already;
				// further ones stay until their deletes below.
				r.fdb.replaced(k, op.FDB, func(h FDBEntry) bool { return h.Dst != op.FDB.Dst })
			default:
				r.fdb.deleted(k, op.FDB)
			}
		case KindRoute:
			k := routeKeyOf(op.Route)
			switch {
			case err != nil:
				r.routes.dirty[k] = true
			case op.Action == Replace:
				r.routes.replaced(k, op.Route, nil)
			default:
				r.routes.deleted(k, op.Route)
			}
		}
	}

	return writes, errors.Join(errs...)
}

func (r *Reconciler) do(op Op) error {
	switch {
	case op.Kind == KindNeigh && op.Action == Replace:
		if err := r.ops.ReplaceNeigh(op.Neigh); err != nil {
			return fmt.Errorf("replacing neighbour %s lladdr %s on %s: %w",
				op.Neigh.IP, op.Neigh.MAC, r.scope.LinkName(op.Neigh.LinkIndex), err)
		}
	case op.Kind == KindNeigh:
		if err := r.ops.DeleteNeigh(op.Neigh); err != nil {
			return fmt.Errorf("deleting neighbour %s on %s: %w",
				op.Neigh.IP, r.scope.LinkName(op.Neigh.LinkIndex), err)
		}
	case op.Kind == KindFDB && op.Action == Replace:
		if err := r.ops.ReplaceFDB(op.FDB); err != nil {
			return fmt.Errorf("replacing FDB entry %s dst %s on %s: %w",
				op.FDB.MAC, op.FDB.Dst, r.scope.LinkName(op.FDB.LinkIndex), err)
		}
	case op.Kind == KindFDB:
		if err := r.ops.DeleteFDB(op.FDB); err != nil {
			return fmt.Errorf("deleting FDB entry %s dst %s on %s: %w",
				op.FDB.MAC, op.FDB.Dst, r.scope.LinkName(op.FDB.LinkIndex), err)
		}
	case op.Action == Replace:
		if err := r.ops.ReplaceRoute(op.Route); err != nil {
			return fmt.Errorf("replacing route %s: %w",
				RouteArgs(op.Route, r.scope.LinkName(op.Route.LinkIndex)), err)
		}
	default:
		if err := r.ops.DeleteRoute(op.Route); err != nil {
			return fmt.Errorf("deleting route %s: %w",
				RouteArgs(op.Route, r.scope.LinkName(op.Route.LinkIndex)), err)
		}
	}
	return nil
}
