package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// Pods returns every pod of the lab as a ping endpoint, host by host.
func (l *Lab) Pods() []Endpoint {
	var eps []Endpoint
	for _, h := range l.state.Hosts {
		for _, p := range h.Pods {
			eps = append(eps, Endpoint{
				Name: fmt.Sprintf("h%d-p%d", h.Index, p.Index),
				NS:   p.NS,
				Addr: p.Addr.Addr(),
			})
		}
	}
	return eps
}

// HostEndpoints returns every host of the lab with its underlay address.
func (l *Lab) HostEndpoints() []Endpoint {
	var eps []Endpoint
	for _, h := range l.state.Hosts {
		eps = append(eps, Endpoint{Name: h.Name(), NS: h.NS, Addr: h.Underlay.Addr()})
	}
	return eps
}

// PingMatrix pings every endpoint from every other, all pairs at once: each pair first
// gets up to opts.Settle to answer one request, then opts.Count requests are measured.
// The error is for pingers that could not be opened; lost requests are in the Matrix.
func PingMatrix(ctx context.Context, eps []Endpoint, opts MatrixOptions) (*Matrix, error) {
	opts = opts.withDefaults()
	pingers := make([]*netlab.Pinger, len(eps))
	defer func() {
		for _, p := range pingers {
			if p != nil {
				p.Close()
			}
		}
	}()
	for i, e := range eps {
		p, err := netlab.NewPinger(e.NS)
		if err != nil {
			return nil, err
		}
		pingers[i] = p
	}

	m := &Matrix{Endpoints: eps, Results: make([][]netlab.PingResult, len(eps))}
	var wg sync.WaitGroup
	for i := range eps {
		m.Results[i] = make([]netlab.PingResult, len(eps))
		for j := range eps {
			if i == j {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				settle(ctx, pingers[i], eps[j], opts.Settle)
				m.Results[i][j] = pingers[i].Ping(ctx, eps[j].Addr, netlab.PingOptions{
					Count:    opts.Count,
					Interval: opts.Interval,
					Timeout:  opts.Timeout,
				})
			}()
		}
	}
	wg.Wait()
	return m, ctx.Err()
}

// settle sends requests to dst until one is answered or d has passed.
func settle(ctx context.Context, p *netlab.Pinger, dst Endpoint, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		_, err := p.Echo(ctx, dst.Addr, 200*time.Millisecond)
		if err == nil {
			return
		}
		if !errors.Is(err, netlab.ErrNoReply) {
			// An immediate failure (no route yet) would otherwise spin.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
