// Package overlay is the daemon behind weftd: it chooses the external interface, waits
// for the network config in etcd, registers the backend and its lease, writes
// subnet.env, follows peer leases and keeps the own lease alive, and serves health and
// readiness.
package overlay
