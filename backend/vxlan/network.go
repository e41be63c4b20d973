package vxlan

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/peers"
	"github.com/weftnet/weft/subnet"
)

const (
	// maxDeviceBackoff bounds the delay between attempts to restore a device.
	maxDeviceBackoff = 30 * time.Second
	// publishTimeout bounds one attempt to publish new lease attributes.
	publishTimeout = 10 * time.Second
)

// device is one VXLAN device as a running network needs it.
type device interface {
	// ensure makes the device exist as configured, with its address and up, creating it
	// with mac if it must, and returns it as read back. When all is in order it only
	// reads.
	ensure(mac kernel.MAC) (deviceInfo, error)
}

// deviceInfo is a device as ensure left it.
type deviceInfo struct {
	Link kernel.Link
	MAC  kernel.MAC
	// Changed reports whether ensure had to change anything, such as setting the device
	// up again, which flushes its routes and neighbours.
	Changed bool
}

// linkWatcher reports link changes that may concern the network's devices.
type linkWatcher interface {
	// subscribe signals on the returned channel each such change, until done is closed
	// or the subscription fails; then the channel is closed.
	subscribe(done <-chan struct{}) (<-chan struct{}, error)
}

// driftFunc starts watching the kernel for deletions that filter matches, signalling
// them on out, a channel with a buffer of one, until ctx is done; it returns once
// deletions are seen, with a channel that is closed when the watch has stopped.
// kernel.DriftWatch.Start on the real kernel.
type driftFunc func(ctx context.Context, filter *kernel.DriftFilter,
	out chan<- struct{}) (stopped <-chan struct{})

// stack is one address family of a network: its device, and the peers programmed on it.
type stack struct {
	v6  bool
	dev device
	// network and own are the overlay network and this host's subnet of the family.
	network netip.Prefix
	own     netip.Prefix

	// link and mac are the device as last seen. They, and set, belong to Run's goroutine
	// once Run has started.
	link kernel.Link
	mac  kernel.MAC
	set  *peers.Set
}

// dataField names the lease field that carries the family's BackendData.
func (s *stack) dataField() string {
	if s.v6 {
		return "BackendV6Data"
	}
	return "BackendData"
}

// network is a registered vxlan backend: an IPv4 stack, an IPv6 stack or both.
type network struct {
	lease *subnet.Lease
	mtu   int
	opts  Options
	ext   backend.ExternalInterface
	lm    backend.LeaseManager
	ops   kernel.Ops
	watch linkWatcher
	log   *slog.Logger

	// drift, when not nil, watches for entries deleted from outside; filter holds the
	// stacks' scopes for it, updated when a device is created again.
	drift  driftFunc
	filter *kernel.DriftFilter

	// resync is the period of the full comparison with the kernel; maxBackoff bounds the
	// retries of restoring a device. Tests shorten both.
	resync     time.Duration
	maxBackoff time.Duration

	// The fields below belong to Run's goroutine once Run has started.

	stacks []*stack
	// published is the lease value last written to etcd.
	published subnet.LeaseAttrs
	failures  int
}

// networkConfig is what newNetwork needs. Each stack comes with dev, link and mac set.
type networkConfig struct {
	lease     *subnet.Lease
	mtu       int
	opts      Options
	ext       backend.ExternalInterface
	lm        backend.LeaseManager
	ops       kernel.Ops
	watch     linkWatcher
	drift     driftFunc
	log       *slog.Logger
	stacks    []*stack
	published subnet.LeaseAttrs
	resync    time.Duration
}

