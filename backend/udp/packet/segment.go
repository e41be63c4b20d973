package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// TCP and UDP header offsets and flags.
const (
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	udpLen      = 4
	udpChecksum = 6

	TCPMinHeaderLen = 20
	UDPHeaderLen    = 8

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// Split describes how a super-packet was cut into IPv4 packets: segment i is the header
// [Split.Header] followed by the payload slice [Split.Payload]. Every segment but the last
// carries MSS payload bytes, so all but the last have the same length, as a UDP GSO send
// requires.
type Split struct {
	// HdrLen is the IPv4 plus transport header length in front of every segment.
	HdrLen int
	// MSS is the payload length of every segment but the last, which may be shorter.
	MSS int
	// N is the number of segments.
	N int
	// size is the super-packet's length.
	size int
}

// Header returns segment i's headers within hdrs, the buffer given to the split.
func (s Split) Header(hdrs []byte, i int) []byte {
	return hdrs[i*s.HdrLen : (i+1)*s.HdrLen]
}

// Payload returns segment i's payload within pkt, the super-packet that was split.
func (s Split) Payload(pkt []byte, i int) []byte {
	start := s.HdrLen + i*s.MSS
	return pkt[start:min(start+s.MSS, s.size)]
}

// SegmentLen returns the length of segment i on the wire.
func (s Split) SegmentLen(i int) int {
	return s.HdrLen + min(s.MSS, s.size-s.HdrLen-i*s.MSS)
}

// errNotTCP and its kin describe super-packets that cannot be split; they carry no
// values so that the data path can count them without allocating.
var (
	errNotTCP      = errors.New("super-packet is not TCP over IPv4")
	errNotUDP      = errors.New("super-packet is not UDP over IPv4")
	errFragment    = errors.New("super-packet is an IPv4 fragment")
	errTransport   = errors.New("super-packet's transport header is truncated")
	errNoPayload   = errors.New("super-packet carries no payload")
	errSegmentSize = errors.New("segment size is not positive")
)

// SplitTCP4 cuts the TCP/IPv4 super-packet pkt, which must have passed CheckIPv4, into
// segments of at most mss payload bytes, the way the kernel's TCP segmentation does: each
// segment gets a copy of the IPv4 and TCP headers written to hdrs, with its own total
// length, an IP ID counting up from the super-packet's, its own sequence number, FIN and
// PSH only on the last segment and CWR only on the first, and complete IPv4 and TCP
// checksums computed over its slice of pkt. pkt is only read.
func SplitTCP4(pkt []byte, mss int, hdrs []byte) (Split, error) {
	if Proto(pkt) != ProtoTCP {
		return Split{}, errNotTCP
	}
	iphl := HeaderLen(pkt)
	if len(pkt) < iphl+TCPMinHeaderLen {
		return Split{}, errTransport
	}
	thl := int(pkt[iphl+tcpDataOff]>>4) * 4
	if thl < TCPMinHeaderLen || len(pkt) < iphl+thl {
		return Split{}, errTransport
	}
	s, err := plan(pkt, iphl+thl, mss, hdrs)
	if err != nil {
		return Split{}, err
	}

	seq := binary.BigEndian.Uint32(pkt[iphl+tcpSeq:])
	flags := pkt[iphl+tcpFlags]
	id := binary.BigEndian.Uint16(pkt[ipv4ID:])

	// The segments' headers differ from the super-packet's in a few fields: the headers
	// are summed once with those fields zero, in segment 0's place, and each segment adds
	// its own values. The one's complement sum does not depend on the order of its words,
	// and each field sits at an even offset, so a field's bytes read as a little-endian
	// number add in like the words sumLE adds.
	tmpl := hdrs[:s.HdrLen]
	copy(tmpl, pkt[:s.HdrLen])
	clear(tmpl[ipv4TotalLen : ipv4ID+2])
	clear(tmpl[ipv4Checksum : ipv4Checksum+2])
	clear(tmpl[iphl+tcpSeq : iphl+tcpSeq+4])
	tmpl[iphl+tcpFlags] = 0
	clear(tmpl[iphl+tcpChecksum : iphl+tcpChecksum+2])
	ipBase := sumLE(tmpl[:iphl], 0)
	tcpBase := addCarry(pseudoLE(ProtoTCP, tmpl[ipv4Src:ipv4Src+4], tmpl[ipv4Dst:ipv4Dst+4], 0),
		sumLE(tmpl[iphl:], 0))

	for i := 0; i < s.N; i++ {
		h := s.Header(hdrs, i)
		payload := s.Payload(pkt, i)
		copy(h, pkt[:s.HdrLen])

		total, segID := uint16(s.HdrLen+len(payload)), id+uint16(i)
		binary.BigEndian.PutUint16(h[ipv4TotalLen:], total)
		binary.BigEndian.PutUint16(h[ipv4ID:], segID)
		acc := addCarry(ipBase,
			uint64(bits.ReverseBytes16(total))+uint64(bits.ReverseBytes16(segID)))
		binary.BigEndian.PutUint16(h[ipv4Checksum:], ^bits.ReverseBytes16(fold(acc)))

		t := h[iphl:]
		segSeq := seq + uint32(i*s.MSS)
		binary.BigEndian.PutUint32(t[tcpSeq:], segSeq)
		f := flags
		if i != s.N-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 {
			f &^= tcpCWR
		}
		t[tcpFlags] = f
		// The flags are the high byte of the word at offset 12; the pseudo-header's
		// length is the TCP header's and the payload's.
		acc = addCarry(tcpBase, uint64(bits.ReverseBytes32(segSeq))+uint64(f)<<8+
			uint64(bits.ReverseBytes16(uint16(s.HdrLen-iphl+len(payload)))))
		acc = addCarry(acc, sumLE(payload, 0))
		binary.BigEndian.PutUint16(t[tcpChecksum:], ^bits.ReverseBytes16(fold(acc)))
	}
	return s, nil
}

// SplitUDP4 cuts the UDP/IPv4 super-packet pkt (a USO send), which must have passed
// CheckIPv4, into datagrams of at most mss payload bytes: each gets a copy of the headers
// written to hdrs with its own IPv4 total length, IP ID, UDP length and complete
// checksums. pkt is only read.
func SplitUDP4(pkt []byte, mss int, hdrs []byte) (Split, error) {
	if Proto(pkt) != ProtoUDP {
		return Split{}, errNotUDP
	}
	iphl := HeaderLen(pkt)
	if len(pkt) < iphl+UDPHeaderLen {
		return Split{}, errTransport
	}
	s, err := plan(pkt, iphl+UDPHeaderLen, mss, hdrs)
	if err != nil {
		return Split{}, err
	}

	for i := 0; i < s.N; i++ {
		h := s.Header(hdrs, i)
		payload := s.Payload(pkt, i)
		copy(h, pkt[:s.HdrLen])
		setSegmentIPv4(h, iphl, s.HdrLen+len(payload), i)

		u := h[iphl:]
		binary.BigEndian.PutUint16(u[udpLen:], uint16(UDPHeaderLen+len(payload)))
		u[udpChecksum], u[udpChecksum+1] = 0, 0
		sum := ^transportSum(h, ProtoUDP, u, payload)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(u[udpChecksum:], sum)
	}
	return s, nil
}

// plan checks what SplitTCP4 and SplitUDP4 share and counts the segments.
func plan(pkt []byte, hdrLen, mss int, hdrs []byte) (Split, error) {
	if IsFragment(pkt) {
		return Split{}, errFragment
	}
	if mss <= 0 {
		return Split{}, errSegmentSize
	}
	payload := len(pkt) - hdrLen
	if payload <= 0 {
		return Split{}, errNoPayload
	}
	s := Split{HdrLen: hdrLen, MSS: mss, N: (payload + mss - 1) / mss, size: len(pkt)}
	if s.N*hdrLen > len(hdrs) {
		return Split{}, fmt.Errorf("super-packet of %d payload bytes at %d per segment "+
			"needs %d segments, room for %d", payload, mss, s.N, len(hdrs)/hdrLen)
	}
	return s, nil
}

// setSegmentIPv4 gives the IPv4 header at the front of h the length and ID of segment i,
// and its checksum.
func setSegmentIPv4(h []byte, iphl, total, i int) {
	binary.BigEndian.PutUint16(h[ipv4TotalLen:], uint16(total))
	id := binary.BigEndian.Uint16(h[ipv4ID:])
	binary.BigEndian.PutUint16(h[ipv4ID:], id+uint16(i))
	h[ipv4Checksum], h[ipv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(h[ipv4Checksum:], ^Checksum(h[:iphl], 0))
}

// transportSum returns the folded sum of the pseudo-header of the IPv4 header ip, the
// transport header th (checksum field zeroed) and payload.
func transportSum(ip []byte, proto uint8, th, payload []byte) uint16 {
	length := len(th) + len(payload)
	acc := pseudoLE(proto, ip[ipv4Src:ipv4Src+4], ip[ipv4Dst:ipv4Dst+4], length)
	acc = addCarry(acc, sumLE(th, 0))
	acc = addCarry(acc, sumLE(payload, 0))
	return bits.ReverseBytes16(fold(acc))
}

// pseudoLE is PseudoHeaderSum as a little-endian accumulator.
func pseudoLE(proto uint8, src, dst []byte, length int) uint64 {
	acc := uint64(binary.LittleEndian.Uint32(src)) + uint64(binary.LittleEndian.Uint32(dst))
	return acc + uint64(proto)<<8 + uint64(bits.ReverseBytes16(uint16(length)))
}

// addCarry adds two accumulators with end-around carry.
func addCarry(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	return s + c
}
