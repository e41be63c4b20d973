package udp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/udp/packet"
	"github.com/weftnet/weft/internal/nstest"
)

// loopbackPeers opens the data path's socket and n plain receivers on 127.0.0.1 inside
// a namespace of the test's own; the receivers have no UDP GRO, so the kernel hands them
// one datagram per GSO segment.
func loopbackPeers(t *testing.T, n int) (*udpSocket, []*net.UDPConn, []*Peer) {
	t.Helper()
	ns := nstest.New(t)
	var s *udpSocket
	rxs := make([]*net.UDPConn, n)
	var err error
	errs := make([]error, n)
	nstest.Do(t, ns, func() {
		s, err = openSocket(netip.MustParseAddrPort("127.0.0.1:0"), true)
		for i := range rxs {
			rxs[i], errs[i] = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	var peers []*Peer
	for i, rx := range rxs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() { rx.Close() })
		ap := rx.LocalAddr().(*net.UDPAddr).AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		peers = append(peers, &Peer{Addr: ap, ip: ap.Addr().As4(), port: ap.Port()})
	}
	if !s.gso.Load() {
		t.Skip("this kernel has no UDP GSO")
	}
	return s, rxs, peers
}

// loopbackPair is loopbackPeers with one receiver.
func loopbackPair(t *testing.T) (*udpSocket, *net.UDPConn, *Peer) {
	t.Helper()
	s, rxs, peers := loopbackPeers(t, 1)
	return s, rxs[0], peers[0]
}

// readAll reads datagrams until want have arrived or none comes for a while.
func readAll(t *testing.T, rx *net.UDPConn, want int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 70000)
	for len(got) < want {
		rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := rx.Read(buf)
		if err != nil {
			break
		}
		got = append(got, bytes.Clone(buf[:n]))
	}
	return got
}

// superPacket returns a TCP super-packet of n payload bytes and its segments at mss.
func superPacket(t *testing.T, n, mss int) ([]byte, packet.Split, []byte) {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pkt := innerTCP(peerPod, localPod, 5000, payload)
	hdrs := make([]byte, 128*60)
	s, err := packet.SplitTCP4(pkt, mss, hdrs)
	if err != nil {
		t.Fatal(err)
	}
	return pkt, s, hdrs
}

// queueSplit queues every segment of a split.
func queueSplit(b *sendBatch, p *Peer, s packet.Split, pkt, hdrs []byte) {
	for j := 0; j < s.N; j++ {
		b.addSegment(p, s, pkt, hdrs, j)
	}
}

func segmentsOf(s packet.Split, pkt, hdrs []byte) [][]byte {
	var out [][]byte
	for i := 0; i < s.N; i++ {
		out = append(out, append(bytes.Clone(s.Header(hdrs, i)), s.Payload(pkt, i)...))
	}
	return out
}

