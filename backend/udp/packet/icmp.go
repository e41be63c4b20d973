package packet

import "encoding/binary"

// ICMP types and codes the data path generates.
const (
	ICMPDestUnreachable = 3
	ICMPTimeExceeded    = 11

	CodeNetUnreachable = 0
	CodeTTLExceeded    = 0
)

// ICMPErrorMaxLen is the largest message AppendICMPError builds: a 20-byte header, the
// 8-byte ICMP header, a quoted header of at most 60 bytes and 8 bytes of its payload.
const ICMPErrorMaxLen = IPv4MinHeaderLen + 8 + 60 + 8

// icmpErrorTTL is the TTL of generated ICMP errors, the usual initial TTL of a host.
const icmpErrorTTL = 64

// WantsICMPError reports whether the IPv4 packet orig, found undeliverable, may be answered
// with an ICMP error (RFC 1812, 4.3.2.7): not when it is itself an ICMP error (or too short
// to tell), not when it is a fragment other than the first, and not when its source is no
// single host (unspecified, loopback, multicast, limited broadcast or class E) or its
// destination a multicast or broadcast group. orig must have passed CheckIPv4.
func WantsICMPError(orig []byte) bool {
	if binary.BigEndian.Uint16(orig[ipv4Frag:])&ipv4FragOffset != 0 {
		return false
	}
	src, dst := Src(orig), Dst(orig)
	if src == 0 || src>>24 == 127 || src>>28 >= 0xe || dst>>28 >= 0xe {
		return false
	}
	if Proto(orig) != ProtoICMP {
		return true
	}
	hl := HeaderLen(orig)
	if len(orig) < hl+1 {
		return false
	}
	switch orig[hl] {
	case 0, 8, 13, 14, 15, 16, 17, 18: // echo, timestamp, information, address mask
		return true
	}
	return false
}

// AppendICMPError appends to dst an IPv4 packet carrying an ICMP error of type typ and code
// code about orig, from src to orig's source. It quotes orig's IP header and the first 8
// bytes of its payload (RFC 792), sets TTL 64 and precedence "internetwork control" (RFC
// 1812, 4.3.2.5), and fills in both checksums. orig must have passed CheckIPv4.
func AppendICMPError(dst []byte, typ, code uint8, src [4]byte, orig []byte) []byte {
	quote := min(HeaderLen(orig)+8, len(orig))
	total := IPv4MinHeaderLen + 8 + quote

	start := len(dst)
	dst = append(dst, make([]byte, total)...)
	p := dst[start:]

	p[0] = 0x45
	p[1] = 0xc0
	binary.BigEndian.PutUint16(p[ipv4TotalLen:], uint16(total))
	p[ipv4TTL] = icmpErrorTTL
	p[ipv4Proto] = ProtoICMP
	copy(p[ipv4Src:], src[:])
	copy(p[ipv4Dst:], orig[ipv4Src:ipv4Src+4])
	binary.BigEndian.PutUint16(p[ipv4Checksum:], headerSum(p))

	m := p[IPv4MinHeaderLen:]
	m[0] = typ
	m[1] = code
	copy(m[8:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:], ^Checksum(m, 0))
	return dst
}
