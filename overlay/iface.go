package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/weftnet/weft/backend"
)

// InterfaceSpec says how to choose the external interface, the underlay interface that
// carries overlay traffic. Its fields are flanneld's -iface, -iface-regex,
// -iface-can-reach, -public-ip and -public-ipv6 options.
//
// The rules, in flanneld's order:
//   - With none of Ifaces, Regexes and CanReach: the interface that owns PublicIP when it
//     is set, otherwise the interface of the IPv4 default route of the main table (with
//     IPv6, the IPv6 default route must use the same interface).
//   - Otherwise each entry of Ifaces in order, an interface name or one of its addresses;
//     then each of Regexes in order, matched first against every interface's addresses
//     and then against their names; then the interface that the route to CanReach
//     leaves through, with the route's source address. The first that yields a usable
//     interface wins; when none does, the error names everything that was tried.
//
// An interface is usable when its MTU is not 0 and it has an IPv4 address (and, with
// IPv6, an IPv6 address). Of several addresses the first is taken after ordering:
// deprecated ones are left out, global before link-local before loopback, permanent
// before dynamic, primary before secondary (or temporary), otherwise in kernel order.
type InterfaceSpec struct {
	Ifaces   []string
	Regexes  []*regexp.Regexp
	CanReach netip.Addr

	// PublicIP and PublicIPv6 are advertised instead of the interface's addresses when
	// valid, for hosts behind NAT.
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr

	// IPv6 asks for an IPv6 address too, for a dual-stack network.
	IPv6 bool
}

// explicit reports whether the spec names interfaces rather than relying on the
// default route or on -public-ip.
func (s InterfaceSpec) explicit() bool {
	return len(s.Ifaces) > 0 || len(s.Regexes) > 0 || s.CanReach.IsValid()
}

// ifaceInfo is one interface as the kernel reports it.
type ifaceInfo struct {
	Name  string
	Index int
	MTU   int
	Addrs []ifaceAddr
}

// ifaceAddr is one address of an interface with the properties that order it.
type ifaceAddr struct {
	Addr       netip.Addr
	Permanent  bool
	Secondary  bool // IFA_F_SECONDARY for IPv4, IFA_F_TEMPORARY for IPv6: the same bit
	Deprecated bool
}

// kernelView is what interface selection reads from the kernel. The netlink
// implementation is in iface_linux.go; tests of the rules use a fixed one.
type kernelView interface {
	// interfaces returns every interface with all its addresses, in index order.
	interfaces() ([]ifaceInfo, error)
	// defaultRoute returns the index of the interface of the main table's default route
	// of one family, or 0 when there is none.
	defaultRoute(v6 bool) (int, error)
	// routeTo returns the interface and source address of the route to dst.
	routeTo(dst netip.Addr) (index int, src netip.Addr, err error)
}

// usableAddrs returns the interface's addresses of one family in preference order.
func usableAddrs(addrs []ifaceAddr, v6 bool) []netip.Addr {
	var kept []ifaceAddr
	for _, a := range addrs {
		if a.Addr.Is6() == v6 && !a.Addr.Is4In6() && !a.Deprecated {
			kept = append(kept, a)
		}
	}
	slices.SortStableFunc(kept, func(a, b ifaceAddr) int {
		if d := scopeRank(a.Addr) - scopeRank(b.Addr); d != 0 {
			return d
		}
		if a.Permanent != b.Permanent {
			return boolRank(a.Permanent)
		}
		if a.Secondary != b.Secondary {
			return -boolRank(a.Secondary)
		}
		return 0
	})
	out := make([]netip.Addr, len(kept))
	for i, a := range kept {
		out[i] = a.Addr
	}
	return out
}

func scopeRank(a netip.Addr) int {
	switch {
	case a.IsLoopback():
		return 2
	case a.IsLinkLocalUnicast():
		return 1
	default:
		return 0
	}
}

// boolRank orders true first.
func boolRank(b bool) int {
	if b {
		return -1
	}
	return 1
}

// chooseInterface applies spec's rules to what kv reports.
func chooseInterface(kv kernelView, spec InterfaceSpec, log *slog.Logger) (
	backend.ExternalInterface, error) {
	ifaces, err := kv.interfaces()
	if err != nil {
		return backend.ExternalInterface{}, err
	}

	if !spec.explicit() {
		if spec.PublicIP.IsValid() {
			ext, err := byAddr(ifaces, spec.PublicIP, spec)
			if err != nil {
				return ext, fmt.Errorf("choosing the interface that owns -public-ip %s: %w",
					spec.PublicIP, err)
			}
			return ext, nil
		}
		ext, err := byDefaultRoute(kv, ifaces, spec)
		if err != nil {
			return ext, fmt.Errorf("choosing the interface of the default route "+
				"(name one with -iface): %w", err)
		}
		return ext, nil
	}

	var tried []string
	fail := func(what string, err error) {
		tried = append(tried, fmt.Sprintf("%s: %v", what, err))
		log.Info("interface does not match", "tried", what, "err", err)
	}
	for _, name := range spec.Ifaces {
		var ext backend.ExternalInterface
		var err error
		if a, perr := netip.ParseAddr(name); perr == nil {
			ext, err = byAddr(ifaces, a, spec)
		} else {
			ext, err = byName(ifaces, name, spec)
		}
		if err == nil {
			return ext, nil
		}
		fail("-iface "+name, err)
	}
	for _, re := range spec.Regexes {
		ext, err := byRegex(ifaces, re, spec)
		if err == nil {
			return ext, nil
		}
		fail("-iface-regex "+re.String(), err)
	}
	if spec.CanReach.IsValid() {
		ext, err := byRoute(kv, ifaces, spec)
		if err == nil {
			return ext, nil
		}
		fail("-iface-can-reach "+spec.CanReach.String(), err)
	}
	return backend.ExternalInterface{}, fmt.Errorf("no usable interface: %s",
		strings.Join(tried, "; "))
}

