package udp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/udp/packet"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

func TestRegisterNetwork(t *testing.T) {
	l := newLab(t, 2, labKind{})
	h := l.hosts[0]
	hh := nstest.Handle(t, h.ns)

	link, err := hh.LinkByName("flannel0")
	if err != nil {
		t.Fatal(err)
	}
	if h.net.DeviceName() != "flannel0" {
		t.Errorf("DeviceName = %q", h.net.DeviceName())
	}
	if link.Attrs().MTU != 1472 || h.net.MTU() != 1472 {
		t.Errorf("MTU %d, Network.MTU %d; want 1472", link.Attrs().MTU, h.net.MTU())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("flannel0 is down")
	}
	addrs, err := hh.AddrList(link, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "198.19.1.0/32" {
		t.Errorf("flannel0 has addresses %v, want 198.19.1.0/32", addrs)
	}
	routes, err := hh.RouteListFiltered(unix.AF_INET,
		&netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "198.19.0.0/16" && r.Scope == netlink.SCOPE_UNIVERSE {
			found = true
		}
	}
	if !found {
		t.Errorf("no route 198.19.0.0/16 dev flannel0 among %v", routes)
	}

	// The lease carries the PublicIP and no BackendType, byte for byte as flanneld's.
	if len(h.lm.attrs) != 1 {
		t.Fatalf("%d leases acquired, want 1", len(h.lm.attrs))
	}
	js, err := json.Marshal(h.lm.attrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicIP":"198.18.0.1","PublicIPv6":null}`; string(js) != want {
		t.Errorf("lease value %s, want %s", js, want)
	}
}

func TestRunRemovesDevice(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	hh := nstest.Handle(t, ns)
	underlay(t, hh)

	b, err := New(paramsFor(netip.MustParseAddr("198.18.0.1")))
	must(t, err)
	cfg := &subnet.Config{EnableIPv4: true, Network: overlayNet}
	lm := &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
	var nw *Network
	nstest.Do(t, ns, func() {
		var bn any
		bn, err = b.RegisterNetwork(context.Background(), cfg, lm)
		if err == nil {
			nw = bn.(*Network)
		}
	})
	must(t, err)
	if _, err := hh.LinkByName("flannel0"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan []subnet.Event)
	done := make(chan error, 1)
	go func() { done <- nw.Run(ctx, events) }()
	for !nw.ran.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := nw.Run(ctx, nil); err == nil {
		t.Errorf("a second Run did not fail")
	}
	close(events) // a closed event channel must not end Run
	select {
	case err := <-done:
		t.Fatalf("Run returned %v when the events ended", err)
	case <-time.After(50 * time.Millisecond):
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := hh.LinkByName("flannel0"); err == nil {
		t.Errorf("flannel0 still exists after Run returned")
	}
}

func TestRegisterNetworkErrors(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	hh := nstest.Handle(t, ns)
	underlay(t, hh)

	tests := map[string]struct {
		cfg  subnet.Config
		lm   *fakeLeases
		want string
	}{
		"IPv6": {
			cfg: subnet.Config{EnableIPv4: true, EnableIPv6: true, Network: overlayNet,
				IPv6Network: netip.MustParsePrefix("fc00::/48")},
			want: "IPv4 only",
		},
		"bad port": {
			cfg:  subnet.Config{EnableIPv4: true, Network: overlayNet, Backend: []byte(`{"port":70000}`)},
			want: "Port 70000",
		},
		"port taken": {
			cfg:  subnet.Config{EnableIPv4: true, Network: overlayNet, Backend: []byte(`{"Port":9}`)},
			want: "binding UDP socket to 198.18.0.1:9",
		},
		"lease outside the network": {
			cfg:  subnet.Config{EnableIPv4: true, Network: overlayNet},
			lm:   &fakeLeases{subnet: netip.MustParsePrefix("10.1.2.0/24")},
			want: "not an IPv4 subnet of the network",
		},
	}
	blocker := listenUDP(t, ns, netip.MustParseAddrPort("198.18.0.1:9"))
	_ = blocker

	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := New(paramsFor(netip.MustParseAddr("198.18.0.1")))
			must(t, err)
			lm := tt.lm
			if lm == nil {
				lm = &fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")}
			}
			nstest.Do(t, ns, func() { _, err = b.RegisterNetwork(context.Background(), &tt.cfg, lm) })
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("RegisterNetwork: %v, want an error saying %q", err, tt.want)
			}
			// Nothing is left behind.
			links, err := hh.LinkList()
			must(t, err)
			for _, l := range links {
				if l.Type() == "tuntap" {
					t.Errorf("%s was left behind", l.Attrs().Name)
				}
			}
		})
	}
}

