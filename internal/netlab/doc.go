// Package netlab builds small networks out of named network namespaces, for the lab, the
// benchmarks and the tests: it creates and removes namespaces under /run/netns without
// changing the caller's own namespace, runs work and starts processes inside them, wires
// bridges and veth pairs, and measures connectivity with ICMP echo and TCP streams
// written in Go.
//
// A socket or a child process belongs to the namespace of the OS thread that created it.
// Every function here that must act inside a namespace does so on a goroutine locked to
// a thread that entered it, and lets that thread exit afterwards instead of returning it
// to the scheduler, so no other goroutine ever runs in the wrong namespace.
package netlab
