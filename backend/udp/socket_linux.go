package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/udp/packet"
)

const (
	// socketBuffer is the send and receive buffer asked for: deep enough to absorb a
	// burst of super-packets while the other side of the path is busy.
	socketBuffer = 7 << 20

	// maxGSOSegments and maxGSOBytes bound one UDP GSO send: the kernel refuses more
	// segments than UDP_MAX_SEGMENTS (64 before Linux 6.9) and more payload than fits
	// one IPv4 datagram.
	maxGSOSegments = 64
	maxGSOBytes    = 65535 - 20 - 8

	// rxBufSize holds the largest datagram, which with UDP GRO is a merged one.
	rxBufSize = 1 << 16
)

// udpSocket is the data path's socket, bound to the external interface's address.
type udpSocket struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	// gso says whether sends may carry UDP_SEGMENT; the first send the kernel refuses
	// with EIO (the route's device cannot checksum) turns it off for good.
	gso atomic.Bool
	// gro says whether receives may return merged datagrams.
	gro bool
}

// openSocket binds the UDP socket and, with offload, probes UDP GSO and GRO.
//
// Equivalent to: socket(AF_INET, SOCK_DGRAM) bound to addr, with SO_SNDBUFFORCE and
// SO_RCVBUFFORCE of 7 MiB and, with offload, UDP_SEGMENT and UDP_GRO.
func openSocket(addr netip.AddrPort, offload bool) (*udpSocket, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("binding UDP socket to %s: %w", addr, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening UDP socket %s: %w", addr, err)
	}
	s := &udpSocket{conn: conn, rc: rc}

	err = rc.Control(func(fd uintptr) {
		setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF)
		setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF)
		if !offload {
			return
		}
		// Setting the socket-wide segment size to 0 only checks that the kernel knows
		// UDP_SEGMENT (4.18); each send names its own.
		if unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 0) == nil {
			s.gso.Store(true)
		}
		s.gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting options on UDP socket %s: %w", addr, err)
	}
	return s, nil
}

// setBuffer asks for socketBuffer bytes, past the sysctl limit when allowed.
func setBuffer(fd, force, plain int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, socketBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, socketBuffer)
	}
}

// setDeadline makes blocked and future reads and writes return os.ErrDeadlineExceeded.
func (s *udpSocket) setDeadline(t time.Time) error { return s.conn.SetDeadline(t) }

func (s *udpSocket) close() error { return s.conn.Close() }

// sockaddr4 fills a socket address for peer p.
func sockaddr4(sa *unix.RawSockaddrInet4, p *Peer) {
	sa.Family = unix.AF_INET
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(p.port>>8), byte(p.port)
	sa.Addr = p.ip
}

// msgMeta is what a send batch remembers of each message to count it and, should UDP GSO
// fail, to send its segments one by one.
type msgMeta struct {
	peer    *Peer
	perSeg  int // iovecs per segment
	segs    int
	bytes   int
	segSize int  // length of every segment but the last
	short   bool // the last segment is shorter: no more may join
}

// sendBatch gathers datagrams for one sendmmsg(2). Message i keeps its iovecs in a region
// of its own, iovs[i*iovPerMsg:], so that any message can still grow. Its buffers are
// sized once; adding and sending allocate nothing.
type sendBatch struct {
	sock      *udpSocket
	msgs      []unix.Mmsghdr
	addrs     []unix.RawSockaddrInet4
	cmsgs     []byte
	iovs      []unix.Iovec
	iovPerMsg int
	meta      []msgMeta

	// the call in progress, for the bound sendFn
	from   int
	sent   int
	errno  unix.Errno
	sendFn func(fd uintptr) bool
	// sys is sendmmsg(2); tests stand in for the kernel's refusals.
	sys func(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno)
}

var cmsgSpace = unix.CmsgSpace(2)

// newSendBatch sizes a batch for maxMsgs messages of up to segsPerMsg segments in two
// iovecs each.
func newSendBatch(s *udpSocket, maxMsgs, segsPerMsg int) *sendBatch {
	b := &sendBatch{
		sock:      s,
		msgs:      make([]unix.Mmsghdr, 0, maxMsgs),
		addrs:     make([]unix.RawSockaddrInet4, maxMsgs),
		cmsgs:     make([]byte, maxMsgs*cmsgSpace),
		iovs:      make([]unix.Iovec, maxMsgs*2*segsPerMsg),
		iovPerMsg: 2 * segsPerMsg,
		meta:      make([]msgMeta, 0, maxMsgs),
	}
	b.sendFn = b.send
	b.sys = sendmmsg
	return b
}

// room reports whether msgs more messages fit.
func (b *sendBatch) room(msgs int) bool { return len(b.msgs)+msgs <= cap(b.msgs) }

