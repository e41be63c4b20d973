package main

import (
	"runtime"
	"runtime/debug"
)

// oneProc decides how many threads run weftd's Go code at once: one, unless the
// environment sets GOMAXPROCS. weftd's work is system calls: netlink, etcd, and for the
// udp backend moving packets between flannel0 and the socket. With a second processor
// the runtime keeps waking idle threads to look for work each time a packet arrives,
// which on a busy host costs the pods more than the parallelism gains: in a two-host
// udp lab on two cores, one processor moved 25-40 % more TCP throughput pod to pod at a
// lower round-trip time. It also keeps a host agent from taking more than a core.
func oneProc(lookup func(string) (string, bool)) {
	if _, set := lookup("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(1)
	}
}

// syncedGCPercent is the garbage collector's target once the daemon has started: the
// heap may grow by a quarter of what is live before a collection, instead of doubling.
const syncedGCPercent = 25

// settleMemory returns what weftd does once the peers are programmed, unless the
// environment sets GOGC: it returns the start's garbage to the kernel (decoding the
// etcd listing and programming the peers allocates several times what stays live), and
// keeps the heap close to what is live from then on. Without it a daemon at 1,000 peers
// held twice its live heap, and grew further with the garbage of the periodic comparison
// with the kernel. A collection of a few MiB takes about a millisecond, and the
// comparison of 1,000 peers every 10 s makes about ten: well under 1 % of a core.
func settleMemory(lookup func(string) (string, bool)) func() {
	return func() {
		if _, set := lookup("GOGC"); !set {
			debug.SetGCPercent(syncedGCPercent)
		}
		debug.FreeOSMemory()
	}
}