func TestPodsReachEachOther(t *testing.T) {
	tests := map[string]labKind{
		"fast":           {},
		"no TUN offload": {opts: Options{NoTUNOffload: true}},
		"no UDP offload": {opts: Options{NoUDPOffload: true}},
		"no offload":     {opts: Options{NoTUNOffload: true, NoUDPOffload: true}},
		"plain":          {opts: Options{Plain: true}},
		"two queues":     {opts: Options{Queues: 2}},
		"mixed":          {perHost: []Options{{}, {Plain: true}, {NoTUNOffload: true}}},
	}
	for name, kind := range tests {
		t.Run(name, func(t *testing.T) {
			l := newLab(t, 3, kind)
			for _, h := range l.hosts {
				echoServer(listenTCP(t, h.pod, netip.AddrPortFrom(h.podIP, 7)))
			}
			// 1 MiB each way: super-packets, segments and merges on every fast path.
			payload := make([]byte, 1<<20)
			for i := range payload {
				payload[i] = byte(i * 13)
			}
			for _, a := range l.hosts {
				for _, b := range l.hosts {
					if a == b {
						continue
					}
					t.Run(fmt.Sprintf("%d to %d", a.n, b.n), func(t *testing.T) {
						echoCheck(t, a, b, payload)
					})
				}
			}
			for _, h := range l.hosts {
				c := h.net.Counters()
				if c.TxPackets.Load() == 0 || c.RxPackets.Load() == 0 {
					t.Errorf("host %d counted %d packets out, %d in", h.n,
						c.TxPackets.Load(), c.RxPackets.Load())
				}
				for r := DropReason(0); r < NumDropReasons; r++ {
					if n := c.Drops(r); n != 0 && r != DropTTL {
						t.Errorf("host %d dropped %d packets: %v", h.n, n, r)
					}
				}
			}
		})
	}
}

// echoCheck sends payload from a's pod to b's echo server and checks what comes back.
func echoCheck(t *testing.T, a, b *labHost, payload []byte) {
	t.Helper()
	c, err := dialTCP(t, a.pod, netip.AddrPortFrom(b.podIP, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		errc <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo differs from what was sent")
	}
}

// TestUnknownSourceDropped sends a datagram holding a valid inner packet for a pod from
// an underlay address that holds no lease, and the same from a peer's address.
func TestUnknownSourceDropped(t *testing.T) {
	l := newLab(t, 2, labKind{})
	h1, h2 := l.hosts[0], l.hosts[1]
	podSock := listenUDP(t, h1.pod, netip.AddrPortFrom(h1.podIP, 5000))
	inner := innerUDP(netip.AddrPortFrom(h2.podIP, 4000), netip.AddrPortFrom(h1.podIP, 5000),
		[]byte("smuggled"))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(h1.ip, DefaultPort))

	stranger := listenUDP(t, l.wan, netip.MustParseAddrPort("198.18.0.254:0"))
	if _, err := stranger.WriteToUDP(inner, to); err != nil {
		t.Fatal(err)
	}
	podSock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := podSock.ReadFromUDP(make([]byte, 100)); err == nil {
		t.Fatalf("the pod received %d bytes from a stranger", n)
	}
	if got := h1.net.Counters().Drops(DropUnknownSource); got != 1 {
		t.Errorf("unknown-source drops = %d, want 1", got)
	}

	// The same bytes from the peer's address get through.
	peer := listenUDP(t, h2.ns, netip.AddrPortFrom(h2.ip, 0))
	if _, err := peer.WriteToUDP(inner, to); err != nil {
		t.Fatal(err)
	}
	podSock.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, _, err := podSock.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "smuggled" {
		t.Fatalf("the pod did not receive the peer's datagram: %q, %v", buf[:n], err)
	}
}

// TestMalformedDatagrams sends broken datagrams from a peer's address: each is dropped,
// counted by its defect, and the data path keeps working.
func TestMalformedDatagrams(t *testing.T) {
	l := newLab(t, 2, labKind{})
	h1, h2 := l.hosts[0], l.hosts[1]
	good := innerUDP(netip.AddrPortFrom(h2.podIP, 4000), netip.AddrPortFrom(h1.podIP, 5000),
		[]byte("fine"))
	bad := map[DropReason][]byte{
		DropShort:        good[:12],
		DropNotIPv4:      append([]byte{0x60}, good[1:]...),
		DropBadHeaderLen: append([]byte{0x43}, good[1:]...),
		DropBadTotalLen:  append(bytes.Clone(good), 0),
	}
	peer := listenUDP(t, h2.ns, netip.AddrPortFrom(h2.ip, 0))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(h1.ip, DefaultPort))
	for _, b := range bad {
		if _, err := peer.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	podSock := listenUDP(t, h1.pod, netip.AddrPortFrom(h1.podIP, 5000))
	if _, err := peer.WriteToUDP(good, to); err != nil {
		t.Fatal(err)
	}
	podSock.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	if n, _, err := podSock.ReadFromUDP(buf); err != nil || string(buf[:n]) != "fine" {
		t.Fatalf("after malformed datagrams the pod got %q, %v", buf[:n], err)
	}
	for r := range bad {
		if got := h1.net.Counters().Drops(r); got != 1 {
			t.Errorf("%v drops = %d, want 1", r, got)
		}
	}
}

