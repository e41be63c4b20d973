package packet

import (
	"bytes"
	"encoding/binary"
)

// Limits of coalescing: how many segments one super-packet may hold, and how many flows
// may be growing at once before the oldest is closed.
const (
	MaxCoalescedSegments = 64
	maxOpenFlows         = 8
)

// A Coalescer merges consecutive TCP/IPv4 segments of a flow, received as separate IPv4
// packets, into super-packets that a TUN device with IFF_VNET_HDR accepts as one write,
// the way the kernel's GRO does. Packets of other kinds, and segments that cannot join,
// pass through as items of their own. Per flow, items keep the order in which their
// packets were added.
//
// Segments join only when nothing that the receiver would see differs from the kernel
// cutting the super-packet up again: no IP options or fragments; the same addresses,
// ports, TOS, TTL, DF bit, acknowledgement, window and TCP options; only ACK (and ECE)
// set, with PSH allowed on the last one; consecutive sequence numbers; equal payload
// sizes with at most a shorter last one; and a verified TCP checksum, since the merged
// packet is handed over with its checksum still to compute (unless TrustChecksums).
//
// A Coalescer is used by one goroutine: Add the packets of a batch, read each item with
// Item, then Reset. Packets are modified in place and must stay untouched until Reset.
type Coalescer struct {
	pkts  [][]byte
	next  []int32 // index of the item's next packet, or -1
	items []item
	open  []int32 // items that may still grow, oldest first
	parts [][]byte
	// trusted: segments are merged without summing their payloads (TrustChecksums).
	trusted bool
}

type item struct {
	first, last int32
	count       int
	total       int // IPv4 total length of the merged packet
	gso         int // payload bytes per segment
	hdrLen      int // IPv4 plus TCP header length
	nextSeq     uint32
	psh         bool
}

// NewCoalescer returns a Coalescer sized for batches of up to n packets; larger batches
// work but allocate.
func NewCoalescer(n int) *Coalescer {
	return &Coalescer{
		pkts:  make([][]byte, 0, n),
		next:  make([]int32, 0, n),
		items: make([]item, 0, n),
		open:  make([]int32, 0, maxOpenFlows),
		parts: make([][]byte, 0, MaxCoalescedSegments),
	}
}

// TrustChecksums makes the Coalescer merge segments without verifying their TCP
// checksums, which takes a pass over every byte: for packets whose bytes a checksum of
// the transport that carried them already covered, such as the inner packets of UDP
// datagrams whose checksum the kernel verified before handing them over, and whose
// senders computed their TCP checksums from their data, as the kernel and the udp data
// path do. A merged segment's own checksum is then never looked at, since the merged
// packet's is computed afresh: one that a sender got wrong goes unnoticed, where unmerged
// it would be dropped by the receiver.
func (c *Coalescer) TrustChecksums() { c.trusted = true }

// Reset forgets the batch.
func (c *Coalescer) Reset() {
	clear(c.pkts)
	c.pkts = c.pkts[:0]
	c.next = c.next[:0]
	c.items = c.items[:0]
	c.open = c.open[:0]
	clear(c.parts)
	c.parts = c.parts[:0]
}

// Len returns the number of items the batch has so far.
func (c *Coalescer) Len() int { return len(c.items) }

// Add takes the IPv4 packet pkt, which must have passed CheckIPv4, into the batch: it
// joins an open super-packet of its flow or becomes an item of its own.
func (c *Coalescer) Add(pkt []byte) {
	idx := int32(len(c.pkts))
	c.pkts = append(c.pkts, pkt)
	c.next = append(c.next, -1)

	payload, ok := joinable(pkt, !c.trusted)
	if !ok {
		// The packet passes through alone, after whatever of its flow came before.
		if Proto(pkt) == ProtoTCP && len(pkt) >= HeaderLen(pkt)+4 {
			if o, found := c.findOpen(pkt); found {
				c.closeOpen(o)
			}
		}
		c.items = append(c.items, item{first: idx, last: idx, count: 1})
		return
	}

	if o, found := c.findOpen(pkt); found {
		it := &c.items[c.open[o]]
		if c.canJoin(it, pkt, payload) {
			c.next[it.last] = idx
			it.last = idx
			it.count++
			it.total += payload
			it.nextSeq += uint32(payload)
			if pkt[IPv4MinHeaderLen+tcpFlags]&tcpPSH != 0 {
				it.psh = true
			}
			if it.psh || payload < it.gso || it.count == MaxCoalescedSegments {
				c.closeOpen(o)
			}
			return
		}
		c.closeOpen(o)
	}

	thl := int(pkt[IPv4MinHeaderLen+tcpDataOff]>>4) * 4
	seq := binary.BigEndian.Uint32(pkt[IPv4MinHeaderLen+tcpSeq:])
	c.items = append(c.items, item{
		first:   idx,
		last:    idx,
		count:   1,
		total:   len(pkt),
		gso:     payload,
		hdrLen:  IPv4MinHeaderLen + thl,
		nextSeq: seq + uint32(payload),
		psh:     pkt[IPv4MinHeaderLen+tcpFlags]&tcpPSH != 0,
	})
	if c.items[len(c.items)-1].psh {
		return
	}
	if len(c.open) == maxOpenFlows {
		c.closeOpen(0)
	}
	c.open = append(c.open, int32(len(c.items)-1))
}