func byName(ifaces []ifaceInfo, name string, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	for _, ifc := range ifaces {
		if ifc.Name == name {
			return external(ifc, netip.Addr{}, spec)
		}
	}
	return backend.ExternalInterface{}, errors.New("no such interface")
}

// byAddr returns the interface that owns a, with a as its address of a's family.
func byAddr(ifaces []ifaceInfo, a netip.Addr, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	a = a.Unmap()
	for _, ifc := range ifaces {
		for _, ia := range ifc.Addrs {
			if ia.Addr == a {
				return external(ifc, a, spec)
			}
		}
	}
	return backend.ExternalInterface{}, fmt.Errorf("no interface has address %s", a)
}

func byRegex(ifaces []ifaceInfo, re *regexp.Regexp, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	// Addresses first, in the order each interface prefers them.
	var errs []error
	for _, ifc := range ifaces {
		addrs := usableAddrs(ifc.Addrs, false)
		if spec.IPv6 {
			addrs = append(addrs, usableAddrs(ifc.Addrs, true)...)
		}
		for _, a := range addrs {
			if !re.MatchString(a.String()) {
				continue
			}
			ext, err := external(ifc, a, spec)
			if err == nil {
				return ext, nil
			}
			errs = append(errs, err)
		}
	}
	for _, ifc := range ifaces {
		if !re.MatchString(ifc.Name) {
			continue
		}
		ext, err := external(ifc, netip.Addr{}, spec)
		if err == nil {
			return ext, nil
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return backend.ExternalInterface{}, errors.Join(errs...)
	}
	return backend.ExternalInterface{}, errors.New("matches no interface name or address")
}

func byRoute(kv kernelView, ifaces []ifaceInfo, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	index, src, err := kv.routeTo(spec.CanReach)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	ifc, ok := byIndex(ifaces, index)
	if !ok {
		return backend.ExternalInterface{}, fmt.Errorf("route leaves through interface "+
			"index %d, which is gone", index)
	}
	return external(ifc, src, spec)
}

func byDefaultRoute(kv kernelView, ifaces []ifaceInfo, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	index, err := kv.defaultRoute(false)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	if index == 0 {
		return backend.ExternalInterface{}, errors.New("no IPv4 default route")
	}
	ifc, ok := byIndex(ifaces, index)
	if !ok {
		return backend.ExternalInterface{}, fmt.Errorf("default route leaves through "+
			"interface index %d, which is gone", index)
	}
	if spec.IPv6 {
		index6, err := kv.defaultRoute(true)
		if err != nil {
			return backend.ExternalInterface{}, err
		}
		if index6 != index {
			name6 := "none"
			if ifc6, ok := byIndex(ifaces, index6); ok {
				name6 = ifc6.Name
			}
			return backend.ExternalInterface{}, fmt.Errorf("the IPv4 default route uses %s "+
				"and the IPv6 one %s; a dual-stack network needs both on one interface",
				ifc.Name, name6)
		}
	}
	return external(ifc, netip.Addr{}, spec)
}

func byIndex(ifaces []ifaceInfo, index int) (ifaceInfo, bool) {
	for _, ifc := range ifaces {
		if ifc.Index == index {
			return ifc, true
		}
	}
	return ifaceInfo{}, false
}

// external builds the result for ifc. addr, when valid, is the address that selected the
// interface and becomes its address of that family; the other family's address is the
// interface's preferred one.
func external(ifc ifaceInfo, addr netip.Addr, spec InterfaceSpec) (
	backend.ExternalInterface, error) {
	ext := backend.ExternalInterface{Name: ifc.Name, Index: ifc.Index, MTU: ifc.MTU}
	if ifc.MTU == 0 {
		return ext, fmt.Errorf("interface %s has MTU 0", ifc.Name)
	}

	addr = addr.Unmap()
	if addr.Is4() {
		ext.IfaceAddr = addr
	} else if v4 := usableAddrs(ifc.Addrs, false); len(v4) > 0 {
		ext.IfaceAddr = v4[0]
	} else {
		return ext, fmt.Errorf("interface %s has no usable IPv4 address", ifc.Name)
	}
	if spec.IPv6 {
		if addr.Is6() {
			ext.IfaceV6Addr = addr
		} else if v6 := usableAddrs(ifc.Addrs, true); len(v6) > 0 {
			ext.IfaceV6Addr = v6[0]
		} else {
			return ext, fmt.Errorf("interface %s has no usable IPv6 address", ifc.Name)
		}
	}

	ext.ExtAddr = ext.IfaceAddr
	if spec.PublicIP.IsValid() {
		ext.ExtAddr = spec.PublicIP
	}
	ext.ExtV6Addr = ext.IfaceV6Addr
	if spec.IPv6 && spec.PublicIPv6.IsValid() {
		ext.ExtV6Addr = spec.PublicIPv6
	}
	return ext, nil
}
