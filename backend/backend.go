// Package backend defines how weftd drives a data plane: a Backend prepares the host's
// device and acquires the lease, and the Network it returns follows peer leases until it
// is stopped. The vxlan, udp, host-gw and alloc backends live in packages below this one.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// ExternalInterface is the underlay interface that carries a host's overlay traffic, and
// the addresses the host advertises on it.
type ExternalInterface struct {
	Name  string
	Index int
	MTU   int

	// IfaceAddr is the interface's own IPv4 address; sockets bind to it.
	IfaceAddr netip.Addr
	// ExtAddr is the address advertised as the lease's PublicIP: -public-ip when given,
	// IfaceAddr otherwise. The two differ behind NAT.
	ExtAddr netip.Addr

	// IfaceV6Addr and ExtV6Addr are the IPv6 counterparts; invalid without IPv6.
	IfaceV6Addr netip.Addr
	ExtV6Addr   netip.Addr
}

// LeaseManager is what a backend needs from the lease registry.
type LeaseManager interface {
	// AcquireLease obtains this host's lease carrying attrs: the same subnet as before
	// when the registry or subnet.env still knows it, a free one otherwise.
	AcquireLease(ctx context.Context, attrs subnet.LeaseAttrs) (*subnet.Lease, error)

	// UpdateLeaseAttrs publishes new attributes for the lease already held, for
	// example a new VtepMAC after the VXLAN device had to be created again.
	UpdateLeaseAttrs(ctx context.Context, attrs subnet.LeaseAttrs) error
}

// Backend prepares one host's data plane for a network.
type Backend interface {
	// RegisterNetwork creates or adopts the backend's device, acquires the lease through
	// lm with the attributes peers need to reach this host, and gives the device its
	// address in the leased subnet. It is idempotent: called again after a restart or
	// with a new lease it reconciles what it finds. On error it leaves no device it
	// created behind.
	RegisterNetwork(ctx context.Context, cfg *subnet.Config, lm LeaseManager) (Network, error)
}

// Network is a registered backend bound to one lease.
type Network interface {
	// Lease returns the lease the network was registered with.
	Lease() *subnet.Lease

	// MTU returns the MTU that containers behind this host must use (FLANNEL_MTU).
	MTU() int

	// Run programs the data plane for each batch of peer lease events until ctx is
	// cancelled, and then returns nil. The channel carries every peer lease first as
	// EventAdded, then changes; the host's own lease is never in it. Kernel state
	// (devices, routes, entries) stays in place when Run returns, so that a restarted
	// daemon finds the data plane working; a userspace data plane stops with Run.
	Run(ctx context.Context, events <-chan []subnet.Event) error
}

// Params is what every backend is constructed with.
type Params struct {
	Ext ExternalInterface
	Log *slog.Logger
}

// Factory constructs a backend for one host.
type Factory func(p Params) (Backend, error)

// Registry maps a backend's type name, as the network config spells it in lowercase, to
// its factory.
type Registry map[string]Factory

// Names returns the registered type names in order.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the factory for name. An unknown name is an error that lists the known
// ones.
func (r Registry) Lookup(name string) (Factory, error) {
	f, ok := r[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("unknown backend type %q: weftd knows %s",
			name, strings.Join(r.Names(), ", "))
	}
	return f, nil
}
