package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// StreamOptions describes a TCP throughput run from one namespace to another.
type StreamOptions struct {
	// From and To name the sending and the receiving namespace.
	From, To string
	// Addr is where the receiver listens inside To, and what the sender dials; it must be
	// one of To's addresses and reachable from From.
	Addr netip.AddrPort
	// Streams is the number of parallel connections; 0 means 1.
	Streams int
	// Duration is how long the sender writes; 0 means 5 s.
	Duration time.Duration
	// WriteSize is the size of each write; 0 means 128 KiB.
	WriteSize int
}

// StreamResult is what a TCP throughput run moved: the bytes the receiver read, and the
// time from the first connection to the last byte.
type StreamResult struct {
	Bytes   int64
	Elapsed time.Duration
}

// Gbps returns the throughput in gigabits per second.
func (r StreamResult) Gbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e9
}

// Stream runs TCP streams from opts.From to a receiver it starts in opts.To, writing
// for opts.Duration, and reports what arrived. The receiver and the connections are gone
// when it returns.
func Stream(ctx context.Context, opts StreamOptions) (StreamResult, error) {
	if opts.Streams <= 0 {
		opts.Streams = 1
	}
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
	}
	if opts.WriteSize <= 0 {
		opts.WriteSize = 128 << 10
	}
	l, err := Listen(opts.To, "tcp", opts.Addr.String())
	if err != nil {
		return StreamResult{}, fmt.Errorf("listening on %s in %s: %w", opts.Addr, opts.To, err)
	}
	defer l.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()

	// The receiver reads each connection to its end.
	var (
		recvWG   sync.WaitGroup
		mu       sync.Mutex
		received int64
		lastByte time.Time
		recvErr  error
	)
	recvWG.Add(1)
	go func() {
		defer recvWG.Done()
		for range opts.Streams {
			conn, err := l.Accept()
			if err != nil {
				mu.Lock()
				recvErr = err
				mu.Unlock()
				return
			}
			context.AfterFunc(ctx, func() { conn.Close() })
			recvWG.Add(1)
			go func() {
				defer recvWG.Done()
				defer conn.Close()
				n, err := io.Copy(io.Discard, conn)
				mu.Lock()
				defer mu.Unlock()
				received += n
				lastByte = time.Now()
				if err != nil && recvErr == nil {
					recvErr = err
				}
			}()
		}
	}()

	// The senders write until the deadline, then close their side.
	deadline := start.Add(opts.Duration)
	sendErrs := make([]error, opts.Streams)
	var sendWG sync.WaitGroup
	for i := range opts.Streams {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			sendErrs[i] = send(ctx, opts, deadline)
		}()
	}
	sendWG.Wait()
	if err := errors.Join(sendErrs...); err != nil {
		cancel()
		l.Close()
		recvWG.Wait()
		return StreamResult{}, err
	}
	recvWG.Wait()

	if recvErr != nil {
		return StreamResult{}, fmt.Errorf("receiving in %s on %s: %w", opts.To, opts.Addr, recvErr)
	}
	return StreamResult{Bytes: received, Elapsed: lastByte.Sub(start)}, nil
}

func send(ctx context.Context, opts StreamOptions, deadline time.Time) error {
	conn, err := Dial(ctx, opts.From, "tcp", opts.Addr.String())
	if err != nil {
		return fmt.Errorf("connecting from %s to %s: %w", opts.From, opts.Addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	buf := make([]byte, opts.WriteSize)
	for time.Now().Before(deadline) {
		if _, err := conn.Write(buf); err != nil {
			return fmt.Errorf("sending from %s to %s: %w", opts.From, opts.Addr, err)
		}
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("closing stream from %s to %s: %w", opts.From, opts.Addr, err)
	}
	// Wait for the receiver to close, so that the data counts as arrived.
	io.Copy(io.Discard, conn)
	return nil
}

// RoundTrips measures TCP request/response latency from namespace from to a responder it
// starts in namespace to at addr: count one-byte requests, each answered by one byte, on
// one connection. It returns the round-trip time of each.
func RoundTrips(
	ctx context.Context,
	from, to string,
	addr netip.AddrPort,
	count int,
) ([]time.Duration, error) {
	l, err := Listen(to, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listening on %s in %s: %w", addr, to, err)
	}
	defer l.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn)
	}()

	conn, err := Dial(ctx, from, "tcp", addr.String())
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("connecting from %s to %s: %w", from, addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.(*net.TCPConn).SetNoDelay(true)

	rtts := make([]time.Duration, 0, count)
	b := []byte{0}
	for range count {
		t0 := time.Now()
		if _, err := conn.Write(b); err != nil {
			return rtts, fmt.Errorf("request from %s to %s: %w", from, addr, err)
		}
		if _, err := io.ReadFull(conn, b); err != nil {
			return rtts, fmt.Errorf("response from %s to %s: %w", addr, from, err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}
