package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/udp/tun"
	"github.com/weftnet/weft/subnet"
)

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
const in6AddrGenModeNone = 1

// tunName is the template from which the kernel names the device: flannel0 unless that
// name is taken, as with flanneld.
const tunName = "flannel%d"

// Network is a registered udp backend: the TUN device, the socket and the peer table.
// Its data path runs inside Run.
type Network struct {
	log     *slog.Logger
	lease   *subnet.Lease
	mtu     int
	port    uint16
	tunAddr [4]byte
	opts    Options

	dev  *tun.Device
	sock *udpSocket
	// gsoWanted is true while UDP GSO is in use and its loss not yet logged.
	gsoWanted atomic.Bool

	table atomic.Pointer[Table]
	ctr   Counters
	ran   atomic.Bool
}

// RegisterNetwork opens flannel0 and the UDP socket, acquires the lease (its attributes
// carry only the PublicIP, as flanneld's udp leases do) and configures the device. On
// error the device and socket are closed, which removes the device. The device and the
// socket belong to the returned Network and go away when its Run returns; register
// again only after that, since the port is taken until then.
//
// Equivalent to: ip tuntap add dev flannel0 mode tun; ip link set flannel0 mtu <ext-28>
// addrgenmode none; ip addr replace <subnet address>/32 dev flannel0;
// ip link set flannel0 up; ip route replace <network> dev flannel0
func (b *udpBackend) RegisterNetwork(ctx context.Context, cfg *subnet.Config,
	lm backend.LeaseManager) (backend.Network, error) {
	conf, err := parseConfig(cfg.Backend)
	if err != nil {
		return nil, err
	}
	if !cfg.EnableIPv4 || !cfg.Network.Addr().Is4() {
		return nil, fmt.Errorf("udp backend carries IPv4 only, and the network %v has none",
			cfg.Network)
	}
	if cfg.EnableIPv6 {
		return nil, fmt.Errorf("udp backend carries IPv4 only: EnableIPv6 must be false "+
			"(IPv6Network %v)", cfg.IPv6Network)
	}
	mtu := b.ext.MTU - encapOverhead
	tunOffload := !b.opts.Plain && !b.opts.NoTUNOffload
	udpOffload := !b.opts.Plain && !b.opts.NoUDPOffload
	queues := max(b.opts.Queues, 1)
	if b.opts.Plain {
		queues = 1
	}

	dev, err := tun.Open(tun.Config{Name: tunName, Offload: tunOffload, Queues: queues})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			dev.Close()
		}
	}()

	bind := netip.AddrPortFrom(b.ext.IfaceAddr, uint16(conf.Port))
	sock, err := openSocket(bind, udpOffload)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			sock.close()
		}
	}()

	lease, err := lm.AcquireLease(ctx, subnet.LeaseAttrs{PublicIP: b.ext.ExtAddr})
	if err != nil {
		return nil, fmt.Errorf("acquiring lease: %w", err)
	}
	if !lease.Subnet.Addr().Is4() || !cfg.Network.Contains(lease.Subnet.Addr()) {
		return nil, fmt.Errorf("lease %v is not an IPv4 subnet of the network %v",
			lease.Subnet, cfg.Network)
	}
	addr := tunAddr(lease.Subnet)
	if err := configureDevice(dev.Name(), addr, mtu, cfg.Network); err != nil {
		return nil, err
	}

	n := &Network{
		log:     b.log.With("device", dev.Name()),
		lease:   lease,
		mtu:     mtu,
		port:    uint16(conf.Port),
		tunAddr: addr.Addr().As4(),
		opts:    b.opts,
		dev:     dev,
		sock:    sock,
	}
	n.table.Store(NewTable(nil))
	n.gsoWanted.Store(sock.gso.Load())
	ok = true

	n.log.Info("udp network registered",
		"lease", lease.Subnet, "address", addr, "mtu", mtu, "bind", bind,
		"tun_offloads", dev.Offloads(), "queues", queues,
		"udp_gso", sock.gso.Load(), "udp_gro", sock.gro, "plain", b.opts.Plain)
	return n, nil
}

// configureDevice sets the TUN device's MTU and address, brings it up, routes the whole
// network through it, and reads the device back to check the MTU and that it is up.
func configureDevice(name string, addr netip.Prefix, mtu int, network netip.Prefix) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()

	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("setting MTU %d on %s: %w", mtu, name, err)
	}
	nlAddr := &netlink.Addr{IPNet: prefixToIPNet(addr)}
	if err := h.AddrReplace(link, nlAddr); err != nil {
		return fmt.Errorf("adding address %v to %s: %w", addr, name, err)
	}
	// The device carries IPv4 only. Without an IPv6 link-local address the kernel sends
	// no router solicitations or MLD reports into it. A kernel without IPv6 refuses the
	// setting, and needs none.
	_ = h.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone)
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       prefixToIPNet(network),
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("adding route %v dev %s: %w", network, name, err)
	}

	link, err = h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("reading %s back: %w", name, err)
	}
	if got := link.Attrs().MTU; got != mtu {
		return fmt.Errorf("%s has MTU %d after setting %d", name, got, mtu)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s is not up after setting it up", name)
	}
	return nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Lease returns the lease the network was registered with.
func (n *Network) Lease() *subnet.Lease { return n.lease }

// MTU returns the TUN device's MTU, the external MTU less 28 bytes: FLANNEL_MTU.
func (n *Network) MTU() int { return n.mtu }

// DeviceName returns the TUN device's name, normally flannel0.
func (n *Network) DeviceName() string { return n.dev.Name() }

// Counters returns the data path's statistics.
func (n *Network) Counters() *Counters { return &n.ctr }