// Item returns item i of the batch: the virtio-net header to write in front of it and the
// byte slices that follow, in order. For a merged item it first rewrites the first
// packet's headers for the whole super-packet. Call it once per item.
func (c *Coalescer) Item(i int) (VirtioNetHdr, [][]byte) {
	it := &c.items[i]
	first := c.pkts[it.first]
	c.parts = append(c.parts[:0], first)
	if it.count == 1 {
		return VirtioNetHdr{}, c.parts
	}

	for j := c.next[it.first]; j >= 0; j = c.next[j] {
		c.parts = append(c.parts, c.pkts[j][it.hdrLen:])
	}

	binary.BigEndian.PutUint16(first[ipv4TotalLen:], uint16(it.total))
	first[ipv4Checksum], first[ipv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(first[ipv4Checksum:], headerSum(first))
	t := first[IPv4MinHeaderLen:]
	if it.psh {
		t[tcpFlags] |= tcpPSH
	}
	// The checksum field of a packet handed over with its checksum to compute holds the
	// pseudo-header sum, not complemented.
	pseudo := PseudoHeaderSum(ProtoTCP, first[ipv4Src:ipv4Src+4], first[ipv4Dst:ipv4Dst+4],
		it.total-IPv4MinHeaderLen)
	binary.BigEndian.PutUint16(t[tcpChecksum:], pseudo)

	return VirtioNetHdr{
		Flags:      VirtioNeedsCsum,
		GSOType:    GSOTCPv4,
		HdrLen:     uint16(it.hdrLen),
		GSOSize:    uint16(it.gso),
		CsumStart:  IPv4MinHeaderLen,
		CsumOffset: tcpChecksum,
	}, c.parts
}

// joinable reports whether pkt is a TCP segment that may be merged with others, and its
// payload length; with verify, its TCP checksum must be right too.
func joinable(pkt []byte, verify bool) (int, bool) {
	if HeaderLen(pkt) != IPv4MinHeaderLen || Proto(pkt) != ProtoTCP || IsFragment(pkt) {
		return 0, false
	}
	if len(pkt) < IPv4MinHeaderLen+TCPMinHeaderLen {
		return 0, false
	}
	t := pkt[IPv4MinHeaderLen:]
	thl := int(t[tcpDataOff]>>4) * 4
	if thl < TCPMinHeaderLen || len(t) <= thl {
		return 0, false
	}
	if t[tcpFlags]&^(tcpACK|tcpPSH|tcpECE) != 0 || t[tcpFlags]&tcpACK == 0 {
		return 0, false
	}
	if verify && transportSum(pkt, ProtoTCP, t[:thl], t[thl:]) != 0xffff {
		return 0, false
	}
	return len(t) - thl, true
}

// canJoin reports whether the joinable segment pkt continues item it.
func (c *Coalescer) canJoin(it *item, pkt []byte, payload int) bool {
	first := c.pkts[it.first]
	switch {
	case binary.BigEndian.Uint32(pkt[IPv4MinHeaderLen+tcpSeq:]) != it.nextSeq,
		payload > it.gso,
		it.total+payload > IPv4MaxLen,
		int(pkt[IPv4MinHeaderLen+tcpDataOff]>>4)*4+IPv4MinHeaderLen != it.hdrLen:
		return false
	}
	// IPv4: version, IHL, TOS; flags and fragment offset, TTL, protocol.
	le := binary.LittleEndian
	if le.Uint16(first[0:]) != le.Uint16(pkt[0:]) || le.Uint32(first[6:]) != le.Uint32(pkt[6:]) {
		return false
	}
	// TCP: acknowledgement, data offset, flags but PSH, window, urgent pointer, options.
	f, p := first[IPv4MinHeaderLen:it.hdrLen], pkt[IPv4MinHeaderLen:it.hdrLen]
	return le.Uint32(f[tcpAck:]) == le.Uint32(p[tcpAck:]) &&
		f[tcpDataOff] == p[tcpDataOff] &&
		(f[tcpFlags]^p[tcpFlags])&^tcpPSH == 0 &&
		le.Uint16(f[tcpWindow:]) == le.Uint16(p[tcpWindow:]) &&
		bytes.Equal(f[tcpChecksum+2:], p[tcpChecksum+2:])
}

// findOpen returns the position in c.open of the growing item of pkt's flow.
func (c *Coalescer) findOpen(pkt []byte) (int, bool) {
	hl := HeaderLen(pkt)
	le := binary.LittleEndian
	addrs, ports := le.Uint64(pkt[ipv4Src:]), le.Uint32(pkt[hl:])
	for o, it := range c.open {
		first := c.pkts[c.items[it].first]
		if le.Uint64(first[ipv4Src:]) == addrs && le.Uint32(first[IPv4MinHeaderLen:]) == ports {
			return o, true
		}
	}
	return 0, false
}

// closeOpen stops the item at position o of c.open from growing.
func (c *Coalescer) closeOpen(o int) {
	copy(c.open[o:], c.open[o+1:])
	c.open = c.open[:len(c.open)-1]
}
