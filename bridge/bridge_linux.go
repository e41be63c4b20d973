package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/subnet"
)

// ipForwardPath is the IPv4 forwarding switch of the network namespace of the thread
// that opens it. Tests point it elsewhere to make the last step fail.
var ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// Config is the bridge weftd keeps for the container runtimes.
type Config struct {
	// Name is the bridge's name (--bridge), for example cni0 or docker0.
	Name string

	// Subnet is this host's IPv4 lease. The bridge carries its first host address
	// with the lease's prefix length, the value of FLANNEL_SUBNET.
	Subnet netip.Prefix

	// MTU is the overlay's MTU (FLANNEL_MTU), which the bridge is held at.
	MTU int
}

// Result reports what [Ensure] did.
type Result struct {
	// Index is the bridge's interface index.
	Index int
	// Created is true when Ensure created the bridge, Changed when it changed
	// anything at all.
	Created bool
	Changed bool
}

func (c Config) validate() error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 {
		return fmt.Errorf("bridge %s: lease %s is not an IPv4 subnet with room for hosts",
			c.Name, c.Subnet)
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return fmt.Errorf("bridge %s: MTU %d is outside 68..65535", c.Name, c.MTU)
	}
	return nil
}

// Ensure makes the Linux bridge cfg.Name exist in h's namespace, with exactly one IPv4
// address, the first host of cfg.Subnet with its prefix length, MTU cfg.MTU, and up,
// and turns on IPv4 forwarding. Equivalent to:
//
//	ip link add cni0 type bridge
//	ip link set cni0 mtu 1450
//	ip addr replace 198.19.5.1/24 dev cni0
//	ip addr del <any other IPv4 address> dev cni0
//	ip link set cni0 up
//	sysctl -w net.ipv4.ip_forward=1
//
// The MTU is set in a change of its own after the bridge exists, because only such a
// change stops the kernel from moving the bridge's MTU to that of its ports as they
// join; for a new bridge already at cfg.MTU the MTU is moved by one and back to pin it.
// A bridge that weftd did not create keeps its MTU unpinned until a change is needed,
// which [Keep] then makes. An address from an earlier lease is replaced, and logged at
// Info naming both.
//
// IPv4 forwarding is switched on through /proc/sys, which answers for the network
// namespace of the calling thread, not of h: callers that point h at another namespace
// must call Ensure from a thread inside it.
//
// Ensure reconciles: what already matches is left alone, so calling it again changes
// nothing. A link named cfg.Name that is not a bridge is an error, and it is left
// untouched. When a step fails after Ensure created the bridge, the bridge is deleted
// again. At the end the bridge is read back and checked.
func Ensure(h *netlink.Handle, log *slog.Logger, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	log = log.With("bridge", cfg.Name)
	var res Result

	link, created, err := ensureLink(h, cfg.Name)
	if err != nil {
		return res, err
	}
	res.Index = link.Attrs().Index
	res.Created, res.Changed = created, created
	if created {
		log.Info("created bridge")
	}
	done := false
	defer func() {
		if created && !done {
			if err := h.LinkDel(link); err != nil {
				log.Warn("removing half-configured bridge", "err", err)
			}
		}
	}()

	changed, err := ensureMTU(h, log, link, cfg.MTU, created)
	if err != nil {
		return res, err
	}
	res.Changed = res.Changed || changed

	want := subnet.FirstHost(cfg.Subnet)
	changed, err = ensureAddr(h, log, link, want)
	if err != nil {
		return res, err
	}
	res.Changed = res.Changed || changed

	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return res, fmt.Errorf("setting bridge %s up: %w", cfg.Name, err)
		}
		res.Changed = true
		log.Info("set bridge up")
	}

	changed, err = enableIPForward()
	if err != nil {
		return res, err
	}
	if changed {
		res.Changed = true
		log.Info("enabled IPv4 forwarding")
	}

	if err := verify(h, cfg, link.Attrs().Index, want); err != nil {
		return res, err
	}
	done = true
	return res, nil
}

// ensureLink returns the bridge called name, creating it when there is no link of that
// name. Equivalent to: ip link add <name> type bridge
func ensureLink(h *netlink.Handle, name string) (netlink.Link, bool, error) {
	link, err := h.LinkByName(name)
	created := false
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
		switch {
		case err == nil:
			created = true
		case !errors.Is(err, unix.EEXIST):
			return nil, false, fmt.Errorf("creating bridge %s: %w", name, err)
		}
		link, err = h.LinkByName(name)
	}
	if err != nil {
		return nil, false, fmt.Errorf("looking up bridge %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, false, fmt.Errorf("link %s exists and is a %s device, not a bridge; "+
			"weftd leaves it alone: remove it or choose another --bridge", name, link.Type())
	}
	return link, created, nil
}

