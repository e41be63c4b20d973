// Package e2e is weft's network-namespace lab: a small cluster on one Linux machine, with
// network namespaces for hosts and pods, an underlay bridge, an etcd of its own and one
// overlay daemon per host. Tests, `weftctl lab`, `weftctl demo` and the benchmarks build
// on it.
//
// A lab named L is made of these namespaces:
//
//	L-wan      the underlay: bridge wan0 with 198.18.0.254/24, and etcd listening there
//	L-hI       host I: eth0 with 198.18.0.I/24 into wan0, and that host's daemon
//	L-hI-pJ    pod J of host I: eth0 into the host's bridge cni0, an address from
//	           the host's lease
//	L-out      with Options.Outside only: a machine on the underlay that is no overlay
//	           host, eth0 with 198.18.0.200/24 into wan0 and no route to the overlay
//
// Whatever must outlive the command that built the lab runs in processes of its own: etcd
// (`weftctl lab etcd`) and the daemons. Their PIDs, command lines and logs are kept in
// /run/weft-lab/L, so that a later `weftctl lab status` or `down` finds them again. The lab
// never adds a link, address, route or rule to the namespace it is started from.
package e2e
