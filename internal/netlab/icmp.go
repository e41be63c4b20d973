package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ICMPv4 message types used by echo.
const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
)

// echoHeaderLen is the ICMP echo header: type, code, checksum, identifier, sequence.
const echoHeaderLen = 8

// Echo is the part of an ICMPv4 echo request or reply that a pinger cares about.
type Echo struct {
	Reply bool
	ID    uint16
	Seq   uint16
	Data  []byte
}

// Marshal encodes e as an ICMPv4 message with its checksum filled in, ready for a raw
// IPPROTO_ICMP socket.
func (e Echo) Marshal() []byte {
	b := make([]byte, echoHeaderLen+len(e.Data))
	b[0] = icmpEchoRequest
	if e.Reply {
		b[0] = icmpEchoReply
	}
	binary.BigEndian.PutUint16(b[4:], e.ID)
	binary.BigEndian.PutUint16(b[6:], e.Seq)
	copy(b[echoHeaderLen:], e.Data)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// errNotEcho marks ICMP messages that are valid but not echo: a raw socket sees every
// ICMP message of its namespace, and most are someone else's.
var errNotEcho = errors.New("not an ICMP echo message")

// ParseEcho decodes an ICMPv4 echo request or reply as read from a raw socket, without
// the IP header. Other ICMP types give an error wrapping errNotEcho; a short or corrupt
// message an error naming what is wrong. Data aliases b.
func ParseEcho(b []byte) (Echo, error) {
	if len(b) < echoHeaderLen {
		return Echo{}, fmt.Errorf("ICMP message of %d bytes is shorter than an echo header", len(b))
	}
	if b[0] != icmpEchoReply && b[0] != icmpEchoRequest {
		return Echo{}, fmt.Errorf("ICMP type %d code %d: %w", b[0], b[1], errNotEcho)
	}
	if b[1] != 0 {
		return Echo{}, fmt.Errorf("ICMP echo with code %d, want 0", b[1])
	}
	if checksum(b) != 0 {
		return Echo{}, errors.New("ICMP echo with a bad checksum")
	}
	return Echo{
		Reply: b[0] == icmpEchoReply,
		ID:    binary.BigEndian.Uint16(b[4:]),
		Seq:   binary.BigEndian.Uint16(b[6:]),
		Data:  b[echoHeaderLen:],
	}, nil
}

// checksum is the Internet checksum of RFC 1071 over b. Over a message whose checksum
// field is filled in correctly it is 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
