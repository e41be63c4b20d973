package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config says what device to open.
type Config struct {
	// Name is the device name, or a template such as "flannel%d" from which the kernel
	// picks the first free name.
	Name string
	// Offload asks for a virtio-net header in front of every packet and for the
	// checksum, TSO and USO offloads, each as far as the kernel offers it.
	Offload bool
	// Queues is the number of queues; more than one opens the device with
	// IFF_MULTI_QUEUE. Zero means one.
	Queues int
}

// Offloads says what a device got.
type Offloads struct {
	// VnetHdr: every packet read or written starts with a virtio-net header.
	VnetHdr bool
	// Checksum: packets read may carry a checksum still to compute.
	Checksum bool
	// TSO: reads may yield TCP super-packets (TSO4, TSO6 and ECN), to be segmented.
	TSO bool
	// USO: reads may yield UDP super-packets (USO4 and USO6, Linux 6.2).
	USO bool
}

// String lists the offloads for logs.
func (o Offloads) String() string {
	if !o.VnetHdr {
		return "none"
	}
	s := "vnet-hdr"
	if o.Checksum {
		s += ",csum"
	}
	if o.TSO {
		s += ",tso"
	}
	if o.USO {
		s += ",uso"
	}
	return s
}

// Device is an open TUN device.
type Device struct {
	name     string
	offloads Offloads
	queues   []*Queue
}

const cloneDevice = "/dev/net/tun"

// Open creates the TUN device and its queues. The device exists until Close; it is not
// up and has no address or MTU of weft's choosing yet.
//
// Equivalent to: ip tuntap add dev flannel0 mode tun (not persistent; one_queue off,
// vnet_hdr and multi_queue as configured).
func Open(cfg Config) (*Device, error) {
	queues := max(cfg.Queues, 1)
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}

	fd, name, vnet, err := openQueue(cfg.Name, flags, cfg.Offload)
	if err != nil {
		return nil, err
	}
	d := &Device{name: name}
	if err := d.addQueue(fd); err != nil {
		return nil, err
	}

	if vnet {
		d.offloads = Offloads{VnetHdr: true}
		d.offloads.Checksum, d.offloads.TSO, d.offloads.USO = setOffload(fd)
	}

	for i := 1; i < queues; i++ {
		fd, _, _, err := openQueue(name, flags, vnet)
		if err == nil {
			err = d.addQueue(fd)
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("opening queue %d of %s: %w", i, name, err)
		}
	}
	return d, nil
}

// openQueue opens the clone device and attaches it to the named (or templated) device,
// returning the descriptor and the device's name. With vnet it asks for IFF_VNET_HDR
// when the kernel offers it, and reports whether it did.
func openQueue(name string, flags uint16, vnet bool) (int, string, bool, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", false, fmt.Errorf("opening %s: %w", cloneDevice, err)
	}

	if vnet {
		features, err := unix.IoctlGetUint32(fd, unix.TUNGETFEATURES)
		vnet = err == nil && features&unix.IFF_VNET_HDR != 0
	}
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", false, fmt.Errorf("TUN device name %q: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", false, fmt.Errorf("creating TUN device %q (flags %#x): %w", name, flags, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, "", false, fmt.Errorf("making TUN device %q non-blocking: %w", ifr.Name(), err)
	}
	return fd, ifr.Name(), vnet, nil
}

// setOffload enables as many offloads as the kernel takes, best first.
func setOffload(fd int) (csum, tso, uso bool) {
	const (
		tsoFlags = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
		usoFlags = tsoFlags | unix.TUN_F_USO4 | unix.TUN_F_USO6
	)
	switch {
	case unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, usoFlags) == nil:
		return true, true, true
	case unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tsoFlags) == nil:
		return true, true, false
	case unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM) == nil:
		return true, false, false
	}
	return false, false, false
}

func (d *Device) addQueue(fd int) error {
	f := os.NewFile(uintptr(fd), cloneDevice)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("polling TUN device %s: %w", d.name, err)
	}
	q := &Queue{f: f, rc: rc}
	q.readFn = q.read
	q.writeFn = q.write
	q.writevFn = q.writev
	d.queues = append(d.queues, q)
	return nil
}

// Name returns the device's name, for example flannel0.
func (d *Device) Name() string { return d.name }

// Offloads returns what the device got; with VnetHdr, every read and write carries a
// virtio-net header.
func (d *Device) Offloads() Offloads { return d.offloads }

