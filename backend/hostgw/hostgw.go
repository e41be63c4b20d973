// Package hostgw is the backend that routes each peer's subnet via the peer's public IP
// on the external interface, with no encapsulation, as flanneld's host-gw backend does.
// It needs every host on one L2 segment. Routes are reconciled with the kernel: a route
// to a peer's subnet that points elsewhere is replaced, a route deleted from outside
// comes back within a moment, and every resync period all routes are compared with the
// kernel.
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

// driftFunc starts watching the kernel for deletions that filter matches, signalling
// them on out, a channel with a buffer of one, until ctx is done; it returns once
// deletions are seen, with a channel that is closed when the watch has stopped.
// kernel.DriftWatch.Start on the real kernel.
type driftFunc func(ctx context.Context, filter *kernel.DriftFilter,
	out chan<- struct{}) (stopped <-chan struct{})

// hostgwBackend is the backend of one host, on any kernel.Ops.
type hostgwBackend struct {
	ext    backend.ExternalInterface
	log    *slog.Logger
	ops    kernel.Ops
	resync time.Duration
	// drift, when not nil, watches for routes deleted from outside.
	drift driftFunc
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

	n := &network{lease: lease, mtu: b.ext.MTU, log: b.log, resync: b.resync, drift: b.drift}
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
	drift  driftFunc
	sets   []*peers.Set
}

// Lease implements backend.Network.
func (n *network) Lease() *subnet.Lease { return n.lease }

// MTU implements backend.Network: the external interface's, as nothing is added.
func (n *network) MTU() int { return n.mtu }

// Run implements backend.Network: it routes peers from events, puts back a route that
// is deleted from outside shortly after the deletion, and compares its routes with the
// kernel every resync period.
func (n *network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	scopes := make([]kernel.Scope, 0, len(n.sets))
	for _, s := range n.sets {
		if err := s.Reconciler().Load(); err != nil {
			n.log.Warn("listing routes", "err", err)
		}
		scopes = append(scopes, s.Reconciler().Scope())
	}

	opts := peers.RunOptions{Resync: n.resync, Log: n.log}
	if n.drift != nil {
		wctx, cancel := context.WithCancel(ctx)
		signals := make(chan struct{}, 1)
		stopped := n.drift(wctx, kernel.NewDriftFilter(scopes...), signals)
		defer func() {
			cancel()
			<-stopped
		}()
		opts.Drift = signals
	}
	return peers.Run(ctx, events, func() []*peers.Set { return n.sets }, opts)
}
