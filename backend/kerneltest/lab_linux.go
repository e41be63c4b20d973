package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/internal/netlab"
	"github.com/weftnet/weft/internal/nstest"
)

// Underlay is the network that a Pair's hosts share, from the benchmarking range.
var Underlay = netip.MustParsePrefix("198.18.0.0/24")

// Host is one host of a lab: a fresh, anonymous network namespace whose underlay link
// eth0 has an address on Underlay.
type Host struct {
	NS     netns.NsHandle
	Handle *netlink.Handle
	// Ext describes eth0 as weftd's interface selection would.
	Ext backend.ExternalInterface
}

// Pair returns two hosts joined by a veth pair, eth0 on each side, with 198.18.0.1/24
// and 198.18.0.2/24, MTU 1500, up. The namespaces, and everything in them, go away when
// the test ends. It skips the test without root.
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
		l, err := h.Handle.LinkByName("eth0")
		if err != nil {
			t.Fatalf("reading eth0 of host %d: %v", i+1, err)
		}
		if err := h.Handle.AddrAdd(l, &netlink.Addr{IPNet: netlab.IPNet(addr)}); err != nil {
			t.Fatalf("adding %s to host %d: %v", addr, i+1, err)
		}
		if err := h.Handle.LinkSetUp(l); err != nil {
			t.Fatalf("setting eth0 of host %d up: %v", i+1, err)
		}
		h.Ext = backend.ExternalInterface{
			Name:      "eth0",
			Index:     l.Attrs().Index,
			MTU:       1500,
			IfaceAddr: addr.Addr(),
			ExtAddr:   addr.Addr(),
		}
	}
	return hosts[0], hosts[1]
}

// AddBridge gives the host a bridge cni0 with addr and sets it up, as a container
// runtime would; addresses on it stand in for pods.
func (h *Host) AddBridge(t testing.TB, addr netip.Prefix) {
	t.Helper()
	if _, err := netlab.EnsureBridge(h.Handle, "cni0", 0, addr); err != nil {
		t.Fatal(err)
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
	nstest.Do(t, to.NS, func() { ln, err = net.Listen("tcp4", netip.AddrPortFrom(dst, 0).String()) })
	if err != nil {
		return fmt.Errorf("listening on %s: %w", dst, err)
	}
	defer ln.Close()
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

	var conn net.Conn
	nstest.Do(t, from.NS, func() {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
			Timeout:   5 * time.Second,
		}
		conn, err = d.Dial("tcp4", ln.Addr().String())
	})
	if err != nil {
		ln.Close()
		<-served
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
	if err := <-served; err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	}
	return nil
}
