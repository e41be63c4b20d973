package subnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of ManagerOptions, flanneld's.
const (
	DefaultRenewMargin   = 60 * time.Minute
	DefaultRetryInterval = time.Minute
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Config is the network config; when nil, AcquireLease reads it from the registry.
	Config *Config
	// Prev is the previous run's subnet.env: its Subnet and IPv6Subnet are preferred
	// when no lease carries this host's PublicIP.
	Prev Env
	// RenewMargin is how long before expiry the lease is renewed (-subnet-lease-renew-
	// margin); 0 means DefaultRenewMargin. A margin not shorter than the lease's TTL is
	// cut to half the TTL.
	RenewMargin time.Duration
	// RetryInterval is the wait before retrying a renewal that failed; 0 means
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// Log receives the manager's messages; nil discards them.
	Log *slog.Logger
}

// Manager holds this host's lease: it acquires it, renews it before it expires, and
// acquires it again when it is lost, for as long as Run runs. It implements the method
// set of backend.LeaseManager. A Manager is safe for concurrent use.
//
// Renewal re-puts the lease's value with a fresh 24-hour etcd lease, as flanneld does,
// but only while the key is still attached to the etcd lease this host last gave it,
// so that a host that lost its key never overwrites another host's. Renewal runs on a
// timer and does not depend on the watch of the own key, which only makes losses known
// sooner.
type Manager struct {
	r      *Registry
	margin time.Duration
	retry  time.Duration
	log    *slog.Logger

	// acquired is closed when the first lease is held.
	acquired     chan struct{}
	acquiredOnce sync.Once
	// wake tells Run that the lease or its attributes changed outside Run.
	wake chan struct{}
	// changes carries leases acquired by Run after a loss; only the latest is kept.
	changes chan Lease

	// writeMu serializes the writes of the own lease and the state changes they make.
	writeMu sync.Mutex

	mu  sync.Mutex
	cfg *Config
	// cur is the lease held (or last held); nil before the first AcquireLease.
	cur *entry
	// granted reports whether cur's etcd lease was granted by this manager, so that it
	// may be revoked once a renewal has moved the key to a new one.
	granted bool
	attrs   LeaseAttrs
	value   []byte
	prev    Env
	// lost is set when a write found the lease gone; Run acquires it again.
	lost bool
	// refilters are the Refilter channels of running WatchPeers calls.
	refilters map[chan struct{}]struct{}
}

// NewManager returns a manager of this host's lease in r.
func NewManager(r *Registry, opts ManagerOptions) *Manager {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		r:         r,
		margin:    opts.RenewMargin,
		retry:     opts.RetryInterval,
		log:       log.With("subsystem", "lease"),
		acquired:  make(chan struct{}),
		wake:      make(chan struct{}, 1),
		changes:   make(chan Lease, 1),
		cfg:       opts.Config,
		prev:      opts.Prev,
		refilters: map[chan struct{}]struct{}{},
	}
	if m.margin <= 0 {
		m.margin = DefaultRenewMargin
	}
	if ttl := time.Duration(r.ttl) * time.Second; m.margin >= ttl {
		m.log.Warn("the renew margin is not shorter than the lease TTL; using half the TTL",
			"margin", m.margin, "ttl", ttl)
		m.margin = ttl / 2
	}
	if m.retry <= 0 {
		m.retry = DefaultRetryInterval
	}
	return m
}

// Lease returns a copy of the lease held, or of the last one held while Run acquires a
// new one; nil before AcquireLease succeeded.
func (m *Manager) Lease() *Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil
	}
	l := m.cur.lease
	return &l
}

// Changes returns a channel that receives the lease each time Run acquires one after
// losing the one held (its key was deleted, expired, or taken over): the subnets may be
// the same as before or new, and a daemon must reconfigure when they differ. Only the
// latest lease is kept for a slow reader. Leases returned by AcquireLease are not sent.
func (m *Manager) Changes() <-chan Lease { return m.changes }

// AcquireLease obtains this host's lease carrying attrs, as Registry.Acquire describes:
// a lease of attrs.PublicIP first, then the subnets of the lease held before (or of the
// previous subnet.env), then a free subnet. It replaces any lease the manager held. It
// waits while etcd is unreachable, until ctx is done.
func (m *Manager) AcquireLease(ctx context.Context, attrs LeaseAttrs) (*Lease, error) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()

	cfg, err := m.config(ctx)
	if err != nil {
		return nil, err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("encoding lease attributes: %w", err)
	}
	e, err := m.r.acquire(ctx, m.request(cfg, attrs))
	if err != nil {
		return nil, err
	}

	m.mu.Lock()
	m.attrs, m.value = attrs, value
	m.setLocked(e, true)
	m.mu.Unlock()
	m.acquiredOnce.Do(func() { close(m.acquired) })
	m.notify()
	l := e.lease
	return &l, nil
}

