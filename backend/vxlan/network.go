package vxlan

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/subnet"
)

// maxDeviceBackoff bounds the delay between attempts to restore the device.
const maxDeviceBackoff = 30 * time.Second

// device is the VXLAN device as a running network needs it.
type device interface {
	// ensure makes the device exist as configured, with its address and up, creating it
	// with mac if it must, and returns it as read back. When all is in order it only
	// reads.
	ensure(mac kernel.MAC) (deviceInfo, error)

	// subscribe signals on the returned channel each link change that may concern the
	// device, until done is closed or the subscription fails; then the channel is
	// closed.
	subscribe(done <-chan struct{}) (<-chan struct{}, error)
}

// deviceInfo is the device as ensure left it.
type deviceInfo struct {
	Link kernel.Link
	MAC  kernel.MAC
	// Changed reports whether ensure had to change anything, such as setting the device
	// up again, which flushes its routes and neighbours.
	Changed bool
}

// network is a registered vxlan backend: it programs peers through a peers.Set and keeps
// its device in place.
type network struct {
	cfg   *subnet.Config
	lease *subnet.Lease
	mtu   int
	opts  Options
	ext   backend.ExternalInterface
	lm    backend.LeaseManager
	ops   kernel.Ops
	dev   device
	log   *slog.Logger

	// resync is the period of the full comparison with the kernel; maxBackoff bounds the
	// retries of restoring the device. Tests shorten both.
	resync     time.Duration
	maxBackoff time.Duration

	// The fields below belong to Run's goroutine once Run has started.

	// link and mac are the device as last seen; published is the MAC in etcd.
	link      kernel.Link
	mac       kernel.MAC
	published kernel.MAC
	set       *peers.Set
	failures  int
}

// networkConfig is what newNetwork needs.
type networkConfig struct {
	cfg       *subnet.Config
	lease     *subnet.Lease
	mtu       int
	opts      Options
	ext       backend.ExternalInterface
	lm        backend.LeaseManager
	ops       kernel.Ops
	dev       device
	log       *slog.Logger
	link      kernel.Link
	mac       kernel.MAC
	published kernel.MAC
	resync    time.Duration
}

func newNetwork(c networkConfig) *network {
	n := &network{
		cfg:        c.cfg,
		lease:      c.lease,
		mtu:        c.mtu,
		opts:       c.opts,
		ext:        c.ext,
		lm:         c.lm,
		ops:        c.ops,
		dev:        c.dev,
		log:        c.log,
		resync:     c.resync,
		maxBackoff: maxDeviceBackoff,
		link:       c.link,
		mac:        c.mac,
		published:  c.published,
	}
	if n.resync <= 0 {
		n.resync = peers.DefaultResync
	}
	n.set = peers.NewSet(peers.Config{
		BackendType: TypeName,
		Network:     c.cfg.Network,
		Own:         c.lease.Subnet,
		OwnPublicIP: c.ext.ExtAddr,
		Entries:     n.entries,
		Log:         c.log,
	}, kernel.NewReconciler(c.ops, n.scope(), c.log))
	return n
}

// Lease implements backend.Network.
func (n *network) Lease() *subnet.Lease { return n.lease }

// MTU implements backend.Network.
func (n *network) MTU() int { return n.mtu }

// scope is everything the network may program: entries on its device, and with
// DirectRouting routes on the external interface, inside the overlay network but never
// for the host's own subnet.
func (n *network) scope() kernel.Scope {
	s := kernel.Scope{
		Network: n.cfg.Network,
		Keep:    []netip.Prefix{n.lease.Subnet},
		Neigh:   n.link,
		FDB:     n.link,
		Routes:  []kernel.Link{n.link},
	}
	if n.opts.DirectRouting {
		s.Routes = append(s.Routes, kernel.Link{Index: n.ext.Index, Name: n.ext.Name})
	}
	return s
}

// entries is the peers.Config.Entries of the network: the ARP, FDB and route entries of
// a peer, or with DirectRouting and a peer on a directly connected subnet of the
// external interface, a plain route via its public IP.
func (n *network) entries(l *subnet.Lease, p peers.Peer) (kernel.Entries, error) {
	data, err := ParseBackendData(l.Attrs.BackendData)
	if err != nil {
		return kernel.Entries{}, err
	}
	if n.opts.DirectRouting {
		routes, err := n.ops.LookupRoute(p.PublicIP)
		if err == nil && isDirect(routes, n.ext.Index) {
			return directEntries(n.ext.Index, p), nil
		}
	}
	return peerEntries(n.link.Index, p, data.VtepMAC), nil
}

