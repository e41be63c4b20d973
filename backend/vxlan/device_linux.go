package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/kernel"
)

// sys is the network namespace the backend works in: a netlink handle bound to it, and
// the namespace itself for what a handle cannot reach (sysctls, subscriptions to link
// changes and to deletions).
type sys struct {
	h *netlink.Handle
	// ns is the namespace of h. With netns.None(), the namespace of whichever thread
	// runs the call is used, which is only right in a process that never changes one.
	ns netns.NsHandle
}

// do runs fn on a thread inside the namespace, or directly when it is the process's own.
// The thread is discarded afterwards instead of returning to the scheduler.
func (s sys) do(fn func() error) error {
	if !s.ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(s.ns); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// readDevice returns the link called name as a deviceState; the error wraps
// kernel.ErrLinkNotFound when there is none.
func (s sys) readDevice(name string) (deviceState, error) {
	l, err := s.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return deviceState{}, fmt.Errorf("reading device %s: %w", name, kernel.ErrLinkNotFound)
		}
		return deviceState{}, fmt.Errorf("reading device %s: %w", name, err)
	}
	a := l.Attrs()
	d := deviceState{
		Link: kernel.Link{Index: a.Index, Name: a.Name},
		Kind: l.Type(),
		MTU:  a.MTU,
		Up:   a.Flags&net.FlagUp != 0,
	}
	d.MAC, _ = kernel.MACFromSlice(a.HardwareAddr)
	if vx, ok := l.(*netlink.Vxlan); ok {
		d.VNI = vx.VxlanId
		d.Port = vx.Port
		d.GBP = vx.GBP
		d.Learning = vx.Learning
		d.L2miss = vx.L2miss
		d.Local = addrOf(vx.SrcAddr)
		d.Group = addrOf(vx.Group)
		d.VtepIndex = vx.VtepDevIndex
	}
	return d, nil
}

// ensureDevice makes the device of spec exist: an existing compatible one is kept with
// its MAC, an incompatible one is deleted and created again with mac, after an Info log
// that says why. The device is read back and verified; an MTU that differs is set in
// place. It reports whether it created the device. The device is not set up here.
//
// Equivalent to: ip link add flannel.1 address <mac> mtu 1450 type vxlan id 1
// local 198.18.0.1 dev eth0 [dstport <port>] nolearning [gbp]
func (s sys) ensureDevice(spec deviceSpec, mac kernel.MAC, log *slog.Logger) (
	d deviceState, created bool, err error) {
	for attempt := 0; ; attempt++ {
		if attempt > 3 {
			return deviceState{}, created,
				fmt.Errorf("creating VXLAN device %s: it keeps changing under us", spec.Name)
		}
		d, err = s.readDevice(spec.Name)
		switch {
		case errors.Is(err, kernel.ErrLinkNotFound):
		case err != nil:
			return deviceState{}, created, err
		default:
			why := spec.incompatibility(d)
			if why == "" {
				return s.finishDevice(spec, d, created, log)
			}
			if created {
				return deviceState{}, created,
					fmt.Errorf("device %s reads back incompatible: %s", spec.Name, why)
			}
			log.Info("device exists with an incompatible configuration; recreating it",
				"reason", why)
			if err := s.deleteDevice(d.Link); err != nil {
				return deviceState{}, created, err
			}
		}

		err = s.h.LinkAdd(&netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{
				Name:         spec.Name,
				MTU:          spec.MTU,
				HardwareAddr: mac.HardwareAddr(),
			},
			VxlanId:      spec.VNI,
			VtepDevIndex: spec.VtepIndex,
			SrcAddr:      spec.Local.AsSlice(),
			Port:         spec.Port,
			Learning:     spec.Learning,
			GBP:          spec.GBP,
		})
		switch {
		case errors.Is(err, unix.EEXIST):
			// Someone else created it meanwhile: read it again.
		case err != nil:
			return deviceState{}, created,
				fmt.Errorf("creating VXLAN device %s: %w", spec.Name, err)
		default:
			kernel.CountWrite()
			created = true
			log.Info("created VXLAN device", "mac", mac)
		}
	}
}

// finishDevice sets a kept device's MTU.
func (s sys) finishDevice(spec deviceSpec, d deviceState, created bool, log *slog.Logger) (
	deviceState, bool, error) {
	if d.MTU != spec.MTU {
		l := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Index: d.Link.Index, Name: d.Link.Name}}
		if err := s.h.LinkSetMTU(l, spec.MTU); err != nil {
			return deviceState{}, created,
				fmt.Errorf("setting MTU %d on %s: %w", spec.MTU, spec.Name, err)
		}
		kernel.CountWrite()
		log.Info("changed device MTU", "old", d.MTU, "new", spec.MTU)
		d.MTU = spec.MTU
	}
	return d, created, nil
}

// deleteDevice removes the link; one already gone is success.
//
// Equivalent to: ip link del flannel.1
func (s sys) deleteDevice(l kernel.Link) error {
	err := s.h.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Index: l.Index, Name: l.Name}})
	if err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting device %s: %w", l, err)
	}
	kernel.CountWrite()
	return nil
}

