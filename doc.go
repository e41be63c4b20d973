// Package weft is the root of weft, a native Go replacement for flannel's flanneld: a
// daemon that leases each host a subnet from etcd and makes every other host's subnet
// reachable over VXLAN, a UDP tunnel or plain routes. The daemon is cmd/weftd, the
// operator's tool cmd/weftctl.
package weft