func newNetwork(c networkConfig) *network {
	n := &network{
		lease:      c.lease,
		mtu:        c.mtu,
		opts:       c.opts,
		ext:        c.ext,
		lm:         c.lm,
		ops:        c.ops,
		watch:      c.watch,
		drift:      c.drift,
		log:        c.log,
		resync:     c.resync,
		maxBackoff: maxDeviceBackoff,
		stacks:     c.stacks,
		published:  c.published,
	}
	if n.resync <= 0 {
		n.resync = peers.DefaultResync
	}
	for _, s := range n.stacks {
		self := c.ext.ExtAddr
		if s.v6 {
			self = c.ext.ExtV6Addr
		}
		s.set = peers.NewSet(peers.Config{
			BackendType: TypeName,
			IPv6:        s.v6,
			Network:     s.network,
			Own:         s.own,
			OwnPublicIP: self,
			Entries:     n.entriesFunc(s),
			Log:         c.log,
		}, kernel.NewReconciler(c.ops, n.scope(s), c.log))
	}
	n.filter = kernel.NewDriftFilter(n.scopes()...)
	return n
}

// scopes returns the scope of every stack, as its device was last seen.
func (n *network) scopes() []kernel.Scope {
	out := make([]kernel.Scope, 0, len(n.stacks))
	for _, s := range n.stacks {
		out = append(out, n.scope(s))
	}
	return out
}

// Lease implements backend.Network.
func (n *network) Lease() *subnet.Lease { return n.lease }

// MTU implements backend.Network.
func (n *network) MTU() int { return n.mtu }

// scope is everything a stack may program: entries on its device, and with
// DirectRouting routes on the external interface, inside the family's overlay network
// but never for the host's own subnet.
func (n *network) scope(s *stack) kernel.Scope {
	sc := kernel.Scope{
		Network: s.network,
		Keep:    []netip.Prefix{s.own},
		Neigh:   s.link,
		FDB:     s.link,
		Routes:  []kernel.Link{s.link},
	}
	if n.opts.DirectRouting {
		sc.Routes = append(sc.Routes, kernel.Link{Index: n.ext.Index, Name: n.ext.Name})
	}
	return sc
}

// entriesFunc returns the peers.Config.Entries of a stack: the ARP (or NDP), FDB and
// route entries of a peer, or with DirectRouting and a peer on a directly connected
// subnet of the external interface, a plain route via its public IP.
func (n *network) entriesFunc(s *stack) func(*subnet.Lease, peers.Peer) (kernel.Entries, error) {
	return func(l *subnet.Lease, p peers.Peer) (kernel.Entries, error) {
		raw := l.Attrs.BackendData
		if s.v6 {
			raw = l.Attrs.BackendV6Data
		}
		data, err := ParseBackendData(raw)
		if err != nil {
			return kernel.Entries{}, fmt.Errorf("%s: %w", s.dataField(), err)
		}
		if n.opts.DirectRouting {
			routes, err := n.ops.LookupRoute(p.PublicIP)
			if err == nil && isDirect(routes, n.ext.Index) {
				return directEntries(n.ext.Index, p), nil
			}
		}
		return peerEntries(s.link.Index, p, data.VtepMAC), nil
	}
}

// attrs returns the lease value that advertises the stacks' devices as last seen.
func (n *network) attrs() subnet.LeaseAttrs {
	var v4, v6 kernel.MAC
	for _, s := range n.stacks {
		if s.v6 {
			v6 = s.mac
		} else {
			v4 = s.mac
		}
	}
	return leaseAttrs(n.ext, n.opts.VNI, v4, v6)
}

// leaseAttrs returns the lease value that advertises devices with the MACs v4 and v6;
// a zero MAC leaves out its family.
func leaseAttrs(ext backend.ExternalInterface, vni int, v4, v6 kernel.MAC) subnet.LeaseAttrs {
	a := subnet.LeaseAttrs{BackendType: TypeName}
	if !v4.IsZero() {
		a.PublicIP = ext.ExtAddr
		a.BackendData = BackendData{VNI: vni, VtepMAC: v4}.Marshal()
	}
	if !v6.IsZero() {
		a.PublicIPv6 = ext.ExtV6Addr
		a.BackendV6Data = BackendData{VNI: vni, VtepMAC: v6}.Marshal()
	}
	return a
}

