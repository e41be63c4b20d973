package subnet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer used for address arithmetic. IPv4 addresses occupy
// the low 32 bits of lo.
type u128 struct{ hi, lo uint64 }

func addrToU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// u128ToAddr converts v back to an address of the same family as like.
func u128ToAddr(v u128, like netip.Addr) netip.Addr {
	if like.Is4() {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.AddrFrom16(b)
}

func (a u128) add(b u128) (sum u128, overflow bool) {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, carry := bits.Add64(a.hi, b.hi, carry)
	return u128{hi: hi, lo: lo}, carry != 0
}

func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, borrow)
	return u128{hi: hi, lo: lo}
}

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

// pow2 returns 1<<n for n in 0..127.
func pow2(n int) u128 {
	if n >= 64 {
		return u128{hi: 1 << (n - 64)}
	}
	return u128{lo: 1 << n}
}

// blockSize is the number of addresses in a prefix of length bitsLen in a family with
// total bits addrBits.
func blockSize(addrBits, bitsLen int) u128 {
	return pow2(addrBits - bitsLen)
}

// addrAdd returns a + n, and false if the sum leaves the address family.
func addrAdd(a netip.Addr, n u128) (netip.Addr, bool) {
	sum, overflow := addrToU128(a).add(n)
	if overflow || (a.Is4() && (sum.hi != 0 || sum.lo > 0xffffffff)) {
		return netip.Addr{}, false
	}
	return u128ToAddr(sum, a), true
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	size := blockSize(p.Addr().BitLen(), p.Bits())
	last, _ := addrAdd(p.Addr(), size.sub(u128{lo: 1}))
	return last
}

// aligned reports whether a is the first address of a prefix of length bitsLen.
func aligned(a netip.Addr, bitsLen int) bool {
	p, err := a.Prefix(bitsLen)
	return err == nil && p.Addr() == a
}

// FirstHost returns the prefix's network address plus one, with the prefix's length: the
// form flanneld writes into FLANNEL_SUBNET (10.5.52.0/24 gives 10.5.52.1/24). It is the
// gateway address that Docker's --bip, the CNI bridge plugin and hyperd's BridgeIP expect.
func FirstHost(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	next := p.Addr().Next()
	if !next.IsValid() {
		return p
	}
	return netip.PrefixFrom(next, p.Bits())
}

// Overlaps reports whether a and b share any address. An invalid prefix overlaps nothing,
// so a lease without an IPv6 part never collides with an IPv6 candidate (flanneld panics
// there instead).
func Overlaps(a, b netip.Prefix) bool {
	if !a.IsValid() || !b.IsValid() {
		return false
	}
	return a.Overlaps(b)
}