// config returns the network config, reading it from etcd when none was given.
func (m *Manager) config(ctx context.Context) (*Config, error) {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	if cfg != nil {
		return cfg, nil
	}
	cfg, err := m.r.GetConfig(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.cfg = cfg
	m.mu.Unlock()
	return cfg, nil
}

// request builds an acquisition that prefers the subnets held before.
func (m *Manager) request(cfg *Config, attrs LeaseAttrs) AcquireRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	req := AcquireRequest{Config: cfg, Attrs: attrs,
		Subnet: m.prev.Subnet, IPv6Subnet: m.prev.IPv6Subnet}
	if m.cur != nil {
		req.Subnet, req.IPv6Subnet = m.cur.lease.Subnet, m.cur.lease.IPv6Subnet
	}
	return req
}

// setLocked makes e the lease held.
func (m *Manager) setLocked(e entry, granted bool) {
	m.cur = &e
	m.granted = granted && e.lease.EtcdLease != 0
	m.lost = false
}

// notify wakes Run and every WatchPeers after the lease changed.
func (m *Manager) notify() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.refilters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// UpdateLeaseAttrs publishes attrs for the lease held, with a fresh etcd lease (none for
// a reservation). When the lease turns out to be lost, the error says so and Run
// acquires a lease again with attrs.
func (m *Manager) UpdateLeaseAttrs(ctx context.Context, attrs LeaseAttrs) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()

	m.mu.Lock()
	cur, cfg := m.cur, m.cfg
	m.mu.Unlock()
	if cur == nil {
		return errors.New("updating lease attributes: no lease is held yet")
	}
	if err := checkAttrs(cfg, attrs); err != nil {
		return err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return fmt.Errorf("encoding lease attributes: %w", err)
	}

	e, err := m.write(ctx, *cur, attrs, value)
	if errors.Is(err, errLostRace) {
		m.mu.Lock()
		m.attrs, m.value, m.lost = attrs, value, true
		m.mu.Unlock()
		m.notify()
		return fmt.Errorf("updating lease %s: the lease is no longer held; acquiring one "+
			"again: %w", cur.lease.Key(), err)
	}
	if err != nil {
		return fmt.Errorf("updating lease %s: %w", cur.lease.Key(), err)
	}
	m.log.Info("lease attributes updated", "lease", e.lease.Key())
	m.mu.Lock()
	m.attrs, m.value = attrs, value
	m.mu.Unlock()
	m.notify()
	return nil
}

// write rewrites the held lease cur with attrs if it is still held: attached to the
// same etcd lease, or still a reservation. It revokes the replaced etcd lease when this
// manager granted it. The caller holds writeMu.
func (m *Manager) write(ctx context.Context, cur entry, attrs LeaseAttrs,
	value []byte) (entry, error) {
	reservation := cur.lease.Reserved()
	conds := []clientv3.Cmp{
		clientv3.Compare(clientv3.LeaseValue(cur.key), "=", cur.lease.EtcdLease),
	}
	if reservation {
		conds = append(conds, clientv3.Compare(clientv3.Version(cur.key), ">", 0))
	}
	e, err := m.r.writeCond(ctx, cur, reservation, attrs, value, conds...)
	if err != nil {
		return entry{}, err
	}

	m.mu.Lock()
	revoke := m.granted
	m.setLocked(e, true)
	m.mu.Unlock()
	if revoke && cur.lease.EtcdLease != 0 {
		m.r.revoke(ctx, clientv3.LeaseID(cur.lease.EtcdLease))
	}
	return e, nil
}

// Run keeps the lease alive until ctx is done, and then returns nil. It waits for the
// first AcquireLease, renews the lease RenewMargin before it expires (retrying every
// RetryInterval on errors), and watches the lease's key. When the lease is lost (its
// key deleted or expired, or rewritten by another host) it logs it and acquires a lease
// again with the same attributes, preferring the same subnets, retrying until it
// succeeds; the new lease is sent on Changes. It never gives up on the lease while ctx
// lasts. On return the lease stays in etcd, as flanneld leaves it, until it expires.
// Only one Run may run at a time.
func (m *Manager) Run(ctx context.Context) error {
	select {
	case <-m.acquired:
	case <-ctx.Done():
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		m.mu.Lock()
		cur := *m.cur
		m.mu.Unlock()

		wctx, stop := context.WithCancel(ctx)
		evs := make(chan ownEvent)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.watchOwn(wctx, cur.key, cur.lease.ModRevision+1, evs)
		}()
		m.serve(ctx, cur.key, evs, timer)
		stop()
		wg.Wait()
	}
	return nil
}