// Peers returns the current peer table.
func (n *Network) Peers() *Table { return n.table.Load() }

// Run forwards packets and follows peer lease events until ctx is cancelled, then stops
// the data path and closes the device, which removes it and its route, and the socket.
// It returns nil then, or the error that stopped the data path. Run may be called once.
func (n *Network) Run(ctx context.Context, events <-chan []subnet.Event) error {
	if !n.ran.CompareAndSwap(false, true) {
		return errors.New("udp network: Run called twice")
	}
	defer n.close()

	var wg sync.WaitGroup
	errc := make(chan error, len(n.dev.Queues())+1)
	stopping := atomic.Bool{}
	start := func(name string, run func() error) {
		wg.Go(func() {
			n.log.Debug("data path worker started", "worker", name)
			err := run()
			if stopping.Load() && fatal(err) {
				err = nil
			}
			n.log.Debug("data path worker stopped", "worker", name, "err", err)
			if err != nil {
				errc <- fmt.Errorf("udp data path %s: %w", name, err)
			}
		})
	}
	// TODO: the workers run at the daemon's priority, so when pods or anything else
	// keep the CPUs busy they lose time to them, while kernel VXLAN forwards in softirq
	// context ahead of every task: under contention udp throughput falls further than
	// VXLAN's. A higher priority for the workers would need CAP_SYS_NICE and threads
	// locked to them, which adds a thread handoff to every wakeup and so to the RTT.
	m := n.mode()
	n.log.Info("udp data path started", "tx_batch", m.tx.txBatch, "rx_batch", m.rx.rxBatch,
		"vnet_hdr", m.tx.vnet)
	for i, q := range n.dev.Queues() {
		start(fmt.Sprintf("tx%d", i), newTxWorker(n, q, m.tx).run)
	}
	start("rx", newRxWorker(n, n.dev.Queues()[0], m.rx).run)

	peers := map[netip.Prefix]netip.AddrPort{}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-errc:
			break loop
		case batch, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if n.apply(peers, batch) {
				n.table.Store(NewTable(peers))
			}
		}
	}

	stopping.Store(true)
	past := time.Unix(1, 0)
	for _, q := range n.dev.Queues() {
		q.SetDeadline(past)
	}
	n.sock.setDeadline(past)
	wg.Wait()
	n.log.Info("udp data path stopped")
	return runErr
}

// modes are the transmit and receive workers' modes.
type modes struct{ tx, rx mode }

// mode picks the workers' batch sizes for the options and what the kernel gave.
func (n *Network) mode() modes {
	small := n.mtu + 1
	if n.opts.Plain {
		return modes{
			tx: mode{txBatch: 1, bufSize: small},
			rx: mode{rxBatch: 1, bufSize: small},
		}
	}

	vnet := n.dev.Offloads().VnetHdr
	m := modes{
		tx: mode{vnet: vnet, txBatch: batch, bufSize: small},
		rx: mode{vnet: vnet, rxBatch: batch, bufSize: small},
	}
	switch {
	case vnet:
		m.tx.txBatch, m.tx.bufSize = fastTxBatch, tunBufSize
	case n.sock.gso.Load():
		m.tx.txBatch = gsoBatch
	}
	if n.sock.gro {
		m.rx.rxBatch, m.rx.bufSize = fastRxBatch, rxBufSize
	}
	if t := n.opts.tune; vnet && t.txBatch > 0 {
		m.tx.txBatch = t.txBatch
	}
	if t := n.opts.tune; n.sock.gro && t.rxBatch > 0 {
		m.rx.rxBatch = t.rxBatch
	}
	return m
}

// apply folds a batch of lease events into peers and reports whether it changed. As with
// flanneld, every added lease is a peer whatever its BackendType.
func (n *Network) apply(peers map[netip.Prefix]netip.AddrPort, batch []subnet.Event) bool {
	changed := false
	for _, ev := range batch {
		l := ev.Lease
		if !l.Subnet.Addr().Is4() {
			n.log.Warn("ignoring lease without an IPv4 subnet", "lease", l.String())
			continue
		}
		pfx := l.Subnet.Masked()
		switch ev.Type {
		case subnet.EventAdded:
			ip := l.Attrs.PublicIP
			if !ip.Is4() || ip.IsUnspecified() {
				n.log.Warn("ignoring lease without a usable PublicIP",
					"lease", pfx, "public_ip", ip)
				continue
			}
			if pfx == n.lease.Subnet.Masked() {
				continue
			}
			dst := netip.AddrPortFrom(ip, n.port)
			old, had := peers[pfx]
			if had && old == dst {
				n.log.Debug("peer lease renewed", "lease", pfx, "public_ip", ip)
				continue
			}
			peers[pfx] = dst
			changed = true
			if had {
				n.log.Info("peer changed", "lease", pfx, "public_ip", ip, "was", old.Addr())
			} else {
				n.log.Info("peer added", "lease", pfx, "public_ip", ip)
			}
		case subnet.EventRemoved:
			old, had := peers[pfx]
			if !had {
				n.log.Debug("removed lease was no peer", "lease", pfx)
				continue
			}
			delete(peers, pfx)
			changed = true
			n.log.Info("peer removed", "lease", pfx, "public_ip", old.Addr())
		}
	}
	return changed
}

// close releases the device and the socket.
//
// Equivalent to: ip tuntap del dev flannel0 mode tun
func (n *Network) close() {
	if err := n.dev.Close(); err != nil {
		n.log.Warn("closing TUN device", "err", err)
	}
	if err := n.sock.close(); err != nil {
		n.log.Warn("closing UDP socket", "err", err)
	}
}
