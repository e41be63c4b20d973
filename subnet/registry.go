package subnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// LeaseTTL is the life of every etcd lease weft grants for a lease key, flanneld's 24
// hours: a key that is not renewed within it disappears.
const LeaseTTL = 24 * time.Hour

// ErrNoConfig means the network config key does not exist.
var ErrNoConfig = errors.New("network config not found")

// ErrOutOfSubnets means every subnet the network config allows is taken.
var ErrOutOfSubnets = errors.New("out of subnets")

// Registry reads and writes one network's state in etcd: its config at <prefix>/config
// and its leases at <prefix>/subnets/<key>. It never writes any other key under
// <prefix>/subnets, so that no daemon watching that prefix (flanneld watches it without
// the trailing slash) sees anything but well-formed leases. A Registry is safe for
// concurrent use.
type Registry struct {
	client *clientv3.Client
	prefix string
	log    *slog.Logger

	// ttl is the TTL in seconds of each etcd lease granted; tests shorten it.
	ttl int64
	// rpcTimeout bounds each request that must not wait for etcd forever.
	rpcTimeout time.Duration
	// beforeWatch, when set by a test, runs before each watch of the subnets prefix
	// starts from rev.
	beforeWatch func(rev int64)
	// beforeCreate, when set by a test, runs before each attempt to create key.
	beforeCreate func(key string)

	mu sync.Mutex
	// warned maps each malformed key under subnets/ that was logged to the revision
	// of the value logged, so that an unchanged bad key is reported once.
	warned map[string]int64
}

// NewRegistry returns a registry for the network stored under prefix in the etcd that c
// talks to. The prefix is cleaned as flanneld cleans it (path.Join: a trailing slash is
// dropped); an empty prefix means DefaultPrefix. log receives the registry's messages;
// nil discards them.
func NewRegistry(c *clientv3.Client, prefix string, log *slog.Logger) *Registry {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{
		client:     c,
		prefix:     path.Join(prefix),
		log:        log.With("subsystem", "registry"),
		ttl:        int64(LeaseTTL / time.Second),
		rpcTimeout: 10 * time.Second,
		warned:     map[string]int64{},
	}
}

// Prefix returns the cleaned etcd prefix.
func (r *Registry) Prefix() string { return r.prefix }

// ConfigKey returns the key of the network config, <prefix>/config.
func (r *Registry) ConfigKey() string { return path.Join(r.prefix, "config") }

// SubnetsPrefix returns the prefix of every lease key, <prefix>/subnets/, with its
// trailing slash.
func (r *Registry) SubnetsPrefix() string { return path.Join(r.prefix, "subnets") + "/" }

// LeaseKey returns the etcd key of the lease on v4 and v6 (v6 may be invalid).
func (r *Registry) LeaseKey(v4, v6 netip.Prefix) string {
	return r.SubnetsPrefix() + MakeKey(v4, v6)
}

// endpoints returns the etcd endpoints the client uses, for messages.
func (r *Registry) endpoints() string { return strings.Join(r.client.Endpoints(), ",") }

// configError marks a config that exists but does not parse.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// GetConfig reads and validates the network config. A missing key is an error wrapping
// ErrNoConfig that names the key; an invalid config is an error naming the key and what
// is wrong with it.
func (r *Registry) GetConfig(ctx context.Context) (*Config, error) {
	key := r.ConfigKey()
	resp, err := r.client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading network config %s from etcd %s: %w",
			key, r.endpoints(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w at %s: create it with the etcd v3 API "+
			"(a config written through the v2 API is invisible to v3 clients)", ErrNoConfig, key)
	}
	cfg, err := ParseConfig(resp.Kvs[0].Value)
	if err != nil {
		return nil, &configError{fmt.Errorf("network config at %s: %w", key, err)}
	}
	return cfg, nil
}

// PutConfig validates data as a network config and stores it at ConfigKey. Invalid data
// is an error and writes nothing.
func (r *Registry) PutConfig(ctx context.Context, data []byte) error {
	if _, err := ParseConfig(data); err != nil {
		return err
	}
	if _, err := r.client.Put(ctx, r.ConfigKey(), string(data)); err != nil {
		return fmt.Errorf("writing network config %s: %w", r.ConfigKey(), err)
	}
	return nil
}