func TestSendBatchSplit(t *testing.T) {
	refusals := map[string]struct {
		errno   unix.Errno
		gsoKept bool
		dropped bool
	}{
		"accepted":             {errno: 0, gsoKept: true},
		"EIO turns GSO off":    {errno: unix.EIO, gsoKept: false},
		"EINVAL splits one":    {errno: unix.EINVAL, gsoKept: true},
		"EPERM drops the send": {errno: unix.EPERM, gsoKept: true, dropped: true},
	}
	for name, tt := range refusals {
		t.Run(name, func(t *testing.T) {
			s, rx, peer := loopbackPair(t)
			ctr := &Counters{}
			b := newSendBatch(s, 64, maxGSOSegments)
			retry := newSendBatch(s, maxGSOSegments, 1)
			refuse := func(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
				if tt.errno != 0 && msgs[0].Hdr.Controllen > 0 {
					return 0, tt.errno
				}
				return sendmmsg(fd, msgs)
			}
			b.sys, retry.sys = refuse, refuse

			// 70 segments: more than one GSO send holds, and few enough for the
			// receiver's default buffer.
			pkt, sp, hdrs := superPacket(t, 70*1000, 1000)
			queueSplit(b, peer, sp, pkt, hdrs)
			if len(b.msgs) != 2 {
				t.Fatalf("%d messages for 70 segments of 1040 bytes, want 2", len(b.msgs))
			}
			if err := b.flush(ctr, retry); err != nil {
				t.Fatal(err)
			}

			want := segmentsOf(sp, pkt, hdrs)
			got := readAll(t, rx, len(want))
			if tt.dropped {
				if len(got) != 0 || ctr.Drops(DropSendError) != 70 || ctr.TxPackets.Load() != 0 {
					t.Errorf("%d datagrams arrived, %d send errors, %d sent; want 0, 70, 0",
						len(got), ctr.Drops(DropSendError), ctr.TxPackets.Load())
				}
				return
			}
			if len(got) != len(want) {
				t.Fatalf("%d datagrams arrived, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d differs from segment %d", i, i)
				}
			}
			if ctr.TxPackets.Load() != 70 || ctr.TxBytes.Load() != uint64(len(bytes.Join(want, nil))) {
				t.Errorf("counted %d packets, %d bytes", ctr.TxPackets.Load(), ctr.TxBytes.Load())
			}
			if s.gso.Load() != tt.gsoKept {
				t.Errorf("UDP GSO on = %v, want %v", s.gso.Load(), tt.gsoKept)
			}
		})
	}
}

func TestSendBatchJoinsRuns(t *testing.T) {
	s, rx, peer := loopbackPair(t)
	other := &Peer{ip: peer.ip, port: peer.port}
	b := newSendBatch(s, 64, maxGSOSegments)

	mk := func(n int, fill byte) []byte {
		return innerUDP(peerPod, localPod, bytes.Repeat([]byte{fill}, n-28))
	}
	in := [][]byte{mk(1000, 1), mk(1000, 2), mk(1000, 3), mk(600, 4), // one send, closed by the short one
		mk(1000, 5), // a new send
		mk(1200, 6), // longer than the run: a new send
		mk(1200, 7)} // joins it
	for _, p := range in {
		b.addPacket(peer, p)
	}
	b.addPacket(other, mk(1200, 8)) // another peer: a new send
	in = append(in, mk(1200, 8))

	segs := []int{}
	for _, m := range b.meta {
		segs = append(segs, m.segs)
	}
	if want := []int{4, 1, 2, 1}; !equalInts(segs, want) {
		t.Errorf("messages carry %v packets, want %v", segs, want)
	}
	if err := b.flush(&Counters{}, nil); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, rx, len(in))
	if len(got) != len(in) {
		t.Fatalf("%d datagrams arrived, want %d", len(got), len(in))
	}
	for i := range in {
		if !bytes.Equal(got[i], in[i]) {
			t.Errorf("datagram %d differs", i)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGROSize(t *testing.T) {
	c := make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(4))
	put := func(at int, level, typ int32, v uint32) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[at]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(4))
		binary.NativeEndian.PutUint32(c[at+unix.CmsgLen(0):], v)
	}
	put(0, unix.SOL_IP, unix.IP_TOS, 7)
	put(unix.CmsgSpace(4), unix.SOL_UDP, unix.UDP_GRO, 1472)
	if got := groSize(c); got != 1472 {
		t.Errorf("groSize = %d, want 1472 from the second message", got)
	}
	if got := groSize(c[:unix.CmsgSpace(4)]); got != 0 {
		t.Errorf("groSize without UDP_GRO = %d", got)
	}
	if got := groSize(c[:5]); got != 0 {
		t.Errorf("groSize of a cut header = %d", got)
	}
}

