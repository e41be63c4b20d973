// Package vxlan is the backend that carries the overlay in the kernel's VXLAN driver, as
// flanneld's vxlan backend does and compatible with it on the wire and in etcd: a device
// flannel.<VNI> on each host (and flannel-v6.<VNI> for a dual-stack network), and per
// peer a permanent ARP (or NDP) entry, a permanent FDB entry and an onlink route. Beyond
// flanneld it keeps its devices' MACs across restarts and recreations, publishes a MAC
// that changed anyway, removes the FDB entry of a peer's old MAC, puts back within a
// moment an entry deleted from outside, and compares all its entries with the kernel
// every resync period.
package vxlan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/backend/peers"
)

// TypeName is the backend's name in the network config and the BackendType of its
// leases.
const TypeName = "vxlan"

const (
	// DefaultVNI is the VXLAN network identifier when the config gives none.
	DefaultVNI = 1
	// Overhead is what VXLAN encapsulation over IPv4 adds to a frame: outer IP (20),
	// UDP (8), VXLAN (8) and inner Ethernet (14) headers. The device MTU is the
	// underlay's minus this.
	Overhead = 50
	// OverheadV6 is the same over an IPv6 underlay, whose header takes 40 bytes. flanneld
	// subtracts 50 here too and the kernel lowers the device's MTU further; weft
	// subtracts what the encapsulation takes.
	OverheadV6 = 70
	// minMTU is the smallest MTU IPv4 allows on a link (RFC 791), minMTUV6 IPv6's
	// (RFC 8200).
	minMTU   = 68
	minMTUV6 = 1280
	// maxVNI is the largest 24-bit VXLAN network identifier.
	maxVNI = 1<<24 - 1
)

// Options are the vxlan backend's settings from the network config's Backend object.
// Field names match without regard to case, and unknown fields are ignored, as in
// flanneld.
type Options struct {
	// VNI is the VXLAN network identifier, DefaultVNI when absent; the device is named
	// flannel.<VNI>.
	VNI int
	// Port is the UDP destination port; 0 leaves the kernel's default, 8472.
	Port int
	// GBP turns on VXLAN Group Based Policy.
	GBP bool
	// Learning lets the device learn FDB entries from the packets it receives.
	Learning bool
	// MTU is the underlay MTU to subtract the overhead from; 0 means the external
	// interface's.
	MTU int
	// DirectRouting sends traffic to peers on the same subnet as this host without
	// encapsulation, through a plain route via the peer's public IP.
	DirectRouting bool
}

// ParseOptions decodes the Backend object of a network config; raw may be nil. Each
// error names the field and the value at fault.
func ParseOptions(raw json.RawMessage) (Options, error) {
	o := Options{VNI: DefaultVNI}
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return o, nil
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return Options{}, fmt.Errorf("decoding vxlan backend options %s: %w", raw, err)
	}
	if o.VNI < 0 || o.VNI > maxVNI {
		return Options{}, fmt.Errorf("vxlan backend option VNI %d is outside 0 to %d",
			o.VNI, maxVNI)
	}
	if o.Port < 0 || o.Port > 65535 {
		return Options{}, fmt.Errorf("vxlan backend option Port %d is outside 0 to 65535", o.Port)
	}
	if o.MTU < 0 {
		return Options{}, fmt.Errorf("vxlan backend option MTU %d is negative", o.MTU)
	}
	return o, nil
}

// DeviceName returns the name of the IPv4 device for vni, "flannel.<VNI>".
func DeviceName(vni int) string { return "flannel." + strconv.Itoa(vni) }

// DeviceNameV6 returns the name of the IPv6 device for vni, "flannel-v6.<VNI>".
func DeviceNameV6(vni int) string { return "flannel-v6." + strconv.Itoa(vni) }

// DeviceMTU returns the MTU of the IPv4 VXLAN device, which is also FLANNEL_MTU for an
// IPv4-only network: the MTU option, or extMTU without one, minus Overhead. It is an
// error if that is below what IPv4 allows.
func (o Options) DeviceMTU(extMTU int) (int, error) {
	return o.deviceMTU(extMTU, Overhead, minMTU)
}

// DeviceMTUV6 returns the MTU of the IPv6 VXLAN device, which is also FLANNEL_MTU for a
// network with IPv6: the MTU option, or extMTU without one, minus OverheadV6. It is an
// error if that is below what IPv6 allows.
func (o Options) DeviceMTUV6(extMTU int) (int, error) {
	return o.deviceMTU(extMTU, OverheadV6, minMTUV6)
}

