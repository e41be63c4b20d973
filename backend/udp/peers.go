package udp

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// Peer is where packets for one lease's subnet go.
type Peer struct {
	// Subnet is the peer's lease.
	Subnet netip.Prefix
	// Addr is the peer's PublicIP and the data path's port.
	Addr netip.AddrPort
	// ip and port are Addr as the socket layer wants them.
	ip   [4]byte
	port uint16
}

// Table maps inner destination addresses to peers, and tells which underlay addresses
// hold a lease. It is immutable once built: the data path reads the current table
// through an atomic pointer while lease events build the next one.
type Table struct {
	// byLen holds one map per prefix length in use, longest first, keyed by the masked
	// address; in practice every lease has the network's SubnetLen and there is one.
	byLen   []lenMap
	sources map[uint32]struct{}
	peers   []*Peer
}

type lenMap struct {
	mask uint32
	nets map[uint32]*Peer
}

// NewTable builds a table from lease subnets and their peers' addresses. Subnets must be
// IPv4 prefixes and addresses IPv4; others are left out.
func NewTable(routes map[netip.Prefix]netip.AddrPort) *Table {
	t := &Table{sources: make(map[uint32]struct{}, len(routes))}
	byBits := map[int]map[uint32]*Peer{}
	for pfx, addr := range routes {
		if !pfx.Addr().Is4() || !addr.Addr().Is4() {
			continue
		}
		pfx = pfx.Masked()
		p := &Peer{Subnet: pfx, Addr: addr, ip: addr.Addr().As4(), port: addr.Port()}
		t.peers = append(t.peers, p)

		m := byBits[pfx.Bits()]
		if m == nil {
			m = map[uint32]*Peer{}
			byBits[pfx.Bits()] = m
		}
		m[addrKey(pfx.Addr())] = p
		t.sources[binary.BigEndian.Uint32(p.ip[:])] = struct{}{}
	}

	for bits, m := range byBits {
		t.byLen = append(t.byLen, lenMap{mask: prefixMask(bits), nets: m})
	}
	slices.SortFunc(t.byLen, func(a, b lenMap) int { return cmp.Compare(b.mask, a.mask) })
	slices.SortFunc(t.peers, func(a, b *Peer) int {
		return a.Subnet.Addr().Compare(b.Subnet.Addr())
	})
	return t
}

// Lookup returns the peer whose subnet holds dst (a big-endian IPv4 address), the
// longest match when subnets nest, or nil.
func (t *Table) Lookup(dst uint32) *Peer {
	for i := range t.byLen {
		l := &t.byLen[i]
		if p, ok := l.nets[dst&l.mask]; ok {
			return p
		}
	}
	return nil
}

// KnownSource reports whether src (a big-endian IPv4 address) is the PublicIP of a lease.
func (t *Table) KnownSource(src uint32) bool {
	_, ok := t.sources[src]
	return ok
}

// Len returns the number of peers.
func (t *Table) Len() int { return len(t.peers) }

// Peers returns the peers ordered by subnet; the slice must not be changed.
func (t *Table) Peers() []*Peer { return t.peers }

func addrKey(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func prefixMask(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}
