// Package peers turns the peer lease events a kernel backend receives into the kernel
// entries each peer needs, and keeps those entries reconciled: a Set follows the leases
// of one address family, and Run drives one or more Sets from the event channel. Run
// repairs drift twice over: promptly, when a watch of the kernel (kernel.DriftWatch)
// signals that an entry in scope was deleted, it puts back what is missing; and every
// resync period a full comparison also catches what no deletion shows (an entry
// changed in place, one left by a peer that is gone).
package peers

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/subnet"
)

// Config says which leases a Set programs and how.
type Config struct {
	// BackendType is the lease BackendType the backend programs, exactly as flanneld
	// compares it; leases of any other type are ignored.
	BackendType string
	// IPv6 selects the leases' IPv6 part (IPv6Subnet, PublicIPv6); the IPv4 part
	// otherwise. Leases without that part are ignored.
	IPv6 bool
	// Network is the overlay network of the family; a lease whose subnet lies outside it
	// is skipped.
	Network netip.Prefix
	// Own is the host's own subnet of the family, never programmed.
	Own netip.Prefix
	// OwnPublicIP is the host's own public address of the family. A peer lease that
	// names it (a stale lease of this host) is skipped: traffic to it would loop back.
	OwnPublicIP netip.Addr
	// Entries returns what one peer needs in the kernel. peer is the lease's subnet and
	// public address of the family, both checked already. An error means the lease is
	// malformed for this backend: it is skipped with a warning.
	Entries func(l *subnet.Lease, peer Peer) (kernel.Entries, error)
	// Log receives peer added, changed and removed at Info, and skipped leases at Warn.
	Log *slog.Logger
}

// Peer is the part of a peer lease that a Set checked: the subnet and the public address
// of the Set's family.
type Peer struct {
	Subnet   netip.Prefix
	PublicIP netip.Addr
}

// Set tracks the peers of one backend and family, and tells its Reconciler what each one
// needs. It is not safe for concurrent use; Run calls it from one goroutine.
type Set struct {
	cfg Config
	rec *kernel.Reconciler

	// peers holds the last lease programmed for each peer, by lease key.
	peers map[string]subnet.Lease
}

// NewSet returns a Set that programs peers through rec.
func NewSet(cfg Config, rec *kernel.Reconciler) *Set {
	return &Set{cfg: cfg, rec: rec, peers: map[string]subnet.Lease{}}
}

// Reconciler returns the Reconciler the Set programs through.
func (s *Set) Reconciler() *kernel.Reconciler { return s.rec }

// Len returns the number of peers programmed.
func (s *Set) Len() int { return len(s.peers) }

// Rebind moves the Set to a new Reconciler, for example after its device had to be
// created again: every known peer's entries are computed again and Set on rec.
func (s *Set) Rebind(rec *kernel.Reconciler) {
	s.rec = rec
	for key, l := range s.peers {
		peer, err := s.check(&l)
		var e kernel.Entries
		if err == nil {
			e, err = s.cfg.Entries(&l, peer)
		}
		if err != nil {
			s.cfg.Log.Warn("dropping peer", "lease", key, "err", err)
			delete(s.peers, key)
			continue
		}
		rec.Set(key, e)
	}
}

// Handle records a batch of lease events as wanted entries. It makes no kernel call;
// Apply does.
func (s *Set) Handle(events []subnet.Event) {
	for i := range events {
		s.handle(&events[i])
	}
}

