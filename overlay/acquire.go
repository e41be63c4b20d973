package overlay

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Bounds of the acquisition retries while etcd cannot answer, the same as the wait for
// the network config.
const (
	defaultAcquireTimeout = 20 * time.Second
	acquireBackoffMin     = time.Second
	acquireBackoffMax     = 10 * time.Second
)

// patientLeases is the lease manager handed to the backend. Its AcquireLease retries
// while etcd cannot give an answer (it is down, unreachable, or has no leader), so that
// a daemon that read the config and then lost etcd waits for it, as it waits for the
// config, instead of exiting. Answers are final: running out of subnets, an invalid
// request, a refused password.
type patientLeases struct {
	mgr *subnet.Manager
	// endpoints names etcd in the log.
	endpoints string
	// timeout bounds one attempt, so that an attempt stuck on a dead connection ends
	// and is logged.
	timeout time.Duration
	log     *slog.Logger
	// retried, when set, counts the attempts that failed for etcd's unavailability.
	retried *atomic.Uint64
	// status, when set, is told what the daemon waits for.
	status func(string)
}

var _ backend.LeaseManager = (*patientLeases)(nil)

// AcquireLease acquires the lease as subnet.Manager.AcquireLease does, trying again with
// a backoff of 1 to 10 s for as long as the failure is etcd's unavailability and ctx
// lasts. The first such failure is logged at Warn naming the endpoints, the later ones at
// Debug, and the recovery at Info. Each attempt has its own time limit; an attempt cut
// short after its write reached etcd is harmless, because the next one finds the lease by
// this host's PublicIP and reuses it.
func (p *patientLeases) AcquireLease(ctx context.Context, attrs subnet.LeaseAttrs) (
	*subnet.Lease, error) {
	bo := backoff{min: acquireBackoffMin, max: acquireBackoffMax}
	failing := false
	for {
		actx, cancel := context.WithTimeout(ctx, p.timeout)
		l, err := p.mgr.AcquireLease(actx, attrs)
		cancel()
		if err == nil {
			if failing {
				p.log.Info("etcd answers again; lease acquired", "endpoints", p.endpoints,
					"lease", l.String())
			}
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !transientEtcdError(err) {
			return nil, err
		}

		if p.retried != nil {
			p.retried.Add(1)
		}
		wait := bo.next()
		if !failing {
			p.log.Warn("cannot acquire a lease: etcd does not answer; retrying",
				"endpoints", p.endpoints, "err", err, "in", wait)
			if p.status != nil {
				p.status("acquiring a lease: etcd at " + p.endpoints + " does not answer; " +
					"retrying")
			}
			failing = true
		} else {
			p.log.Debug("acquiring a lease failed; retrying", "err", err, "in", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// UpdateLeaseAttrs is subnet.Manager.UpdateLeaseAttrs.
func (p *patientLeases) UpdateLeaseAttrs(ctx context.Context, attrs subnet.LeaseAttrs) error {
	return p.mgr.UpdateLeaseAttrs(ctx, attrs)
}

// transientEtcdError reports whether err means that etcd could not answer (yet): a
// request that ran out of time, a connection that is down or broke, a cluster without a
// leader or busy electing one, a server asking to slow down. Anything else is etcd's
// (or the registry's) answer, which asking again does not change.
func transientEtcdError(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return transientCode(ee.Code())
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return transientCode(s.Code())
	}
	return false
}

func transientCode(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// joinEndpoints names etcd's endpoints for the log.
func joinEndpoints(eps []string) string { return strings.Join(eps, ",") }

// backoff yields waits from min, doubling up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}
