package udp

import (
	"time"

	"github.com/weftnet/weft/backend/udp/packet"
)

// rxPath is the receive side of the data path without its system calls: it checks each
// datagram from a peer, cuts merged ones into their packets, decrements each packet's
// TTL and hands it on, to the coalescer or straight to the TUN device, and answers a
// packet whose TTL ran out with ICMP time-exceeded. It belongs to one goroutine.
type rxPath struct {
	ctr     *Counters
	tunAddr [4]byte
	// coal, when set, gathers the packets of a batch for merged writes; without it each
	// packet goes to write.
	coal *packet.Coalescer
	// write delivers one packet to the TUN device; only a fatal error is returned.
	write func(pkt []byte) error
	// sendICMP sends an ICMP error message to a peer.
	sendICMP func(p *Peer, msg []byte)

	icmp    []byte
	limiter icmpLimiter
}

// newCoalescer returns the receive path's coalescer for batches of up to n packets. It
// merges segments without verifying their TCP checksums, which would take a pass over
// every byte received, half of the receive path's own work: each packet arrived as a
// UDP datagram whose
// checksum covers all of it and was verified by the kernel (or the network card) before
// the datagram was handed over, and peers, flanneld's proxy as much as weft, send inner
// packets whose checksums the kernel or the transmit path computed from their bytes. An
// IPv4 datagram may carry no UDP checksum; no peer's socket sends one so.
func newCoalescer(n int) *packet.Coalescer {
	c := packet.NewCoalescer(n)
	c.TrustChecksums()
	return c
}

// datagram takes one received datagram: data from the underlay address src, merged by
// the kernel from datagrams of segSize bytes (its own length when not merged), cut short
// when truncated. It returns only errors that stop the worker.
func (r *rxPath) datagram(table *Table, data []byte, src uint32, segSize int,
	truncated bool) error {
	if segSize <= 0 {
		segSize = len(data)
	}
	if !table.KnownSource(src) {
		r.ctr.drop(DropUnknownSource, uint64(segments(len(data), segSize)))
		return nil
	}
	if truncated {
		r.ctr.drop(DropBadTotalLen, 1)
		return nil
	}
	if len(data) == 0 {
		r.ctr.drop(DropShort, 1)
		return nil
	}
	for off := 0; off < len(data); off += segSize {
		if err := r.packet(table, data[off:min(off+segSize, len(data))]); err != nil {
			return err
		}
	}
	return nil
}

// segments returns how many datagrams of segSize bytes a merged datagram of n bytes holds.
func segments(n, segSize int) int {
	if segSize <= 0 || n == 0 {
		return 1
	}
	return (n + segSize - 1) / segSize
}

// packet checks one inner packet from a peer and passes it on.
func (r *rxPath) packet(table *Table, pkt []byte) error {
	if d := packet.CheckIPv4(pkt); d != packet.NoDefect {
		r.ctr.drop(defectDrop(d), 1)
		return nil
	}
	if !packet.DecrementTTL(pkt) {
		r.ctr.drop(DropTTL, 1)
		r.timeExceeded(table, pkt)
		return nil
	}
	if r.coal != nil {
		r.coal.Add(pkt)
		return nil
	}
	return r.write(pkt)
}

// timeExceeded sends an ICMP time-exceeded about pkt, whose TTL ran out here, straight
// to the peer that holds its source, from this host's flannel0 address, which is no
// local address on that peer.
func (r *rxPath) timeExceeded(table *Table, pkt []byte) {
	if !packet.WantsICMPError(pkt) {
		return
	}
	peer := table.Lookup(packet.Src(pkt))
	if peer == nil || !r.limiter.allow(time.Now()) {
		return
	}
	r.icmp = packet.AppendICMPError(r.icmp[:0], packet.ICMPTimeExceeded,
		packet.CodeTTLExceeded, r.tunAddr, pkt)
	r.ctr.ICMPErrors.Add(1)
	r.sendICMP(peer, r.icmp)
}

// defectDrop maps a malformation to its drop reason.
func defectDrop(d packet.Defect) DropReason {
	switch d {
	case packet.TooShort:
		return DropShort
	case packet.NotIPv4:
		return DropNotIPv4
	case packet.BadHeaderLen:
		return DropBadHeaderLen
	}
	return DropBadTotalLen
}
