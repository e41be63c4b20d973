package netlab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// LoadOptions describe the TCP load that Pump sends.
type LoadOptions struct {
	// Streams is the number of parallel connections; 0 means 1.
	Streams int
	// Duration is how long each connection writes; 0 means 5 s.
	Duration time.Duration
	// WriteSize is the size of each write; 0 means 128 KiB.
	WriteSize int
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.Streams <= 0 {
		o.Streams = 1
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.WriteSize <= 0 {
		o.WriteSize = 128 << 10
	}
	return o
}

// Pump is the sending half of a TCP throughput run: it opens opts.Streams connections
// with dial, all at once, and writes on each until opts.Duration has passed since the
// call; a write still blocked then is cut short. Then it closes the sending side of each
// connection and waits until the receiver closes too, so that when Pump returns without
// error the receiver has read every byte written. It returns the bytes written over all
// connections. The first stream that fails ends the others; cancelling ctx ends the run
// with ctx's error.
func Pump(
	ctx context.Context,
	dial func(context.Context) (net.Conn, error),
	opts LoadOptions,
) (int64, error) {
	opts = opts.withDefaults()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(opts.Duration)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    int64
		firstErr error
	)
	for range opts.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pumpOne(runCtx, dial, opts.WriteSize, deadline)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
		}()
	}
	wg.Wait()

	if err := ctx.Err(); err != nil {
		return total, err
	}
	return total, firstErr
}

func pumpOne(
	ctx context.Context,
	dial func(context.Context) (net.Conn, error),
	size int,
	deadline time.Time,
) (int64, error) {
	conn, err := dial(ctx)
	if err != nil {
		return 0, fmt.Errorf("connecting the load: %w", err)
	}
	defer conn.Close()
	peer := conn.RemoteAddr()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := conn.SetWriteDeadline(deadline); err != nil {
		return 0, fmt.Errorf("sending the load to %s: %w", peer, err)
	}
	var sent int64
	buf := make([]byte, size)
	for {
		n, err := conn.Write(buf)
		sent += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return sent, fmt.Errorf("sending the load to %s: %w", peer, ctxErr(ctx, err))
		}
	}

	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		return sent, fmt.Errorf("sending the load to %s: a %T cannot close its sending side",
			peer, conn)
	}
	if err := conn.SetWriteDeadline(time.Time{}); err != nil {
		return sent, fmt.Errorf("sending the load to %s: %w", peer, err)
	}
	if err := cw.CloseWrite(); err != nil {
		return sent, fmt.Errorf("closing the load to %s: %w", peer, ctxErr(ctx, err))
	}
	// The receiver closes once it has read everything: then all of it arrived.
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return sent, fmt.Errorf("waiting for %s to read the load: %w", peer, ctxErr(ctx, err))
	}
	return sent, nil
}

// Drain is the receiving half of a TCP throughput run: it accepts n connections on l and
// reads each to its end, then closes it. It returns the bytes read over all connections
// and the time the last byte arrived. Cancelling ctx closes l and the connections, and
// Drain returns ctx's error; otherwise l stays open.
func Drain(ctx context.Context, l net.Listener, n int) (int64, time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    int64
		last     time.Time
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = ctxErr(ctx, err)
			cancel()
		}
	}
	for range n {
		conn, err := l.Accept()
		if err != nil {
			fail(fmt.Errorf("accepting the load on %s: %w", l.Addr(), err))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			done := context.AfterFunc(ctx, func() { conn.Close() })
			defer done()
			got, err := io.Copy(io.Discard, conn)
			mu.Lock()
			total += got
			last = time.Now()
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("receiving the load from %s: %w", conn.RemoteAddr(), err))
			}
		}()
	}
	wg.Wait()
	return total, last, firstErr
}

// PingPong measures request/response latency on conn, whose other end writes back what
// it reads (as ServeEcho does): it writes a request of size bytes (at least 8), reads the
// same bytes back and takes the time, again and again until d has passed, and returns
// every round trip's time. An answer that differs from its request is an error.
// Cancelling ctx ends it with ctx's error.
func PingPong(
	ctx context.Context,
	conn net.Conn,
	size int,
	d time.Duration,
) ([]time.Duration, error) {
	size = max(size, 8)
	peer := conn.RemoteAddr()
	if tc, ok := conn.(interface{ SetNoDelay(bool) error }); ok {
		if err := tc.SetNoDelay(true); err != nil {
			return nil, fmt.Errorf("latency probe to %s: %w", peer, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	defer conn.SetDeadline(time.Time{})

	req, resp := make([]byte, size), make([]byte, size)
	var rtts []time.Duration
	end := time.Now().Add(d)
	for seq := uint64(0); ; seq++ {
		binary.BigEndian.PutUint64(req, seq)
		t0 := time.Now()
		if t0.After(end) {
			return rtts, nil
		}
		if _, err := conn.Write(req); err != nil {
			return rtts, fmt.Errorf("latency probe request to %s: %w", peer, ctxErr(ctx, err))
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return rtts, fmt.Errorf("latency probe answer from %s: %w", peer, ctxErr(ctx, err))
		}
		rtts = append(rtts, time.Since(t0))
		if !bytes.Equal(req, resp) {
			return rtts, fmt.Errorf("latency probe answer %d from %s differs from its request",
				seq, peer)
		}
	}
}

// ServeEcho serves one connection accepted on l, for PingPong: it writes back everything it
// reads until the peer closes its side, then closes the connection. Cancelling ctx
// closes l and the connection, and Echo returns ctx's error.
func ServeEcho(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	conn, err := l.Accept()
	if err != nil {
		return fmt.Errorf("accepting the latency probe on %s: %w", l.Addr(), ctxErr(ctx, err))
	}
	defer conn.Close()
	done := context.AfterFunc(ctx, func() { conn.Close() })
	defer done()
	if _, err := io.Copy(conn, conn); err != nil {
		return fmt.Errorf("echoing to %s: %w", conn.RemoteAddr(), ctxErr(ctx, err))
	}
	return nil
}

// ctxErr returns ctx's error in place of err once ctx has ended: a socket closed because
// of it fails with a less telling error of its own.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
