// Package subnet holds the overlay's shared state as flanneld stores it: the network
// config, lease keys and values, and subnet.env. The etcd registry that acquires, renews
// and watches leases lives here too. Everything except the registry is pure logic.
//
// The registry speaks flanneld's etcd layout, so that weftd and flanneld can share one
// network: the config at <prefix>/config, one key per host at
// <prefix>/subnets/<subnet key> holding json.Marshal of LeaseAttrs and attached to a
// 24-hour etcd lease (a key without an etcd lease is a reservation). [NewEtcdClient]
// connects as flanneld does; [Registry] reads the config, lists, acquires, reserves and
// watches leases; [Manager] holds one host's lease: it implements the lease manager a
// backend needs, renews the lease before it expires, and acquires it again whenever it
// is lost instead of giving up.
//
// flanneld drops every peer when anything under <prefix>/subnets cannot be read as a
// lease, so the registry writes nothing there but well-formed lease keys with values
// flanneld can decode, and it reads defensively: a key or value it cannot parse is
// logged once and ignored, and never makes it report other leases as removed.
package subnet
