package udp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/udp/packet"
)

// innerUDP builds an IPv4/UDP packet as a pod would send it, with a valid header
// checksum and no UDP checksum, which IPv4 allows.
func innerUDP(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = packet.ProtoUDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	packet.SetHeaderChecksum(p)
	return p
}

// innerTCP builds one segment of a TCP stream with valid checksums.
func innerTCP(src, dst netip.AddrPort, seq uint32, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], uint16(seq))
	p[6] = 0x40
	p[8] = 64
	p[9] = packet.ProtoTCP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	packet.SetHeaderChecksum(p)
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 1)
	t[12] = 5 << 4
	t[13] = 0x10
	binary.BigEndian.PutUint16(t[14:], 500)
	copy(t[20:], payload)
	sum := packet.PseudoHeaderSum(packet.ProtoTCP, p[12:16], p[16:20], len(t))
	binary.BigEndian.PutUint16(t[16:], ^packet.Checksum(t, sum))
	return p
}

// rxHarness is an rxPath whose TUN device and socket are recordings.
type rxHarness struct {
	r       *rxPath
	ctr     *Counters
	table   *Table
	written [][]byte
	icmps   []sentICMP
}

type sentICMP struct {
	to  *Peer
	msg []byte
}

var (
	peerPublic = netip.MustParseAddr("198.18.0.2")
	peerPod    = netip.MustParseAddrPort("198.19.2.2:4000")
	localPod   = netip.MustParseAddrPort("198.19.1.2:5000")
)

func newRxHarness(coalesce bool) *rxHarness {
	h := &rxHarness{ctr: &Counters{}}
	h.table = NewTable(map[netip.Prefix]netip.AddrPort{
		netip.MustParsePrefix("198.19.2.0/24"): netip.AddrPortFrom(peerPublic, DefaultPort),
	})
	h.r = &rxPath{
		ctr:     h.ctr,
		tunAddr: [4]byte{198, 19, 1, 0},
		write: func(pkt []byte) error {
			h.written = append(h.written, bytes.Clone(pkt))
			return nil
		},
		sendICMP: func(p *Peer, msg []byte) {
			h.icmps = append(h.icmps, sentICMP{p, bytes.Clone(msg)})
		},
		icmp: make([]byte, 0, packet.ICMPErrorMaxLen),
	}
	if coalesce {
		h.r.coal = newCoalescer(64)
	}
	return h
}

// receive hands the harness a datagram from src.
func (h *rxHarness) receive(t *testing.T, src netip.Addr, data []byte, segSize int) {
	t.Helper()
	if err := h.r.datagram(h.table, data, addrKey(src), segSize, false); err != nil {
		t.Fatal(err)
	}
}

func TestRxPathDrops(t *testing.T) {
	good := innerUDP(peerPod, localPod, []byte("data"))
	ttl1 := innerUDP(peerPod, localPod, []byte("late"))
	ttl1[8] = 1
	packet.SetHeaderChecksum(ttl1)

	tests := map[string]struct {
		src       netip.Addr
		data      []byte
		segSize   int
		truncated bool
		delivered int
		drops     map[DropReason]uint64
		icmp      bool
	}{
		"good": {src: peerPublic, data: good, delivered: 1},
		"unknown source": {src: netip.MustParseAddr("198.18.0.200"), data: good,
			drops: map[DropReason]uint64{DropUnknownSource: 1}},
		"unknown source, merged": {src: netip.MustParseAddr("198.18.0.200"),
			data: bytes.Repeat(good, 3), segSize: len(good),
			drops: map[DropReason]uint64{DropUnknownSource: 3}},
		"truncated": {src: peerPublic, data: good, truncated: true,
			drops: map[DropReason]uint64{DropBadTotalLen: 1}},
		"empty": {src: peerPublic, data: []byte{},
			drops: map[DropReason]uint64{DropShort: 1}},
		"short": {src: peerPublic, data: good[:19],
			drops: map[DropReason]uint64{DropShort: 1}},
		"IPv6": {src: peerPublic, data: append([]byte{0x60}, good[1:]...),
			drops: map[DropReason]uint64{DropNotIPv4: 1}},
		"IHL 3": {src: peerPublic, data: append([]byte{0x43}, good[1:]...),
			drops: map[DropReason]uint64{DropBadHeaderLen: 1}},
		"total length too big": {src: peerPublic, data: append(bytes.Clone(good), 0, 0),
			drops: map[DropReason]uint64{DropBadTotalLen: 1}},
		"merged with a bad one in the middle": {src: peerPublic,
			data:    append(append(bytes.Clone(good), append([]byte{0x60}, good[1:]...)...), good...),
			segSize: len(good), delivered: 2,
			drops: map[DropReason]uint64{DropNotIPv4: 1}},
		"TTL runs out": {src: peerPublic, data: ttl1, icmp: true,
			drops: map[DropReason]uint64{DropTTL: 1}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := newRxHarness(false)
			data := bytes.Clone(tt.data)
			if err := h.r.datagram(h.table, data, addrKey(tt.src), tt.segSize, tt.truncated); err != nil {
				t.Fatal(err)
			}
			if len(h.written) != tt.delivered {
				t.Errorf("%d packets delivered, want %d", len(h.written), tt.delivered)
			}
			for _, p := range h.written {
				if packet.TTL(p) != 63 || refHeaderSum(p) != 0xffff {
					t.Errorf("delivered TTL %d, header checksum valid %v; want 63, true",
						packet.TTL(p), refHeaderSum(p) == 0xffff)
				}
			}
			for r := DropReason(0); r < NumDropReasons; r++ {
				if got := h.ctr.Drops(r); got != tt.drops[r] {
					t.Errorf("%v drops = %d, want %d", r, got, tt.drops[r])
				}
			}
			if got := len(h.icmps) == 1; got != tt.icmp {
				t.Fatalf("%d ICMP errors sent, want one: %v", len(h.icmps), tt.icmp)
			}
			if tt.icmp {
				m := h.icmps[0].msg
				if h.icmps[0].to.Addr.Addr() != peerPublic || m[20] != packet.ICMPTimeExceeded ||
					netip.AddrFrom4([4]byte(m[12:16])) != netip.MustParseAddr("198.19.1.0") ||
					netip.AddrFrom4([4]byte(m[16:20])) != peerPod.Addr() {
					t.Errorf("ICMP %x sent to %v; want time-exceeded 198.19.1.0 -> %v via %v",
						m, h.icmps[0].to.Addr, peerPod.Addr(), peerPublic)
				}
				if h.ctr.ICMPErrors.Load() != 1 {
					t.Errorf("ICMPErrors = %d", h.ctr.ICMPErrors.Load())
				}
			}
		})
	}
}

