package subnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// raceRetries bounds how often Acquire starts over after another host changed the
// leases between its listing and its write.
const raceRetries = 20

// errLostRace means a write lost to a concurrent change; the caller lists again.
var errLostRace = errors.New("lost a race with another host")

// AcquireRequest says which lease a host wants.
type AcquireRequest struct {
	// Config is the network config; it must enable IPv4.
	Config *Config
	// Attrs is the value to store. PublicIP identifies the host.
	Attrs LeaseAttrs
	// Subnet and IPv6Subnet are preferred when no lease carries Attrs.PublicIP: the
	// subnets of the previous run's subnet.env, or of a lease the host just lost. Either
	// may be invalid.
	Subnet     netip.Prefix
	IPv6Subnet netip.Prefix
}

// Acquire obtains a lease for the host named by req.Attrs.PublicIP, as flanneld does:
//
//  1. The first lease in key order whose PublicIP is the host's and that fits the config
//     (FitsConfig) is reused: its value is rewritten with req.Attrs and a fresh 24-hour
//     etcd lease, except that a reservation is rewritten without an etcd lease and stays
//     a reservation. A lease of the host's PublicIP that does not fit is deleted, unless
//     it is a reservation, which belongs to the operator and is only reported.
//  2. Otherwise req.Subnet (and req.IPv6Subnet) is used when it fits the config and
//     overlaps no listed lease.
//  3. Otherwise a subnet is picked at random among the first 100 free ones in
//     [SubnetMin, SubnetMax], skipping every listed lease including reservations; with
//     IPv6 enabled the IPv6 subnet likewise.
//
// A new key is created only if absent (an etcd transaction on its version), with a
// 24-hour etcd lease that is revoked if the transaction fails. If a host that created an
// overlapping key earlier is seen right after the write, the new key is deleted again.
// Losing such a race is retried with a fresh listing. No free subnet is an error
// wrapping ErrOutOfSubnets. Acquire does not renew the lease; a Manager does.
func (r *Registry) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	e, err := r.acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	return &e.lease, nil
}

func (r *Registry) acquire(ctx context.Context, req AcquireRequest) (entry, error) {
	if err := checkConfig(req.Config); err != nil {
		return entry{}, err
	}
	if err := checkAttrs(req.Config, req.Attrs); err != nil {
		return entry{}, err
	}
	value, err := json.Marshal(req.Attrs)
	if err != nil {
		return entry{}, fmt.Errorf("encoding lease attributes: %w", err)
	}

	for range raceRetries {
		e, err := r.tryAcquire(ctx, req, value)
		if errors.Is(err, errLostRace) {
			r.log.Debug("another host changed the leases while acquiring; trying again",
				"err", err)
			continue
		}
		return e, err
	}
	return entry{}, fmt.Errorf("acquiring a lease for %s: lost the race to other hosts %d "+
		"times in a row", req.Attrs.PublicIP, raceRetries)
}

func (r *Registry) tryAcquire(ctx context.Context, req AcquireRequest,
	value []byte) (entry, error) {
	cfg := req.Config
	l, err := r.list(ctx)
	if err != nil {
		return entry{}, err
	}

	// Leases of this host's public IP, in key order: the first that fits is reused; one
	// that does not fit is deleted (a reservation is only reported) and the search
	// goes on, so that a later lease that fits is still reused.
	entries := make([]entry, 0, len(l.entries))
	for _, e := range l.entries {
		if e.lease.Attrs.PublicIP != req.Attrs.PublicIP {
			entries = append(entries, e)
			continue
		}
		if FitsConfig(cfg, e.lease.Subnet, e.lease.IPv6Subnet) {
			got, err := r.rewrite(ctx, e, req.Attrs, value)
			if err == nil {
				r.log.Info("reusing the lease of this host's public IP",
					"lease", got.lease.Key(), "public_ip", req.Attrs.PublicIP,
					"reservation", got.lease.Reserved())
			}
			return got, err
		}
		if e.lease.Reserved() {
			r.log.Warn("the reservation for this host's public IP does not fit the network "+
				"config; leaving it alone", "key", e.key, "public_ip", req.Attrs.PublicIP)
			entries = append(entries, e)
			continue
		}
		r.log.Info("deleting this host's lease that does not fit the network config",
			"key", e.key, "public_ip", req.Attrs.PublicIP)
		if err := r.deleteEntry(ctx, e); err != nil {
			return entry{}, err
		}
	}

	var taken4, taken6 []netip.Prefix
	for _, e := range entries {
		taken4 = append(taken4, e.lease.Subnet)
		taken6 = append(taken6, e.lease.IPv6Subnet)
	}
	for _, o := range l.occupied {
		taken4 = append(taken4, o.Subnet)
		taken6 = append(taken6, o.IPv6Subnet)
	}
	v4, err := pickSubnet(v4Span(cfg), taken4, req.Subnet)
	if err != nil {
		return entry{}, err
	}
	var v6 netip.Prefix
	if cfg.EnableIPv6 {
		if v6, err = pickSubnet(v6Span(cfg), taken6, req.IPv6Subnet); err != nil {
			return entry{}, err
		}
	}

	e, err := r.create(ctx, v4, v6, req.Attrs, value)
	if err != nil {
		return entry{}, err
	}
	if err := r.yieldToEarlier(ctx, e); err != nil {
		return entry{}, err
	}
	r.log.Info("acquired a new lease", "lease", e.lease.Key(), "public_ip", req.Attrs.PublicIP)
	return e, nil
}

// grant returns a fresh etcd lease of r.ttl seconds and when it expires.
func (r *Registry) grant(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	start := time.Now()
	resp, err := r.client.Grant(ctx, r.ttl)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("granting an etcd lease of %ds: %w", r.ttl, err)
	}
	return resp.ID, start.Add(time.Duration(resp.TTL) * time.Second), nil
}

