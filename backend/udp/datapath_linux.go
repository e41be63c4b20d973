package udp

import (
	"errors"
	"os"
	"time"

	"github.com/weftnet/weft/backend/udp/packet"
	"github.com/weftnet/weft/backend/udp/tun"
)

// Sizes of the data path's batches and buffers.
const (
	// With offloads, a backlog is read fastTxBatch TUN packets at a time, each up to a
	// 64 KiB super-packet, and fastRxBatch datagrams come per recvmmsg, each up to a
	// 64 KiB GRO merge.
	fastTxBatch = 8
	fastRxBatch = 16
	// batch is the number of packets per system call without offloads. More would
	// move more per call, but the bursts they make overflow the TUN device's queue
	// (500 packets) and cost the TCP streams more than the calls saved; 8 measured best.
	batch = 8
	// gsoBatch TUN packets are read at a time without TUN offloads but with UDP GSO,
	// which sends a run of them to one peer as one burst of datagrams.
	gsoBatch = 64

	// hdrArena holds the headers of the segments of one send batch.
	hdrArena = 128 << 10
	// sendMsgs is the number of messages of one sendmmsg.
	sendMsgs = 128

	// tunBufSize takes the largest super-packet and its virtio-net header.
	tunBufSize = packet.VirtioNetHdrLen + packet.IPv4MaxLen + 1
)

// mode is how a worker moves packets.
type mode struct {
	vnet    bool // the TUN device has virtio-net headers (and offloads)
	txBatch int  // TUN reads per wakeup
	rxBatch int  // datagrams per recvmmsg
	bufSize int  // bytes per buffer
}

// txWorker moves packets from one TUN queue to the peers.
type txWorker struct {
	n     *Network
	q     *tun.Queue
	m     mode
	bufs  [][]byte
	sizes []int

	hdrs    []byte // segment headers of the send batch
	hdrUsed int
	out     *sendBatch
	retry   *sendBatch

	icmp    []byte
	limiter icmpLimiter
}

func newTxWorker(n *Network, q *tun.Queue, m mode) *txWorker {
	w := &txWorker{
		n:     n,
		q:     q,
		m:     m,
		bufs:  make([][]byte, m.txBatch),
		sizes: make([]int, m.txBatch),
		hdrs:  make([]byte, hdrArena),
		out:   newSendBatch(n.sock, sendMsgs, maxGSOSegments),
		retry: newSendBatch(n.sock, maxGSOSegments, 1),
		icmp:  make([]byte, 0, packet.VirtioNetHdrLen+packet.ICMPErrorMaxLen),
	}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, m.bufSize)
	}
	return w
}

