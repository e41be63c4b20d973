// Package packet is the OS-free part of weft's udp data path: IPv4 header checks, the TTL
// decrement with its incremental checksum fix, ICMP errors, the virtio-net header that a
// TUN device with offloads puts in front of each packet, the splitting of TCP and UDP
// super-packets into MTU-sized IPv4 packets, and the coalescing of received TCP segments
// back into super-packets. Nothing here allocates per packet.
package packet

import (
	"encoding/binary"
	"math/bits"
)

// IPv4 header offsets and sizes.
const (
	IPv4MinHeaderLen = 20
	IPv4MaxLen       = 0xffff

	ipv4TotalLen = 2
	ipv4ID       = 4
	ipv4Frag     = 6
	ipv4TTL      = 8
	ipv4Proto    = 9
	ipv4Checksum = 10
	ipv4Src      = 12
	ipv4Dst      = 16

	ipv4MoreFragments = 0x2000
	ipv4FragOffset    = 0x1fff
)

// IP protocol numbers the data path looks at.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// A Defect is why a byte string is not a well-formed IPv4 packet.
type Defect uint8

// Defects that CheckIPv4 reports.
const (
	NoDefect     Defect = iota
	TooShort            // shorter than a minimal IPv4 header
	NotIPv4             // version is not 4
	BadHeaderLen        // IHL below 5 or reaching past the total length
	BadTotalLen         // total length differs from the bytes received
)

var defectNames = [...]string{
	NoDefect:     "none",
	TooShort:     "short",
	NotIPv4:      "not-ipv4",
	BadHeaderLen: "bad-header-length",
	BadTotalLen:  "bad-total-length",
}

// String names the defect as metrics label it.
func (d Defect) String() string {
	if int(d) < len(defectNames) {
		return defectNames[d]
	}
	return "unknown"
}

// CheckIPv4 reports what, if anything, keeps b from being exactly one IPv4 packet: at
// least a minimal header, version 4, a header length of 20 bytes or more that fits the
// packet, and a total length equal to len(b). The header checksum is not checked; the
// kernel checks it where the packet is delivered or forwarded.
func CheckIPv4(b []byte) Defect {
	if len(b) < IPv4MinHeaderLen {
		return TooShort
	}
	if b[0]>>4 != 4 {
		return NotIPv4
	}
	if int(binary.BigEndian.Uint16(b[ipv4TotalLen:])) != len(b) {
		return BadTotalLen
	}
	if hl := HeaderLen(b); hl < IPv4MinHeaderLen || hl > len(b) {
		return BadHeaderLen
	}
	return NoDefect
}

// HeaderLen returns the IPv4 header length in bytes that b's IHL field states.
func HeaderLen(b []byte) int { return int(b[0]&0x0f) * 4 }

// Src returns the source address of the IPv4 packet b as a big-endian number.
func Src(b []byte) uint32 { return binary.BigEndian.Uint32(b[ipv4Src:]) }

// Dst returns the destination address of the IPv4 packet b as a big-endian number.
func Dst(b []byte) uint32 { return binary.BigEndian.Uint32(b[ipv4Dst:]) }

// Proto returns the IPv4 packet's protocol number.
func Proto(b []byte) uint8 { return b[ipv4Proto] }

// TTL returns the IPv4 packet's time to live.
func TTL(b []byte) uint8 { return b[ipv4TTL] }

// IsFragment reports whether b is part of a fragmented datagram (more fragments follow, or
// it does not start at offset 0).
func IsFragment(b []byte) bool {
	return binary.BigEndian.Uint16(b[ipv4Frag:])&(ipv4MoreFragments|ipv4FragOffset) != 0
}

// DecrementTTL lowers the TTL of the IPv4 packet b by one and patches the header checksum
// incrementally (RFC 1624, equation 3), as a router does. It reports false, changing
// nothing, when the TTL is 1 or 0: the packet must not be forwarded.
func DecrementTTL(b []byte) bool {
	ttl := b[ipv4TTL]
	if ttl <= 1 {
		return false
	}
	b[ipv4TTL] = ttl - 1

	// The TTL is the high byte of the 16-bit word it shares with the protocol, so the
	// word drops by 0x0100: HC' = ~(~HC + ~m + m').
	old := uint32(ttl)<<8 | uint32(b[ipv4Proto])
	sum := uint32(^binary.BigEndian.Uint16(b[ipv4Checksum:])) + (^old & 0xffff) + (old - 0x100)
	sum = (sum & 0xffff) + (sum >> 16)
	sum = (sum & 0xffff) + (sum >> 16)
	binary.BigEndian.PutUint16(b[ipv4Checksum:], ^uint16(sum))
	return true
}

// SetHeaderChecksum computes and stores the header checksum of the IPv4 packet b.
func SetHeaderChecksum(b []byte) {
	hl := HeaderLen(b)
	b[ipv4Checksum], b[ipv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[ipv4Checksum:], ^Checksum(b[:hl], 0))
}

// headerSum is the checksum of a 20-byte IPv4 header, whose checksum field must be zero.
func headerSum(h []byte) uint16 {
	acc := uint64(binary.LittleEndian.Uint64(h[0:8]))
	acc, c := bits.Add64(acc, binary.LittleEndian.Uint64(h[8:16]), 0)
	acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(h[16:20])), c)
	return ^bits.ReverseBytes16(fold(acc + c))
}

// HeadersLen returns the length of pkt's IPv4 header plus its TCP or UDP header, or 0
// when pkt carries neither or is too short to hold them. pkt must have passed CheckIPv4.
func HeadersLen(pkt []byte) int {
	hl := HeaderLen(pkt)
	switch Proto(pkt) {
	case ProtoTCP:
		if len(pkt) < hl+TCPMinHeaderLen {
			return 0
		}
		thl := int(pkt[hl+tcpDataOff]>>4) * 4
		if thl < TCPMinHeaderLen || len(pkt) < hl+thl {
			return 0
		}
		return hl + thl
	case ProtoUDP:
		if len(pkt) < hl+UDPHeaderLen {
			return 0
		}
		return hl + UDPHeaderLen
	}
	return 0
}
