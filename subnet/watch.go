package subnet

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch reconnect delays, flanneld's: from 100ms doubling up to 5s.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// errCompacted means the watch must start again from a fresh listing.
var errCompacted = errors.New("watch revision was compacted")

// WatchOptions adjust WatchLeases.
type WatchOptions struct {
	// Skip, when set, hides the leases it returns true for: the host's own. It is
	// called with each lease whenever that lease changes, and for every lease after
	// each receive from Refilter.
	Skip func(*Lease) bool
	// Refilter, when set, tells the watch that Skip's answers may have changed (the
	// host's own lease did): a lease that became hidden is then delivered as removed,
	// and one no longer hidden as added.
	Refilter <-chan struct{}
}

// WatchLeases delivers the network's leases to out until ctx is done, and then returns
// nil. It never closes out.
//
// It first lists every lease and delivers them as one batch of EventAdded, then watches
// <prefix>/subnets/ from the listing's revision on (requiring an etcd leader), so no
// change in between is lost. A lost connection is resumed from the revision after the
// last one seen, with backoff from 100ms to 5s; etcd being unreachable is logged once,
// and its return once. When that revision has been compacted away, the leases are
// listed again and the listing is diffed against what was delivered: new and changed
// leases arrive as EventAdded, vanished ones as EventRemoved.
//
// A new lease, or a lease whose value changed, is delivered as EventAdded. A renewal (a
// rewrite with the same value and a new etcd lease) is not delivered, since a consumer
// would only repeat what it already did. A deleted or expired lease is delivered as
// EventRemoved carrying the lease as last delivered, since etcd's delete event has no
// value; a delete of a key never delivered is dropped. A key or value under the prefix
// that is not a valid lease is skipped and logged once per value; it never removes
// anything, and a valid lease whose value is overwritten with garbage stays as it was
// (flanneld, in that case, drops every peer).
//
// Delivered leases carry EtcdLease and ModRevision but a zero Expiration: looking up
// TTLs would cost one request per lease per renewal on every host, and no consumer of
// peer events needs them. Batches are never empty.
func (r *Registry) WatchLeases(ctx context.Context, opts WatchOptions, out chan<- []Event) error {
	w := &leaseWatch{
		r:    r,
		ctx:  ctx,
		out:  out,
		refi: opts.Refilter,
		view: newLeaseView(opts.Skip),
		bo:   backoff{min: watchBackoffMin, max: watchBackoffMax},
	}
	w.run()
	return nil
}

// leaseWatch is the state of one WatchLeases call.
type leaseWatch struct {
	r    *Registry
	ctx  context.Context
	out  chan<- []Event
	refi <-chan struct{}
	view *leaseView
	bo   backoff

	// rev is the next revision to watch from; 0 means a listing is needed first.
	rev         int64
	unreachable bool
}

func (w *leaseWatch) run() {
	for w.ctx.Err() == nil {
		if w.rev == 0 {
			if err := w.snapshot(); err != nil {
				w.failed("listing leases", err)
				continue
			}
		}

		if w.r.beforeWatch != nil {
			w.r.beforeWatch(w.rev)
		}
		err := w.follow()
		switch {
		case w.ctx.Err() != nil:
			return
		case errors.Is(err, errCompacted):
			w.r.log.Info("the lease watch fell behind an etcd compaction; listing all leases again",
				"rev", w.rev)
			w.rev = 0
		default:
			w.failed("watching leases", err)
		}
	}
}

// failed logs a failed step (once while etcd stays unreachable) and waits before the
// next attempt.
func (w *leaseWatch) failed(what string, err error) {
	if !w.unreachable {
		w.r.log.Warn(what+" failed; retrying", "endpoints", w.r.endpoints(), "err", err)
		w.unreachable = true
	} else {
		w.r.log.Debug(what+" failed; retrying", "err", err)
	}
	_ = sleep(w.ctx, w.bo.next())
}

// recovered notes a successful exchange with etcd.
func (w *leaseWatch) recovered() {
	if w.unreachable {
		w.r.log.Info("the lease watch is connected to etcd again", "endpoints", w.r.endpoints())
		w.unreachable = false
	}
	w.bo.reset()
}

// snapshot lists every lease, delivers the difference from what was delivered before,
// and sets the revision to watch from.
func (w *leaseWatch) snapshot() error {
	ctx, cancel := context.WithTimeout(w.ctx, w.r.rpcTimeout)
	l, err := w.r.list(ctx)
	cancel()
	if err != nil {
		return err
	}
	w.recovered()
	w.send(w.view.reset(l))
	w.rev = l.rev + 1
	return nil
}

