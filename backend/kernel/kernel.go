// Package kernel keeps the routes, neighbour (ARP) entries and VXLAN forwarding (FDB)
// entries that a backend programs for its peers in step with what the peers' leases ask
// for. The Reconciler diffs desired entries against installed ones and applies the
// difference through Ops, a narrow interface over the kernel: Netlink implements it on
// Linux, and kerneltest.Fake records each call as its iproute2 command line so that
// reconciler tests run without root. On Linux, DriftWatch follows the kernel's
// deletions of entries inside a Scope, so that one deleted from outside is put back at
// once (Reconciler.Repair) rather than at the next full comparison (Reconciler.Sync).
package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrLinkNotFound is wrapped by Ops lookups of a link that does not exist.
var ErrLinkNotFound = errors.New("link not found")

// Family selects IPv4 or IPv6 entries.
type Family int

const (
	// IPv4 selects IPv4 routes and neighbours.
	IPv4 Family = 4
	// IPv6 selects IPv6 routes and neighbours.
	IPv6 Family = 6
)

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// String returns "inet" or "inet6", as iproute2 names them.
func (f Family) String() string {
	if f == IPv6 {
		return "inet6"
	}
	return "inet"
}

// MAC is an EUI-48 link-layer address, the only kind a VXLAN device has. Unlike
// net.HardwareAddr it is comparable and can be a map key.
type MAC [6]byte

// ParseMAC parses a 48-bit MAC in any form net.ParseMAC accepts ("02:42:c6:12:00:01",
// "02-42-c6-12-00-01", "0242.c612.0001").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, fmt.Errorf("parsing MAC %q: %w", s, err)
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("parsing MAC %q: %d bytes, want 6", s, len(hw))
	}
	return MAC(hw), nil
}

// MACFromSlice converts a 6-byte hardware address; ok is false for any other length.
func MACFromSlice(b []byte) (m MAC, ok bool) {
	if len(b) != 6 {
		return MAC{}, false
	}
	return MAC(b), true
}

// String returns the lowercase colon-separated form, as net.HardwareAddr prints it and
// flanneld writes VtepMAC.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// HardwareAddr returns m as a net.HardwareAddr that does not alias m.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(m[:]) }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsUnicast reports whether m is a non-zero unicast address: the group bit of the first
// octet is clear.
func (m MAC) IsUnicast() bool { return !m.IsZero() && m[0]&1 == 0 }

// Link names a network device by index and name.
type Link struct {
	Index int
	Name  string
}

// String returns the link's name, or its index when it has none.
func (l Link) String() string {
	if l.Name != "" {
		return l.Name
	}
	return "if" + strconv.Itoa(l.Index)
}

// Route is a unicast route in the main routing table, the only kind a backend makes.
// Its identity in the kernel, and in the Reconciler, is the destination and the metric.
type Route struct {
	Dst netip.Prefix
	// Gw is the next hop; invalid for a route straight out of the link.
	Gw        netip.Addr
	LinkIndex int
	// Onlink makes the kernel accept a next hop that no address on the link covers,
	// as the VXLAN backend needs for "via <peer subnet address>".
	Onlink bool
	// Metric is the route's priority; backends use 0. The kernel stores an IPv6 route
	// with metric 0 as 1024, and Ops report it as 0 again.
	Metric int
}

// Neigh is a neighbour (ARP or NDP) entry: IP reaches MAC on the link.
type Neigh struct {
	LinkIndex int
	IP        netip.Addr
	MAC       MAC
	// Permanent reports whether the kernel holds the entry as NUD_PERMANENT. Ops always
	// install permanent entries; listings report what they find.
	Permanent bool
}

// FDBEntry is a VXLAN forwarding entry: frames for MAC are sent to the tunnel endpoint
// Dst. It is a "self" entry of the VXLAN device, not of a bridge above it.
type FDBEntry struct {
	LinkIndex int
	MAC       MAC
	Dst       netip.Addr
	// Permanent is as for Neigh.
	Permanent bool
}

// Entries is a set of kernel entries: those one peer needs, or those installed.
type Entries struct {
	Neighs []Neigh
	FDB    []FDBEntry
	Routes []Route
}

// Len returns the number of entries of all kinds.
func (e Entries) Len() int { return len(e.Neighs) + len(e.FDB) + len(e.Routes) }

// Equal reports whether e and o hold the same entries in the same order.
func (e Entries) Equal(o Entries) bool {
	return equalSlices(e.Neighs, o.Neighs) && equalSlices(e.FDB, o.FDB) &&
		equalSlices(e.Routes, o.Routes)
}

func equalSlices[E comparable](a, b []E) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Ops is the kernel as the Reconciler and the backends see it: lookups and listings of
// one link's entries, and replace and delete for each kind of entry. Replace creates the
// entry or overwrites the one with the same identity. Delete of an entry that is already
// gone, or whose link is gone, returns nil. Listings of an interrupted netlink dump are
// retried, so a caller never sees a partial list.
type Ops interface {
	// LinkByName and LinkByIndex look a link up; the error wraps ErrLinkNotFound when
	// there is none.
	LinkByName(name string) (Link, error)
	LinkByIndex(index int) (Link, error)

	// Routes lists the main-table unicast routes of the family whose output link is
	// linkIndex.
	Routes(linkIndex int, family Family) ([]Route, error)
	// ReplaceRoute installs r in the main table, replacing the route to the same
	// destination with the same metric.
	ReplaceRoute(r Route) error
	// DeleteRoute removes r.
	DeleteRoute(r Route) error
	// LookupRoute returns the routes the kernel would use to reach dst.
	LookupRoute(dst netip.Addr) ([]Route, error)

	// Neighs lists the neighbour entries of the family on linkIndex.
	Neighs(linkIndex int, family Family) ([]Neigh, error)
	// ReplaceNeigh installs n as a permanent entry.
	ReplaceNeigh(n Neigh) error
	// DeleteNeigh removes the entry for n.IP on n.LinkIndex.
	DeleteNeigh(n Neigh) error

	// FDB lists the self forwarding entries of linkIndex that have a destination.
	FDB(linkIndex int) ([]FDBEntry, error)
	// ReplaceFDB installs e as a permanent self entry: the first destination of e.MAC
	// becomes e.Dst.
	ReplaceFDB(e FDBEntry) error
	// DeleteFDB removes destination e.Dst from e.MAC's entry, and the entry with its
	// last destination.
	DeleteFDB(e FDBEntry) error
}

// RouteArgs renders r as iproute2 arguments, "198.19.2.0/24 via 198.19.2.0 dev flannel.1
// onlink", with dev naming r's link.
func RouteArgs(r Route, dev string) string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Gw.IsValid() {
		b.WriteString(" via " + r.Gw.String())
	}
	b.WriteString(" dev " + dev)
	if r.Onlink {
		b.WriteString(" onlink")
	}
	if r.Metric != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.Metric))
	}
	return b.String()
}

// NeighArgs renders n as iproute2 arguments, "198.19.2.0 lladdr <mac> dev flannel.1".
func NeighArgs(n Neigh, dev string) string {
	return n.IP.String() + " lladdr " + n.MAC.String() + " dev " + dev
}

// FDBArgs renders e as bridge(8) arguments, "<mac> dev flannel.1 dst 198.18.0.2".
func FDBArgs(e FDBEntry, dev string) string {
	return e.MAC.String() + " dev " + dev + " dst " + e.Dst.String()
}