// WaitConfig returns the network config, waiting for a valid one to appear: it reads
// the key every second. It logs once that it is waiting and for which key, once for
// each distinct reason the config is invalid, and once when etcd cannot be reached
// (naming the endpoints), after which it retries with a backoff of up to 10 seconds and
// logs again when etcd answers. It returns ctx.Err() when ctx is done first.
func (r *Registry) WaitConfig(ctx context.Context) (*Config, error) {
	var (
		waitingLogged bool
		unreachable   bool
		lastInvalid   string
	)
	bo := backoff{min: time.Second, max: 10 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, r.rpcTimeout)
		cfg, err := r.GetConfig(rctx)
		cancel()
		if err == nil {
			if lastInvalid != "" || waitingLogged {
				r.log.Info("network config found", "key", r.ConfigKey())
			}
			return cfg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}

		var invalid *configError
		wait := time.Second
		switch {
		case errors.Is(err, ErrNoConfig):
			if unreachable {
				r.log.Info("etcd answers again", "endpoints", r.endpoints())
				unreachable = false
			}
			if !waitingLogged {
				r.log.Info("waiting for the network config", "key", r.ConfigKey())
				waitingLogged = true
			}
			bo.reset()
		case errors.As(err, &invalid):
			if unreachable {
				r.log.Info("etcd answers again", "endpoints", r.endpoints())
				unreachable = false
			}
			if msg := invalid.Error(); msg != lastInvalid {
				r.log.Error("network config is invalid; waiting for a valid one",
					"key", r.ConfigKey(), "err", invalid.err)
				lastInvalid = msg
			}
			bo.reset()
		default:
			if !unreachable {
				r.log.Warn("cannot read the network config from etcd; retrying",
					"endpoints", r.endpoints(), "err", err)
				unreachable = true
			}
			wait = bo.next()
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// entry is a lease as listed from etcd, with the exact key it was found at: every later
// write or delete of that lease goes to that key.
type entry struct {
	key   string
	lease Lease
	// created is the key's CreateRevision.
	created int64
}

// listing is a consistent read of every lease at one revision.
type listing struct {
	rev     int64
	entries []entry // in key order
	// bad holds the keys under subnets/ that are not leases (malformed key or value).
	bad map[string]bool
	// occupied holds the subnets named by bad keys whose last path element is a lease
	// key: flanneld reads such keys as leases (it only looks at the key's end), so no
	// allocation may overlap them.
	occupied []Lease
}

// list reads every lease at one revision, without TTL lookups. Malformed keys and values
// are skipped and reported once each (see noteBad).
func (r *Registry) list(ctx context.Context) (listing, error) {
	resp, err := r.client.Get(ctx, r.SubnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return listing{}, fmt.Errorf("listing leases under %s: %w", r.SubnetsPrefix(), err)
	}
	l := listing{rev: resp.Header.Revision, bad: map[string]bool{}}
	seen := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		seen[key] = true
		lease, err := r.decode(kv)
		if err != nil {
			l.bad[key] = true
			r.noteBad(key, kv.ModRevision, err)
			if v4, v6, err := ParseKey(path.Base(key)); err == nil {
				l.occupied = append(l.occupied, Lease{Subnet: v4, IPv6Subnet: v6})
			}
			continue
		}
		l.entries = append(l.entries, entry{key: key, lease: lease, created: kv.CreateRevision})
	}
	r.pruneBad(seen)
	return l, nil
}

// decode turns a key-value pair under subnets/ into a Lease. Only a key whose whole
// remainder after <prefix>/subnets/ is a lease key counts; nested paths do not.
func (r *Registry) decode(kv *mvccpb.KeyValue) (Lease, error) {
	name, ok := strings.CutPrefix(string(kv.Key), r.SubnetsPrefix())
	if !ok || strings.Contains(name, "/") {
		return Lease{}, fmt.Errorf("key %q is not a lease key below %s", kv.Key, r.SubnetsPrefix())
	}
	lease, err := DecodeLease(name, kv.Value)
	if err != nil {
		return Lease{}, err
	}
	lease.EtcdLease = kv.Lease
	lease.ModRevision = kv.ModRevision
	return lease, nil
}

// noteBad logs a malformed key under subnets/ once per value: the same key at the same
// revision is not reported again.
func (r *Registry) noteBad(key string, rev int64, err error) {
	r.mu.Lock()
	old, seen := r.warned[key]
	r.warned[key] = rev
	r.mu.Unlock()
	if seen && old == rev {
		return
	}
	r.log.Warn("ignoring a key under the subnets prefix that is not a valid lease",
		"key", key, "err", err)
}

// forgetBad drops key from the malformed-key record, when it was deleted or now holds a
// valid lease.
func (r *Registry) forgetBad(key string) {
	r.mu.Lock()
	delete(r.warned, key)
	r.mu.Unlock()
}

// pruneBad forgets the malformed keys that a full listing no longer shows.
func (r *Registry) pruneBad(present map[string]bool) {
	r.mu.Lock()
	for k := range r.warned {
		if !present[k] {
			delete(r.warned, k)
		}
	}
	r.mu.Unlock()
}

// Leases lists every lease in key order. Each lease's Expiration comes from etcd's
// TimeToLive, looked up concurrently (one request per lease, as etcd has no batch
// form); a reservation (no etcd lease) has a zero Expiration, and a failed lookup fails
// the listing rather than leaving a lease out. Keys and values that are not valid
// leases are skipped and logged once.
func (r *Registry) Leases(ctx context.Context) ([]Lease, error) {
	l, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	leases := make([]Lease, len(l.entries))
	for i, e := range l.entries {
		leases[i] = e.lease
	}
	if err := r.fillExpirations(ctx, leases); err != nil {
		return nil, err
	}
	return leases, nil
}

// ttlLookups bounds how many TimeToLive requests are in flight at once.
const ttlLookups = 32

// fillExpirations sets the Expiration of each non-reservation lease from TimeToLive.
// A lease that etcd no longer knows (its key is about to be deleted) expires now.
func (r *Registry) fillExpirations(ctx context.Context, leases []Lease) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ttlLookups)
	for i := range leases {
		l := &leases[i]
		if l.Reserved() {
			continue
		}
		g.Go(func() error {
			exp, err := r.expiration(gctx, l.EtcdLease)
			if err != nil {
				return fmt.Errorf("looking up the TTL of lease %s: %w", l.Key(), err)
			}
			l.Expiration = exp
			return nil
		})
	}
	return g.Wait()
}

// expiration returns when etcd lease id expires.
func (r *Registry) expiration(ctx context.Context, id int64) (time.Time, error) {
	now := time.Now()
	resp, err := r.client.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return time.Time{}, err
	}
	if resp.TTL < 0 {
		return now, nil
	}
	return now.Add(time.Duration(resp.TTL) * time.Second), nil
}
