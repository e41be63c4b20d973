package udp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// A lab is a few hosts, each a network namespace, joined by an underlay bridge in a
// namespace of its own, with one pod namespace per host behind a host bridge. Hosts are
// 198.18.0.N/24 on the underlay; host N leases 198.19.N.0/24 and its pod is 198.19.N.2.
// Everything is made in namespaces the test creates and goes away with them.
type lab struct {
	t     testing.TB
	wan   netns.NsHandle
	hosts []*labHost
}

type labHost struct {
	n      int
	ns     netns.NsHandle
	pod    netns.NsHandle
	ip     netip.Addr
	subnet netip.Prefix
	podIP  netip.Addr

	// the udp backend, when the host runs one
	net    *Network
	events chan []subnet.Event
	lm     *fakeLeases
	done   chan error
}

// labKind says what carries a lab's overlay.
type labKind struct {
	name  string
	vxlan bool    // kernel VXLAN programmed by hand
	opts  Options // udp backend options, per host unless perHost is set
	// perHost, when set, gives each host its own options.
	perHost []Options
}

var overlayNet = netip.MustParsePrefix("198.19.0.0/16")

const (
	underlayMTU = 1500
	vxlanMTU    = underlayMTU - 50
	udpMTU      = underlayMTU - encapOverhead
)

// newLab builds hosts hosts and starts their overlay.
func newLab(t testing.TB, hosts int, kind labKind) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	l := &lab{t: t, wan: nstest.New(t)}
	wh := nstest.Handle(t, l.wan)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wt-u-wan", MTU: underlayMTU}}
	must(t, wh.LinkAdd(br))
	must(t, wh.LinkSetUp(br))
	must(t, wh.AddrReplace(br, mustAddr("198.18.0.254/24")))

	mtu := udpMTU
	if kind.vxlan {
		mtu = vxlanMTU
	}
	for i := 1; i <= hosts; i++ {
		h := &labHost{
			n:      i,
			ns:     nstest.New(t),
			pod:    nstest.New(t),
			ip:     netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}),
			subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24),
			podIP:  netip.AddrFrom4([4]byte{198, 19, byte(i), 2}),
		}
		l.hosts = append(l.hosts, h)
		l.wireHost(h, wh, br, mtu)
	}

	if kind.vxlan {
		l.startVXLAN()
		return l
	}
	for i, h := range l.hosts {
		opts := kind.opts
		if kind.perHost != nil {
			opts = kind.perHost[i]
		}
		l.startUDP(h, opts)
	}
	for _, h := range l.hosts {
		h.send(t, l.peerEvents(h), len(l.hosts)-1)
	}
	return l
}

// wireHost joins h to the underlay and puts its pod behind a host bridge.
func (l *lab) wireHost(h *labHost, wh *netlink.Handle, br *netlink.Bridge, mtu int) {
	t := l.t
	hh := nstest.Handle(t, h.ns)
	ph := nstest.Handle(t, h.pod)

	// underlay: wan side wt-u-hN on the bridge, host side eth0
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: fmt.Sprintf("wt-u-h%d", h.n), MTU: underlayMTU},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(h.ns)),
	}
	must(t, wh.LinkAdd(veth))
	wside, err := wh.LinkByName(veth.Name)
	must(t, err)
	must(t, wh.LinkSetMaster(wside, br))
	must(t, wh.LinkSetUp(wside))
	eth0, err := hh.LinkByName("eth0")
	must(t, err)
	must(t, hh.LinkSetMTU(eth0, underlayMTU))
	must(t, hh.AddrReplace(eth0, mustAddr(h.ip.String()+"/24")))
	must(t, hh.LinkSetUp(eth0))

	// pod: host bridge cni0 at .1, pod eth0 at .2 with a default route through it
	cni := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0", MTU: mtu}}
	must(t, hh.LinkAdd(cni))
	must(t, hh.AddrReplace(cni, mustAddr(fmt.Sprintf("198.19.%d.1/24", h.n))))
	pveth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "veth0", MTU: mtu},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(h.pod)),
	}
	must(t, hh.LinkAdd(pveth))
	hside, err := hh.LinkByName("veth0")
	must(t, err)
	must(t, hh.LinkSetMaster(hside, cni))
	must(t, hh.LinkSetUp(hside))
	must(t, hh.LinkSetUp(cni))
	peth, err := ph.LinkByName("eth0")
	must(t, err)
	must(t, ph.LinkSetMTU(peth, mtu))
	must(t, ph.AddrReplace(peth, mustAddr(h.podIP.String()+"/24")))
	must(t, ph.LinkSetUp(peth))
	must(t, ph.RouteReplace(&netlink.Route{
		Gw: net.IPv4(198, 19, byte(h.n), 1),
	}))

	nstest.Do(t, h.ns, func() {
		must(t, os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644))
	})
}