func (b *sendBatch) empty() bool { return len(b.msgs) == 0 }

// addPacket queues one datagram carrying pkt to p. The caller checks room(1).
func (b *sendBatch) addPacket(p *Peer, pkt []byte) {
	b.queue(p, pkt, nil)
}

// addSegment queues segment j of a split super-packet to p. The caller checks room(1).
func (b *sendBatch) addSegment(p *Peer, s packet.Split, pkt, hdrs []byte, j int) {
	b.queue(p, s.Header(hdrs, j), s.Payload(pkt, j))
}

// queue adds one segment, the bytes of head followed by those of tail (nil for none),
// to the latest message to p when UDP GSO can carry it there, or to a new message. Each
// inner packet stays one datagram on the wire.
func (b *sendBatch) queue(p *Peer, head, tail []byte) {
	perSeg, size := 1, len(head)
	if tail != nil {
		perSeg, size = 2, len(head)+len(tail)
	}
	i := b.joinable(p, perSeg, size)
	if i < 0 {
		i = len(b.msgs)
		b.msgs = b.msgs[:i+1]
		b.meta = append(b.meta, msgMeta{peer: p, perSeg: perSeg, segSize: size})
		sockaddr4(&b.addrs[i], p)
		b.msgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.addrs[i])),
			Namelen: unix.SizeofSockaddrInet4,
			Iov:     &b.iovs[i*b.iovPerMsg],
		}}
	}

	m := &b.meta[i]
	v := b.iovs[i*b.iovPerMsg+m.segs*perSeg:]
	setIov(&v[0], head)
	if tail != nil {
		setIov(&v[1], tail)
	}
	m.segs++
	m.bytes += size
	m.short = size < m.segSize
	b.msgs[i].Hdr.SetIovlen(m.segs * perSeg)
	if m.segs == 2 {
		b.setSegment(i, m.segSize)
	}
}

// joinable returns the message that a segment of size bytes in perSeg iovecs to p may
// join, or -1. Only the latest message to p qualifies, so that a peer's datagrams keep
// their order; it must have room under the kernel's limits, no shorter segment yet, and
// segments no shorter than this one. So a run of packets to one peer leaves in one send,
// across the super-packets of a batch and interleaved with other peers' runs.
func (b *sendBatch) joinable(p *Peer, perSeg, size int) int {
	if !b.sock.gso.Load() {
		return -1
	}
	for i := len(b.meta) - 1; i >= max(0, len(b.meta)-joinLookback); i-- {
		m := &b.meta[i]
		if m.peer != p {
			continue
		}
		if m.perSeg != perSeg || m.short || size > m.segSize ||
			(m.segs+1)*perSeg > b.iovPerMsg || m.segs >= maxGSOSegments ||
			m.bytes+size > maxGSOBytes {
			return -1
		}
		return i
	}
	return -1
}

// joinLookback bounds how far back joinable looks for a peer's latest message.
const joinLookback = 16

func setIov(v *unix.Iovec, p []byte) {
	v.Base = unsafe.SliceData(p)
	v.SetLen(len(p))
}

// setSegment gives message i a UDP_SEGMENT control message: the kernel cuts its payload
// into datagrams of size bytes.
func (b *sendBatch) setSegment(i, size int) {
	c := b.cmsgs[i*cmsgSpace : (i+1)*cmsgSpace]
	ch := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	ch.Level = unix.SOL_UDP
	ch.Type = unix.UDP_SEGMENT
	ch.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(size))
	h := &b.msgs[i].Hdr
	h.Control = &c[0]
	h.SetControllen(cmsgSpace)
}

// flush sends the batch and empties it, counting what went out and what was refused.
// Only an error of the socket itself (closed, deadline) is returned; a datagram the
// kernel refuses is dropped and counted. A refused UDP GSO send is retried through retry,
// one datagram per segment: after EIO (the path cannot segment, as through IPsec) UDP GSO
// stays off for good; after EINVAL (segments larger than this path's MTU) only that
// send is split. retry must hold maxGSOSegments messages.
func (b *sendBatch) flush(ctr *Counters, retry *sendBatch) error {
	defer b.reset()
	var pkts, bytes uint64
	defer func() {
		ctr.TxPackets.Add(pkts)
		ctr.TxBytes.Add(bytes)
	}()
	for b.from = 0; b.from < len(b.msgs); {
		b.sent, b.errno = 0, 0
		if err := b.sock.rc.Write(b.sendFn); err != nil {
			return err
		}
		for _, m := range b.meta[b.from : b.from+b.sent] {
			pkts += uint64(m.segs)
			bytes += uint64(m.bytes)
		}
		b.from += b.sent
		if b.errno == 0 {
			continue
		}

		// The message at b.from was refused.
		i := b.from
		m := b.meta[i]
		b.from++
		if m.segs > 1 && retry != nil && (b.errno == unix.EIO || b.errno == unix.EINVAL) {
			if b.errno == unix.EIO {
				b.sock.gso.Store(false)
			}
			retry.explode(m, b.iovs[i*b.iovPerMsg:])
			if err := retry.flush(ctr, nil); err != nil {
				return err
			}
			continue
		}
		ctr.drop(DropSendError, uint64(m.segs))
	}
	return nil
}

