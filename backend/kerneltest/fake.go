// Package kerneltest holds test support for code that programs the kernel through
// kernel.Ops: Fake, an in-memory kernel that records every call as its iproute2 command
// line; Counter, which counts the calls made through real Ops; and, on Linux, a lab of
// two hosts in network namespaces joined by a veth.
package kerneltest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/kernel"
)

// Fake is an in-memory kernel.Ops. It keeps links, routes, neighbour and FDB entries
// with the kernel's identities (a route by destination and metric, a neighbour by link
// and address, an FDB entry by link and MAC with a list of destinations) and records
// each call as the iproute2 command that does the same. It is safe for concurrent use,
// so a test can inspect it while a backend runs.
type Fake struct {
	mu        sync.Mutex
	nextIndex int
	links     map[int]fakeLink
	routes    map[routeKey]kernel.Route
	neighs    map[neighKey]kernel.Neigh
	fdb       map[fdbKey][]kernel.FDBEntry
	calls     []Call
	fails     []failRule
}

// Call is one recorded call.
type Call struct {
	// Cmd is the iproute2 command line: "ip route replace 198.19.2.0/24 via ...".
	Cmd string
	// Write reports whether the call changes kernel state.
	Write bool
	// Err is what the call returned.
	Err error
}

type fakeLink struct {
	kernel.Link
	connected []netip.Prefix
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
	mac  kernel.MAC
}

type failRule struct {
	prefix string
	err    error
	times  int // remaining failures; negative for always
}

// NewFake returns an empty fake kernel; link indexes start at 2, after lo.
func NewFake() *Fake {
	return &Fake{
		nextIndex: 2,
		links:     map[int]fakeLink{},
		routes:    map[routeKey]kernel.Route{},
		neighs:    map[neighKey]kernel.Neigh{},
		fdb:       map[fdbKey][]kernel.FDBEntry{},
	}
}

var _ kernel.Ops = (*Fake)(nil)

// AddLink adds a link named name whose connected networks are connected: LookupRoute
// finds an address inside one of them directly on the link.
func (f *Fake) AddLink(name string, connected ...netip.Prefix) kernel.Link {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := kernel.Link{Index: f.nextIndex, Name: name}
	f.nextIndex++
	f.links[l.Index] = fakeLink{Link: l, connected: connected}
	return l
}

// DeleteLink removes the link and, as the kernel does, every entry on it.
func (f *Fake) DeleteLink(index int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.links, index)
	deleteWhere(f.routes, func(r kernel.Route) bool { return r.LinkIndex == index })
	deleteWhere(f.neighs, func(n kernel.Neigh) bool { return n.LinkIndex == index })
	for k := range f.fdb {
		if k.link == index {
			delete(f.fdb, k)
		}
	}
}

func deleteWhere[K comparable, V any](m map[K]V, del func(V) bool) {
	for k, v := range m {
		if del(v) {
			delete(m, k)
		}
	}
}

// FailWith makes the next times calls whose command line starts with prefix fail with
// err; times < 0 means every such call until ClearFailures.
func (f *Fake) FailWith(prefix string, err error, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = append(f.fails, failRule{prefix: prefix, err: err, times: times})
}

// ClearFailures removes every rule set by FailWith.
func (f *Fake) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = nil
}

// Calls returns every recorded call in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Writes returns the command lines of the calls that change kernel state, in order.
func (f *Fake) Writes() []string { return f.commands(true) }

// Reads returns the command lines of lookups and listings, in order.
func (f *Fake) Reads() []string { return f.commands(false) }

func (f *Fake) commands(write bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if c.Write == write {
			out = append(out, c.Cmd)
		}
	}
	return out
}

// ResetCalls forgets the recorded calls; the state stays.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// record logs a call and returns the error a failure rule assigns to it, if any.
// f.mu is held.
func (f *Fake) recordLocked(cmd string, write bool) error {
	var err error
	for i := range f.fails {
		r := &f.fails[i]
		if r.times != 0 && strings.HasPrefix(cmd, r.prefix) {
			err = r.err
			if r.times > 0 {
				r.times--
			}
			break
		}
	}
	f.calls = append(f.calls, Call{Cmd: cmd, Write: write, Err: err})
	return err
}

func (f *Fake) nameLocked(index int) string {
	if l, ok := f.links[index]; ok {
		return l.Name
	}
	return kernel.Link{Index: index}.String()
}

// State returns the entries the fake kernel holds, sorted as kernel.Reconciler's
// Installed sorts them.
func (f *Fake) State() kernel.Entries {
	f.mu.Lock()
	defer f.mu.Unlock()
	var e kernel.Entries
	for _, n := range f.neighs {
		e.Neighs = append(e.Neighs, n)
	}
	for _, list := range f.fdb {
		e.FDB = append(e.FDB, list...)
	}
	for _, r := range f.routes {
		e.Routes = append(e.Routes, r)
	}
	sortEntries(&e)
	return e
}