func (s *Set) handle(ev *subnet.Event) {
	l := &ev.Lease
	key := l.Key()
	prev, known := s.peers[key]

	if ev.Type == subnet.EventRemoved {
		if known {
			s.rec.Remove(key)
			delete(s.peers, key)
			s.cfg.Log.Info("peer removed", "lease", key, "public_ip", s.publicIP(&prev))
		}
		return
	}

	if l.Attrs.BackendType != s.cfg.BackendType {
		if known {
			s.rec.Remove(key)
			delete(s.peers, key)
			s.cfg.Log.Info("peer removed: lease changed backend type", "lease", key,
				"backend_type", l.Attrs.BackendType)
			return
		}
		s.cfg.Log.Debug("ignoring lease of another backend type", "lease", key,
			"backend_type", l.Attrs.BackendType)
		return
	}
	if !s.subnet(l).IsValid() {
		// An IPv4-only lease seen by the IPv6 Set.
		return
	}
	if s.subnet(l) == s.cfg.Own {
		return
	}

	peer, err := s.check(l)
	var e kernel.Entries
	if err == nil {
		e, err = s.cfg.Entries(l, peer)
	}
	if err != nil {
		s.cfg.Log.Warn("skipping peer lease", "lease", key, "err", err)
		return
	}

	changed := s.rec.Set(key, e)
	s.peers[key] = *l
	switch {
	case !known:
		s.cfg.Log.Info("peer added", "lease", key, "public_ip", peer.PublicIP)
	case changed:
		s.cfg.Log.Info("peer changed", "lease", key, "public_ip", peer.PublicIP)
	}
}

func (s *Set) subnet(l *subnet.Lease) netip.Prefix {
	if s.cfg.IPv6 {
		return l.IPv6Subnet
	}
	return l.Subnet
}

func (s *Set) publicIP(l *subnet.Lease) netip.Addr {
	if s.cfg.IPv6 {
		return l.Attrs.PublicIPv6
	}
	return l.Attrs.PublicIP
}

// check returns the lease's subnet and public address of the Set's family, or an error
// naming what makes them unusable.
func (s *Set) check(l *subnet.Lease) (Peer, error) {
	p := Peer{Subnet: s.subnet(l), PublicIP: s.publicIP(l)}
	n := s.cfg.Network
	if !p.Subnet.IsValid() || p.Subnet.Bits() < n.Bits() || !n.Contains(p.Subnet.Addr()) {
		return Peer{}, fmt.Errorf("subnet %s is outside the network %s", p.Subnet, n)
	}
	if s.cfg.Own.IsValid() && p.Subnet.Overlaps(s.cfg.Own) {
		return Peer{}, fmt.Errorf("subnet %s overlaps this host's subnet %s", p.Subnet, s.cfg.Own)
	}
	if !usable(p.PublicIP, s.cfg.IPv6) {
		return Peer{}, fmt.Errorf("public IP %q is not a usable unicast address", p.PublicIP)
	}
	if p.PublicIP == s.cfg.OwnPublicIP {
		return Peer{}, fmt.Errorf("public IP %s is this host's own", p.PublicIP)
	}
	return p, nil
}

