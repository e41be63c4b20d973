package udp

import "sync/atomic"

// DropReason says why the data path dropped a packet.
type DropReason int

// Reasons for drops. Malformed datagrams are split by what is wrong with them.
const (
	// DropNoRoute: no lease covers the destination of a packet from the TUN device.
	DropNoRoute DropReason = iota
	// DropTTL: the inner TTL ran out, on the way out or on the way in.
	DropTTL
	// DropUnknownSource: a datagram came from an address that is no lease's PublicIP.
	DropUnknownSource
	// DropShort: shorter than an IPv4 header.
	DropShort
	// DropNotIPv4: the IP version is not 4.
	DropNotIPv4
	// DropBadHeaderLen: the IPv4 header length is below 20 or beyond the packet.
	DropBadHeaderLen
	// DropBadTotalLen: the IPv4 total length differs from the bytes received.
	DropBadTotalLen
	// DropOversize: a packet from the TUN device is larger than its MTU and no
	// super-packet to cut.
	DropOversize
	// DropBadOffload: a super-packet from the TUN device could not be cut up.
	DropBadOffload
	// DropSendError: the UDP socket refused a datagram.
	DropSendError
	// DropTUNError: the TUN device refused a packet.
	DropTUNError

	// NumDropReasons is the number of reasons, for iterating over them.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNoRoute:       "no-route",
	DropTTL:           "ttl-exceeded",
	DropUnknownSource: "unknown-source",
	DropShort:         "short",
	DropNotIPv4:       "not-ipv4",
	DropBadHeaderLen:  "bad-header-length",
	DropBadTotalLen:   "bad-total-length",
	DropOversize:      "oversize",
	DropBadOffload:    "bad-offload",
	DropSendError:     "send-error",
	DropTUNError:      "tun-error",
}

// String returns the reason as a metric label, for example "unknown-source".
func (r DropReason) String() string {
	if r >= 0 && r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Counters are the data path's statistics, safe to read at any time. Packets and bytes
// count inner IPv4 packets as they travel on the wire, one per datagram: a super-packet
// counts as the packets it was cut into or merged from.
type Counters struct {
	// TxPackets and TxBytes count packets from the TUN device sent to peers.
	TxPackets atomic.Uint64
	TxBytes   atomic.Uint64
	_         [48]byte // keep the two directions' counters on separate cache lines

	// RxPackets and RxBytes count packets from peers written to the TUN device.
	RxPackets atomic.Uint64
	RxBytes   atomic.Uint64
	_         [48]byte

	// ICMPErrors counts the ICMP errors the data path generated.
	ICMPErrors atomic.Uint64

	drops [NumDropReasons]atomic.Uint64
}

// Drops returns how many packets were dropped for reason r.
func (c *Counters) Drops(r DropReason) uint64 {
	if r < 0 || r >= NumDropReasons {
		return 0
	}
	return c.drops[r].Load()
}

func (c *Counters) drop(r DropReason, n uint64) { c.drops[r].Add(n) }
