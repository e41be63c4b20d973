package kernel

import "sync/atomic"

// writes counts the kernel changes of the process; see Writes.
var writes atomic.Uint64

// Writes returns the number of kernel changes this process has made so far that the
// kernel accepted: every route, neighbour and FDB replace or delete of a Netlink (a
// delete of an entry already gone included, as it costs a request all the same), and
// every device change reported with CountWrite. A failed request is not counted. weftd
// serves it as weft_netlink_writes_total; a steady state with no lease changes leaves it
// unchanged.
//
// The count is process-wide, like the kernel it counts: several Netlink Ops, or several
// tests, add to the same number.
func Writes() uint64 { return writes.Load() }

// CountWrite records one kernel change made outside Netlink that the kernel accepted,
// such as a backend creating, configuring or deleting its device.
func CountWrite() { writes.Add(1) }