// run moves packets until the queue or the socket fails, or their deadline passes when
// Run stops the data path.
func (w *txWorker) run() error {
	for {
		n, err := w.q.ReadBatch(w.bufs, w.sizes)
		if err != nil {
			return err
		}
		table := w.n.table.Load()
		for i := 0; i < n; i++ {
			if err := w.handle(table, w.bufs[i][:w.sizes[i]]); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
		w.hdrUsed = 0
	}
}

// handle routes one packet (or super-packet) read from the TUN device into the send
// batch. It returns only errors that stop the worker.
func (w *txWorker) handle(table *Table, buf []byte) error {
	ctr := &w.n.ctr
	pkt := buf
	var h packet.VirtioNetHdr
	if w.m.vnet {
		var err error
		if h, err = packet.DecodeVirtioNetHdr(buf); err != nil {
			ctr.drop(DropShort, 1)
			return nil
		}
		pkt = buf[packet.VirtioNetHdrLen:]
	}
	if d := packet.CheckIPv4(pkt); d != packet.NoDefect {
		ctr.drop(defectDrop(d), 1)
		return nil
	}

	peer := table.Lookup(packet.Dst(pkt))
	if peer == nil {
		ctr.drop(DropNoRoute, 1)
		// The error comes from the unreachable address itself: a source local to
		// this host would be dropped by the kernel as a martian.
		return w.icmpError(pkt, packet.ICMPDestUnreachable, packet.CodeNetUnreachable,
			pkt[16:20])
	}
	if !packet.DecrementTTL(pkt) {
		ctr.drop(DropTTL, 1)
		// The error names the far end of the tunnel, the peer's flannel0 address.
		addr := peer.Subnet.Addr().As4()
		return w.icmpError(pkt, packet.ICMPTimeExceeded, packet.CodeTTLExceeded, addr[:])
	}

	switch h.GSOType &^ packet.GSOECN {
	case packet.GSONone:
		if h.Flags&packet.VirtioNeedsCsum != 0 {
			if packet.FinishChecksum(pkt, int(h.CsumStart), int(h.CsumOffset)) != nil {
				ctr.drop(DropBadOffload, 1)
				return nil
			}
		}
		if len(pkt) > w.n.mtu {
			ctr.drop(DropOversize, 1)
			return nil
		}
		if !w.out.room(1) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		w.out.addPacket(peer, pkt)
		return nil

	case packet.GSOTCPv4, packet.GSOUDPL4:
		return w.split(peer, pkt, h)
	}
	// GSOTCPv6 and UFO (GSOUDP) are never asked for.
	ctr.drop(DropBadOffload, 1)
	return nil
}

// split cuts a super-packet into segments that fit the TUN MTU and queues them.
func (w *txWorker) split(peer *Peer, pkt []byte, h packet.VirtioNetHdr) error {
	ctr := &w.n.ctr
	hl := packet.HeadersLen(pkt)
	if hl == 0 || h.GSOSize == 0 || hl >= w.n.mtu {
		ctr.drop(DropBadOffload, 1)
		return nil
	}
	// The kernel sizes segments for the TUN MTU; cut smaller should it not.
	mss := min(int(h.GSOSize), w.n.mtu-hl)
	need := (len(pkt) - hl + mss - 1) / mss * hl
	if need > len(w.hdrs) {
		ctr.drop(DropBadOffload, 1)
		return nil
	}
	if need > len(w.hdrs)-w.hdrUsed {
		// Nothing queued may point into the arena when it starts over.
		if err := w.flush(); err != nil {
			return err
		}
		w.hdrUsed = 0
	}

	hdrs := w.hdrs[w.hdrUsed:]
	var s packet.Split
	var err error
	switch gso, proto := h.GSOType&^packet.GSOECN, packet.Proto(pkt); {
	case gso == packet.GSOTCPv4 && proto == packet.ProtoTCP:
		s, err = packet.SplitTCP4(pkt, mss, hdrs)
	case gso == packet.GSOUDPL4 && proto == packet.ProtoUDP:
		s, err = packet.SplitUDP4(pkt, mss, hdrs)
	default:
		ctr.drop(DropBadOffload, 1)
		return nil
	}
	if err != nil {
		ctr.drop(DropBadOffload, 1)
		return nil
	}
	w.hdrUsed += s.N * s.HdrLen
	for j := 0; j < s.N; j++ {
		if !w.out.room(1) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		w.out.addSegment(peer, s, pkt, hdrs, j)
	}
	return nil
}

// flush sends what is queued. The segment headers stay in the arena until the caller
// starts it over.
func (w *txWorker) flush() error {
	if w.out.empty() {
		return nil
	}
	err := w.out.flush(&w.n.ctr, w.retry)
	if !w.n.sock.gso.Load() && w.n.gsoWanted.CompareAndSwap(true, false) {
		w.n.log.Warn("UDP GSO refused by the kernel; sending one datagram per packet")
	}
	return err
}

// icmpError writes an ICMP error about pkt, from src, back into the TUN device, when
// the rules and the rate limit allow one.
func (w *txWorker) icmpError(pkt []byte, typ, code uint8, src []byte) error {
	if !packet.WantsICMPError(pkt) || !w.limiter.allow(time.Now()) {
		return nil
	}
	b := w.icmp[:0]
	if w.m.vnet {
		b = append(b, make([]byte, packet.VirtioNetHdrLen)...)
	}
	b = packet.AppendICMPError(b, typ, code, [4]byte(src), pkt)
	if err := w.q.Write(b); err != nil {
		if fatal(err) {
			return err
		}
		w.n.ctr.drop(DropTUNError, 1)
		return nil
	}
	w.n.ctr.ICMPErrors.Add(1)
	return nil
}

// rxWorker moves datagrams from the socket into a TUN queue.
type rxWorker struct {
	rxPath
	n    *Network
	q    *tun.Queue
	m    mode
	recv *recvBatch

	vhdr  [packet.VirtioNetHdrLen]byte
	parts [][]byte

	icmpOut *sendBatch
}

func newRxWorker(n *Network, q *tun.Queue, m mode) *rxWorker {
	w := &rxWorker{
		n:       n,
		q:       q,
		m:       m,
		recv:    newRecvBatch(n.sock, m.rxBatch, m.bufSize),
		parts:   make([][]byte, 0, packet.MaxCoalescedSegments+1),
		icmpOut: newSendBatch(n.sock, 1, 1),
	}
	w.rxPath = rxPath{
		ctr:      &n.ctr,
		tunAddr:  n.tunAddr,
		write:    w.writeOne,
		sendICMP: w.sendICMP,
		icmp:     make([]byte, 0, packet.ICMPErrorMaxLen),
	}
	if m.vnet {
		w.coal = newCoalescer(m.rxBatch * packet.MaxCoalescedSegments)
	}
	return w
}

func (w *rxWorker) run() error {
	for {
		n, err := w.recv.receive()
		if err != nil {
			return err
		}
		table := w.n.table.Load()
		for i := 0; i < n; i++ {
			data, src, segSize, truncated := w.recv.datagram(i)
			if err := w.datagram(table, data, src, segSize, truncated); err != nil {
				return err
			}
		}
		if err := w.writeOut(); err != nil {
			return err
		}
	}
}

// writeOne writes a packet into the TUN device, which has no virtio-net header.
func (w *rxWorker) writeOne(pkt []byte) error {
	if err := w.q.Write(pkt); err != nil {
		if fatal(err) {
			return err
		}
		w.ctr.drop(DropTUNError, 1)
		return nil
	}
	w.ctr.RxPackets.Add(1)
	w.ctr.RxBytes.Add(uint64(len(pkt)))
	return nil
}

// sendICMP sends an ICMP error to peer p; a refusal is counted by flush, and a closed
// socket ends the worker at its next read.
func (w *rxWorker) sendICMP(p *Peer, msg []byte) {
	w.icmpOut.addPacket(p, msg)
	_ = w.icmpOut.flush(w.ctr, nil)
}

// writeOut writes the coalesced batch into the TUN device.
func (w *rxWorker) writeOut() error {
	if w.coal == nil {
		return nil
	}
	defer w.coal.Reset()
	var pkts, bytes uint64
	for i := 0; i < w.coal.Len(); i++ {
		h, parts := w.coal.Item(i)
		h.Encode(w.vhdr[:])
		w.parts = append(append(w.parts[:0], w.vhdr[:]), parts...)

		n, size := uint64(len(parts)), uint64(0)
		for _, p := range parts {
			size += uint64(len(p))
		}
		size += (n - 1) * uint64(h.HdrLen)
		if err := w.q.Writev(w.parts); err != nil {
			if fatal(err) {
				return err
			}
			w.ctr.drop(DropTUNError, n)
			continue
		}
		pkts += n
		bytes += size
	}
	clear(w.parts)
	w.ctr.RxPackets.Add(pkts)
	w.ctr.RxBytes.Add(bytes)
	return nil
}

// fatal reports whether a read or write error ends the worker rather than one packet.
func fatal(err error) bool {
	return isDeadline(err) || errors.Is(err, os.ErrClosed)
}