// BenchmarkTxPath measures what the transmit worker does to one TSO super-packet read
// from the TUN device, short of the system call: check, route, TTL, split into 46
// segments and queue them as UDP GSO sends.
func BenchmarkTxPath(b *testing.B) {
	s, err := openSocket(netip.MustParseAddrPort("127.0.0.1:0"), true)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	s.gso.Store(true)
	n := &Network{mtu: 1472, sock: s}
	n.table.Store(NewTable(map[netip.Prefix]netip.AddrPort{
		netip.MustParsePrefix("198.19.1.0/24"): netip.MustParseAddrPort("198.18.0.1:8285"),
	}))
	w := newTxWorker(n, nil, mode{vnet: true, txBatch: 1, bufSize: tunBufSize})

	payload := make([]byte, 65535-40)
	super := innerTCP(peerPod, localPod, 1, payload)
	tmpl := make([]byte, packet.VirtioNetHdrLen+len(super))
	packet.VirtioNetHdr{Flags: packet.VirtioNeedsCsum, GSOType: packet.GSOTCPv4, HdrLen: 40,
		GSOSize: 1432, CsumStart: 20, CsumOffset: 16}.Encode(tmpl)
	copy(tmpl[packet.VirtioNetHdrLen:], super)
	buf := bytes.Clone(tmpl)
	table := n.table.Load()

	b.SetBytes(int64(len(super)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[:packet.VirtioNetHdrLen+20], tmpl) // the TTL went down
		if err := w.handle(table, buf); err != nil {
			b.Fatal(err)
		}
		if len(w.out.msgs) != 2 {
			b.Fatalf("%d sends queued, want 2", len(w.out.msgs))
		}
		w.out.reset()
		w.hdrUsed = 0
	}
}

// TestSendBatchPacksSplits queues two super-packets to one peer: their equal segments
// share GSO sends, each still one datagram on the wire.
func TestSendBatchPacksSplits(t *testing.T) {
	s, rx, peer := loopbackPair(t)
	b := newSendBatch(s, 64, maxGSOSegments)

	pkt1, sp1, hdrs1 := superPacket(t, 30*1000, 1000)
	pkt2, sp2, hdrs2 := superPacket(t, 30*1000+500, 1000) // ends in a short segment
	queueSplit(b, peer, sp1, pkt1, hdrs1)
	queueSplit(b, peer, sp2, pkt2, hdrs2)
	if len(b.msgs) != 1 || b.meta[0].segs != 61 {
		t.Fatalf("%d messages, the first of %d segments; want 1 of 61", len(b.msgs), b.meta[0].segs)
	}
	if err := b.flush(&Counters{}, nil); err != nil {
		t.Fatal(err)
	}
	want := append(segmentsOf(sp1, pkt1, hdrs1), segmentsOf(sp2, pkt2, hdrs2)...)
	got := readAll(t, rx, len(want))
	if len(got) != len(want) {
		t.Fatalf("%d datagrams arrived, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

// TestSendBatchInterleavedPeers queues super-packets to two peers in turn: each peer's
// segments share its latest send, and each receives its own in order.
func TestSendBatchInterleavedPeers(t *testing.T) {
	s, rxs, peers := loopbackPeers(t, 2)
	b := newSendBatch(s, 64, maxGSOSegments)

	var want [2][][]byte
	for k, to := range []int{0, 1, 0, 1} {
		pkt, sp, hdrs := superPacket(t, 20*1000, 1000)
		pkt[30] = byte(k) // tell the super-packets apart
		sp, err := packet.SplitTCP4(pkt, 1000, hdrs)
		if err != nil {
			t.Fatal(err)
		}
		queueSplit(b, peers[to], sp, pkt, hdrs)
		want[to] = append(want[to], segmentsOf(sp, pkt, hdrs)...)
	}
	if len(b.msgs) != 2 || b.meta[0].segs != 40 || b.meta[1].segs != 40 {
		t.Fatalf("%d messages; want 2 of 40 segments", len(b.msgs))
	}
	if err := b.flush(&Counters{}, nil); err != nil {
		t.Fatal(err)
	}
	for i, rx := range rxs {
		got := readAll(t, rx, len(want[i]))
		if len(got) != len(want[i]) {
			t.Fatalf("peer %d got %d datagrams, want %d", i, len(got), len(want[i]))
		}
		for j := range got {
			if !bytes.Equal(got[j], want[i][j]) {
				t.Fatalf("peer %d: datagram %d differs", i, j)
			}
		}
	}
}
