package kerneltest

import (
	"net/netip"
	"sync/atomic"

	"github.com/weftnet/weft/backend/kernel"
)

// Counter passes every call through to real Ops and counts lookups and listings
// (reads) apart from changes (writes), so that a test or benchmark can state how many
// netlink writes something cost.
type Counter struct {
	ops    kernel.Ops
	reads  atomic.Int64
	writes atomic.Int64
}

// Count returns a Counter around ops.
func Count(ops kernel.Ops) *Counter { return &Counter{ops: ops} }

var _ kernel.Ops = (*Counter)(nil)

// Reads returns the number of lookups and listings since the last Reset.
func (c *Counter) Reads() int64 { return c.reads.Load() }

// Writes returns the number of changes since the last Reset.
func (c *Counter) Writes() int64 { return c.writes.Load() }

// Reset sets both counts to zero.
func (c *Counter) Reset() {
	c.reads.Store(0)
	c.writes.Store(0)
}

// LinkByName implements kernel.Ops.
func (c *Counter) LinkByName(name string) (kernel.Link, error) {
	c.reads.Add(1)
	return c.ops.LinkByName(name)
}

// LinkByIndex implements kernel.Ops.
func (c *Counter) LinkByIndex(index int) (kernel.Link, error) {
	c.reads.Add(1)
	return c.ops.LinkByIndex(index)
}

// Routes implements kernel.Ops.
func (c *Counter) Routes(linkIndex int, family kernel.Family) ([]kernel.Route, error) {
	c.reads.Add(1)
	return c.ops.Routes(linkIndex, family)
}

// ReplaceRoute implements kernel.Ops.
func (c *Counter) ReplaceRoute(r kernel.Route) error {
	c.writes.Add(1)
	return c.ops.ReplaceRoute(r)
}

// DeleteRoute implements kernel.Ops.
func (c *Counter) DeleteRoute(r kernel.Route) error {
	c.writes.Add(1)
	return c.ops.DeleteRoute(r)
}

// LookupRoute implements kernel.Ops.
func (c *Counter) LookupRoute(dst netip.Addr) ([]kernel.Route, error) {
	c.reads.Add(1)
	return c.ops.LookupRoute(dst)
}

// Neighs implements kernel.Ops.
func (c *Counter) Neighs(linkIndex int, family kernel.Family) ([]kernel.Neigh, error) {
	c.reads.Add(1)
	return c.ops.Neighs(linkIndex, family)
}

// ReplaceNeigh implements kernel.Ops.
func (c *Counter) ReplaceNeigh(n kernel.Neigh) error {
	c.writes.Add(1)
	return c.ops.ReplaceNeigh(n)
}

// DeleteNeigh implements kernel.Ops.
func (c *Counter) DeleteNeigh(n kernel.Neigh) error {
	c.writes.Add(1)
	return c.ops.DeleteNeigh(n)
}

// FDB implements kernel.Ops.
func (c *Counter) FDB(linkIndex int) ([]kernel.FDBEntry, error) {
	c.reads.Add(1)
	return c.ops.FDB(linkIndex)
}

// ReplaceFDB implements kernel.Ops.
func (c *Counter) ReplaceFDB(e kernel.FDBEntry) error {
	c.writes.Add(1)
	return c.ops.ReplaceFDB(e)
}

// DeleteFDB implements kernel.Ops.
func (c *Counter) DeleteFDB(e kernel.FDBEntry) error {
	c.writes.Add(1)
	return c.ops.DeleteFDB(e)
}