// revoke revokes an etcd lease granted for a write that did not happen. It runs even
// when ctx is done, briefly, so that no unused lease is left for etcd to expire.
func (r *Registry) revoke(ctx context.Context, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.rpcTimeout)
	defer cancel()
	if _, err := r.client.Revoke(ctx, id); err != nil {
		r.log.Debug("revoking an unused etcd lease", "id", int64(id), "err", err)
	}
}

// checkKey verifies that key is a lease key under SubnetsPrefix, the only kind of key
// the registry ever writes there.
func (r *Registry) checkKey(key string) error {
	name, ok := strings.CutPrefix(key, r.SubnetsPrefix())
	if !ok {
		return fmt.Errorf("refusing to write %q: not under %s", key, r.SubnetsPrefix())
	}
	if _, _, err := ParseKey(name); err != nil {
		return fmt.Errorf("refusing to write %q: %w", key, err)
	}
	return nil
}

// writeCond writes value at base.key if every cond holds: with a fresh etcd lease, or
// without one for a reservation. It returns the lease as written; a false condition is
// errLostRace.
func (r *Registry) writeCond(ctx context.Context, base entry, reservation bool,
	attrs LeaseAttrs, value []byte, cond ...clientv3.Cmp) (entry, error) {
	key := base.key
	if err := r.checkKey(key); err != nil {
		return entry{}, err
	}
	var (
		id   clientv3.LeaseID
		exp  time.Time
		opts []clientv3.OpOption
	)
	if !reservation {
		var err error
		if id, exp, err = r.grant(ctx); err != nil {
			return entry{}, err
		}
		opts = append(opts, clientv3.WithLease(id))
	}

	resp, err := r.client.Txn(ctx).
		If(cond...).
		Then(clientv3.OpPut(key, string(value), opts...)).
		Commit()
	if err != nil || !resp.Succeeded {
		if id != 0 {
			r.revoke(ctx, id)
		}
		if err != nil {
			return entry{}, fmt.Errorf("writing lease %s: %w", key, err)
		}
		return entry{}, fmt.Errorf("writing lease %s: %w", key, errLostRace)
	}

	base.lease.Attrs = attrs
	base.lease.EtcdLease = int64(id)
	base.lease.Expiration = exp
	base.lease.ModRevision = resp.Header.Revision
	if base.created == 0 {
		base.created = resp.Header.Revision
	}
	return base, nil
}

// rewrite stores new attrs at a listed lease's key if the key is unchanged since the
// listing. A reservation stays one.
func (r *Registry) rewrite(ctx context.Context, e entry, attrs LeaseAttrs,
	value []byte) (entry, error) {
	cond := clientv3.Compare(clientv3.ModRevision(e.key), "=", e.lease.ModRevision)
	return r.writeCond(ctx, e, e.lease.Reserved(), attrs, value, cond)
}

// create makes a new lease key if it does not exist yet.
func (r *Registry) create(ctx context.Context, v4, v6 netip.Prefix, attrs LeaseAttrs,
	value []byte) (entry, error) {
	key := r.LeaseKey(v4, v6)
	if r.beforeCreate != nil {
		r.beforeCreate(key)
	}
	cond := clientv3.Compare(clientv3.Version(key), "=", 0)
	base := entry{key: key, lease: Lease{Subnet: v4, IPv6Subnet: v6}}
	return r.writeCond(ctx, base, false, attrs, value, cond)
}

// deleteEntry deletes a listed lease if its key is unchanged since the listing; an
// already deleted key is success.
func (r *Registry) deleteEntry(ctx context.Context, e entry) error {
	cond := clientv3.Compare(clientv3.ModRevision(e.key), "=", e.lease.ModRevision)
	resp, err := r.client.Txn(ctx).If(cond).Then(clientv3.OpDelete(e.key)).
		Else(clientv3.OpGet(e.key, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return fmt.Errorf("deleting lease %s: %w", e.key, err)
	}
	if !resp.Succeeded && resp.Responses[0].GetResponseRange().GetCount() > 0 {
		return fmt.Errorf("deleting lease %s: %w", e.key, errLostRace)
	}
	return nil
}

// yieldToEarlier lists the leases again after e was created and deletes e when a key
// created before it overlaps it: two hosts that picked overlapping subnets under
// different keys (the same IPv4 subnet with different IPv6 subnets, or the reverse) both
// succeed in creating their keys, and the later one must give way. The later creator
// always sees the earlier key, because its listing follows its own write.
func (r *Registry) yieldToEarlier(ctx context.Context, e entry) error {
	l, err := r.list(ctx)
	if err != nil {
		r.deleteOwnNew(ctx, e)
		return err
	}
	for _, o := range l.entries {
		if o.key == e.key || o.created >= e.created {
			continue
		}
		if Overlaps(o.lease.Subnet, e.lease.Subnet) ||
			Overlaps(o.lease.IPv6Subnet, e.lease.IPv6Subnet) {
			r.deleteOwnNew(ctx, e)
			return fmt.Errorf("lease %s overlaps %s, created just before it: %w",
				e.key, o.key, errLostRace)
		}
	}
	return nil
}

// deleteOwnNew removes a key this host has just created and could not keep, and revokes
// its etcd lease, which deletes the key too if the delete fails.
func (r *Registry) deleteOwnNew(ctx context.Context, e entry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.rpcTimeout)
	defer cancel()
	if err := r.deleteEntry(ctx, e); err != nil {
		r.log.Warn("deleting a lease this host just created", "key", e.key, "err", err)
	}
	r.revoke(ctx, clientv3.LeaseID(e.lease.EtcdLease))
}
