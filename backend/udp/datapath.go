package udp

import (
	"fmt"
	"strings"
)

// Data paths by name, for weftd's -udp-datapath: each names a set of Options that
// operators can pick without a rebuild, to work around a kernel whose offloads misbehave
// or to measure what the offloads bring on their own hosts.
const (
	// DatapathOffload uses every offload the kernel offers: TUN TSO and checksums,
	// UDP GSO and GRO. Each one the kernel refuses is left out at start.
	DatapathOffload = "offload"
	// DatapathNoTUNOffload keeps UDP GSO and GRO and reads MTU-sized packets from the
	// TUN device.
	DatapathNoTUNOffload = "no-tun-offload"
	// DatapathNoUDPOffload keeps the TUN offloads and sends and receives one datagram
	// per system call slot: no UDP GSO or GRO.
	DatapathNoUDPOffload = "no-udp-offload"
	// DatapathNoOffload moves MTU-sized packets in batches, without any offload.
	DatapathNoOffload = "no-offload"
	// DatapathOnePacket moves one packet per system call, the design of flanneld's
	// proxy: the baseline the others are measured against.
	DatapathOnePacket = "one-packet"
)

// datapaths maps each name to its Options, fastest first.
var datapaths = []struct {
	name string
	opts Options
}{
	{DatapathOffload, Options{}},
	{DatapathNoTUNOffload, Options{NoTUNOffload: true}},
	{DatapathNoUDPOffload, Options{NoUDPOffload: true}},
	{DatapathNoOffload, Options{NoTUNOffload: true, NoUDPOffload: true}},
	{DatapathOnePacket, Options{Plain: true}},
}

// Datapaths returns the names ParseDatapath takes, fastest first.
func Datapaths() []string {
	names := make([]string, len(datapaths))
	for i, d := range datapaths {
		names[i] = d.name
	}
	return names
}

// ParseDatapath returns the Options of a data path named by Datapaths; the empty name is
// DatapathOffload.
func ParseDatapath(name string) (Options, error) {
	if name == "" {
		name = DatapathOffload
	}
	for _, d := range datapaths {
		if d.name == name {
			return d.opts, nil
		}
	}
	return Options{}, fmt.Errorf("udp data path %q: want one of %s", name,
		strings.Join(Datapaths(), ", "))
}