// usable reports whether a can be a tunnel endpoint or next hop.
func usable(a netip.Addr, v6 bool) bool {
	// An IPv6 link-local address would need a zone, which a lease cannot carry.
	if !a.IsValid() || a.Is6() != v6 || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLoopback() || v6 && a.IsLinkLocalUnicast() {
		return false
	}
	return a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// Apply writes what the handled events changed; see kernel.Reconciler.Apply.
func (s *Set) Apply() (int, error) { return s.rec.Apply() }

// Sync lists the kernel and repairs every difference; see kernel.Reconciler.Sync.
func (s *Set) Sync() (int, error) { return s.rec.Sync() }

// Repair lists the kernel and restores every wanted entry that is missing or differs,
// removing nothing unknown; see kernel.Reconciler.Repair.
func (s *Set) Repair() (int, error) { return s.rec.Repair() }

// RunOptions tunes Run.
type RunOptions struct {
	// Resync is the period of the full comparison with the kernel; 0 means 10 s. The
	// first one, which also removes entries of peers that no longer exist, comes one
	// period after Run starts, once the initial leases have surely arrived.
	Resync time.Duration
	// Drift, when not nil, signals that an entry inside the sets' scopes may have been
	// deleted from outside, as kernel.DriftWatch does. On a signal Run waits until
	// Debounce has passed without another one (but no longer than ten times Debounce
	// after the first), so that a burst of deletions, such as Run's own when 1,000
	// peers leave at once, costs one comparison; then it lists each Set's entries and
	// puts back every wanted one that is missing (Set.Repair). Unlike a resync it
	// removes nothing, so it is safe before the initial leases have arrived. A
	// comparison that finds everything in place costs one listing of each Set's links
	// and no write.
	Drift <-chan struct{}
	// Debounce is the quiet time Run waits for after a Drift signal; 0 means
	// DefaultDebounce.
	Debounce time.Duration
	// Do delivers work that must run between batches on Run's goroutine, such as a
	// backend's reaction to its device being deleted; nil when there is none.
	Do <-chan func()
	// OnResync, when not nil, runs on Run's goroutine before each periodic comparison,
	// for example to check the backend's device.
	OnResync func()
	// Log receives failures to program the kernel.
	Log *slog.Logger
}

const (
	// DefaultResync is how often Run compares the kernel with the wanted entries.
	DefaultResync = 10 * time.Second
	// DefaultDebounce is how long Run waits after a Drift signal for the deletions to
	// stop before it compares.
	DefaultDebounce = 100 * time.Millisecond
	// maxDebounce is how many Debounce periods a repair may wait for a burst to end.
	maxDebounce = 10
)

// Run handles lease batches from events for each set until ctx is cancelled, and then
// returns nil. Each Set's Reconciler should have been loaded. A batch costs one write per
// changed entry and no kernel listing; failed writes are retried after a growing delay
// (one second, doubling up to the resync period). Shortly after a Drift signal each Set
// is repaired, and every resync period each is compared with the kernel in full.
func Run(ctx context.Context, events <-chan []subnet.Event, sets func() []*Set,
	opts RunOptions) error {
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	resync := time.NewTicker(opts.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0)
	repair := time.NewTimer(time.Hour)
	repair.Stop()
	defer repair.Stop()
	drift := debounce{quiet: opts.Debounce, limit: maxDebounce * opts.Debounce}

	// settle runs how on every set and arms the retry timer when something failed.
	settle := func(how func(*Set) (int, error)) {
		failed := false
		for _, s := range sets() {
			if _, err := how(s); err != nil {
				failed = true
				opts.Log.Warn("programming peers", "err", err)
			}
		}
		if !failed {
			backoff = 0
			retry.Stop()
			return
		}
		backoff = min(max(2*backoff, time.Second), opts.Resync)
		retry.Reset(backoff)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case batch, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			for _, s := range sets() {
				s.Handle(batch)
			}
			settle(apply)
		case fn := <-opts.Do:
			fn()
			settle(apply)
		case <-retry.C:
			settle(apply)
		case <-opts.Drift:
			repair.Reset(drift.signal(time.Now()))
		case <-repair.C:
			drift.reset()
			settle((*Set).Repair)
		case <-resync.C:
			// The full comparison covers a pending repair.
			repair.Stop()
			drift.reset()
			if opts.OnResync != nil {
				opts.OnResync()
			}
			settle((*Set).Sync)
		}
	}
}

// apply writes what the handled events changed in s, if anything.
func apply(s *Set) (int, error) {
	if !s.rec.Pending() {
		return 0, nil
	}
	return s.Apply()
}

// debounce times the repair that Drift signals ask for: it is due once quiet has passed
// since the latest signal, and no later than limit after the first.
type debounce struct {
	quiet, limit time.Duration
	// first is when the first signal of the pending repair came; zero when none is
	// pending.
	first time.Time
}

// signal records a signal at now and returns how long from now the repair is due.
func (d *debounce) signal(now time.Time) time.Duration {
	if d.first.IsZero() {
		d.first = now
	}
	return max(0, min(d.quiet, d.first.Add(d.limit).Sub(now)))
}

// reset forgets the pending repair, once it has been done.
func (d *debounce) reset() { d.first = time.Time{} }