// startUDP registers and runs the udp backend on h.
func (l *lab) startUDP(h *labHost, opts Options) {
	t := l.t
	hh := nstest.Handle(t, h.ns)
	eth0, err := hh.LinkByName("eth0")
	must(t, err)
	p := backend.Params{
		Ext: backend.ExternalInterface{
			Name: "eth0", Index: eth0.Attrs().Index, MTU: underlayMTU,
			IfaceAddr: h.ip, ExtAddr: h.ip,
		},
		Log: testLogger(t).With("host", h.n),
	}
	b, err := NewWithOptions(p, opts)
	must(t, err)
	cfg := &subnet.Config{EnableIPv4: true, Network: overlayNet, SubnetLen: 24,
		BackendType: TypeName, Backend: []byte(`{"Type":"udp"}`)}
	h.lm = &fakeLeases{subnet: h.subnet}

	var nw backend.Network
	nstest.Do(t, h.ns, func() { nw, err = b.RegisterNetwork(context.Background(), cfg, h.lm) })
	must(t, err)
	h.net = nw.(*Network)
	h.events = make(chan []subnet.Event, 16)
	h.done = make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.net.Run(ctx, h.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("host %d: Run: %v", h.n, err)
		}
	})
}

// peerEvents returns every other host's lease as added.
func (l *lab) peerEvents(h *labHost) []subnet.Event {
	var evs []subnet.Event
	for _, o := range l.hosts {
		if o != h {
			evs = append(evs, subnet.Event{Type: subnet.EventAdded, Lease: o.lease()})
		}
	}
	return evs
}

func (h *labHost) lease() subnet.Lease {
	return subnet.Lease{Subnet: h.subnet, Attrs: subnet.LeaseAttrs{PublicIP: h.ip}}
}

// send hands a batch of events to h's backend and waits until its table reflects them.
func (h *labHost) send(t testing.TB, evs []subnet.Event, wantPeers int) {
	t.Helper()
	h.events <- evs
	deadline := time.Now().Add(5 * time.Second)
	for h.net.Peers().Len() != wantPeers {
		if time.Now().After(deadline) {
			t.Fatalf("host %d has %d peers, want %d", h.n, h.net.Peers().Len(), wantPeers)
		}
		time.Sleep(time.Millisecond)
	}
}

// startVXLAN programs kernel VXLAN between all hosts the way flanneld does: flannel.1
// with the subnet address, and per peer a permanent neighbour, an FDB entry and an
// onlink route.
func (l *lab) startVXLAN() {
	t := l.t
	macs := map[int]net.HardwareAddr{}
	for _, h := range l.hosts {
		hh := nstest.Handle(t, h.ns)
		eth0, err := hh.LinkByName("eth0")
		must(t, err)
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: "flannel.1", MTU: vxlanMTU},
			VxlanId:      1,
			VtepDevIndex: eth0.Attrs().Index,
			SrcAddr:      h.ip.AsSlice(),
			Port:         8472,
		}
		must(t, hh.LinkAdd(vx))
		link, err := hh.LinkByName("flannel.1")
		must(t, err)
		must(t, hh.AddrReplace(link, mustAddr(h.subnet.Addr().String()+"/32")))
		must(t, hh.LinkSetUp(link))
		macs[h.n] = link.Attrs().HardwareAddr
	}
	for _, h := range l.hosts {
		hh := nstest.Handle(t, h.ns)
		link, err := hh.LinkByName("flannel.1")
		must(t, err)
		for _, o := range l.hosts {
			if o == h {
				continue
			}
			must(t, hh.NeighSet(&netlink.Neigh{
				LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
				Type: unix.RTN_UNICAST, IP: o.subnet.Addr().AsSlice(), HardwareAddr: macs[o.n],
			}))
			must(t, hh.NeighSet(&netlink.Neigh{
				LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, IP: o.ip.AsSlice(), HardwareAddr: macs[o.n],
			}))
			must(t, hh.RouteReplace(&netlink.Route{
				LinkIndex: link.Attrs().Index,
				Dst:       prefixToIPNet(o.subnet),
				Gw:        o.subnet.Addr().AsSlice(),
				Flags:     int(netlink.FLAG_ONLINK),
			}))
		}
	}
}

// fakeLeases is a LeaseManager that hands out one fixed subnet and records the
// attributes it was asked to publish.
type fakeLeases struct {
	subnet netip.Prefix
	mu     sync.Mutex
	attrs  []subnet.LeaseAttrs
}

func (f *fakeLeases) AcquireLease(ctx context.Context, a subnet.LeaseAttrs) (*subnet.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attrs = append(f.attrs, a)
	return &subnet.Lease{Subnet: f.subnet, Attrs: a}, nil
}

func (f *fakeLeases) UpdateLeaseAttrs(ctx context.Context, a subnet.LeaseAttrs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attrs = append(f.attrs, a)
	return nil
}