func TestICMPErrors(t *testing.T) {
	for _, kind := range []labKind{{name: "fast"}, {name: "plain", opts: Options{Plain: true}}} {
		t.Run(kind.name, func(t *testing.T) {
			l := newLab(t, 2, kind)
			h1, h2 := l.hosts[0], l.hosts[1]
			icmp := rawICMP(t, h1.pod)
			nowhere := netip.MustParseAddr("198.19.99.2")

			t.Run("net unreachable", func(t *testing.T) {
				udpWithTTL(t, h1.pod, netip.AddrPortFrom(nowhere, 9), 64)
				waitICMP(t, icmp, packet.ICMPDestUnreachable, packet.CodeNetUnreachable,
					nowhere, nowhere)
				if h1.net.Counters().Drops(DropNoRoute) == 0 {
					t.Errorf("no no-route drop counted")
				}
			})
			t.Run("TTL runs out leaving", func(t *testing.T) {
				// TTL 2: the host's forwarding leaves 1, which the tunnel cannot pass on.
				udpWithTTL(t, h1.pod, netip.AddrPortFrom(h2.podIP, 9), 2)
				waitICMP(t, icmp, packet.ICMPTimeExceeded, packet.CodeTTLExceeded,
					h2.subnet.Addr(), h2.podIP)
			})
			t.Run("TTL runs out arriving", func(t *testing.T) {
				// TTL 3: 2 after the host, 1 after leaving, 0 on arrival at host 2,
				// which answers from its flannel0 address.
				udpWithTTL(t, h1.pod, netip.AddrPortFrom(h2.podIP, 9), 3)
				waitICMP(t, icmp, packet.ICMPTimeExceeded, packet.CodeTTLExceeded,
					h2.subnet.Addr(), h2.podIP)
				if h2.net.Counters().Drops(DropTTL) == 0 {
					t.Errorf("host 2 counted no TTL drop")
				}
			})
		})
	}
}

// TestPeerRemovedAndAdded follows a peer leaving and coming back.
func TestPeerRemovedAndAdded(t *testing.T) {
	l := newLab(t, 2, labKind{})
	h1, h2 := l.hosts[0], l.hosts[1]
	echoServer(listenTCP(t, h2.pod, netip.AddrPortFrom(h2.podIP, 7)))
	echoCheck(t, h1, h2, []byte("before"))

	h1.send(t, []subnet.Event{{Type: subnet.EventRemoved, Lease: h2.lease()}}, 0)
	icmp := rawICMP(t, h1.pod)
	udpWithTTL(t, h1.pod, netip.AddrPortFrom(h2.podIP, 9), 64)
	waitICMP(t, icmp, packet.ICMPDestUnreachable, packet.CodeNetUnreachable, h2.podIP, h2.podIP)

	h1.send(t, []subnet.Event{{Type: subnet.EventAdded, Lease: h2.lease()}}, 1)
	echoCheck(t, h1, h2, []byte("after"))
}

// underlay gives a lone host namespace an eth0 at 198.18.0.1/24, one end of a veth pair
// whose other end stays in the namespace too.
func underlay(t *testing.T, hh *netlink.Handle) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: underlayMTU},
		PeerName: "wt-u-peer"}
	must(t, hh.LinkAdd(veth))
	eth0, err := hh.LinkByName("eth0")
	must(t, err)
	must(t, hh.AddrReplace(eth0, mustAddr("198.18.0.1/24")))
	must(t, hh.LinkSetUp(eth0))
}

// TestDeviceDeletedEndsRun deletes flannel0 from outside: the data path cannot go on,
// and Run says so instead of idling.
func TestDeviceDeletedEndsRun(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	hh := nstest.Handle(t, ns)
	underlay(t, hh)

	b, err := New(paramsFor(netip.MustParseAddr("198.18.0.1")))
	must(t, err)
	cfg := &subnet.Config{EnableIPv4: true, Network: overlayNet}
	var nw any
	nstest.Do(t, ns, func() {
		nw, err = b.RegisterNetwork(context.Background(), cfg,
			&fakeLeases{subnet: netip.MustParsePrefix("198.19.1.0/24")})
	})
	must(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- nw.(*Network).Run(ctx, make(chan []subnet.Event)) }()

	link, err := hh.LinkByName("flannel0")
	must(t, err)
	must(t, hh.LinkDel(link))
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Run returned nil after flannel0 was deleted")
		}
		t.Logf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("Run goes on after flannel0 was deleted")
	}
}
