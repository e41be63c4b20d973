package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/internal/metrics"
)

// The bodies of the health endpoints are flanneld's word for word, because probes and
// scripts written for flanneld may match them.
const (
	healthyBody  = "flanneld is running"
	readyBody    = "flanneld is ready"
	notReadyBody = "flanneld is not ready yet"
)

// healthShutdownTimeout bounds how long a stopping daemon waits for health requests in
// flight.
const healthShutdownTimeout = 3 * time.Second

// Health is the daemon's readiness, shown on /readyz, its metrics, shown on /metrics,
// and its state, shown on /status. The zero value is not ready. It is safe for
// concurrent use.
type Health struct {
	ready   atomic.Bool
	Metrics Metrics

	mu          sync.Mutex
	state       string
	started     time.Time
	network     netip.Prefix
	ipv6Network netip.Prefix
	peersSynced time.Time
}

// SetReady records whether subnet.env describes the lease that the data plane is
// programmed for.
func (h *Health) SetReady(ready bool) { h.ready.Store(ready) }

// Ready reports what SetReady last recorded.
func (h *Health) Ready() bool { return h.ready.Load() }

// Handler returns the health endpoints on a mux of their own: GET /healthz answers 200
// "flanneld is running" while the process runs, GET /readyz answers 200 "flanneld is
// ready" once ready and 503 "flanneld is not ready yet" before, GET /metrics answers
// the metrics in the Prometheus text format, and GET /status answers Status as JSON.
// Nothing else is served.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, healthyBody)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if h.Ready() {
			writeText(w, http.StatusOK, readyBody)
			return
		}
		writeText(w, http.StatusServiceUnavailable, notReadyBody)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", metrics.ContentType)
		h.Metrics.WriteText(w, h.Ready())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(h.Status(), "", "  ")
		if err != nil {
			writeText(w, http.StatusInternalServerError, "encoding status: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// healthServer serves the health endpoints on a listener opened up front, so that an
// address in use is a startup error rather than a failure in the background.
type healthServer struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// listenHealth opens addr for the health endpoints of h.
func listenHealth(addr string, h *Health, log *slog.Logger) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for health checks on %s: %w", addr, err)
	}
	return &healthServer{
		srv: &http.Server{
			Handler:           h.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:  ln,
		log: log,
	}, nil
}

// Addr returns the address the server listens on.
func (s *healthServer) Addr() net.Addr { return s.ln.Addr() }

// serve answers requests until ctx is cancelled, then gives requests in flight up to
// healthShutdownTimeout to finish.
func (s *healthServer) serve(ctx context.Context) error {
	s.log.Info("serving health checks", "addr", s.ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serving health checks on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.Background(), healthShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stopping health checks on %s: %w", s.ln.Addr(), err)
	}
	return nil
}
