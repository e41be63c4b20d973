package subnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reserve stores a reservation: a lease on v4 (and v6, which may be invalid) for the
// host whose PublicIP is attrs.PublicIP, written without an etcd lease so that it never
// expires. That host reuses it by its public IP; every allocator skips it. When the
// host already holds that exact key, the key is rewritten without its etcd lease. A key
// held by another host, or another lease overlapping either subnet, is an error, and
// nothing is written. Like every write of the registry, it only ever writes a
// well-formed lease key.
//
// Equivalent to: etcdctl put <prefix>/subnets/<v4>-<len>[&<v6>-<len>] '<attrs JSON>'
func (r *Registry) Reserve(ctx context.Context, v4, v6 netip.Prefix,
	attrs LeaseAttrs) (*Lease, error) {
	if err := checkReservation(v4, v6, attrs); err != nil {
		return nil, err
	}
	key := r.LeaseKey(v4, v6)
	if err := r.checkKey(key); err != nil {
		return nil, err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("encoding lease attributes: %w", err)
	}

	l, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	base := entry{key: key, lease: Lease{Subnet: v4, IPv6Subnet: v6}}
	cond := clientv3.Compare(clientv3.Version(key), "=", 0)
	for _, e := range l.entries {
		if e.key == key {
			if e.lease.Attrs.PublicIP != attrs.PublicIP {
				return nil, fmt.Errorf("reserving %s for %s: the lease is held by %s",
					key, attrs.PublicIP, e.lease.Attrs.PublicIP)
			}
			base = e
			cond = clientv3.Compare(clientv3.ModRevision(key), "=", e.lease.ModRevision)
			continue
		}
		if Overlaps(e.lease.Subnet, v4) || Overlaps(e.lease.IPv6Subnet, v6) {
			return nil, fmt.Errorf("reserving %s for %s: it overlaps lease %s of %s",
				key, attrs.PublicIP, e.key, e.lease.Attrs.PublicIP)
		}
	}
	for _, o := range l.occupied {
		if o.Key() != MakeKey(v4, v6) &&
			(Overlaps(o.Subnet, v4) || Overlaps(o.IPv6Subnet, v6)) {
			return nil, fmt.Errorf("reserving %s: it overlaps the unreadable lease %s",
				key, o.Key())
		}
	}
	if l.bad[key] {
		return nil, fmt.Errorf("reserving %s: the key holds a value that is not a valid "+
			"lease; delete it first", key)
	}

	e, err := r.writeCond(ctx, base, true, attrs, value, cond)
	if errors.Is(err, errLostRace) {
		return nil, fmt.Errorf("reserving %s: the leases changed meanwhile; try again", key)
	}
	if err != nil {
		return nil, err
	}
	r.log.Info("reserved a lease", "lease", e.lease.Key(), "public_ip", attrs.PublicIP)
	return &e.lease, nil
}

func checkReservation(v4, v6 netip.Prefix, attrs LeaseAttrs) error {
	if !v4.IsValid() || !v4.Addr().Is4() || v4.Masked() != v4 || v4.Bits() > 31 {
		return fmt.Errorf("reservation subnet %v is not an IPv4 subnet of at most /31 "+
			"without host bits", v4)
	}
	if v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Is4In6() || v6.Masked() != v6 ||
		v6.Bits() > 127) {
		return fmt.Errorf("reservation IPv6 subnet %v is not an IPv6 subnet of at most "+
			"/127 without host bits", v6)
	}
	cfg := &Config{EnableIPv4: true, EnableIPv6: v6.IsValid()}
	return checkAttrs(cfg, attrs)
}

// DeleteLease deletes the lease key of v4 and v6 (v6 may be invalid); a key that does
// not exist is success. Hosts watching the leases see the lease removed.
//
// Equivalent to: etcdctl del <prefix>/subnets/<v4>-<len>[&<v6>-<len>]
func (r *Registry) DeleteLease(ctx context.Context, v4, v6 netip.Prefix) error {
	key := r.LeaseKey(v4, v6)
	if err := r.checkKey(key); err != nil {
		return err
	}
	if _, err := r.client.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting lease %s: %w", key, err)
	}
	return nil
}
