package packet

import (
	"encoding/binary"
	"testing"
)

// refChecksum is RFC 1071 written out plainly: big-endian 16-bit words, a 32-bit sum,
// carries folded at the end. The fast code is checked against it.
func refChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// refTransportChecksum is the checksum a TCP or UDP header must carry, computed from a
// freshly built pseudo-header.
func refTransportChecksum(ip []byte, proto uint8, segment []byte) uint16 {
	return ^refChecksumWithPseudo(ip, proto, segment)
}

// ipv4Valid reports whether the IPv4 header checksum of pkt is right.
func ipv4Valid(pkt []byte) bool { return refChecksum(pkt[:HeaderLen(pkt)]) == 0xffff }

// transportValid reports whether the TCP or UDP checksum of pkt is right.
func transportValid(pkt []byte) bool {
	return refChecksumWithPseudo(pkt, Proto(pkt), pkt[HeaderLen(pkt):]) == 0xffff
}

// refChecksumWithPseudo sums a pseudo-header built byte by byte and the segment.
func refChecksumWithPseudo(ip []byte, proto uint8, segment []byte) uint16 {
	pseudo := make([]byte, 12, 12+len(segment))
	copy(pseudo[0:4], ip[12:16])
	copy(pseudo[4:8], ip[16:20])
	pseudo[9] = proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(segment)))
	return refChecksum(append(pseudo, segment...))
}

// tcpSpec describes a TCP/IPv4 packet for makeTCP.
type tcpSpec struct {
	src, dst     [4]byte
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	id           uint16
	ttl          uint8
	tos          uint8
	df           bool
	options      []byte // a multiple of 4 bytes
	payload      []byte
}

func defaultSpec() tcpSpec {
	return tcpSpec{
		src:    [4]byte{198, 19, 1, 2},
		dst:    [4]byte{198, 19, 2, 2},
		sport:  40000,
		dport:  5201,
		seq:    1000,
		ack:    77,
		flags:  tcpACK,
		window: 502,
		id:     100,
		ttl:    63,
		df:     true,
	}
}

// makeTCP builds the packet from scratch with the reference checksums.
func makeTCP(s tcpSpec) []byte {
	thl := TCPMinHeaderLen + len(s.options)
	total := IPv4MinHeaderLen + thl + len(s.payload)
	p := make([]byte, total)
	p[0] = 0x45
	p[1] = s.tos
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	binary.BigEndian.PutUint16(p[4:], s.id)
	if s.df {
		p[6] = 0x40
	}
	p[8] = s.ttl
	p[9] = ProtoTCP
	copy(p[12:], s.src[:])
	copy(p[16:], s.dst[:])
	binary.BigEndian.PutUint16(p[10:], ^refChecksum(p[:20]))

	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], s.sport)
	binary.BigEndian.PutUint16(t[2:], s.dport)
	binary.BigEndian.PutUint32(t[4:], s.seq)
	binary.BigEndian.PutUint32(t[8:], s.ack)
	t[12] = byte(thl/4) << 4
	t[13] = s.flags
	binary.BigEndian.PutUint16(t[14:], s.window)
	copy(t[20:], s.options)
	copy(t[thl:], s.payload)
	binary.BigEndian.PutUint16(t[16:], refTransportChecksum(p, ProtoTCP, t))
	return p
}

// makeUDP builds a UDP/IPv4 packet with the reference checksums.
func makeUDP(src, dst [4]byte, id uint16, payload []byte) []byte {
	total := IPv4MinHeaderLen + UDPHeaderLen + len(payload)
	p := make([]byte, total)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	binary.BigEndian.PutUint16(p[4:], id)
	p[8] = 64
	p[9] = ProtoUDP
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	binary.BigEndian.PutUint16(p[10:], ^refChecksum(p[:20]))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], 5353)
	binary.BigEndian.PutUint16(u[2:], 8080)
	binary.BigEndian.PutUint16(u[4:], uint16(UDPHeaderLen+len(payload)))
	copy(u[8:], payload)
	sum := refTransportChecksum(p, ProtoUDP, u)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], sum)
	return p
}

// pattern returns n bytes that differ from one position to the next.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func assertValid(t *testing.T, what string, pkt []byte) {
	t.Helper()
	if d := CheckIPv4(pkt); d != NoDefect {
		t.Fatalf("%s: not a sound IPv4 packet: %v", what, d)
	}
	if !ipv4Valid(pkt) {
		t.Errorf("%s: IPv4 header checksum is wrong", what)
	}
	if !transportValid(pkt) {
		t.Errorf("%s: transport checksum is wrong", what)
	}
}
