// Package subnet holds the overlay's shared state as flanneld stores it: the network
// config, lease keys and values, and subnet.env. The etcd registry that acquires, renews
// and watches leases lives here too. Everything except the registry is pure logic.
package subnet