// serve renews the lease and handles events of its key until the key to watch changes
// or ctx is done.
func (m *Manager) serve(ctx context.Context, key string, evs <-chan ownEvent, timer *time.Timer) {
	schedule := func() {
		at, ok := m.renewAt()
		if !ok {
			timer.Stop()
			return
		}
		timer.Reset(time.Until(at))
	}
	schedule()

	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
			err := m.renew(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, errLostRace) {
				m.log.Warn("renewing the lease failed; retrying", "in", m.retry, "err", err)
				timer.Reset(m.retry)
				continue
			}
		case ev := <-evs:
			m.handleOwn(ctx, ev)
		}

		m.mu.Lock()
		lost, curKey := m.lost, m.cur.key
		m.mu.Unlock()
		if lost {
			m.reacquire(ctx)
			return
		}
		if curKey != key {
			return
		}
		schedule()
	}
}

// renewAt returns when the lease must be renewed; false for a reservation.
func (m *Manager) renewAt() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.lease.Reserved() {
		return time.Time{}, false
	}
	if m.cur.lease.Expiration.IsZero() {
		return time.Now(), true
	}
	return m.cur.lease.Expiration.Add(-m.margin), true
}

// renew re-puts the lease with a fresh etcd lease. A lease found lost is errLostRace,
// and marks the manager lost.
func (m *Manager) renew(ctx context.Context) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()

	m.mu.Lock()
	cur, attrs, value := *m.cur, m.attrs, m.value
	m.mu.Unlock()
	if cur.lease.Reserved() {
		return nil
	}

	rctx, cancel := context.WithTimeout(ctx, m.r.rpcTimeout)
	defer cancel()
	e, err := m.write(rctx, cur, attrs, value)
	if errors.Is(err, errLostRace) {
		m.log.Info("lease lost: its key no longer carries this host's etcd lease",
			"lease", cur.lease.Key())
		m.mu.Lock()
		m.lost = true
		m.mu.Unlock()
		return err
	}
	if err != nil {
		return err
	}
	m.log.Info("lease renewed", "lease", e.lease.Key(), "expires", e.lease.Expiration)
	return nil
}

// ownEvent is a change of the own lease's key.
type ownEvent struct {
	deleted bool
	kv      *mvccpb.KeyValue // the new value, for a put
	rev     int64            // the revision of the change
}

// handleOwn applies a change of the own key. A delete, or a put by another host, marks
// the lease lost. A put with this host's PublicIP that this manager did not write (an
// operator's, or a reservation made of the lease) is adopted: its etcd lease becomes
// the one renewed.
func (m *Manager) handleOwn(ctx context.Context, ev ownEvent) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()

	m.mu.Lock()
	cur, ours := *m.cur, m.attrs.PublicIP
	m.mu.Unlock()
	if ev.rev <= cur.lease.ModRevision {
		return
	}
	if ev.deleted {
		m.log.Info("lease lost: its key was deleted or expired", "lease", cur.lease.Key())
		m.markLost()
		return
	}

	l, err := m.r.decode(ev.kv)
	if err != nil || l.Attrs.PublicIP != ours {
		holder := "an invalid value"
		if err == nil {
			holder = l.Attrs.PublicIP.String()
		}
		m.log.Info("lease lost: its key was overwritten by another host", "lease",
			cur.lease.Key(), "now_held_by", holder)
		m.markLost()
		return
	}

	cur.lease.EtcdLease = l.EtcdLease
	cur.lease.ModRevision = l.ModRevision
	cur.lease.Expiration = time.Time{}
	if !l.Reserved() {
		rctx, cancel := context.WithTimeout(ctx, m.r.rpcTimeout)
		exp, err := m.r.expiration(rctx, l.EtcdLease)
		cancel()
		if err != nil {
			// The zero expiration makes Run renew at once.
			m.log.Debug("looking up the TTL of the own lease", "err", err)
		} else {
			cur.lease.Expiration = exp
		}
	}
	m.log.Info("the lease was rewritten outside this host's manager; adopting it",
		"lease", cur.lease.Key(), "reservation", cur.lease.Reserved())
	m.mu.Lock()
	m.setLocked(cur, false)
	m.mu.Unlock()
}

