package vxlan

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
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

// RegisterNetwork implements backend.Backend: it creates or adopts flannel.<VNI>,
// acquires the lease that advertises the device's MAC, gives the device the lease's
// network address as a /32 and sets it up. A device it created is deleted again when a
// later step fails.
func (b *vxlanBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	opts, err := ParseOptions(cfg.Backend)
	if err != nil {
		return nil, err
	}
	if !cfg.EnableIPv4 || !cfg.Network.Addr().Is4() {
		return nil, errors.New("vxlan backend: the network config has no IPv4 Network")
	}
	if cfg.EnableIPv6 {
		// TODO: dual stack. A flannel-v6.<VNI> device with ExtV6Addr as local address,
		// BackendV6Data and PublicIPv6 in the lease, and a second peers.Set (IPv6: true)
		// on it are missing, so a dual-stack network cannot use this backend yet; it is
		// refused rather than run IPv4-only, since a dual-stack flanneld peer crashes or
		// skips leases that lack their IPv6 part.
		return nil, errors.New("vxlan backend: EnableIPv6 is not supported yet")
	}
	if !b.ext.ExtAddr.Is4() || b.ext.Index <= 0 {
		return nil, fmt.Errorf("vxlan backend: external interface %q has no IPv4 address",
			b.ext.Name)
	}
	mtu, err := opts.DeviceMTU(b.ext.MTU)
	if err != nil {
		return nil, err
	}

	spec := deviceSpec{
		Name:      DeviceName(opts.VNI),
		VNI:       opts.VNI,
		Port:      opts.Port,
		GBP:       opts.GBP,
		Learning:  opts.Learning,
		MTU:       mtu,
		Local:     b.ext.ExtAddr,
		VtepIndex: b.ext.Index,
	}
	log := b.log.With("device", spec.Name)
	mac, err := randomMAC()
	if err != nil {
		return nil, err
	}
	st, created, err := b.sys.ensureDevice(spec, mac, log)
	if err != nil {
		return nil, err
	}
	success := false
	defer func() {
		if !success && created {
			if err := b.sys.deleteDevice(st.Link); err != nil {
				log.Warn("removing the device after a failed registration", "err", err)
			}
		}
	}()

	lease, err := lm.AcquireLease(ctx, leaseAttrs(b.ext, opts.VNI, st.MAC))
	if err != nil {
		return nil, fmt.Errorf("acquiring lease: %w", err)
	}
	if !cfg.Network.Contains(lease.Subnet.Addr()) {
		return nil, fmt.Errorf("lease subnet %s is outside the network %s", lease.Subnet,
			cfg.Network)
	}

	dev := &netlinkDevice{
		sys:     b.sys,
		spec:    spec,
		addr:    subnetAddr(lease.Subnet),
		network: cfg.Network,
		log:     log,
	}
	info, err := dev.ensure(st.MAC)
	if err != nil {
		return nil, err
	}

	var ops kernel.Ops = kernel.NewNetlink(b.sys.h)
	if b.wrapOps != nil {
		ops = b.wrapOps(ops)
	}
	n := newNetwork(networkConfig{
		cfg:       cfg,
		lease:     lease,
		mtu:       mtu,
		opts:      opts,
		ext:       b.ext,
		lm:        lm,
		ops:       ops,
		dev:       dev,
		log:       log,
		link:      info.Link,
		mac:       info.MAC,
		published: st.MAC,
		resync:    b.resync,
	})
	if info.MAC != st.MAC {
		// The device changed under us between creation and configuration.
		if err := lm.UpdateLeaseAttrs(ctx, leaseAttrs(b.ext, opts.VNI, info.MAC)); err != nil {
			return nil, fmt.Errorf("publishing VtepMAC %s: %w", info.MAC, err)
		}
		n.published = info.MAC
	}
	log.Info("registered", "subnet", lease.Subnet, "mac", info.MAC, "mtu", mtu)
	success = true
	return n, nil
}

// randomMAC returns a random locally administered unicast MAC.
func randomMAC() (kernel.MAC, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return kernel.MAC{}, fmt.Errorf("generating a MAC: %w", err)
	}
	return randomMACFrom(b), nil
}
