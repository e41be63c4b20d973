package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump that the kernel reports as
// interrupted (the table changed while it was being read).
const dumpAttempts = 10

// Netlink implements Ops with netlink requests on one handle. A handle made with
// netlink.NewHandleAt works on another network namespace.
//
// TODO: listings receive every neighbour, bridge FDB entry or route of the family and
// keep the link's. The kernel filters route dumps by link only on a socket with
// NETLINK_GET_STRICT_CHK, and on such a socket netlink.Handle's neighbour and FDB
// dumps fail with EINVAL (their link index is in the header, where a strict check
// rejects it). A host with many neighbours or bridge ports decodes them all at each
// comparison.
type Netlink struct {
	h *netlink.Handle
}

// NewNetlink returns Ops that use h. The caller keeps ownership of h.
func NewNetlink(h *netlink.Handle) *Netlink { return &Netlink{h: h} }

// Handle returns the handle the Ops use.
func (n *Netlink) Handle() *netlink.Handle { return n.h }

// counted returns err, after counting a kernel change for Writes when err is nil.
func counted(err error) error {
	if err == nil {
		CountWrite()
	}
	return err
}

// retryDump calls dump until it returns a result that was not interrupted.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("dump interrupted %d times in a row: %w", dumpAttempts, err)
}

// gone reports whether err from a delete means that there was nothing to delete.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, unix.ENODEV)
}

func familyNum(f Family) int {
	if f == IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func link(l netlink.Link) Link {
	return Link{Index: l.Attrs().Index, Name: l.Attrs().Name}
}

func linkErr(err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: %w", ErrLinkNotFound, err)
	}
	return err
}

// LinkByName looks the link up by name. Equivalent to: ip link show dev <name>
func (n *Netlink) LinkByName(name string) (Link, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return Link{}, fmt.Errorf("looking up link %s: %w", name, linkErr(err))
	}
	return link(l), nil
}

// LinkByIndex looks the link up by index.
func (n *Netlink) LinkByIndex(index int) (Link, error) {
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		return Link{}, fmt.Errorf("looking up link %d: %w", index, linkErr(err))
	}
	return link(l), nil
}

// Routes lists main-table unicast routes out of the link. Equivalent to:
// ip route show table main dev <link>
func (n *Netlink) Routes(linkIndex int, family Family) ([]Route, error) {
	// Each route is converted as it is decoded, rather than gathered into a slice of
	// netlink.Route, which is several times the size of a Route.
	return retryDump(func() ([]Route, error) {
		var out []Route
		err := n.h.RouteListFilteredIter(familyNum(family), &netlink.Route{LinkIndex: linkIndex},
			netlink.RT_FILTER_OIF, func(nr netlink.Route) bool {
				if nr.Type == unix.RTN_UNICAST && nr.Table == unix.RT_TABLE_MAIN &&
					len(nr.MultiPath) == 0 && nr.LinkIndex == linkIndex {
					out = append(out, routeOf(nr, family))
				}
				return true
			})
		if err != nil {
			return nil, err
		}
		return out, nil
	})
}

// ipv6DefaultMetric is the metric the kernel stores for an IPv6 route added with metric
// 0 (IP6_RT_PRIO_USER).
const ipv6DefaultMetric = 1024

