package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/nstest"
)

// Underlay and UnderlayV6 are the networks that a Pair's hosts share, from the
// benchmarking ranges (RFC 2544, RFC 5180).
var (
	Underlay   = netip.MustParsePrefix("198.18.0.0/24")
	UnderlayV6 = netip.MustParsePrefix("2001:2::/64")
)

// Host is one host of a lab: a fresh, anonymous network namespace whose underlay link
// eth0 has an address on Underlay and one on UnderlayV6.
type Host struct {
	NS     netns.NsHandle
	Handle *netlink.Handle
	// Ext describes eth0 as weftd's interface selection would.
	Ext backend.ExternalInterface
}

// Pair returns two hosts joined by a veth pair, eth0 on each side, with 198.18.0.1/24
// and 2001:2::1/64 on one and 198.18.0.2/24 and 2001:2::2/64 on the other, MTU 1500, up.
// The namespaces, and everything in them, go away when the test ends. It skips the test
// without root.
func Pair(t testing.TB) (*Host, *Host) {
	t.Helper()
	hosts := [2]*Host{}
	for i := range hosts {
		ns := nstest.New(t)
		hosts[i] = &Host{NS: ns, Handle: nstest.Handle(t, ns)}
	}

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0", MTU: 1500},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(hosts[1].NS)),
		PeerMTU:       1500,
	}
	if err := hosts[0].Handle.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth pair: %v", err)
	}
	for i, h := range hosts {
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), 24)
		addr6 := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(i + 1)}),
			64)
		l, err := h.Handle.LinkByName("eth0")
		if err != nil {
			t.Fatalf("reading eth0 of host %d: %v", i+1, err)
		}
		h.AddAddr(t, l, addr)
		h.AddAddr(t, l, addr6)
		// The link-local address would otherwise stay tentative for a second or two
		// after the link comes up, and first packets over IPv6 wait for it.
		var err2 error
		nstest.Do(t, h.NS, func() {
			err2 = os.WriteFile("/proc/sys/net/ipv6/conf/eth0/accept_dad", []byte("0"), 0o644)
		})
		if err2 != nil && !errors.Is(err2, os.ErrNotExist) {
			t.Fatalf("turning off DAD on eth0 of host %d: %v", i+1, err2)
		}
		if err := h.Handle.LinkSetUp(l); err != nil {
			t.Fatalf("setting eth0 of host %d up: %v", i+1, err)
		}
		h.Ext = backend.ExternalInterface{
			Name:        "eth0",
			Index:       l.Attrs().Index,
			MTU:         1500,
			IfaceAddr:   addr.Addr(),
			ExtAddr:     addr.Addr(),
			IfaceV6Addr: addr6.Addr(),
			ExtV6Addr:   addr6.Addr(),
		}
	}
	return hosts[0], hosts[1]
}

// AddAddr adds addr to link; an IPv6 address skips duplicate address detection, so that
// it is usable at once.
func (h *Host) AddAddr(t testing.TB, link netlink.Link, addr netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: netlab.IPNet(addr)}
	if addr.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.Handle.AddrAdd(link, a); err != nil {
		t.Fatalf("adding %s to %s: %v", addr, link.Attrs().Name, err)
	}
}

// AddBridge gives the host a bridge cni0 with addrs and sets it up, as a container
// runtime would; addresses on it stand in for pods.
func (h *Host) AddBridge(t testing.TB, addrs ...netip.Prefix) {
	t.Helper()
	br, err := netlab.EnsureBridge(h.Handle, "cni0", 0, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		h.AddAddr(t, br, a)
	}
}

// Ping sends ICMP echo requests from src, an address of h, to dst, one every 50 ms,
// until one is answered or timeout passes; the error says why none was.
func (h *Host) Ping(t testing.TB, src, dst netip.Addr, timeout time.Duration) error {
	t.Helper()
	var conn net.PacketConn
	var err error
	nstest.Do(t, h.NS, func() { conn, err = net.ListenPacket("ip4:icmp", src.String()) })
	if err != nil {
		return fmt.Errorf("opening ICMP socket on %s: %w", src, err)
	}
	defer conn.Close()

	token := []byte("weft-kerneltest")
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		msg := netlab.Echo{ID: 0x7766, Seq: seq, Data: token}.Marshal()
		if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("sending echo request from %s to %s: %w", src, dst, err)
		}
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			e, err := netlab.ParseEcho(buf[:n])
			if err == nil && e.Reply && e.ID == 0x7766 && bytes.Equal(e.Data, token) &&
				from.String() == dst.String() {
				return nil
			}
		}
	}
	return fmt.Errorf("pinging %s from %s: %w in %s", dst, src, netlab.ErrNoReply, timeout)
}

// Exchange listens on dst in host to, connects to it from src in host from, and checks
// that a message goes there and its echo comes back: TCP both ways between two
// pod-like addresses.
func Exchange(t testing.TB, from *Host, src netip.Addr, to *Host, dst netip.Addr) error {
	t.Helper()
	var ln net.Listener
	var err error
	nstest.Do(t, to.NS, func() { ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String()) })
	if err != nil {
		return fmt.Errorf("listening on %s: %w", dst, err)
	}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(c, io.LimitReader(c, 5))
		served <- err
	}()
	// However the exchange ends, the listener closes and the server is waited for.
	waited := false
	defer func() {
		ln.Close()
		if !waited {
			<-served
		}
	}()

	var conn net.Conn
	nstest.Do(t, from.NS, func() {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
			Timeout:   10 * time.Second,
		}
		conn, err = d.Dial("tcp", ln.Addr().String())
	})
	if err != nil {
		return fmt.Errorf("connecting from %s to %s: %w", src, ln.Addr(), err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		return fmt.Errorf("writing to %s: %w", ln.Addr(), err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("reading the echo from %s: %w", ln.Addr(), err)
	}
	if string(got) != "hello" {
		return fmt.Errorf("echo from %s was %q", ln.Addr(), got)
	}
	waited = true
	if err := <-served; err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	}
	return nil
}