func (o Options) deviceMTU(extMTU, overhead, least int) (int, error) {
	under := extMTU
	if o.MTU > 0 {
		under = o.MTU
	}
	mtu := under - overhead
	if mtu < least {
		return 0, fmt.Errorf("vxlan device MTU %d (underlay MTU %d minus %d) is below %d",
			mtu, under, overhead, least)
	}
	return mtu, nil
}

// BackendData is the vxlan lease's BackendData: what a peer needs to reach this host's
// device.
type BackendData struct {
	VNI     int
	VtepMAC kernel.MAC
}

// backendDataJSON has the field order flanneld writes: {"VNI":1,"VtepMAC":"..."}.
type backendDataJSON struct {
	VNI     int
	VtepMAC string
}

// Marshal encodes d as flanneld does, {"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}.
func (d BackendData) Marshal() json.RawMessage {
	b, err := json.Marshal(backendDataJSON{VNI: d.VNI, VtepMAC: d.VtepMAC.String()})
	if err != nil {
		panic("encoding vxlan backend data: " + err.Error()) // two plain fields cannot fail
	}
	return b
}

// ParseBackendData decodes a peer lease's BackendData (or BackendV6Data) as leniently as
// flanneld (field names in any case, unknown fields ignored, a MAC in any form
// net.ParseMAC accepts), and rejects what would program a broken entry: a missing
// VtepMAC, or one that is not a 48-bit unicast address. Errors do not name the field,
// which the caller knows.
func ParseBackendData(raw json.RawMessage) (BackendData, error) {
	var v struct {
		VNI     *uint32
		VtepMAC *string
	}
	if len(raw) == 0 {
		return BackendData{}, errors.New("missing")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return BackendData{}, fmt.Errorf("decoding %s: %w", raw, err)
	}
	if v.VtepMAC == nil {
		return BackendData{}, fmt.Errorf("%s has no VtepMAC", raw)
	}
	mac, err := kernel.ParseMAC(*v.VtepMAC)
	if err != nil {
		return BackendData{}, fmt.Errorf("VtepMAC: %w", err)
	}
	if !mac.IsUnicast() {
		return BackendData{}, fmt.Errorf("VtepMAC %s is not a unicast address", mac)
	}
	d := BackendData{VtepMAC: mac}
	if v.VNI != nil {
		d.VNI = int(*v.VNI)
	}
	return d, nil
}

// peerEntries returns what one peer needs on the VXLAN device link: the ARP entry for
// its subnet address, the FDB entry that sends its VTEP MAC to its public IP, and the
// onlink route to its subnet via its subnet address.
func peerEntries(link int, p peers.Peer, mac kernel.MAC) kernel.Entries {
	gw := p.Subnet.Addr()
	return kernel.Entries{
		Neighs: []kernel.Neigh{{LinkIndex: link, IP: gw, MAC: mac}},
		FDB:    []kernel.FDBEntry{{LinkIndex: link, MAC: mac, Dst: p.PublicIP}},
		Routes: []kernel.Route{{Dst: p.Subnet, Gw: gw, LinkIndex: link, Onlink: true}},
	}
}

// directEntries returns the route of a peer reached without encapsulation.
func directEntries(link int, p peers.Peer) kernel.Entries {
	return kernel.Entries{Routes: []kernel.Route{{Dst: p.Subnet, Gw: p.PublicIP, LinkIndex: link}}}
}

// isDirect reports whether the kernel reaches dst straight out of link, with no
// gateway: flanneld's test for DirectRouting. routes is the result of a route lookup.
func isDirect(routes []kernel.Route, link int) bool {
	return len(routes) == 1 && !routes[0].Gw.IsValid() && routes[0].LinkIndex == link
}

// randomMACFrom turns 6 random bytes into a locally administered unicast MAC.
func randomMACFrom(b [6]byte) kernel.MAC {
	b[0] = b[0]&0xfe | 0x02
	return kernel.MAC(b)
}

// subnetAddr returns the address the device gets in the host's subnet: its network
// address as a host route, 198.19.1.0/32 for 198.19.1.0/24.
func subnetAddr(sn netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(sn.Masked().Addr(), sn.Addr().BitLen())
}
