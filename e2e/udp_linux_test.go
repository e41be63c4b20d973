package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/udp/packet"
	"github.com/weftnet/weft/internal/netlab"
)

// udpPort is the udp backend's port when the config names none, flanneld's.
const udpPort = 8285

// TestUDPUnknownSource sends h1's udp data path a datagram that carries a well-formed
// packet for h1's pod, first from the outside namespace, an underlay address that holds
// no lease, and then from h2's underlay address. weftd drops and counts the first: the
// pod sees only the second.
func TestUDPUnknownSource(t *testing.T) {
	o := labOptions(t, "us")
	o.Backend, o.Hosts, o.Pods, o.Outside = "udp", 2, 1, true
	l := upLab(t, o)
	pods := l.Pods()
	dst, src := pods[0], pods[1]

	to := netip.AddrPortFrom(dst.Addr, 5000)
	pc, err := netlab.ListenPacket(dst.NS, "udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	inner := udpPacket(netip.AddrPortFrom(src.Addr, 4000), to, []byte("smuggled"))
	h1 := &net.UDPAddr{IP: UnderlayAddr(1).Addr().AsSlice(), Port: udpPort}
	send := func(ns string, from netip.Addr) {
		t.Helper()
		c, err := netlab.ListenPacket(ns, "udp4", netip.AddrPortFrom(from, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteTo(inner, h1); err != nil {
			t.Fatal(err)
		}
	}

	drops := func() float64 {
		return metric(t, l, 1, "weft_udp_drops_total", "reason", "unknown-source")
	}
	before := drops()
	send(OutNS(l.Name()), OutsideAddr().Addr())
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _, err := pc.ReadFrom(buf); err == nil {
		t.Fatalf("the pod received %q from an address that holds no lease", buf[:n])
	}
	if got := drops(); got != before+1 {
		t.Errorf("weft_udp_drops_total{reason=\"unknown-source\"} = %v, want %v", got, before+1)
	}

	send(HostNS(l.Name(), 2), UnderlayAddr(2).Addr())
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "smuggled" {
		t.Fatalf("the pod did not receive the packet from h2's address: %q, %v", buf[:n], err)
	}
}

// udpPacket returns an IPv4 packet holding one UDP datagram with payload, TTL 64, its
// header checksum set and no UDP checksum (allowed over IPv4).
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	packet.SetHeaderChecksum(p)
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}