// explode queues the segments of message m, whose iovecs start iovs, one datagram each.
func (b *sendBatch) explode(m msgMeta, iovs []unix.Iovec) {
	for s := 0; s < m.segs; s++ {
		v := iovs[s*m.perSeg:]
		i := len(b.msgs)
		b.msgs = b.msgs[:i+1]
		size := 0
		for k := 0; k < m.perSeg; k++ {
			b.iovs[i*b.iovPerMsg+k] = v[k]
			size += int(v[k].Len)
		}
		b.meta = append(b.meta, msgMeta{peer: m.peer, perSeg: m.perSeg, segs: 1,
			bytes: size, segSize: size})
		sockaddr4(&b.addrs[i], m.peer)
		b.msgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.addrs[i])),
			Namelen: unix.SizeofSockaddrInet4,
			Iov:     &b.iovs[i*b.iovPerMsg],
		}}
		b.msgs[i].Hdr.SetIovlen(m.perSeg)
	}
}

func (b *sendBatch) reset() {
	clear(b.iovs[:len(b.msgs)*b.iovPerMsg])
	b.msgs = b.msgs[:0]
	clear(b.meta)
	b.meta = b.meta[:0]
}

// send is the sendmmsg(2) loop run by the poller: false means wait until writable.
func (b *sendBatch) send(fd uintptr) bool {
	for {
		n, errno := b.sys(fd, b.msgs[b.from:])
		switch errno {
		case 0:
			b.sent = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.errno = errno
		return true
	}
}

// sendmmsg makes the call on the non-blocking socket as a raw system call, which keeps
// the goroutine's processor, as the TUN queue's reads and writes do (tun.Queue): a send
// is CPU work to its end, through the stack and often the receiver's softirq, and handing
// the processor to another thread meanwhile only wakes a thread more than there are CPUs.
// recvmmsg is made the same way.
func sendmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	return int(n), errno
}

// recvBatch receives datagrams with recvmmsg(2) into buffers sized once.
type recvBatch struct {
	sock  *udpSocket
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	cmsgs []byte
	bufs  [][]byte

	n      int
	errno  unix.Errno
	recvFn func(fd uintptr) bool
}

var groCmsgSpace = unix.CmsgSpace(4)

func newRecvBatch(s *udpSocket, n, size int) *recvBatch {
	b := &recvBatch{
		sock:  s,
		msgs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet4, n),
		cmsgs: make([]byte, n*groCmsgSpace),
		bufs:  make([][]byte, n),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
	}
	b.recvFn = b.recv
	return b
}

// receive waits for datagrams and returns how many arrived.
func (b *recvBatch) receive() (int, error) {
	for i := range b.msgs {
		h := &b.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.cmsgs[i*groCmsgSpace]
		h.SetControllen(groCmsgSpace)
		h.Flags = 0
	}
	b.n, b.errno = 0, 0
	if err := b.sock.rc.Read(b.recvFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.n, nil
}

func (b *recvBatch) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)), 0, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.errno = errno
		return true
	}
}

// datagram returns received datagram i: its bytes, its source address as a big-endian
// number, the size of the datagrams it was merged from (its own length when it was not),
// and whether it was cut short.
func (b *recvBatch) datagram(i int) (data []byte, src uint32, segSize int, truncated bool) {
	m := &b.msgs[i]
	data = b.bufs[i][:min(int(m.Len), len(b.bufs[i]))]
	src = binary.BigEndian.Uint32(b.names[i].Addr[:])
	truncated = m.Hdr.Flags&unix.MSG_TRUNC != 0
	segSize = len(data)
	if b.sock.gro {
		if s := groSize(b.cmsgs[i*groCmsgSpace:][:m.Hdr.Controllen]); s > 0 {
			segSize = s
		}
	}
	return data, src, segSize, truncated
}

// groSize finds the UDP_GRO control message in c and returns its segment size, or 0.
func groSize(c []byte) int {
	for len(c) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(c) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(c[unix.CmsgLen(0):]))
		}
		c = c[min(len(c), unix.CmsgSpace(l-unix.SizeofCmsghdr)):]
	}
	return 0
}

// isDeadline reports whether err is a deadline passing.
func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