// listenTCP opens a TCP listener inside ns.
func listenTCP(t testing.TB, ns netns.NsHandle, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	nstest.Do(t, ns, func() { ln, err = net.Listen("tcp4", addr.String()) })
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialTCP connects from inside ns.
func dialTCP(t testing.TB, ns netns.NsHandle, addr netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	nstest.Do(t, ns, func() { c, err = net.DialTimeout("tcp4", addr.String(), 3*time.Second) })
	return c, err
}

// listenUDP opens a UDP socket inside ns.
func listenUDP(t testing.TB, ns netns.NsHandle, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	nstest.Do(t, ns, func() { c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr)) })
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echoServer answers every connection on ln with what it reads.
func echoServer(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// streamResult is one throughput measurement.
type streamResult struct {
	gbps    float64
	cpuPerG float64 // CPU seconds of this process per gigabit
}

// labPair is one TCP stream, from a's pod to b's.
type labPair struct{ a, b *labHost }

// measureStreams runs one TCP stream of 128 KiB writes per pair for d, all at once, and
// returns the rate at which the receivers took data in, after a warm-up.
func measureStreams(t testing.TB, pairs []labPair, port uint16, d time.Duration) streamResult {
	t.Helper()
	var received atomic.Int64
	var wg sync.WaitGroup
	perDst := map[*labHost]int{}
	for _, p := range pairs {
		perDst[p.b]++
	}
	var lns []net.Listener
	for dst, n := range perDst {
		ln := listenTCP(t, dst.pod, netip.AddrPortFrom(dst.podIP, port))
		lns = append(lns, ln)
		wg.Go(func() {
			var cwg sync.WaitGroup
			for i := 0; i < n; i++ {
				c, err := ln.Accept()
				if err != nil {
					break
				}
				cwg.Go(func() {
					defer c.Close()
					buf := make([]byte, 256<<10)
					for {
						n, err := c.Read(buf)
						received.Add(int64(n))
						if err != nil {
							return
						}
					}
				})
			}
			cwg.Wait()
		})
	}

	stop := make(chan struct{})
	for _, p := range pairs {
		c, err := dialTCP(t, p.a.pod, netip.AddrPortFrom(p.b.podIP, port))
		must(t, err)
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 128<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}

	time.Sleep(300 * time.Millisecond)
	r0, cpu0, t0 := received.Load(), busyCPU(), time.Now()
	time.Sleep(d)
	r1, cpu1, t1 := received.Load(), busyCPU(), time.Now()
	close(stop)
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()

	gbits := float64(r1-r0) * 8 / 1e9
	res := streamResult{gbps: gbits / t1.Sub(t0).Seconds()}
	if gbits > 0 {
		res.cpuPerG = (cpu1 - cpu0) / gbits
	}
	return res
}

// streams returns n pairs from a to b.
func streams(a, b *labHost, n int) []labPair {
	ps := make([]labPair, n)
	for i := range ps {
		ps[i] = labPair{a, b}
	}
	return ps
}

// measureRTT times n one-byte request/response exchanges over one TCP connection from
// pod a to pod b and returns the median and the 99th percentile.
func measureRTT(t testing.TB, a, b *labHost, port uint16, n int) (p50, p99 time.Duration) {
	t.Helper()
	ln := listenTCP(t, b.pod, netip.AddrPortFrom(b.podIP, port))
	echoServer(ln)
	c, err := dialTCP(t, a.pod, netip.AddrPortFrom(b.podIP, port))
	must(t, err)
	defer c.Close()

	buf := []byte{1}
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n+n/10; i++ {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if i >= n/10 { // the first tenth warms up
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)*99/100]
}

// busyCPU returns the CPU time this process has used, user and system, in seconds. The
// lab's pods, daemons and every kernel path they drive run in it, while other work on
// the machine does not count.
func busyCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

// testLogger logs to the test at Info, or at Debug with WEFT_TEST_DEBUG set.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("WEFT_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// rawICMP opens a raw ICMP socket inside ns that sees every ICMP message delivered there.
func rawICMP(t testing.TB, ns netns.NsHandle) *net.IPConn {
	t.Helper()
	var c net.PacketConn
	var err error
	nstest.Do(t, ns, func() { c, err = net.ListenPacket("ip4:icmp", "0.0.0.0") })
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*net.IPConn)
}

// waitICMP reads c until an ICMP message of typ and code from src about a packet to dst
// arrives, or fails the test after a second.
func waitICMP(t testing.TB, c *net.IPConn, typ, code uint8, src, dst netip.Addr) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromIP(buf)
		if err != nil {
			t.Fatalf("no ICMP type %d code %d from %v about %v: %v", typ, code, src, dst, err)
		}
		m := buf[:n]
		if len(m) < 8+20 {
			continue
		}
		quoted, _ := netip.AddrFromSlice(m[8+16 : 8+20])
		fromAddr, _ := netip.AddrFromSlice(from.IP.To4())
		if m[0] == typ && m[1] == code && fromAddr == src && quoted == dst {
			return
		}
		t.Logf("ICMP type %d code %d from %v about %v", m[0], m[1], fromAddr, quoted)
	}
}

// udpWithTTL sends one datagram from inside ns with the given TTL.
func udpWithTTL(t testing.TB, ns netns.NsHandle, dst netip.AddrPort, ttl int) {
	t.Helper()
	var c *net.UDPConn
	var err error
	nstest.Do(t, ns, func() { c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst)) })
	must(t, err)
	defer c.Close()
	rc, err := c.SyscallConn()
	must(t, err)
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl) })
	must(t, err)
	_, err = c.Write([]byte("ttl"))
	must(t, err)
}
