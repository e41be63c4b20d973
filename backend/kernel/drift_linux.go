package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// driftBackoff and maxDriftBackoff bound the delay before a DriftWatch subscribes
	// again after its subscription failed.
	driftBackoff    = 100 * time.Millisecond
	maxDriftBackoff = 10 * time.Second
	// driftReceiveBuffer is the receive buffer each subscription socket asks for: room
	// for the notifications of thousands of deletions in a burst (removing a vxlan peer
	// makes three) before the socket overflows and the watch has to start over.
	driftReceiveBuffer = 4 << 20
)

// DriftWatch follows the kernel's deletions of routes, neighbour (ARP, NDP) entries and
// FDB entries in one network namespace and passes on, as a coalesced signal, those that
// Filter matches, so that a backend repairs an entry deleted behind its back at once
// instead of at its next periodic comparison. It makes no change to the kernel; it
// reads what `ip monitor route neigh` and `bridge monitor fdb` print as "Deleted"
// lines, through netlink.
type DriftWatch struct {
	// NS is the namespace to watch: that of the handle the Reconcilers' Ops use. A
	// handle that is not open means the namespace of the thread that subscribes, which
	// is right only in a process that never changes namespace.
	NS netns.NsHandle
	// Filter selects the deletions that concern the backend. Neighbour changes are
	// followed only if, when the watch subscribes, one of its scopes manages neighbour
	// or FDB entries.
	Filter *DriftFilter
	// Log receives failures to subscribe at Warn, and the subscriptions' socket errors
	// and the deletions passed on at Debug.
	Log *slog.Logger
}

// Start subscribes to the kernel's route and neighbour changes, so that from its return
// on every deletion is seen, and then watches in a goroutine of its own until ctx is
// done; the channel it returns is closed when that goroutine has ended. Each matching
// deletion sends on out unless a signal is pending there already, so out should have a
// buffer of one: a burst of deletions costs its reader one receive. When a subscription
// fails (its socket overflowed, say; or the first attempt did), the watch subscribes
// again after a delay that grows while attempts fail, and then signals, since
// deletions may have gone unseen meanwhile.
func (w DriftWatch) Start(ctx context.Context, out chan<- struct{}) <-chan struct{} {
	if w.Log == nil {
		w.Log = slog.New(slog.DiscardHandler)
	}
	force := true
	sub, err := w.open(&force)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, out, sub, err, force)
	}()
	return done
}

// run follows sub, or when err says there is none, subscribes again, until ctx is done.
func (w DriftWatch) run(ctx context.Context, out chan<- struct{}, sub *driftSub, err error,
	force bool) {
	backoff := time.Duration(0)
	grow := func() { backoff = min(max(2*backoff, driftBackoff), maxDriftBackoff) }
	// failing is set while attempts to subscribe fail: the first failure of a run is
	// logged at Warn, the others at Debug, and the recovery at Info.
	failing := false
	for {
		if err != nil {
			grow()
			level := slog.LevelWarn
			if failing {
				level = slog.LevelDebug
			}
			failing = true
			w.Log.Log(ctx, level, "watching for deleted routes and neighbours", "err", err,
				"retry_in", backoff)
		} else {
			if failing {
				w.Log.Info("watching for deleted routes and neighbours again")
				failing = false
			}
			received := w.follow(ctx, sub, out)
			sub.stop()
			if ctx.Err() != nil {
				return
			}
			if received {
				backoff = driftBackoff
			} else {
				grow()
			}
			w.Log.Debug("deletion watch ended; subscribing again", "retry_in", backoff)
		}
		if !sleep(ctx, backoff) {
			return
		}
		if sub, err = w.open(&force); err == nil {
			signal(out)
		}
	}
}

// open subscribes, asking for a receive buffer past net.core.rmem_max when force is
// set and, if that is not permitted (it takes CAP_NET_ADMIN), clearing force and
// asking for what is allowed. (netlink leaves the socket of the refused attempt open;
// its finalizer closes it.)
func (w DriftWatch) open(force *bool) (*driftSub, error) {
	sub, err := w.subscribe(*force)
	if err != nil && *force && errors.Is(err, unix.EPERM) {
		*force = false
		sub, err = w.subscribe(false)
	}
	return sub, err
}