// ensureMTU sets the bridge's MTU to mtu when it differs. A bridge created just now
// that is already at mtu gets its MTU moved by one and back, because the kernel pins a
// bridge's MTU only when a change sets it. Equivalent to: ip link set <name> mtu <mtu>
func ensureMTU(
	h *netlink.Handle, log *slog.Logger, link netlink.Link, mtu int, created bool,
) (bool, error) {
	name, old := link.Attrs().Name, link.Attrs().MTU
	if old == mtu && !created {
		return false, nil
	}
	if old == mtu {
		other := mtu + 1
		if other > 65535 {
			other = mtu - 1
		}
		if err := h.LinkSetMTU(link, other); err != nil {
			return false, fmt.Errorf("setting MTU %d on bridge %s: %w", other, name, err)
		}
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return false, fmt.Errorf("setting MTU %d on bridge %s: %w", mtu, name, err)
	}
	if old != mtu {
		log.Info("set bridge MTU", "old", old, "mtu", mtu)
	}
	return true, nil
}

// ensureAddr leaves want as the bridge's only IPv4 address, adding it before removing
// any other. Equivalent to:
//
//	ip addr replace <want> dev <name>
//	ip addr del <other> dev <name>
func ensureAddr(
	h *netlink.Handle, log *slog.Logger, link netlink.Link, want netip.Prefix,
) (bool, error) {
	name := link.Attrs().Name
	have, err := addrs(h, link)
	if err != nil {
		return false, err
	}

	changed := false
	var stale []netip.Prefix
	found := false
	for _, p := range have {
		if p == want {
			found = true
		} else {
			stale = append(stale, p)
		}
	}
	if !found {
		if err := h.AddrReplace(link, toAddr(want)); err != nil {
			return false, fmt.Errorf("adding address %s to bridge %s: %w", want, name, err)
		}
		changed = true
		if len(stale) == 0 {
			log.Info("added bridge address", "addr", want)
		}
	}
	for _, p := range stale {
		err := h.AddrDel(link, toAddr(p))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return changed, fmt.Errorf("removing address %s from bridge %s: %w", p, name, err)
		}
		changed = true
		log.Info("replaced bridge address", "old", p, "addr", want)
	}

	// Removing a primary address takes the secondaries of its subnet with it, want
	// among them when it shares that subnet; put it back then.
	if len(stale) > 0 {
		have, err := addrs(h, link)
		if err != nil {
			return changed, err
		}
		if !slices.Contains(have, want) {
			if err := h.AddrReplace(link, toAddr(want)); err != nil {
				return changed, fmt.Errorf("adding address %s to bridge %s: %w", want, name, err)
			}
		}
	}
	return changed, nil
}

func toAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
}

// addrs lists the IPv4 addresses on link, retrying a dump the kernel interrupted.
func addrs(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	var list []netlink.Addr
	var err error
	for range 5 {
		list, err = h.AddrList(link, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing addresses of bridge %s: %w", link.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

// enableIPForward writes 1 to ip_forward unless it already holds 1, and reports whether
// it wrote. Equivalent to: sysctl -w net.ipv4.ip_forward=1
func enableIPForward() (bool, error) {
	old, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", ipForwardPath, err)
	}
	if string(bytes.TrimSpace(old)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("enabling IPv4 forwarding in %s: %w", ipForwardPath, err)
	}
	return true, nil
}

// verify reads the bridge back and checks what Ensure set.
func verify(h *netlink.Handle, cfg Config, index int, want netip.Prefix) error {
	link, err := h.LinkByIndex(index)
	if err != nil {
		return fmt.Errorf("reading bridge %s back: %w", cfg.Name, err)
	}
	a := link.Attrs()
	switch {
	case a.Name != cfg.Name:
		return fmt.Errorf("bridge %s was renamed to %s while being set up", cfg.Name, a.Name)
	case a.MTU != cfg.MTU:
		return fmt.Errorf("bridge %s has MTU %d after setting %d", cfg.Name, a.MTU, cfg.MTU)
	case a.Flags&net.FlagUp == 0:
		return fmt.Errorf("bridge %s is down after setting it up", cfg.Name)
	}
	have, err := addrs(h, link)
	if err != nil {
		return err
	}
	if len(have) != 1 || have[0] != want {
		return fmt.Errorf("bridge %s has IPv4 addresses %v after setting %s", cfg.Name, have, want)
	}
	return nil
}

// Keep calls [Ensure] every period until ctx is cancelled, then returns nil. It puts
// back what others change: an MTU the kernel raised when a port with a larger MTU
// joined an unpinned bridge, a removed address, a bridge set down or deleted. Failures
// are logged at Warn and retried at the next period. Like Ensure it must run on a
// thread in the namespace that h points at, for the forwarding switch.
func Keep(
	ctx context.Context, h *netlink.Handle, log *slog.Logger, cfg Config, period time.Duration,
) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if period <= 0 {
		return fmt.Errorf("bridge %s: resync period %v is not positive", cfg.Name, period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// Ensure logs each repair itself.
		if _, err := Ensure(h, log, cfg); err != nil {
			log.Warn("keeping bridge", "bridge", cfg.Name, "err", err)
		}
	}
}