func routeOf(nr netlink.Route, family Family) Route {
	r := Route{
		Gw:        addrOf(nr.Gw),
		LinkIndex: nr.LinkIndex,
		Onlink:    nr.Flags&int(netlink.FLAG_ONLINK) != 0,
		Metric:    nr.Priority,
	}
	if family == IPv6 && r.Metric == ipv6DefaultMetric {
		// Read back as asked for: metric 0 and 1024 are the same IPv6 route.
		r.Metric = 0
	}
	if nr.Dst != nil {
		ones, _ := nr.Dst.Mask.Size()
		r.Dst = netip.PrefixFrom(addrOf(nr.Dst.IP), ones)
	} else if family == IPv6 {
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return r
}

func netlinkRoute(r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: r.LinkIndex,
		Dst:       ipNet(r.Dst),
		Priority:  r.Metric,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.Onlink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// ReplaceRoute installs r. Equivalent to:
// ip route replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink
func (n *Netlink) ReplaceRoute(r Route) error {
	return counted(n.h.RouteReplace(netlinkRoute(r)))
}

// DeleteRoute removes r; a route already gone is success. Equivalent to:
// ip route del 198.19.2.0/24 via 198.19.2.0 dev flannel.1
func (n *Netlink) DeleteRoute(r Route) error {
	if err := n.h.RouteDel(netlinkRoute(r)); err != nil && !gone(err) {
		return err
	}
	return counted(nil)
}

// LookupRoute asks the kernel how it would reach dst. Equivalent to: ip route get <dst>
func (n *Netlink) LookupRoute(dst netip.Addr) ([]Route, error) {
	nrs, err := n.h.RouteGet(dst.AsSlice())
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(nrs))
	for _, nr := range nrs {
		r := routeOf(nr, FamilyOf(dst))
		if nr.Dst == nil {
			r.Dst = netip.PrefixFrom(dst, dst.BitLen())
		}
		out = append(out, r)
	}
	return out, nil
}

// Neighs lists the link's neighbour entries. Equivalent to: ip neigh show dev <link>
func (n *Netlink) Neighs(linkIndex int, family Family) ([]Neigh, error) {
	nns, err := retryDump(func() ([]netlink.Neigh, error) {
		return n.h.NeighList(linkIndex, familyNum(family))
	})
	if err != nil {
		return nil, err
	}
	out := make([]Neigh, 0, len(nns))
	for _, nn := range nns {
		ip := addrOf(nn.IP)
		if !ip.IsValid() || nn.LinkIndex != linkIndex {
			continue
		}
		mac, _ := MACFromSlice(nn.HardwareAddr)
		out = append(out, Neigh{
			LinkIndex: nn.LinkIndex,
			IP:        ip,
			MAC:       mac,
			Permanent: nn.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

// ReplaceNeigh installs a permanent entry. Equivalent to:
// ip neigh replace 198.19.2.0 lladdr <mac> dev flannel.1 nud permanent
func (n *Netlink) ReplaceNeigh(e Neigh) error {
	return counted(n.h.NeighSet(&netlink.Neigh{
		LinkIndex:    e.LinkIndex,
		Family:       familyNum(FamilyOf(e.IP)),
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           e.IP.AsSlice(),
		HardwareAddr: e.MAC.HardwareAddr(),
	}))
}

// DeleteNeigh removes the entry; one already gone is success. Equivalent to:
// ip neigh del 198.19.2.0 dev flannel.1
func (n *Netlink) DeleteNeigh(e Neigh) error {
	err := n.h.NeighDel(&netlink.Neigh{
		LinkIndex: e.LinkIndex,
		Family:    familyNum(FamilyOf(e.IP)),
		IP:        e.IP.AsSlice(),
	})
	if err != nil && !gone(err) {
		return err
	}
	return counted(nil)
}

// FDB lists the link's self forwarding entries that have a destination. Equivalent to:
// bridge fdb show dev <link> self
func (n *Netlink) FDB(linkIndex int) ([]FDBEntry, error) {
	nns, err := retryDump(func() ([]netlink.Neigh, error) {
		return n.h.NeighList(linkIndex, unix.AF_BRIDGE)
	})
	if err != nil {
		return nil, err
	}
	out := make([]FDBEntry, 0, len(nns))
	for _, nn := range nns {
		mac, ok := MACFromSlice(nn.HardwareAddr)
		dst := addrOf(nn.IP)
		if !ok || !dst.IsValid() || nn.Flags&netlink.NTF_SELF == 0 ||
			nn.LinkIndex != linkIndex {
			continue
		}
		out = append(out, FDBEntry{
			LinkIndex: nn.LinkIndex,
			MAC:       mac,
			Dst:       dst,
			Permanent: nn.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

// ReplaceFDB installs a permanent self entry. Equivalent to:
// bridge fdb replace <mac> dev flannel.1 dst 198.18.0.2 self permanent
func (n *Netlink) ReplaceFDB(e FDBEntry) error {
	return counted(n.h.NeighSet(&netlink.Neigh{
		LinkIndex:    e.LinkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           e.Dst.AsSlice(),
		HardwareAddr: e.MAC.HardwareAddr(),
	}))
}

// DeleteFDB removes the destination from the entry; one already gone is success.
// Equivalent to: bridge fdb del <mac> dev flannel.1 dst 198.18.0.2 self
func (n *Netlink) DeleteFDB(e FDBEntry) error {
	err := n.h.NeighDel(&netlink.Neigh{
		LinkIndex:    e.LinkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		IP:           e.Dst.AsSlice(),
		HardwareAddr: e.MAC.HardwareAddr(),
	})
	if err != nil && !gone(err) {
		return err
	}
	return counted(nil)
}

var _ Ops = (*Netlink)(nil)
