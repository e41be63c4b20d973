package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Pinger sends ICMP echo requests from inside one namespace and times the replies. It
// needs CAP_NET_RAW in that namespace (a raw socket: unprivileged ping sockets are off in
// a fresh namespace). It is safe for concurrent use; Close stops it.
type Pinger struct {
	ns    string
	conn  net.PacketConn
	id    uint16
	token [8]byte

	wg sync.WaitGroup // the reader goroutine

	mu      sync.Mutex
	seq     uint16
	pending map[uint16]chan time.Time
}

// NewPinger opens a raw ICMP socket inside the namespace called ns. Every Pinger gets a
// random identifier and payload token, so several can share a namespace.
func NewPinger(ns string) (*Pinger, error) {
	conn, err := ListenPacket(ns, "ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("opening ICMP socket in %s: %w", ns, err)
	}
	p := &Pinger{ns: ns, conn: conn, pending: map[uint16]chan time.Time{}}
	rand.Read(p.token[:])
	p.id = binary.BigEndian.Uint16(p.token[:2])

	p.wg.Add(1)
	go p.read()
	return p, nil
}

// Close closes the socket and waits for the reader to stop. Echo calls still waiting fail.
func (p *Pinger) Close() error {
	err := p.conn.Close()
	p.wg.Wait()
	return err
}

func (p *Pinger) read() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		now := time.Now()
		e, err := ParseEcho(buf[:n])
		if err != nil || !e.Reply || e.ID != p.id || !bytes.HasPrefix(e.Data, p.token[:]) {
			continue
		}
		p.mu.Lock()
		if c, ok := p.pending[e.Seq]; ok {
			c <- now
			delete(p.pending, e.Seq)
		}
		p.mu.Unlock()
	}
}

// Echo sends one echo request to dst and returns the round-trip time of its reply. It
// gives up after timeout or when ctx is done.
func (p *Pinger) Echo(
	ctx context.Context,
	dst netip.Addr,
	timeout time.Duration,
) (time.Duration, error) {
	if !dst.Is4() {
		return 0, fmt.Errorf("pinging %s from %s: not an IPv4 address", dst, p.ns)
	}
	reply := make(chan time.Time, 1)
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.pending[seq] = reply
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, seq)
		p.mu.Unlock()
	}()

	msg := Echo{ID: p.id, Seq: seq, Data: p.token[:]}.Marshal()
	sent := time.Now()
	if _, err := p.conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("pinging %s from %s: %w", dst, p.ns, err)
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case at := <-reply:
		return at.Sub(sent), nil
	case <-timer.C:
		return 0, fmt.Errorf("pinging %s from %s: %w after %s", dst, p.ns, ErrNoReply, timeout)
	case <-ctx.Done():
		return 0, fmt.Errorf("pinging %s from %s: %w", dst, p.ns, ctx.Err())
	}
}

// ErrNoReply is the error of an echo request whose reply did not come in time.
var ErrNoReply = errors.New("no echo reply")

// PingOptions says how many echo requests Ping sends and how fast.
type PingOptions struct {
	// Count is the number of requests; 0 sends until the context is done.
	Count int
	// Interval is the time between requests; 0 means 100 ms.
	Interval time.Duration
	// Timeout is how long each request waits for its reply; 0 means 1 s.
	Timeout time.Duration
}

// Ping sends echo requests to dst as opts says and collects the replies. Once ctx is done
// it sends no more, but still waits out the requests already sent, so that stopping a
// steady stream does not count its last requests as lost.
func (p *Pinger) Ping(ctx context.Context, dst netip.Addr, opts PingOptions) PingResult {
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		rtts = map[int]time.Duration{}
		errs = map[int]error{}
	)
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	sent := 0
send:
	for ctx.Err() == nil && (opts.Count == 0 || sent < opts.Count) {
		i := sent
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtt, err := p.Echo(context.Background(), dst, opts.Timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[i] = err
			} else {
				rtts[i] = rtt
			}
		}()
		sent++
		if sent == opts.Count {
			break
		}
		select {
		case <-ctx.Done():
			break send
		case <-tick.C:
		}
	}
	wg.Wait()

	r := PingResult{Src: p.ns, Dst: dst, Sent: sent, RTTs: make([]time.Duration, sent)}
	for i := range sent {
		if err, lost := errs[i]; lost {
			r.Lost = append(r.Lost, i)
			r.Err = err
			continue
		}
		r.RTTs[i] = rtts[i]
		r.Received++
	}
	return r
}