func sortEntries(e *kernel.Entries) {
	slices.SortStableFunc(e.Neighs, func(a, b kernel.Neigh) int {
		return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), a.IP.Compare(b.IP))
	})
	slices.SortStableFunc(e.FDB, func(a, b kernel.FDBEntry) int {
		return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), slices.Compare(a.MAC[:], b.MAC[:]))
	})
	slices.SortStableFunc(e.Routes, func(a, b kernel.Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()),
			cmp.Compare(a.Metric, b.Metric))
	})
}

// Put installs entries directly, without recording a call: state that was there before
// the code under test started, or that someone else added. Entries are installed as
// given, permanent or not.
func (f *Fake) Put(e kernel.Entries) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range e.Neighs {
		f.neighs[neighKey{n.LinkIndex, n.IP}] = n
	}
	for _, x := range e.FDB {
		k := fdbKey{x.LinkIndex, x.MAC}
		f.fdb[k] = append(f.fdb[k], x)
	}
	for _, r := range e.Routes {
		f.routes[routeKey{r.Dst, r.Metric}] = r
	}
}

// Drop removes entries directly, without recording a call, as someone deleting them by
// hand would.
func (f *Fake) Drop(e kernel.Entries) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range e.Neighs {
		delete(f.neighs, neighKey{n.LinkIndex, n.IP})
	}
	for _, x := range e.FDB {
		f.deleteFDBLocked(x)
	}
	for _, r := range e.Routes {
		delete(f.routes, routeKey{r.Dst, r.Metric})
	}
}

// LinkByName implements kernel.Ops; recorded as "ip link show dev <name>".
func (f *Fake) LinkByName(name string) (kernel.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("ip link show dev "+name, false); err != nil {
		return kernel.Link{}, err
	}
	for _, l := range f.links {
		if l.Name == name {
			return l.Link, nil
		}
	}
	return kernel.Link{}, fmt.Errorf("looking up link %s: %w", name, kernel.ErrLinkNotFound)
}

// LinkByIndex implements kernel.Ops; recorded as "ip link show index <n>".
func (f *Fake) LinkByIndex(index int) (kernel.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked(fmt.Sprintf("ip link show index %d", index), false); err != nil {
		return kernel.Link{}, err
	}
	l, ok := f.links[index]
	if !ok {
		return kernel.Link{}, fmt.Errorf("looking up link %d: %w", index, kernel.ErrLinkNotFound)
	}
	return l.Link, nil
}

// Routes implements kernel.Ops; recorded as "ip route show dev <link>".
func (f *Fake) Routes(linkIndex int, family kernel.Family) ([]kernel.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := "ip route show dev " + f.nameLocked(linkIndex)
	if family == kernel.IPv6 {
		cmd = "ip -6 route show dev " + f.nameLocked(linkIndex)
	}
	if err := f.recordLocked(cmd, false); err != nil {
		return nil, err
	}
	if _, ok := f.links[linkIndex]; !ok {
		return nil, unix.ENODEV
	}
	var out []kernel.Route
	for _, r := range f.routes {
		if r.LinkIndex == linkIndex && kernel.FamilyOf(r.Dst.Addr()) == family {
			out = append(out, r)
		}
	}
	e := kernel.Entries{Routes: out}
	sortEntries(&e)
	return e.Routes, nil
}

// ReplaceRoute implements kernel.Ops.
func (f *Fake) ReplaceRoute(r kernel.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("ip route replace "+kernel.RouteArgs(r, f.nameLocked(r.LinkIndex)),
		true); err != nil {
		return err
	}
	if _, ok := f.links[r.LinkIndex]; !ok {
		return unix.ENODEV
	}
	f.routes[routeKey{r.Dst, r.Metric}] = r
	return nil
}

// DeleteRoute implements kernel.Ops. Like the kernel, it deletes the route to the
// destination with the metric only when the next hop and link given match it.
func (f *Fake) DeleteRoute(r kernel.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("ip route del "+kernel.RouteArgs(r, f.nameLocked(r.LinkIndex)),
		true); err != nil {
		return err
	}
	k := routeKey{r.Dst, r.Metric}
	if have, ok := f.routes[k]; ok && have.Gw == r.Gw && have.LinkIndex == r.LinkIndex {
		delete(f.routes, k)
	}
	return nil
}