// follow runs one etcd watch from w.rev until it fails, advancing w.rev past every
// response.
func (w *leaseWatch) follow() error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(w.ctx))
	defer cancel()
	wch := w.r.client.Watch(ctx, w.r.SubnetsPrefix(),
		clientv3.WithPrefix(), clientv3.WithRev(w.rev))
	for {
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-w.refi:
			w.send(w.view.refilter())
		case resp, ok := <-wch:
			if !ok {
				return errors.New("etcd closed the watch")
			}
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				return errCompacted
			}
			if err := resp.Err(); err != nil {
				return err
			}
			w.recovered()
			w.send(w.apply(resp))
		}
	}
}

// apply turns one watch response into events and advances w.rev.
func (w *leaseWatch) apply(resp clientv3.WatchResponse) []Event {
	var evs []Event
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		switch ev.Type {
		case mvccpb.PUT:
			lease, err := w.r.decode(ev.Kv)
			if err != nil {
				w.r.noteBad(key, ev.Kv.ModRevision, err)
				break
			}
			w.r.forgetBad(key)
			evs = append(evs, w.view.put(key, lease)...)
		case mvccpb.DELETE:
			w.r.forgetBad(key)
			evs = append(evs, w.view.del(key)...)
		}
		w.rev = ev.Kv.ModRevision + 1
	}
	if resp.IsProgressNotify() && resp.Header.Revision >= w.rev {
		w.rev = resp.Header.Revision + 1
	}
	return evs
}

// send delivers a non-empty batch, unless ctx ends first.
func (w *leaseWatch) send(evs []Event) {
	if len(evs) == 0 {
		return
	}
	w.r.log.Debug("lease events", "events", eventList(evs))
	select {
	case w.out <- evs:
	case <-w.ctx.Done():
	}
}

// leaseView tracks the leases known to exist and those delivered to the consumer, by
// etcd key, and computes the events that bring the consumer up to date. It is pure
// logic, without etcd.
type leaseView struct {
	skip func(*Lease) bool
	// known holds the last valid lease seen at each key.
	known map[string]Lease
	// delivered holds what the consumer was last told about each key.
	delivered map[string]Lease
}

func newLeaseView(skip func(*Lease) bool) *leaseView {
	if skip == nil {
		skip = func(*Lease) bool { return false }
	}
	return &leaseView{skip: skip, known: map[string]Lease{}, delivered: map[string]Lease{}}
}

// put records a valid lease at key.
func (v *leaseView) put(key string, l Lease) []Event {
	v.known[key] = l
	return v.sync(key, nil)
}

// del records that key is gone.
func (v *leaseView) del(key string) []Event {
	delete(v.known, key)
	return v.sync(key, nil)
}

// reset replaces what is known with a full listing. A key the listing shows with an
// invalid value keeps its last valid lease; every other key missing from the listing is
// gone. Removals come first in the batch, then additions, each in key order.
func (v *leaseView) reset(l listing) []Event {
	fresh := make(map[string]Lease, len(l.entries))
	for _, e := range l.entries {
		fresh[e.key] = e.lease
	}
	for key, old := range v.known {
		if l.bad[key] {
			fresh[key] = old
		}
	}
	v.known = fresh
	return v.syncAll()
}

// refilter applies skip anew to every key.
func (v *leaseView) refilter() []Event { return v.syncAll() }

func (v *leaseView) syncAll() []Event {
	keys := make([]string, 0, len(v.known)+len(v.delivered))
	for k := range v.known {
		keys = append(keys, k)
	}
	for k := range v.delivered {
		if _, ok := v.known[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)

	var removed, added []Event
	for _, k := range keys {
		for _, ev := range v.sync(k, nil) {
			if ev.Type == EventRemoved {
				removed = append(removed, ev)
			} else {
				added = append(added, ev)
			}
		}
	}
	return append(removed, added...)
}

// sync brings the consumer's view of key in line with what is known, appending the
// event that does so (if any) to evs.
func (v *leaseView) sync(key string, evs []Event) []Event {
	cur, exists := v.known[key]
	want := exists && !v.skip(&cur)
	old, had := v.delivered[key]
	switch {
	case want && !had:
		v.delivered[key] = cur
		evs = append(evs, Event{Type: EventAdded, Lease: cur})
	case want && had:
		v.delivered[key] = cur
		if !EqualAttrs(old.Attrs, cur.Attrs) {
			evs = append(evs, Event{Type: EventAdded, Lease: cur})
		}
	case !want && had:
		delete(v.delivered, key)
		evs = append(evs, Event{Type: EventRemoved, Lease: old})
	}
	return evs
}

// eventList renders a batch for debug logs, "added:198.19.1.0-24 removed:...". It is a
// slog.LogValuer, so that the text is built only when a handler formats the record: the
// daemon's tap of the registry's records enables Debug for every batch, and the first
// batch holds every lease of the network.
type eventList []Event

// LogValue implements slog.LogValuer.
func (evs eventList) LogValue() slog.Value {
	var b strings.Builder
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(ev.Type.String())
		b.WriteByte(':')
		b.WriteString(ev.Lease.Key())
	}
	return slog.StringValue(b.String())
}
