// Package udp is weft's udp backend: the overlay carried by a userspace data path between
// a TUN device (flannel0) and a UDP socket, wire-compatible with flanneld's udp backend.
// Every datagram carries one raw inner IPv4 packet, with no header of its own, sent to
// the peer lease's PublicIP on the configured port (8285 by default), and the inner TTL
// is decremented on the way out and on the way in, as flanneld does.
//
// Unlike flanneld's single-threaded proxy, the data path moves super-packets: the TUN
// device hands over TCP super-packets (TSO), which are cut into MTU-sized IPv4 packets and
// sent with UDP GSO, one datagram per packet on the wire; received datagrams arrive
// merged (UDP GRO), and TCP segments of a flow are merged again into one super-packet for
// the TUN. Each kernel feature is probed at start and the path falls back without it.
// Datagrams from addresses that hold no lease, and malformed ones, are dropped and counted.
// A packet for an address no lease covers is answered with ICMP net-unreachable, and one
// whose TTL runs out with ICMP time-exceeded, which flanneld never sends.
package udp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/weftnet/weft/backend"
)

// TypeName is the backend's name in the network config.
const TypeName = "udp"

// DefaultPort is the UDP port of the data path when the config names none, flanneld's.
const DefaultPort = 8285

// encapOverhead is what the outer IPv4 and UDP headers take from the external MTU.
const encapOverhead = 20 + 8

// minInnerMTU is the smallest TUN MTU weft accepts: IPv4's minimum (RFC 791).
const minInnerMTU = 68

// Options tune the data path; the zero value is the fast path with every offload the
// kernel offers. They exist for benchmarks and for kernels whose offloads misbehave.
type Options struct {
	// Plain moves one packet per system call with no offloads, as flanneld's proxy
	// does: the baseline that benchmarks compare against.
	Plain bool
	// NoTUNOffload opens flannel0 without the virtio-net header: the kernel hands
	// over MTU-sized packets and takes them one write each.
	NoTUNOffload bool
	// NoUDPOffload sends and receives one datagram per packet: no UDP GSO or GRO.
	NoUDPOffload bool
	// Queues is the number of TUN queues, each with its own reader; zero means one.
	Queues int

	// tune overrides the data path's sizes, so that benchmarks can compare settings
	// within one run; its zero value keeps the defaults.
	tune tuning
}

// tuning holds settings of the fast data path that benchmarks vary; zero fields keep
// the defaults.
type tuning struct {
	txBatch int // TUN reads per wakeup with offloads
	rxBatch int // datagrams per recvmmsg with UDP GRO
}

// New returns the udp backend for one host, with the fast data path.
func New(p backend.Params) (backend.Backend, error) {
	return NewWithOptions(p, Options{})
}

// NewWithOptions returns the udp backend with the data path tuned by o.
func NewWithOptions(p backend.Params, o Options) (backend.Backend, error) {
	if !p.Ext.IfaceAddr.Is4() {
		return nil, fmt.Errorf("udp backend: interface %q has no IPv4 address to bind (%v)",
			p.Ext.Name, p.Ext.IfaceAddr)
	}
	if !p.Ext.ExtAddr.Is4() || p.Ext.ExtAddr.IsUnspecified() {
		return nil, fmt.Errorf("udp backend: public address %v is not a usable IPv4 address",
			p.Ext.ExtAddr)
	}
	if p.Ext.MTU-encapOverhead < minInnerMTU {
		return nil, fmt.Errorf("udp backend: MTU %d of %q leaves less than %d bytes per packet",
			p.Ext.MTU, p.Ext.Name, minInnerMTU)
	}
	if o.Queues < 0 {
		return nil, fmt.Errorf("udp backend: %d TUN queues", o.Queues)
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &udpBackend{ext: p.Ext, log: log.With("backend", TypeName), opts: o}, nil
}

type udpBackend struct {
	ext  backend.ExternalInterface
	log  *slog.Logger
	opts Options
}

// config is the udp part of the network config's Backend object.
type config struct {
	Port int
}

// parseConfig decodes the Backend object. Like flanneld it matches keys without regard
// to case and ignores unknown ones; unlike flanneld it refuses a port that peers could not
// send to.
func parseConfig(raw json.RawMessage) (config, error) {
	c := config{Port: DefaultPort}
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return config{}, fmt.Errorf("decoding udp backend config %s: %w", raw, err)
	}
	if c.Port < 1 || c.Port > 65535 {
		return config{}, fmt.Errorf("udp backend config: Port %d is not a UDP port (1-65535)",
			c.Port)
	}
	return c, nil
}

// tunAddr is the address flannel0 gets: the network address of the host's subnet.
func tunAddr(subnet netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(subnet.Masked().Addr(), 32)
}