func (m *Manager) markLost() {
	m.mu.Lock()
	m.lost = true
	m.mu.Unlock()
}

// reacquire acquires a lease again after a loss, retrying with backoff until it
// succeeds or ctx is done, and announces the result.
func (m *Manager) reacquire(ctx context.Context) {
	bo := backoff{min: time.Second, max: max(m.retry, time.Second)}
	logged := false
	for ctx.Err() == nil {
		m.writeMu.Lock()
		m.mu.Lock()
		cfg, attrs, value, old := m.cfg, m.attrs, m.value, m.cur.lease
		m.mu.Unlock()

		actx, cancel := context.WithTimeout(ctx, 3*m.r.rpcTimeout)
		e, err := m.r.acquire(actx, m.request(cfg, attrs))
		cancel()
		if err == nil {
			m.mu.Lock()
			m.value = value
			m.setLocked(e, true)
			m.mu.Unlock()
			m.writeMu.Unlock()

			m.log.Info("lease acquired again after a loss", "lease", e.lease.Key(),
				"previous", old.Key(), "same_subnet", SameSubnets(&old, &e.lease))
			select {
			case <-m.changes:
			default:
			}
			m.changes <- e.lease
			m.notify()
			return
		}
		m.writeMu.Unlock()

		if !logged {
			m.log.Error("acquiring the lease again failed; retrying", "err", err)
			logged = true
		} else {
			m.log.Debug("acquiring the lease again failed; retrying", "err", err)
		}
		_ = sleep(ctx, bo.next())
	}
}

// watchOwn sends the changes of key from revision rev on to evs until ctx is done. It
// reconnects with backoff, and after a compaction it reads the key to learn its state.
func (m *Manager) watchOwn(ctx context.Context, key string, rev int64, evs chan<- ownEvent) {
	send := func(ev ownEvent) bool {
		select {
		case evs <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	bo := backoff{min: watchBackoffMin, max: watchBackoffMax}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := m.r.client.Watch(wctx, key, clientv3.WithRev(rev))
		err := func() error {
			for resp := range wch {
				if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
					return errCompacted
				}
				if err := resp.Err(); err != nil {
					return err
				}
				bo.reset()
				for _, ev := range resp.Events {
					oe := ownEvent{
						deleted: ev.Type == mvccpb.DELETE,
						kv:      ev.Kv,
						rev:     ev.Kv.ModRevision,
					}
					if !send(oe) {
						return ctx.Err()
					}
					rev = ev.Kv.ModRevision + 1
				}
			}
			return errors.New("etcd closed the watch")
		}()
		cancel()
		if ctx.Err() != nil {
			return
		}

		if errors.Is(err, errCompacted) {
			gctx, gcancel := context.WithTimeout(ctx, m.r.rpcTimeout)
			resp, gerr := m.r.client.Get(gctx, key)
			gcancel()
			if gerr == nil {
				oe := ownEvent{deleted: true, rev: resp.Header.Revision}
				if len(resp.Kvs) > 0 {
					oe = ownEvent{kv: resp.Kvs[0], rev: resp.Kvs[0].ModRevision}
				}
				if !send(oe) {
					return
				}
				rev = resp.Header.Revision + 1
				continue
			}
			err = gerr
		}
		m.log.Debug("watching the own lease failed; retrying", "key", key, "err", err)
		_ = sleep(ctx, bo.next())
	}
}

// WatchPeers delivers the other hosts' leases to out until ctx is done, as
// Registry.WatchLeases describes, and then returns nil. Leases on the subnet this
// manager holds, and leases carrying this host's PublicIP (a stale lease of an earlier
// run, or the new one while a re-acquisition completes), are left out: they lead back
// to this host. When the held lease changes, the filter is applied again: a lease that
// became this host's is delivered as removed, and the previous subnet, if another host
// holds it now, as added.
func (m *Manager) WatchPeers(ctx context.Context, out chan<- []Event) error {
	refilter := make(chan struct{}, 1)
	m.mu.Lock()
	m.refilters[refilter] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.refilters, refilter)
		m.mu.Unlock()
	}()

	skip := func(l *Lease) bool {
		own := m.Lease()
		return own != nil &&
			(own.Subnet == l.Subnet || own.Attrs.PublicIP == l.Attrs.PublicIP)
	}
	return m.r.WatchLeases(ctx, WatchOptions{Skip: skip, Refilter: refilter}, out)
}
