package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Retry calls a netlink dump until the kernel answers it without interruption, at most ten
// times; a dump that races with a change of the same table fails with
// netlink.ErrDumpInterrupted and is simply asked again.
func Retry[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 10 {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

// IPNet converts p to the form netlink wants, keeping the host bits of p's address.
func IPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// EnsureBridge makes sure a bridge called name exists in h's namespace with the given MTU,
// the address addr (if valid; other addresses stay) and up, and returns it as read back
// from the kernel. An existing link of that name that is not a bridge is an error.
//
// Equivalent to: ip link add <name> type bridge; ip link set <name> mtu <mtu> up;
// ip addr replace <addr> dev <name>
func EnsureBridge(
	h *netlink.Handle,
	name string,
	mtu int,
	addr netip.Prefix,
) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("adding bridge %s: %w", name, err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("reading back bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return nil, fmt.Errorf("ensuring bridge %s: a %s link of that name is in the way", name,
			link.Type())
	}
	if mtu > 0 && link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("setting MTU %d on %s: %w", mtu, name, err)
		}
	}
	if addr.IsValid() {
		if err := h.AddrReplace(link, &netlink.Addr{IPNet: IPNet(addr)}); err != nil {
			return nil, fmt.Errorf("adding address %s to %s: %w", addr, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("setting %s up: %w", name, err)
	}
	return h.LinkByName(name)
}

// Veth describes a veth pair whose two ends live in different namespaces.
type Veth struct {
	// Name is the end created in the namespace of the handle passed to AddVeth.
	Name string
	// PeerName is the other end, which the kernel creates directly in PeerNS.
	PeerName string
	PeerNS   string
	// MTU applies to both ends; 0 keeps the kernel default of 1500.
	MTU int
}

// AddVeth creates the pair v with one end in h's namespace and the other in v.PeerNS, both
// down and without addresses. The pair is never visible in the caller's own namespace.
//
// Equivalent to: ip link add <name> mtu <mtu> type veth peer name <peer> netns <peerNS>
func AddVeth(h *netlink.Handle, v Veth) error {
	peerNS, err := Open(v.PeerNS)
	if err != nil {
		return err
	}
	defer peerNS.Close()

	link := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: v.Name, MTU: v.MTU},
		PeerName:      v.PeerName,
		PeerNamespace: netlink.NsFd(peerNS),
	}
	if err := h.LinkAdd(link); err != nil {
		return fmt.Errorf("adding veth %s with peer %s in %s: %w",
			v.Name, v.PeerName, v.PeerNS, err)
	}
	return nil
}

// LinkSetup gives the link called name in h's namespace the address addr (if valid),
// attaches it to the bridge master (if not empty) and sets it up.
//
// Equivalent to: ip addr replace <addr> dev <name>; ip link set <name> master <master> up
func LinkSetup(h *netlink.Handle, name string, addr netip.Prefix, master string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if addr.IsValid() {
		if err := h.AddrReplace(link, &netlink.Addr{IPNet: IPNet(addr)}); err != nil {
			return fmt.Errorf("adding address %s to %s: %w", addr, name, err)
		}
	}
	if master != "" {
		br, err := h.LinkByName(master)
		if err != nil {
			return fmt.Errorf("finding bridge %s for %s: %w", master, name, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attaching %s to %s: %w", name, master, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

// DefaultRoute points h's namespace's IPv4 default route at gw.
//
// Equivalent to: ip route replace default via <gw>
func DefaultRoute(h *netlink.Handle, gw netip.Addr) error {
	r := &netlink.Route{
		Dst: IPNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)),
		Gw:  gw.AsSlice(),
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("replacing default route via %s: %w", gw, err)
	}
	return nil
}
