package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/bridge"
	"github.com/weftnet/weft/rules"
	"github.com/weftnet/weft/subnet"
)

// currentNetNS returns the network namespace of the calling thread: the one whose
// interfaces, rules and bridge the daemon works on.
func currentNetNS() (netns.NsHandle, error) {
	ns, err := netns.Get()
	if err != nil {
		return netns.None(), fmt.Errorf("opening the current network namespace: %w", err)
	}
	return ns, nil
}

// chooseExternal chooses the external interface in ns.
func chooseExternal(ns netns.NsHandle, spec InterfaceSpec, log *slog.Logger) (
	backend.ExternalInterface, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return backend.ExternalInterface{}, fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	return ChooseInterface(h, spec, log)
}

// inNetNS runs fn on an OS thread that has entered ns and returns its error. The thread
// is never handed back to the scheduler: it ends with the goroutine, so that no other
// goroutine runs in the wrong namespace. /proc/sys files answer for the namespace of
// the thread that opens them, which is why the bridge's forwarding switch needs this.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// hostSetup is what the host side is made from for one lease.
type hostSetup struct {
	net   *subnet.Config
	lease *subnet.Lease
	mtu   int
	// prev is the lease the host had before: the previous run's subnet.env at startup,
	// the lease given up after a change. Its blackhole routes are removed.
	prev subnet.Env
}

// hostState is the host side kept for one lease: flanneld's masquerade and forward
// rules, the blackhole route, and the runtime bridge. Keepers put them back every
// resync period until stop.
type hostState struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	rules  *rules.Manager
}

// setupHost installs the host side for s and starts its keepers. On error nothing is
// left running. Equivalent to what rules.Manager.Sync and bridge.Ensure list, in short:
//
//	nft add table ip flannel-ipv4; nft add chain ip flannel-ipv4 forward ...
//	ip route replace blackhole 198.19.5.0/24 metric 4096
//	ip link add cni0 type bridge; ip addr replace 198.19.5.1/24 dev cni0
//	ip link set cni0 mtu 1450 up
func (d *daemonState) setupHost(ctx context.Context, s hostSetup) (*hostState, error) {
	log := d.cfg.Log
	hs := &hostState{}
	kctx, cancel := context.WithCancel(ctx)
	hs.cancel = cancel
	ok := false
	defer func() {
		if !ok {
			hs.stop()
		}
	}()

	if d.cfg.IPMasq || d.cfg.IPTablesForwardRules || d.cfg.IPBlackholeRoute {
		rc := rules.Config{
			Masquerade:         d.cfg.IPMasq,
			Forward:            d.cfg.IPTablesForwardRules,
			DisableFullyRandom: d.cfg.IPMasqFullyRandomDisable,
			BlackholeRoute:     d.cfg.IPBlackholeRoute,
			PrevSubnet:         s.prev.Subnet,
			PrevIPv6Subnet:     s.prev.IPv6Subnet,
		}
		if s.net.EnableIPv4 {
			rc.Network, rc.Subnet = s.net.Network, s.lease.Subnet
		}
		if s.net.EnableIPv6 {
			rc.IPv6Network, rc.IPv6Subnet = s.net.IPv6Network, s.lease.IPv6Subnet
		}
		m, err := rules.New(rc, log, d.ns)
		if err != nil {
			return nil, fmt.Errorf("preparing the masquerade and forward rules: %w", err)
		}
		hs.rules = m
		if _, err := m.Sync(); err != nil {
			return nil, fmt.Errorf("installing the masquerade and forward rules: %w", err)
		}
		hs.wg.Go(func() { m.Run(kctx, d.cfg.IPTablesResync) })
	}

	if d.cfg.Bridge != "" {
		bc := bridge.Config{Name: d.cfg.Bridge, Subnet: s.lease.Subnet, MTU: s.mtu}
		blog := log.With("subsystem", "bridge")
		h, err := netlink.NewHandleAt(d.ns)
		if err != nil {
			return nil, fmt.Errorf("opening netlink for bridge %s: %w", d.cfg.Bridge, err)
		}
		// Ensure logs each change it makes.
		err = inNetNS(d.ns, func() error {
			_, err := bridge.Ensure(h, blog, bc)
			return err
		})
		if err != nil {
			h.Close()
			return nil, err
		}
		hs.wg.Go(func() {
			defer h.Close()
			err := inNetNS(d.ns, func() error {
				return bridge.Keep(kctx, h, blog, bc, d.cfg.IPTablesResync)
			})
			if err != nil {
				blog.Error("keeping the bridge stopped", "bridge", d.cfg.Bridge, "err", err)
			}
		})
	}

	ok = true
	return hs, nil
}

// stop stops the keepers and waits for them. The rules, route and bridge stay.
func (hs *hostState) stop() {
	hs.cancel()
	hs.wg.Wait()
	if hs.rules != nil {
		hs.rules.Close()
		hs.rules = nil
	}
}