// Queues returns the device's queues.
func (d *Device) Queues() []*Queue { return d.queues }

// Close closes every queue, which removes the device and its addresses and routes.
//
// Equivalent to: ip tuntap del dev flannel0 mode tun
func (d *Device) Close() error {
	var errs []error
	for _, q := range d.queues {
		if err := q.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing a queue of %s: %w", d.name, err))
		}
	}
	return errors.Join(errs...)
}

// Queue is one queue of a TUN device. Reads and writes go through Go's poller, so a
// blocked read ends at the read deadline or when the device is closed. One goroutine
// reads a queue; any number may write to it.
//
// The descriptor is non-blocking, so each read(2) and write(2) returns without waiting;
// it is made as a raw system call, which keeps the goroutine's processor (P): the call
// is CPU work to its end (a copy and, on writes, the packet's way through the stack), and
// handing the processor to another thread for its length, as Go does when a call takes
// longer than its monitor's tick, only wakes one more thread than there are CPUs.
type Queue struct {
	f  *os.File
	rc syscall.RawConn

	// State of the read in progress, kept here with a bound method value so that
	// passing it to the poller allocates nothing. Only the reading goroutine uses it.
	readFn func(fd uintptr) bool
	bufs   [][]byte
	sizes  []int
	n      int
	waited bool
	rerr   error

	// wmu serialises writers and guards the write state below.
	wmu      sync.Mutex
	writeFn  func(fd uintptr) bool
	writevFn func(fd uintptr) bool
	wbuf     []byte
	iovs     []unix.Iovec
	werr     error
}

// ReadBatch reads packets into bufs and stores their lengths in sizes; it returns how
// many it read. It waits for the first packet when none is queued, and then returns with
// that one alone: an idle queue costs no extra read(2) that would find nothing. When a
// packet was already queued, it reads on until the queue is empty or bufs are full. A
// packet longer than its buffer is cut short, as with read(2).
func (q *Queue) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	q.bufs, q.sizes, q.n, q.waited, q.rerr = bufs, sizes[:len(bufs)], 0, false, nil
	err := q.rc.Read(q.readFn)
	q.bufs, q.sizes = nil, nil
	if q.n > 0 {
		return q.n, nil
	}
	if err != nil {
		return 0, err
	}
	return 0, q.rerr
}

func (q *Queue) read(fd uintptr) bool {
	for q.n < len(q.bufs) {
		b := q.bufs[q.n]
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
			q.sizes[q.n] = int(n)
			q.n++
			if q.waited {
				return true
			}
		case unix.EINTR:
		case unix.EAGAIN:
			q.waited = q.n == 0
			return q.n > 0
		default:
			q.rerr = &os.PathError{Op: "read", Path: cloneDevice, Err: errno}
			return true
		}
	}
	return true
}

// Write writes one packet (with its virtio-net header when the device has one).
func (q *Queue) Write(b []byte) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.wbuf, q.werr = b, nil
	err := q.rc.Write(q.writeFn)
	q.wbuf = nil
	if err != nil {
		return err
	}
	return q.werr
}

func (q *Queue) write(fd uintptr) bool {
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(q.wbuf))), uintptr(len(q.wbuf)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			q.werr = &os.PathError{Op: "write", Path: cloneDevice, Err: errno}
		}
		return true
	}
}

// Writev writes one packet gathered from parts (writev(2)), for example a virtio-net
// header, a first segment and the payloads of the segments merged with it.
func (q *Queue) Writev(parts [][]byte) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.iovs = q.iovs[:0]
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		v := unix.Iovec{Base: &p[0]}
		v.SetLen(len(p))
		q.iovs = append(q.iovs, v)
	}
	q.werr = nil
	err := q.rc.Write(q.writevFn)
	clear(q.iovs)
	if err != nil {
		return err
	}
	return q.werr
}

func (q *Queue) writev(fd uintptr) bool {
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(q.iovs))), uintptr(len(q.iovs)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			q.werr = &os.PathError{Op: "writev", Path: cloneDevice, Err: errno}
		}
		return true
	}
}

// SetDeadline makes blocked and future reads and writes return os.ErrDeadlineExceeded
// once t has passed.
func (q *Queue) SetDeadline(t time.Time) error { return q.f.SetDeadline(t) }

// SetReadDeadline makes a blocked or future ReadBatch return os.ErrDeadlineExceeded once
// t has passed.
func (q *Queue) SetReadDeadline(t time.Time) error { return q.f.SetReadDeadline(t) }
