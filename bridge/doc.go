// Package bridge prepares the host side that container runtimes attach to: the Linux
// bridge that carries the gateway address of this host's lease, and the files that tell
// hyperd, Docker and the CNI flannel plugin about that bridge and the overlay's MTU.
//
// The file writers are pure Go and run anywhere; [Ensure] and [Keep] program the kernel
// through netlink and exist on Linux only.
package bridge
