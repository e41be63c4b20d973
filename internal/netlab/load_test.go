package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen opens a TCP listener on the loopback of the test's own namespace.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dialer(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// countingServer accepts connections on l until it is closed, reads each to its end,
// closes it, and adds up what it read; wait returns the sum once l is closed and every
// connection is done.
func countingServer(l net.Listener) (wait func() int64) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				n, _ := io.Copy(io.Discard, conn)
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
	}()
	return func() int64 {
		l.Close()
		wg.Wait()
		return total
	}
}

func TestPumpCountsBytes(t *testing.T) {
	tests := []struct {
		name string
		opts LoadOptions
	}{
		{name: "one stream", opts: LoadOptions{Duration: 150 * time.Millisecond}},
		{name: "three streams, odd writes", opts: LoadOptions{Streams: 3, WriteSize: 1000,
			Duration: 150 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := listen(t)
			wait := countingServer(l)
			start := time.Now()
			sent, err := Pump(context.Background(), dialer(l.Addr().String()), tt.opts)
			took := time.Since(start)
			received := wait()
			if err != nil {
				t.Fatalf("Pump: %v", err)
			}
			if sent <= 0 || sent != received {
				t.Errorf("Pump says it sent %d bytes; the server read %d", sent, received)
			}
			if took < tt.opts.Duration || took > tt.opts.Duration+2*time.Second {
				t.Errorf("Pump for %s took %s", tt.opts.Duration, took)
			}
		})
	}
}

func TestDrainCountsBytes(t *testing.T) {
	l := listen(t)
	sizes := []int{1<<20 + 7, 3, 0}
	var want int64
	for _, n := range sizes {
		want += int64(n)
	}

	start := time.Now()
	errc := make(chan error, len(sizes))
	for _, n := range sizes {
		go func() {
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			_, err = conn.Write(make([]byte, n))
			errc <- err
		}()
	}
	got, last, err := Drain(context.Background(), l, len(sizes))
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	for range sizes {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got != want {
		t.Errorf("Drain read %d bytes, the clients wrote %d", got, want)
	}
	if last.Before(start) || time.Since(last) < 0 {
		t.Errorf("Drain's last byte at %s, outside the run from %s", last, start)
	}
}

func TestPumpIntoDrain(t *testing.T) {
	l := listen(t)
	type result struct {
		n   int64
		err error
	}
	drained := make(chan result, 1)
	go func() {
		n, _, err := Drain(context.Background(), l, 2)
		drained <- result{n, err}
	}()
	sent, err := Pump(context.Background(), dialer(l.Addr().String()),
		LoadOptions{Streams: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Pump: %v", err)
	}
	r := <-drained
	if r.err != nil || r.n != sent || sent <= 0 {
		t.Errorf("Pump sent %d bytes, Drain read %d (%v)", sent, r.n, r.err)
	}
}

func TestPumpFailures(t *testing.T) {
	t.Run("nothing listens", func(t *testing.T) {
		l := listen(t)
		addr := l.Addr().String()
		l.Close()
		_, err := Pump(context.Background(), dialer(addr), LoadOptions{Duration: time.Second})
		if err == nil || !strings.Contains(err.Error(), "connecting the load") {
			t.Errorf("Pump to a closed port = %v, want a connect error", err)
		}
	})

	t.Run("receiver hangs up", func(t *testing.T) {
		l := listen(t)
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		}()
		start := time.Now()
		_, err := Pump(context.Background(), dialer(l.Addr().String()),
			LoadOptions{Duration: 5 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "load") {
			t.Errorf("Pump to a receiver that resets = %v, want an error", err)
		}
		if time.Since(start) > 4*time.Second {
			t.Errorf("Pump noticed the reset only after %s", time.Since(start))
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		// The receiver accepts and never reads, so the writes block.
		l := listen(t)
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Pump(ctx, dialer(l.Addr().String()), LoadOptions{Streams: 2,
			Duration: 10 * time.Second})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Pump with a context ending = %v, want its error", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Pump returned %s after its context ended", took)
		}
	})
}

func TestDrainCancelled(t *testing.T) {
	l := listen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := Drain(ctx, l, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with no sender and a context ending = %v, want its error", err)
	}
}

func TestPingPong(t *testing.T) {
	l := listen(t)
	ctx := context.Background()
	served := make(chan error, 1)
	go func() { served <- ServeEcho(ctx, l) }()

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rtts, err := PingPong(ctx, conn, 64, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("PingPong: %v", err)
	}
	if len(rtts) < 10 {
		t.Errorf("PingPong made %d round trips on loopback in 100ms", len(rtts))
	}
	for i, d := range rtts {
		if d <= 0 {
			t.Fatalf("round trip %d took %s", i, d)
		}
	}
	conn.Close()
	if err := <-served; err != nil {
		t.Errorf("ServeEcho after the peer closed: %v", err)
	}
}

func TestPingPongWrongAnswer(t *testing.T) {
	l := listen(t)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 16)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			buf[15] ^= 1
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = PingPong(context.Background(), conn, 16, time.Second)
	if err == nil || !strings.Contains(err.Error(), "differs from its request") {
		t.Errorf("PingPong against a wrong echo = %v, want an error", err)
	}
}

func TestServeEchoCancelled(t *testing.T) {
	l := listen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ServeEcho(ctx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ServeEcho with no client and a context ending = %v, want its error", err)
	}
}