func TestRxPathNoICMPWithoutPeer(t *testing.T) {
	h := newRxHarness(false)
	p := innerUDP(netip.MustParseAddrPort("198.19.7.7:1"), localPod, nil)
	p[8] = 1
	packet.SetHeaderChecksum(p)
	h.receive(t, peerPublic, p, 0)
	if len(h.icmps) != 0 || h.ctr.Drops(DropTTL) != 1 {
		t.Errorf("%d ICMP errors to a source no peer holds, %d TTL drops; want 0, 1",
			len(h.icmps), h.ctr.Drops(DropTTL))
	}
}

func TestRxPathCoalesces(t *testing.T) {
	h := newRxHarness(true)
	var merged []byte
	for i := 0; i < 3; i++ {
		merged = append(merged, innerTCP(peerPod, localPod, uint32(1000+i*1000),
			bytes.Repeat([]byte{byte(i)}, 1000))...)
	}
	h.receive(t, peerPublic, merged, 1040)
	if h.r.coal.Len() != 1 {
		t.Fatalf("%d items, want the 3 segments merged into 1", h.r.coal.Len())
	}
	hdr, parts := h.r.coal.Item(0)
	if hdr.GSOType != packet.GSOTCPv4 || hdr.GSOSize != 1000 || len(parts) != 3 {
		t.Errorf("item %+v in %d parts; want TCPv4 GSO of 1000 in 3", hdr, len(parts))
	}
	if len(h.written) != 0 {
		t.Errorf("%d packets written past the coalescer", len(h.written))
	}
}

func refHeaderSum(p []byte) uint16 { return packet.Checksum(p[:packet.HeaderLen(p)], 0) }

// FuzzReceive feeds arbitrary datagrams, merged at arbitrary sizes, through the receive
// path with a coalescer: nothing panics, every drop is counted, and every item handed to
// the TUN device is sound IPv4.
func FuzzReceive(f *testing.F) {
	tcp := innerTCP(peerPod, localPod, 1, bytes.Repeat([]byte{7}, 100))
	next := innerTCP(peerPod, localPod, 101, bytes.Repeat([]byte{8}, 100))
	f.Add(append(bytes.Clone(tcp), next...), uint16(len(tcp)), true)
	f.Add(innerUDP(peerPod, localPod, []byte("x")), uint16(0), true)
	f.Add([]byte{0x45, 0, 0, 20}, uint16(0), false)
	f.Fuzz(func(t *testing.T, data []byte, segSize uint16, known bool) {
		h := newRxHarness(true)
		src := peerPublic
		if !known {
			src = netip.MustParseAddr("198.18.0.9")
		}
		if err := h.r.datagram(h.table, data, addrKey(src), int(segSize), false); err != nil {
			t.Fatal(err)
		}
		var drops uint64
		for r := DropReason(0); r < NumDropReasons; r++ {
			drops += h.ctr.Drops(r)
		}
		items := h.r.coal.Len()
		if len(data) > 0 && drops == 0 && items == 0 {
			t.Fatalf("a %d-byte datagram was neither delivered nor counted", len(data))
		}
		for i := 0; i < items; i++ {
			hdr, parts := h.r.coal.Item(i)
			whole := bytes.Join(parts, nil)
			if hdr.GSOType == packet.GSONone {
				if packet.CheckIPv4(whole) != packet.NoDefect {
					t.Fatalf("item %d is not sound IPv4", i)
				}
				continue
			}
			if int(binary.BigEndian.Uint16(whole[2:])) != len(whole) || refHeaderSum(whole) != 0xffff {
				t.Fatalf("merged item %d has a wrong length or header checksum", i)
			}
		}
		for _, m := range h.icmps {
			if packet.CheckIPv4(m.msg) != packet.NoDefect || refHeaderSum(m.msg) != 0xffff {
				t.Fatalf("ICMP error %x is not sound", m.msg)
			}
		}
	})
}

// BenchmarkRxPath measures what the receive worker does to one UDP GRO datagram of 44
// TCP segments, short of the system calls: source check, cut, checks, TTL, merge into
// one super-packet.
func BenchmarkRxPath(b *testing.B) {
	h := newRxHarness(true)
	var tmpl []byte
	for i := 0; i < 44; i++ {
		tmpl = append(tmpl, innerTCP(peerPod, localPod, uint32(1+i*1432), make([]byte, 1432))...)
	}
	buf := bytes.Clone(tmpl)
	src := addrKey(peerPublic)
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, tmpl)
		if err := h.r.datagram(h.table, buf, src, 1472, false); err != nil {
			b.Fatal(err)
		}
		if h.r.coal.Len() != 1 {
			b.Fatalf("%d items, want 1", h.r.coal.Len())
		}
		h.r.coal.Item(0)
		h.r.coal.Reset()
	}
}