// LookupRoute implements kernel.Ops: an address inside a link's connected network is
// reached directly on that link, one inside an installed route through it; anything
// else is unreachable. Recorded as "ip route get <dst>".
func (f *Fake) LookupRoute(dst netip.Addr) ([]kernel.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("ip route get "+dst.String(), false); err != nil {
		return nil, err
	}
	host := netip.PrefixFrom(dst, dst.BitLen())
	var best *kernel.Route
	for _, r := range f.routes {
		if r.Dst.Contains(dst) && (best == nil || r.Dst.Bits() > best.Dst.Bits()) {
			r := r
			best = &r
		}
	}
	for _, l := range f.links {
		for _, p := range l.connected {
			if p.Contains(dst) && (best == nil || p.Bits() > best.Dst.Bits()) {
				best = &kernel.Route{Dst: p, LinkIndex: l.Index}
			}
		}
	}
	if best == nil {
		return nil, unix.ENETUNREACH
	}
	r := *best
	r.Dst = host
	return []kernel.Route{r}, nil
}

// Neighs implements kernel.Ops; recorded as "ip neigh show dev <link>".
func (f *Fake) Neighs(linkIndex int, family kernel.Family) ([]kernel.Neigh, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("ip neigh show dev "+f.nameLocked(linkIndex), false); err != nil {
		return nil, err
	}
	if _, ok := f.links[linkIndex]; !ok {
		return nil, unix.ENODEV
	}
	var e kernel.Entries
	for _, n := range f.neighs {
		if n.LinkIndex == linkIndex && kernel.FamilyOf(n.IP) == family {
			e.Neighs = append(e.Neighs, n)
		}
	}
	sortEntries(&e)
	return e.Neighs, nil
}

// ReplaceNeigh implements kernel.Ops.
func (f *Fake) ReplaceNeigh(n kernel.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := "ip neigh replace " + kernel.NeighArgs(n, f.nameLocked(n.LinkIndex)) + " nud permanent"
	if err := f.recordLocked(cmd, true); err != nil {
		return err
	}
	if _, ok := f.links[n.LinkIndex]; !ok {
		return unix.ENODEV
	}
	n.Permanent = true
	f.neighs[neighKey{n.LinkIndex, n.IP}] = n
	return nil
}

// DeleteNeigh implements kernel.Ops.
func (f *Fake) DeleteNeigh(n kernel.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := "ip neigh del " + n.IP.String() + " dev " + f.nameLocked(n.LinkIndex)
	if err := f.recordLocked(cmd, true); err != nil {
		return err
	}
	delete(f.neighs, neighKey{n.LinkIndex, n.IP})
	return nil
}

// FDB implements kernel.Ops; recorded as "bridge fdb show dev <link>".
func (f *Fake) FDB(linkIndex int) ([]kernel.FDBEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.recordLocked("bridge fdb show dev "+f.nameLocked(linkIndex), false); err != nil {
		return nil, err
	}
	if _, ok := f.links[linkIndex]; !ok {
		return nil, unix.ENODEV
	}
	var e kernel.Entries
	for k, list := range f.fdb {
		if k.link == linkIndex {
			e.FDB = append(e.FDB, list...)
		}
	}
	sortEntries(&e)
	return e.FDB, nil
}

// ReplaceFDB implements kernel.Ops. As the kernel's VXLAN driver does, it rewrites the
// first destination of the MAC's entry unless e.Dst is among them already.
func (f *Fake) ReplaceFDB(e kernel.FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := "bridge fdb replace " + kernel.FDBArgs(e, f.nameLocked(e.LinkIndex)) + " self permanent"
	if err := f.recordLocked(cmd, true); err != nil {
		return err
	}
	if _, ok := f.links[e.LinkIndex]; !ok {
		return unix.ENODEV
	}
	e.Permanent = true
	k := fdbKey{e.LinkIndex, e.MAC}
	list := f.fdb[k]
	for i := range list {
		list[i].Permanent = true
	}
	switch {
	case len(list) == 0:
		f.fdb[k] = []kernel.FDBEntry{e}
	case !slices.ContainsFunc(list, func(x kernel.FDBEntry) bool { return x.Dst == e.Dst }):
		list[0] = e
	}
	return nil
}

// DeleteFDB implements kernel.Ops.
func (f *Fake) DeleteFDB(e kernel.FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := "bridge fdb del " + kernel.FDBArgs(e, f.nameLocked(e.LinkIndex)) + " self"
	if err := f.recordLocked(cmd, true); err != nil {
		return err
	}
	f.deleteFDBLocked(e)
	return nil
}

func (f *Fake) deleteFDBLocked(e kernel.FDBEntry) {
	k := fdbKey{e.LinkIndex, e.MAC}
	f.fdb[k] = slices.DeleteFunc(f.fdb[k], func(x kernel.FDBEntry) bool { return x.Dst == e.Dst })
	if len(f.fdb[k]) == 0 {
		delete(f.fdb, k)
	}
}
