package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/backend/udp/packet"
	"github.com/weftnet/weft/internal/nstest"
)

// openIn opens a TUN device inside ns, gives it 198.18.7.1/24 and brings it up.
func openIn(t *testing.T, ns netns.NsHandle, cfg Config) *Device {
	t.Helper()
	var d *Device
	var err error
	nstest.Do(t, ns, func() { d, err = Open(cfg) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	h := nstest.Handle(t, ns)
	link, err := h.LinkByName(d.Name())
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("198.18.7.1/24")
	if err := h.AddrReplace(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOpen(t *testing.T) {
	tests := map[string]struct {
		cfg Config
	}{
		"plain":                {cfg: Config{Name: "flannel%d"}},
		"offload":              {cfg: Config{Name: "flannel%d", Offload: true}},
		"offload, four queues": {cfg: Config{Name: "wt-u-tun%d", Offload: true, Queues: 4}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ns := nstest.New(t)
			h := nstest.Handle(t, ns)
			d := openIn(t, ns, tt.cfg)

			wantName := tt.cfg.Name[:len(tt.cfg.Name)-2] + "0"
			if d.Name() != wantName {
				t.Errorf("device is %q, want %q", d.Name(), wantName)
			}
			if got := len(d.Queues()); got != max(tt.cfg.Queues, 1) {
				t.Errorf("%d queues, want %d", got, max(tt.cfg.Queues, 1))
			}
			link, err := h.LinkByName(d.Name())
			if err != nil {
				t.Fatal(err)
			}
			tt2, ok := link.(*netlink.Tuntap)
			if !ok {
				t.Fatalf("device is a %s, want tuntap", link.Type())
			}
			if tt2.Mode != netlink.TUNTAP_MODE_TUN {
				t.Errorf("mode %v, want tun", tt2.Mode)
			}
			o := d.Offloads()
			if tt.cfg.Offload != o.VnetHdr {
				t.Errorf("offloads %v with Offload %v", o, tt.cfg.Offload)
			}
			t.Logf("%s offloads: %v", d.Name(), o)
			if tt.cfg.Offload && (!o.Checksum || !o.TSO) {
				t.Errorf("offloads %v: this kernel has checksum and TSO offload", o)
			}

			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := h.LinkByName(d.Name()); err == nil {
				t.Errorf("%s still exists after Close", d.Name())
			}
		})
	}
}

func TestOpenBadName(t *testing.T) {
	ns := nstest.New(t)
	var err error
	nstest.Do(t, ns, func() { _, err = Open(Config{Name: "a-name-far-too-long-for-linux"}) })
	if err == nil {
		t.Errorf("Open accepted a 29-character name")
	}
}

// TestReadWrite sends a datagram into the device and reads it out; then writes an ICMP
// echo request to the device's own address and reads the kernel's reply.
func TestReadWrite(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "offload"}[offload], func(t *testing.T) {
			ns := nstest.New(t)
			d := openIn(t, ns, Config{Name: "flannel%d", Offload: offload})
			q := d.Queues()[0]
			hdrLen := 0
			if offload {
				hdrLen = packet.VirtioNetHdrLen
			}

			var conn *net.UDPConn
			var err error
			nstest.Do(t, ns, func() {
				conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(
					netip.MustParseAddrPort("198.18.7.2:9999")))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("weft")); err != nil {
				t.Fatal(err)
			}

			pkt := readUntil(t, q, hdrLen, func(p []byte) bool {
				return packet.Proto(p) == packet.ProtoUDP
			})
			if !bytes.Equal(pkt[len(pkt)-4:], []byte("weft")) || packet.Dst(pkt) != 0xc6120702 {
				t.Errorf("read %x, want the datagram to 198.18.7.2", pkt)
			}

			echo := icmpEcho(netip.MustParseAddr("198.18.7.9"), netip.MustParseAddr("198.18.7.1"))
			if offload {
				hdr := make([]byte, packet.VirtioNetHdrLen)
				err = q.Writev([][]byte{hdr, echo[:20], echo[20:]})
			} else {
				err = q.Write(echo)
			}
			if err != nil {
				t.Fatal(err)
			}
			reply := readUntil(t, q, hdrLen, func(p []byte) bool {
				return packet.Proto(p) == packet.ProtoICMP
			})
			if reply[20] != 0 || packet.Dst(reply) != 0xc6120709 {
				t.Errorf("read %x, want an echo reply to 198.18.7.9", reply)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	ns := nstest.New(t)
	d := openIn(t, ns, Config{Name: "flannel%d"})
	q := d.Queues()[0]
	if err := q.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := [][]byte{make([]byte, 2000)}
	for {
		_, err := q.ReadBatch(buf, make([]int, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatalf("ReadBatch: %v, want a deadline error", err)
		}
	}
}

// readUntil reads packets from q until match accepts one, and returns it without its
// virtio-net header.
func readUntil(t *testing.T, q *Queue, hdrLen int, match func([]byte) bool) []byte {
	t.Helper()
	q.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer q.SetReadDeadline(time.Time{})
	bufs := [][]byte{make([]byte, 70000), make([]byte, 70000)}
	sizes := make([]int, 2)
	for {
		n, err := q.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			p := bufs[i][hdrLen:sizes[i]]
			if packet.CheckIPv4(p) == packet.NoDefect && match(p) {
				return bytes.Clone(p)
			}
		}
	}
}

// icmpEcho builds an ICMP echo request.
func icmpEcho(src, dst netip.Addr) []byte {
	p := make([]byte, 20+8+4)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = packet.ProtoICMP
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	packet.SetHeaderChecksum(p)
	p[20] = 8
	binary.BigEndian.PutUint16(p[24:], 0x77)
	copy(p[28:], "ping")
	binary.BigEndian.PutUint16(p[22:], ^packet.Checksum(p[20:], 0))
	return p
}
