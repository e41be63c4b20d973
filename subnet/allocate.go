package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// freeCandidates is how many free subnets an allocation collects before it picks one at
// random, flanneld's number: hosts that start together rarely pick the same one, and
// the walk stays short in a large network.
const freeCandidates = 100

// FitsConfig reports whether a lease on v4 and v6 (v6 invalid for an IPv4-only lease) is
// one that cfg could have allocated: v4 has SubnetLen bits and starts within
// [SubnetMin, SubnetMax]; with IPv6 enabled v6 likewise for the IPv6 fields, and with
// IPv6 disabled the lease has no IPv6 part. A host reuses a lease only when it fits.
func FitsConfig(cfg *Config, v4, v6 netip.Prefix) bool {
	if !inRange(v4, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax) {
		return false
	}
	if !cfg.EnableIPv6 {
		return !v6.IsValid()
	}
	return inRange(v6, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax)
}

func inRange(p netip.Prefix, bits int, lo, hi netip.Addr) bool {
	return p.IsValid() && lo.IsValid() && hi.IsValid() &&
		p.Bits() == bits && p.Addr().BitLen() == lo.BitLen() &&
		p.Addr().Compare(lo) >= 0 && p.Addr().Compare(hi) <= 0
}

// span is one address family's allocation range, from a Config.
type span struct {
	network  netip.Prefix
	bits     int
	min, max netip.Addr
}

func v4Span(cfg *Config) span {
	return span{cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax}
}

func v6Span(cfg *Config) span {
	return span{cfg.IPv6Network, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax}
}

// freeSubnets returns, in address order, up to n subnets of s.bits bits starting within
// [s.min, s.max] that overlap none of taken. Prefixes in taken of the other family, or
// invalid ones (a lease without an IPv6 part), take nothing. The walk jumps over each
// taken block, so its cost depends on the number of leases, not on the size of the range.
func freeSubnets(s span, taken []netip.Prefix, n int) []netip.Prefix {
	if !s.min.IsValid() || !s.max.IsValid() || n <= 0 {
		return nil
	}
	var blocks []netip.Prefix
	for _, p := range taken {
		if p.IsValid() && p.Addr().BitLen() == s.min.BitLen() {
			blocks = append(blocks, p.Masked())
		}
	}
	slices.SortFunc(blocks, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})

	var out []netip.Prefix
	cur, i := s.min, 0
	for cur.IsValid() && cur.Compare(s.max) <= 0 && len(out) < n {
		cand := netip.PrefixFrom(cur, s.bits)
		candLast := lastAddr(cand)

		// Blocks are sorted by first address and CIDR blocks nest or are disjoint, so
		// the first block that ends at or after cur decides whether cand is free.
		for i < len(blocks) && lastAddr(blocks[i]).Compare(cur) < 0 {
			i++
		}
		if i < len(blocks) && blocks[i].Addr().Compare(candLast) <= 0 {
			end := candLast
			if l := lastAddr(blocks[i]); l.Compare(end) > 0 {
				end = l
			}
			cur = end.Next()
			continue
		}
		out = append(out, cand)
		cur = candLast.Next()
	}
	return out
}

// pickSubnet returns preferred when it fits s and overlaps nothing in taken, else a
// random one of the first freeCandidates free subnets. No free subnet is an error
// wrapping ErrOutOfSubnets.
func pickSubnet(s span, taken []netip.Prefix, preferred netip.Prefix) (netip.Prefix, error) {
	preferred = preferred.Masked()
	if preferred.IsValid() && inRange(preferred, s.bits, s.min, s.max) &&
		!overlapsAny(preferred, taken) {
		return preferred, nil
	}
	free := freeSubnets(s, taken, freeCandidates)
	if len(free) == 0 {
		return netip.Prefix{}, outOfSubnets(s, taken)
	}
	return free[rand.IntN(len(free))], nil
}

func overlapsAny(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if Overlaps(p, t) {
			return true
		}
	}
	return false
}

// outOfSubnets builds the error for a full range: it names the network, the range when
// the config narrows it, and how many leases hold subnets in it.
func outOfSubnets(s span, taken []netip.Prefix) error {
	held := 0
	for _, t := range taken {
		if Overlaps(t, s.network) {
			held++
		}
	}
	where := s.network.String()
	if s.network.IsValid() {
		size := blockSize(s.network.Addr().BitLen(), s.bits)
		defMin, _ := addrAdd(s.network.Addr(), size)
		defMax, _ := lastAddr(s.network).Prefix(s.bits)
		if s.min != defMin || s.max != defMax.Addr() {
			where += fmt.Sprintf(" between %s and %s", s.min, s.max)
		}
	}
	return fmt.Errorf("%w: no free /%d left in %s: %d leases held",
		ErrOutOfSubnets, s.bits, where, held)
}

// checkAttrs rejects attributes that would make a lease value real flanneld cannot use
// for a network configured as cfg.
func checkAttrs(cfg *Config, a LeaseAttrs) error {
	if !a.PublicIP.Is4() || a.PublicIP.IsUnspecified() {
		return fmt.Errorf("lease attributes: PublicIP %v is not a usable IPv4 address", a.PublicIP)
	}
	if cfg.EnableIPv6 && (!a.PublicIPv6.Is6() || a.PublicIPv6.IsUnspecified()) {
		return fmt.Errorf("lease attributes: the network config enables IPv6 but PublicIPv6 "+
			"%v is not a usable IPv6 address", a.PublicIPv6)
	}
	for _, f := range []struct {
		name string
		data json.RawMessage
	}{{"BackendData", a.BackendData}, {"BackendV6Data", a.BackendV6Data}} {
		if len(f.data) == 0 {
			continue
		}
		if !json.Valid(f.data) || !bytes.HasPrefix(bytes.TrimSpace(f.data), []byte("{")) {
			return fmt.Errorf("lease attributes: %s %q is not a JSON object", f.name, f.data)
		}
	}
	return nil
}

// checkConfig rejects configs that etcd leases cannot serve.
func checkConfig(cfg *Config) error {
	if cfg == nil {
		return errors.New("no network config given")
	}
	if !cfg.EnableIPv4 {
		// TODO: IPv6-only networks are not supported with etcd: every lease key starts
		// with an IPv4 subnet, and flanneld's handling of a key without one is
		// undocumented, so such a network cannot be shared with it safely.
		return errors.New("the network config disables IPv4, but etcd lease keys " +
			"always carry an IPv4 subnet: set EnableIPv4 to true")
	}
	return nil
}