// disableAcceptRA keeps the device from configuring itself from IPv6 router
// advertisements. Without IPv6 in the kernel there is nothing to turn off.
//
// Equivalent to: sysctl -w net.ipv6.conf.flannel.1.accept_ra=0
func (s sys) disableAcceptRA(dev string) error {
	return s.do(func() error {
		path := filepath.Join("/proc/sys/net/ipv6/conf", dev, "accept_ra")
		old, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil
		case err != nil:
			return fmt.Errorf("reading %s: %w", path, err)
		case string(bytes.TrimSpace(old)) == "0":
			return nil
		}
		if err := os.WriteFile(path, []byte("0"), 0o644); err != nil {
			return fmt.Errorf("turning off accept_ra on %s: %w", dev, err)
		}
		return nil
	})
}

// configureDevice gives the device addr, removes every other address of the family
// inside network, and sets it up. It reports whether it changed anything.
//
// Equivalent to: ip addr replace 198.19.1.0/32 dev flannel.1; ip addr del <other> dev
// flannel.1; ip link set flannel.1 up (for IPv6 the address is added nodad)
func (s sys) configureDevice(d deviceState, addr, network netip.Prefix) (bool, error) {
	l := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Index: d.Link.Index, Name: d.Link.Name}}
	family := netlink.FAMILY_V4
	if addr.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	var addrs []netlink.Addr
	var err error
	for range 10 {
		addrs, err = s.h.AddrList(l, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("listing addresses of %s: %w", d.Link, err)
	}

	changed := false
	var stale []netlink.Addr
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(addrOf(a.IP), ones)
		switch {
		case p == addr:
			have = true
		case network.Contains(p.Addr()):
			stale = append(stale, a)
		}
	}
	if !have {
		na := &netlink.Addr{IPNet: &net.IPNet{
			IP:   addr.Addr().AsSlice(),
			Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen()),
		}}
		if addr.Addr().Is6() {
			// Duplicate address detection cannot work across an overlay without
			// multicast; it would only hold the address back as tentative.
			na.Flags = unix.IFA_F_NODAD
		}
		if err := s.h.AddrReplace(l, na); err != nil {
			return changed, fmt.Errorf("adding address %s to %s: %w", addr, d.Link, err)
		}
		kernel.CountWrite()
		changed = true
	}
	for _, a := range stale {
		if err := s.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return changed, fmt.Errorf("removing address %s from %s: %w", a.IPNet, d.Link, err)
		}
		kernel.CountWrite()
		changed = true
	}
	if !d.Up {
		if err := s.h.LinkSetUp(l); err != nil {
			return changed, fmt.Errorf("setting %s up: %w", d.Link, err)
		}
		kernel.CountWrite()
		changed = true
	}
	return changed, nil
}

// netlinkDevice is the device interface on the real kernel.
type netlinkDevice struct {
	sys     sys
	spec    deviceSpec
	addr    netip.Prefix
	network netip.Prefix
	log     *slog.Logger

	// raIndex is the index of the device whose accept_ra was last turned off, so that
	// checking an unchanged device does not read the sysctl again.
	raIndex int
}

func (d *netlinkDevice) ensure(mac kernel.MAC) (deviceInfo, error) {
	st, created, err := d.sys.ensureDevice(d.spec, mac, d.log)
	if err != nil {
		return deviceInfo{}, err
	}
	if st.Link.Index != d.raIndex {
		if err := d.sys.disableAcceptRA(d.spec.Name); err != nil {
			return deviceInfo{}, err
		}
		d.raIndex = st.Link.Index
	}
	changed, err := d.sys.configureDevice(st, d.addr, d.network)
	if err != nil {
		return deviceInfo{}, err
	}
	if changed || created {
		// Read back what the kernel made of it.
		if st, err = d.sys.readDevice(d.spec.Name); err != nil {
			return deviceInfo{}, err
		}
	}
	return deviceInfo{Link: st.Link, MAC: st.MAC, Changed: changed || created}, nil
}

// netlinkWatcher is the linkWatcher on the real kernel: it follows the links with the
// network's device names.
type netlinkWatcher struct {
	sys   sys
	names []string
	log   *slog.Logger
}

func (w *netlinkWatcher) subscribe(done <-chan struct{}) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 16)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { w.log.Debug("link subscription", "err", err) },
	}
	if w.sys.ns.IsOpen() {
		ns := w.sys.ns
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("subscribing to link changes: %w", err)
	}

	// The subscription's own goroutine closes updates when done is closed or the socket
	// fails; this one stops with it.
	changes := make(chan struct{}, 1)
	go func() {
		defer close(changes)
		for u := range updates {
			if !slices.Contains(w.names, u.Attrs().Name) {
				continue
			}
			select {
			case changes <- struct{}{}:
			default:
			}
		}
	}()
	return changes, nil
}

// watchDrift returns the driftFunc that watches the namespace for deleted entries.
func (s sys) watchDrift(log *slog.Logger) driftFunc {
	return func(ctx context.Context, filter *kernel.DriftFilter,
		out chan<- struct{}) <-chan struct{} {
		return kernel.DriftWatch{NS: s.ns, Filter: filter, Log: log}.Start(ctx, out)
	}
}
