package vxlan

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/kernel"
	"github.com/weftnet/weft/subnet"
)

// vxlanBackend is the backend of one host.
type vxlanBackend struct {
	ext backend.ExternalInterface
	log *slog.Logger
	sys sys

	// resync is the period of the networks' comparison with the kernel; wrapOps, when
	// set, wraps the kernel Ops (tests count writes with it).
	resync  time.Duration
	wrapOps func(kernel.Ops) kernel.Ops
}

// New returns the vxlan backend for the network namespace of the calling thread (the
// process's own unless the caller locked its thread into another): every later call,
// from any goroutine, works there.
func New(p backend.Params) (backend.Backend, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("opening the current network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return newBackend(p, sys{h: h, ns: ns}), nil
}

func newBackend(p backend.Params, s sys) *vxlanBackend {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &vxlanBackend{ext: p.Ext, log: log.With("backend", TypeName), sys: s}
}

// RegisterNetwork implements backend.Backend: for each enabled family it creates or
// adopts the device (flannel.<VNI>, flannel-v6.<VNI>), acquires the lease that
// advertises the devices' MACs, gives each device the lease's network address of its
// family as a host address and sets it up. A device it created is deleted again when a
// later step fails.
func (b *vxlanBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	opts, err := ParseOptions(cfg.Backend)
	if err != nil {
		return nil, err
	}
	fams, mtu, err := b.families(cfg, opts)
	if err != nil {
		return nil, err
	}

	// Create or adopt the devices first: the lease carries their MACs.
	var created []kernel.Link
	success := false
	defer func() {
		if success {
			return
		}
		for _, l := range created {
			if err := b.sys.deleteDevice(l); err != nil {
				b.log.Warn("removing a device after a failed registration", "device", l,
					"err", err)
			}
		}
	}()
	var macs [2]kernel.MAC
	for i, f := range fams {
		mac, err := randomMAC()
		if err != nil {
			return nil, err
		}
		st, made, err := b.sys.ensureDevice(f.spec, mac, b.log.With("device", f.spec.Name))
		if err != nil {
			return nil, err
		}
		if made {
			created = append(created, st.Link)
		}
		fams[i].mac = st.MAC
		macs[boolIndex(f.v6)] = st.MAC
	}

	acquired := leaseAttrs(b.ext, opts.VNI, macs[0], macs[1])
	lease, err := lm.AcquireLease(ctx, acquired)
	if err != nil {
		return nil, fmt.Errorf("acquiring lease: %w", err)
	}

	var ops kernel.Ops = kernel.NewNetlink(b.sys.h)
	if b.wrapOps != nil {
		ops = b.wrapOps(ops)
	}
	var stacks []*stack
	var names []string
	for _, f := range fams {
		own := lease.Subnet
		if f.v6 {
			own = lease.IPv6Subnet
		}
		if !f.network.Contains(own.Addr()) {
			return nil, fmt.Errorf("lease subnet %s is outside the network %s", own, f.network)
		}
		dev := &netlinkDevice{
			sys:     b.sys,
			spec:    f.spec,
			addr:    subnetAddr(own),
			network: f.network,
			log:     b.log.With("device", f.spec.Name),
		}
		info, err := dev.ensure(f.mac)
		if err != nil {
			return nil, err
		}
		stacks = append(stacks, &stack{
			v6:      f.v6,
			dev:     dev,
			network: f.network,
			own:     own,
			link:    info.Link,
			mac:     info.MAC,
		})
		names = append(names, f.spec.Name)
	}

	n := newNetwork(networkConfig{
		lease:     lease,
		mtu:       mtu,
		opts:      opts,
		ext:       b.ext,
		lm:        lm,
		ops:       ops,
		watch:     &netlinkWatcher{sys: b.sys, names: names, log: b.log},
		drift:     b.sys.watchDrift(b.log),
		log:       b.log,
		stacks:    stacks,
		published: acquired,
		resync:    b.resync,
	})
	if attrs := n.attrs(); !subnet.EqualAttrs(attrs, acquired) {
		// A device changed under us between creation and configuration.
		if err := lm.UpdateLeaseAttrs(ctx, attrs); err != nil {
			return nil, fmt.Errorf("publishing VtepMAC: %w", err)
		}
		n.published = attrs
	}
	for _, s := range stacks {
		b.log.Info("registered", "device", s.link.Name, "subnet", s.own, "mac", s.mac)
	}
	success = true
	return n, nil
}

// family is what RegisterNetwork needs to know of one address family.
type family struct {
	v6      bool
	spec    deviceSpec
	network netip.Prefix
	mac     kernel.MAC
}

// families checks the config against the external interface and returns the device of
// each enabled family, and FLANNEL_MTU: the smallest device MTU, so that containers'
// packets fit either tunnel.
func (b *vxlanBackend) families(cfg *subnet.Config, opts Options) ([]family, int, error) {
	var fams []family
	mtu := 0
	if cfg.EnableIPv4 {
		if !cfg.Network.Addr().Is4() {
			return nil, 0, errors.New("vxlan backend: the network config has no IPv4 Network")
		}
		if !b.ext.ExtAddr.Is4() {
			return nil, 0, fmt.Errorf("vxlan backend: external interface %q has no IPv4 address",
				b.ext.Name)
		}
		m, err := opts.DeviceMTU(b.ext.MTU)
		if err != nil {
			return nil, 0, err
		}
		mtu = m
		fams = append(fams, family{
			network: cfg.Network,
			spec:    b.spec(DeviceName(opts.VNI), opts, m, b.ext.ExtAddr),
		})
	}
	if cfg.EnableIPv6 {
		if !cfg.IPv6Network.Addr().Is6() {
			return nil, 0, errors.New("vxlan backend: the network config has no IPv6Network")
		}
		if !b.ext.ExtV6Addr.Is6() {
			return nil, 0, fmt.Errorf("vxlan backend: external interface %q has no IPv6 address",
				b.ext.Name)
		}
		m, err := opts.DeviceMTUV6(b.ext.MTU)
		if err != nil {
			return nil, 0, err
		}
		mtu = m
		fams = append(fams, family{
			v6:      true,
			network: cfg.IPv6Network,
			spec:    b.spec(DeviceNameV6(opts.VNI), opts, m, b.ext.ExtV6Addr),
		})
	}
	if len(fams) == 0 {
		return nil, 0, errors.New("vxlan backend: the network config enables neither IPv4 nor IPv6")
	}
	if b.ext.Index <= 0 {
		return nil, 0, fmt.Errorf("vxlan backend: external interface %q has no index", b.ext.Name)
	}
	return fams, mtu, nil
}

func (b *vxlanBackend) spec(name string, opts Options, mtu int, local netip.Addr) deviceSpec {
	return deviceSpec{
		Name:      name,
		VNI:       opts.VNI,
		Port:      opts.Port,
		GBP:       opts.GBP,
		Learning:  opts.Learning,
		MTU:       mtu,
		Local:     local,
		VtepIndex: b.ext.Index,
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// randomMAC returns a random locally administered unicast MAC.
func randomMAC() (kernel.MAC, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return kernel.MAC{}, fmt.Errorf("generating a MAC: %w", err)
	}
	return randomMACFrom(b), nil
}
