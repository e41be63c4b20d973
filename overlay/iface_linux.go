package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
)

// ChooseInterface picks the external interface by spec's rules from what the kernel
// behind h reports: links, addresses and routes of h's network namespace. It only reads.
// log hears about each candidate that did not match.
func ChooseInterface(h *netlink.Handle, spec InterfaceSpec, log *slog.Logger) (
	backend.ExternalInterface, error) {
	return chooseInterface(netlinkView{h}, spec, log)
}

// netlinkView reads a kernelView through one netlink handle.
type netlinkView struct {
	h *netlink.Handle
}

// dumpAttempts bounds the retries of a netlink dump that the kernel interrupted because
// the table changed while it was being read.
const dumpAttempts = 5

// retryDump calls dump again while it fails with netlink.ErrDumpInterrupted, whose
// partial result may be inconsistent.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

func (v netlinkView) interfaces() ([]ifaceInfo, error) {
	links, err := retryDump(v.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) {
		return v.h.AddrList(nil, netlink.FAMILY_ALL)
	})
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}

	byIndex := map[int][]ifaceAddr{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], ifaceAddr{
			Addr:       ip.Unmap(),
			Permanent:  a.Flags&unix.IFA_F_PERMANENT != 0,
			Secondary:  a.Flags&unix.IFA_F_SECONDARY != 0,
			Deprecated: a.Flags&(unix.IFA_F_DEPRECATED|unix.IFA_F_DADFAILED) != 0,
		})
	}

	out := make([]ifaceInfo, 0, len(links))
	for _, l := range links {
		attrs := l.Attrs()
		out = append(out, ifaceInfo{
			Name:  attrs.Name,
			Index: attrs.Index,
			MTU:   attrs.MTU,
			Addrs: byIndex[attrs.Index],
		})
	}
	slices.SortFunc(out, func(a, b ifaceInfo) int { return a.Index - b.Index })
	return out, nil
}

func (v netlinkView) defaultRoute(v6 bool) (int, error) {
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return v.h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return 0, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex > 0 {
			return r.LinkIndex, nil
		}
		for _, nh := range r.MultiPath {
			if nh.LinkIndex > 0 {
				return nh.LinkIndex, nil
			}
		}
	}
	return 0, nil
}

func (v netlinkView) routeTo(dst netip.Addr) (int, netip.Addr, error) {
	routes, err := v.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("looking up the route to %s: %w", dst, err)
	}
	for _, r := range routes {
		if r.LinkIndex <= 0 {
			continue
		}
		src, _ := netip.AddrFromSlice(r.Src)
		return r.LinkIndex, src.Unmap(), nil
	}
	return 0, netip.Addr{}, fmt.Errorf("the route to %s leaves through no interface", dst)
}