// Run implements backend.Network: it programs peers from events, restores a device
// that is deleted or changed from outside, and repairs drift: shortly after a route, ARP
// (NDP) or FDB entry on a device is deleted from outside (a route on the external
// interface too, with DirectRouting), and every resync period in any case.
func (n *network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	for _, s := range n.stacks {
		if err := s.set.Reconciler().Load(); err != nil {
			// The device may have gone since registration; the first device check
			// restores it and loads again.
			n.log.Warn("listing the device's entries", "device", s.link, "err", err)
		}
	}

	do := make(chan func())
	retry := make(chan time.Duration, 1)
	check := func() { n.checkDevices(ctx, retry) }

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.watchLinks(ctx, do, retry, check)
	}()
	defer wg.Wait()

	opts := peers.RunOptions{Resync: n.resync, Do: do, OnResync: check, Log: n.log}
	if n.drift != nil {
		wctx, cancel := context.WithCancel(ctx)
		signals := make(chan struct{}, 1)
		stopped := n.drift(wctx, n.filter, signals)
		defer func() {
			cancel()
			<-stopped
		}()
		opts.Drift = signals
	}

	sets := make([]*peers.Set, len(n.stacks))
	for i, s := range n.stacks {
		sets[i] = s.set
	}
	return peers.Run(ctx, events, func() []*peers.Set { return sets }, opts)
}

// checkDevices restores each device if it is missing or broken, programs every peer
// again on a device that had to be created, and publishes MACs that differ from those
// in etcd. A failure is retried after a growing delay. It runs on Run's goroutine.
func (n *network) checkDevices(ctx context.Context, retry chan<- time.Duration) {
	for _, s := range n.stacks {
		if err := n.checkDevice(s); err != nil {
			n.retryLater(retry, "restoring the VXLAN device", err)
			return
		}
	}

	if attrs := n.attrs(); !subnet.EqualAttrs(attrs, n.published) {
		// Bounded, so that an unreachable etcd holds up peer events only so long.
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := n.lm.UpdateLeaseAttrs(pctx, attrs)
		cancel()
		if err != nil {
			n.retryLater(retry, "publishing the new VtepMAC", err)
			return
		}
		n.log.Info("published new VtepMAC", "backend_data", string(attrs.BackendData),
			"backend_v6_data", string(attrs.BackendV6Data))
		n.published = attrs
	}
	n.failures = 0
}

func (n *network) checkDevice(s *stack) error {
	info, err := s.dev.ensure(s.mac)
	if err != nil {
		return err
	}
	link, mac := info.Link, info.MAC
	log := n.log.With("device", link.Name)

	switch {
	case link.Index != s.link.Index:
		log.Info("VXLAN device recreated; programming every peer again",
			"index", link.Index, "mac", mac)
		s.link = link
		s.mac = mac
		n.filter.Set(n.scopes()...)
		rec := kernel.NewReconciler(n.ops, n.scope(s), n.log)
		if err := rec.Load(); err != nil {
			log.Warn("listing the device's entries", "err", err)
		}
		s.set.Rebind(rec)
	case info.Changed || mac != s.mac:
		// The device was repaired in place, or its MAC changed, which makes the kernel
		// flush its neighbours; what it lost is found by listing it again.
		if mac != s.mac {
			log.Info("VXLAN device MAC changed", "old", s.mac, "new", mac)
		} else {
			log.Info("VXLAN device repaired; comparing its entries with the kernel")
		}
		s.mac = mac
		if _, err := s.set.Sync(); err != nil {
			log.Warn("programming peers", "err", err)
		}
	}
	return nil
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

// watchLinks follows link changes and hands check to Run's goroutine through do
// whenever one may concern a device, when a retry delay from retry expires, and after
// each (re)subscription, since changes may have been missed. Several changes in a row
// cost one check. It returns when ctx is done, after its subscription has stopped.
func (n *network) watchLinks(ctx context.Context, do chan<- func(), retry <-chan time.Duration,
	check func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	for ctx.Err() == nil {
		done := make(chan struct{})
		changes, err := n.watch.subscribe(done)
		if err != nil {
			n.log.Warn("watching the VXLAN devices", "err", err)
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
