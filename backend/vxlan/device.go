package vxlan

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/backend/kernel"
)

// defaultPort is the UDP port the kernel's VXLAN driver uses when none is given: Linux
// chose 8472 before IANA assigned 4789.
const defaultPort = 8472

// deviceSpec is how the VXLAN device must be.
type deviceSpec struct {
	Name     string
	VNI      int
	Port     int // 0 for the kernel's default
	GBP      bool
	Learning bool
	MTU      int
	// Local is the tunnel's source address, the host's public IP.
	Local netip.Addr
	// VtepIndex is the index of the external interface the tunnel runs over.
	VtepIndex int
}

// deviceState is the device with the spec's name as read back from the kernel.
type deviceState struct {
	Link kernel.Link
	// Kind is the link type, "vxlan" for a VXLAN device.
	Kind      string
	VNI       int
	Port      int
	GBP       bool
	Learning  bool
	L2miss    bool
	MTU       int
	Local     netip.Addr
	Group     netip.Addr
	VtepIndex int
	MAC       kernel.MAC
	Up        bool
}

// incompatibility returns why d cannot serve as the device s describes, or "" when it
// can. A device that only differs in MTU is compatible: the MTU is changed in place.
// Beyond flanneld's list, a different effective UDP port and a different learning
// setting also count, since the device would not carry traffic as configured.
func (s deviceSpec) incompatibility(d deviceState) string {
	port := s.Port
	if port == 0 {
		port = defaultPort
	}
	switch {
	case d.Kind != "vxlan":
		return fmt.Sprintf("it is a %s device", d.Kind)
	case d.VNI != s.VNI:
		return fmt.Sprintf("VNI %d, want %d", d.VNI, s.VNI)
	case d.VtepIndex > 0 && s.VtepIndex > 0 && d.VtepIndex != s.VtepIndex:
		return fmt.Sprintf("underlay link index %d, want %d", d.VtepIndex, s.VtepIndex)
	case d.Local.IsValid() && s.Local.IsValid() && d.Local != s.Local:
		return fmt.Sprintf("local address %s, want %s", d.Local, s.Local)
	case d.Group.IsValid():
		return fmt.Sprintf("multicast group %s, want none", d.Group)
	case d.L2miss:
		return "l2miss on, want off"
	case d.Port > 0 && d.Port != port:
		return fmt.Sprintf("UDP port %d, want %d", d.Port, port)
	case d.GBP != s.GBP:
		return fmt.Sprintf("gbp %v, want %v", d.GBP, s.GBP)
	case d.Learning != s.Learning:
		return fmt.Sprintf("learning %v, want %v", d.Learning, s.Learning)
	}
	return ""
}