// leaseAttrs returns the lease value that advertises a device with mac.
func leaseAttrs(ext backend.ExternalInterface, vni int, mac kernel.MAC) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{
		PublicIP:    ext.ExtAddr,
		BackendType: TypeName,
		BackendData: BackendData{VNI: vni, VtepMAC: mac}.Marshal(),
	}
}

// Run implements backend.Network: it programs peers from events, repairs drift every
// resync period, and restores the device when it is deleted or changed from outside.
func (n *network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	if err := n.set.Reconciler().Load(); err != nil {
		// The device may have gone since registration; the first device check restores
		// it and loads again.
		n.log.Warn("listing the device's entries", "err", err)
	}

	do := make(chan func())
	retry := make(chan time.Duration, 1)
	check := func() { n.checkDevice(ctx, retry) }

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.watch(ctx, do, retry, check)
	}()
	defer wg.Wait()

	return peers.Run(ctx, events, func() []*peers.Set { return []*peers.Set{n.set} },
		peers.RunOptions{Resync: n.resync, Do: do, OnResync: check, Log: n.log})
}

// checkDevice restores the device if it is missing or broken, programs every peer again
// on a device that had to be created, and publishes a MAC that differs from the one in
// etcd. A failure is retried after a growing delay. It runs on Run's goroutine.
func (n *network) checkDevice(ctx context.Context, retry chan<- time.Duration) {
	info, err := n.dev.ensure(n.mac)
	if err != nil {
		n.retryLater(retry, "restoring the VXLAN device", err)
		return
	}
	link, mac := info.Link, info.MAC

	switch {
	case link.Index != n.link.Index:
		n.log.Info("VXLAN device recreated; programming every peer again",
			"index", link.Index, "mac", mac)
		n.link = link
		rec := kernel.NewReconciler(n.ops, n.scope(), n.log)
		if err := rec.Load(); err != nil {
			n.log.Warn("listing the device's entries", "err", err)
		}
		n.set.Rebind(rec)
	case info.Changed || mac != n.mac:
		// The device was repaired in place, or its MAC changed, which makes the kernel
		// flush its neighbours; what it lost is found by listing it again.
		if mac != n.mac {
			n.log.Info("VXLAN device MAC changed", "old", n.mac, "new", mac)
		} else {
			n.log.Info("VXLAN device repaired; comparing its entries with the kernel")
		}
		if _, err := n.set.Sync(); err != nil {
			n.log.Warn("programming peers", "err", err)
		}
	}
	n.mac = mac

	if n.mac != n.published {
		attrs := leaseAttrs(n.ext, n.opts.VNI, n.mac)
		if err := n.lm.UpdateLeaseAttrs(ctx, attrs); err != nil {
			n.retryLater(retry, "publishing the new VtepMAC", err)
			return
		}
		n.log.Info("published new VtepMAC", "mac", n.mac)
		n.published = n.mac
	}
	n.failures = 0
}

func (n *network) retryLater(retry chan<- time.Duration, what string, err error) {
	n.failures++
	delay := min(time.Second<<min(n.failures-1, 10), n.maxBackoff)
	n.log.Warn(what, "err", err, "retry_in", delay)
	select {
	case retry <- delay:
	default:
	}
}

// watch follows link changes and hands check to Run's goroutine through do whenever one
// may concern the device, when a retry delay from retry expires, and after each
// (re)subscription, since changes may have been missed. Several changes in a row cost
// one check. It returns when ctx is done, after its subscription has stopped.
func (n *network) watch(ctx context.Context, do chan<- func(), retry <-chan time.Duration,
	check func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	for ctx.Err() == nil {
		done := make(chan struct{})
		changes, err := n.dev.subscribe(done)
		if err != nil {
			n.log.Warn("watching the VXLAN device", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}

		pending := true
		for changes != nil {
			var send chan<- func()
			if pending {
				send = do
			}
			select {
			case <-ctx.Done():
				close(done)
				for range changes {
				}
				return
			case _, ok := <-changes:
				if !ok {
					// The subscription failed (a full socket buffer, say); subscribe again.
					changes = nil
				}
				pending = true
			case d := <-retry:
				timer.Reset(d)
			case <-timer.C:
				pending = true
			case send <- check:
				pending = false
			}
		}
		close(done)
	}
}
