// Package hostgw is the backend that routes each peer's subnet via the peer's public IP
// on the external interface, with no encapsulation, as flanneld's host-gw backend does.
// It needs every host on one L2 segment. Routes are reconciled with the kernel: a route
// to a peer's subnet that points elsewhere is replaced, and every resync period a route
// deleted by hand comes back.
package hostgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/subnet"
)

// TypeName is the backend's name in the network config and the BackendType of its
// leases.
const TypeName = "host-gw"

// hostgwBackend is the backend of one host, on any kernel.Ops.
type hostgwBackend struct {
	ext    backend.ExternalInterface
	log    *slog.Logger
	ops    kernel.Ops
	resync time.Duration
}

func newBackend(p backend.Params, ops kernel.Ops) *hostgwBackend {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &hostgwBackend{ext: p.Ext, log: log.With("backend", TypeName), ops: ops}
}

// RegisterNetwork implements backend.Backend. It checks that the host's public address
// is its interface address (routes via a NATed address would lead nowhere) and acquires
// a lease of type host-gw; there is no device to set up.
func (b *hostgwBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	if !cfg.EnableIPv4 && !cfg.EnableIPv6 {
		return nil, errors.New("host-gw backend: the network config enables neither IPv4 nor IPv6")
	}
	attrs := subnet.LeaseAttrs{BackendType: TypeName}
	if cfg.EnableIPv4 {
		if err := checkPublic(b.ext.Name, b.ext.ExtAddr, b.ext.IfaceAddr, false); err != nil {
			return nil, err
		}
		attrs.PublicIP = b.ext.ExtAddr
	}
	if cfg.EnableIPv6 {
		if err := checkPublic(b.ext.Name, b.ext.ExtV6Addr, b.ext.IfaceV6Addr, true); err != nil {
			return nil, err
		}
		attrs.PublicIPv6 = b.ext.ExtV6Addr
	}
	ext, err := b.ops.LinkByIndex(b.ext.Index)
	if err != nil {
		return nil, fmt.Errorf("host-gw backend: external interface: %w", err)
	}

	lease, err := lm.AcquireLease(ctx, attrs)
	if err != nil {
		return nil, fmt.Errorf("acquiring lease: %w", err)
	}

	n := &network{lease: lease, mtu: b.ext.MTU, log: b.log, resync: b.resync}
	if cfg.EnableIPv4 {
		n.sets = append(n.sets, b.newSet(ext, cfg.Network, lease.Subnet, b.ext.ExtAddr, false))
	}
	if cfg.EnableIPv6 {
		n.sets = append(n.sets, b.newSet(ext, cfg.IPv6Network, lease.IPv6Subnet,
			b.ext.ExtV6Addr, true))
	}
	if cfg.EnableIPv4 {
		b.log.Info("registered", "subnet", lease.Subnet, "mtu", n.mtu)
	}
	if cfg.EnableIPv6 {
		b.log.Info("registered", "subnet", lease.IPv6Subnet, "mtu", n.mtu)
	}
	return n, nil
}

// checkPublic returns an error unless the host advertises its interface's own address.
func checkPublic(iface string, public, ifaceAddr netip.Addr, v6 bool) error {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	if !public.IsValid() || !ifaceAddr.IsValid() {
		return fmt.Errorf("host-gw backend: external interface %q has no %s address", iface,
			family)
	}
	if public != ifaceAddr {
		return fmt.Errorf("host-gw backend: public IP %s differs from %s's address %s; "+
			"host-gw routes to peers' interface addresses and cannot work behind NAT",
			public, iface, ifaceAddr)
	}
	return nil
}

func (b *hostgwBackend) newSet(ext kernel.Link, network, own netip.Prefix, self netip.Addr,
	v6 bool) *peers.Set {
	rec := kernel.NewReconciler(b.ops, kernel.Scope{
		Network: network,
		Keep:    []netip.Prefix{own},
		Routes:  []kernel.Link{ext},
	}, b.log)
	return peers.NewSet(peers.Config{
		BackendType: TypeName,
		IPv6:        v6,
		Network:     network,
		Own:         own,
		OwnPublicIP: self,
		Entries: func(_ *subnet.Lease, p peers.Peer) (kernel.Entries, error) {
			return peerEntries(ext.Index, p), nil
		},
		Log: b.log,
	}, rec)
}

// peerEntries returns the route a peer needs: its subnet via its public IP out of the
// external interface.
func peerEntries(ext int, p peers.Peer) kernel.Entries {
	return kernel.Entries{Routes: []kernel.Route{{Dst: p.Subnet, Gw: p.PublicIP, LinkIndex: ext}}}
}

// network is a registered host-gw backend.
type network struct {
	lease  *subnet.Lease
	mtu    int
	log    *slog.Logger
	resync time.Duration
	sets   []*peers.Set
}

// Lease implements backend.Network.
func (n *network) Lease() *subnet.Lease { return n.lease }

// MTU implements backend.Network: the external interface's, as nothing is added.
func (n *network) MTU() int { return n.mtu }

// Run implements backend.Network: it routes peers from events and compares its routes
// with the kernel every resync period.
func (n *network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	for _, s := range n.sets {
		if err := s.Reconciler().Load(); err != nil {
			n.log.Warn("listing routes", "err", err)
		}
	}
	return peers.Run(ctx, events, func() []*peers.Set { return n.sets },
		peers.RunOptions{Resync: n.resync, Log: n.log})
}