// driftSub is a subscription to route changes and, when the filter needs them, one to
// neighbour changes; neighs is nil without it.
type driftSub struct {
	done   chan struct{}
	routes chan netlink.RouteUpdate
	neighs chan netlink.NeighUpdate
}

// subscribe opens the subscriptions; see open for force.
func (w DriftWatch) subscribe(force bool) (*driftSub, error) {
	s := &driftSub{
		done:   make(chan struct{}),
		routes: make(chan netlink.RouteUpdate, 64),
	}
	var ns *netns.NsHandle
	if w.NS.IsOpen() {
		h := w.NS
		ns = &h
	}
	onErr := func(err error) { w.Log.Debug("deletion watch", "err", err) }

	err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
		Namespace:              ns,
		ErrorCallback:          onErr,
		ReceiveBufferSize:      driftReceiveBuffer,
		ReceiveBufferForceSize: force,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to route changes: %w", err)
	}
	if !w.Filter.needsNeighs() {
		// host-gw: the ARP traffic of the external interface is of no concern.
		return s, nil
	}
	s.neighs = make(chan netlink.NeighUpdate, 64)
	err = netlink.NeighSubscribeWithOptions(s.neighs, s.done, netlink.NeighSubscribeOptions{
		Namespace:              ns,
		ErrorCallback:          onErr,
		ReceiveBufferSize:      driftReceiveBuffer,
		ReceiveBufferForceSize: force,
	})
	if err != nil {
		close(s.done)
		for range s.routes {
		}
		return nil, fmt.Errorf("subscribing to neighbour changes: %w", err)
	}
	return s, nil
}

// stop closes the subscriptions and waits for their goroutines, which close their
// channels as they end.
func (s *driftSub) stop() {
	close(s.done)
	for range s.routes {
	}
	if s.neighs != nil {
		for range s.neighs {
		}
	}
}

// follow passes on matching deletions until ctx is done or either subscription ends,
// and reports whether it received any update at all.
func (w DriftWatch) follow(ctx context.Context, s *driftSub, out chan<- struct{}) (
	received bool) {
	for {
		var d Deletion
		var ok bool
		select {
		case <-ctx.Done():
			return received
		case u, open := <-s.routes:
			if !open {
				return received
			}
			d, ok = routeDeletion(u)
		case u, open := <-s.neighs:
			if !open {
				return received
			}
			d, ok = neighDeletion(u)
		}
		received = true
		if !ok || !w.Filter.Match(d) {
			continue
		}
		if w.Log.Enabled(ctx, slog.LevelDebug) {
			w.Log.Debug("kernel entry deleted", "entry", d.String())
		}
		signal(out)
	}
}

// routeDeletion returns the deletion an update reports, if it is the deletion of a
// main-table unicast route with one next hop, the only kind a Reconciler makes.
func routeDeletion(u netlink.RouteUpdate) (Deletion, bool) {
	if u.Type != unix.RTM_DELROUTE || u.Route.Type != unix.RTN_UNICAST ||
		u.Table != unix.RT_TABLE_MAIN || len(u.MultiPath) > 0 {
		return Deletion{}, false
	}
	family := IPv4
	if u.Family == netlink.FAMILY_V6 {
		family = IPv6
	}
	return Deletion{Kind: KindRoute, Route: routeOf(u.Route, family)}, true
}

// neighDeletion returns the deletion an update reports, if it is the deletion of a
// neighbour entry or of an FDB entry with a destination.
func neighDeletion(u netlink.NeighUpdate) (Deletion, bool) {
	if u.Type != unix.RTM_DELNEIGH {
		return Deletion{}, false
	}
	mac, _ := MACFromSlice(u.HardwareAddr)
	ip := addrOf(u.IP)
	if !ip.IsValid() {
		return Deletion{}, false
	}
	if u.Family == unix.AF_BRIDGE {
		return Deletion{Kind: KindFDB, FDB: FDBEntry{LinkIndex: u.LinkIndex, MAC: mac, Dst: ip}},
			true
	}
	return Deletion{Kind: KindNeigh, Neigh: Neigh{LinkIndex: u.LinkIndex, IP: ip, MAC: mac}}, true
}

// signal sends on out unless a signal is pending there already.
func signal(out chan<- struct{}) {
	select {
	case out <- struct{}{}:
	default:
	}
}

// sleep waits for d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
