package overlay

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
)

// tapHandler passes every log record on to the daemon's handler and counts some of them
// for the metrics: warnings and errors by subsystem, with the failed kernel calls they
// report, and the events of the lease manager and the registry that have no other way
// out of package subnet (renewals, renewal failures, lease losses, watch restarts).
//
// TODO: subnet.Manager and subnet.Registry expose no counters, so renewals and watch
// restarts are recognised by the messages those packages log. A reworded message
// silently stops its counter; TestTapCountsSubnetEvents runs the real manager and
// registry against etcd and fails when that happens. Counters in package subnet would
// make this handler a plain pass-through.
type tapHandler struct {
	next slog.Handler
	m    *Metrics
	// subsystem is the value of the last "subsystem" attribute added with WithAttrs.
	subsystem string
}

// tapEvent maps a message of one subsystem to the counter it increments. prefix matches
// the start of the message.
type tapEvent struct {
	subsystem, prefix string
	counter           func(*Metrics) *atomic.Uint64
}

var tapEvents = []tapEvent{
	{"lease", "lease renewed", func(m *Metrics) *atomic.Uint64 { return &m.renewals }},
	{"lease", "renewing the lease failed",
		func(m *Metrics) *atomic.Uint64 { return &m.renewalFailures }},
	{"lease", "lease lost", func(m *Metrics) *atomic.Uint64 { return &m.leaseLosses }},
	{"lease", "watching the own lease failed",
		func(m *Metrics) *atomic.Uint64 { return &m.ownWatchErrors }},
	{"registry", "watching leases failed",
		func(m *Metrics) *atomic.Uint64 { return &m.watchErrors }},
	{"registry", "listing leases failed",
		func(m *Metrics) *atomic.Uint64 { return &m.watchErrors }},
	{"registry", "the lease watch fell behind an etcd compaction",
		func(m *Metrics) *atomic.Uint64 { return &m.watchCompacted }},
}

// tapAlways are the subsystems whose records are counted at every level: the registry
// and the lease manager log repeated watch failures at Debug.
var tapAlways = map[string]bool{"lease": true, "registry": true}

// kernelSubsystems are the subsystems whose failed kernel calls are counted.
var kernelSubsystems = map[string]bool{"backend": true, "rules": true, "bridge": true}

func newTapHandler(next slog.Handler, m *Metrics) *tapHandler {
	return &tapHandler{next: next, m: m}
}

// Enabled reports whether a record of level l is wanted: by the daemon's handler, or by
// the counters.
func (h *tapHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return tapAlways[h.subsystem] || l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// Handle counts r and passes it on if the daemon's handler wants it.
func (h *tapHandler) Handle(ctx context.Context, r slog.Record) error {
	h.observe(r)
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs, remembering the subsystem they name.
func (h *tapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "subsystem" {
			c.subsystem = a.Value.String()
		}
	}
	return &c
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *tapHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

func (h *tapHandler) observe(r slog.Record) {
	sub := h.subsystem
	var err error
	var errText string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "subsystem":
			sub = a.Value.String()
		case "err", "error":
			v := a.Value.Resolve()
			errText = v.String()
			if e, ok := v.Any().(error); ok && v.Kind() == slog.KindAny {
				err = e
			}
		}
		return true
	})

	for _, ev := range tapEvents {
		if ev.subsystem == sub && strings.HasPrefix(r.Message, ev.prefix) {
			ev.counter(h.m).Add(1)
		}
	}
	if r.Level < slog.LevelWarn {
		return
	}
	n := 0
	if kernelSubsystems[sub] {
		n = countErrnos(err)
	}
	h.m.noteLog(LogEntry{
		Time:      r.Time,
		Level:     strings.ToLower(r.Level.String()),
		Subsystem: sub,
		Message:   r.Message,
		Err:       errText,
	}, n)
}

// countErrnos returns how many errnos err holds, through every wrap and join: each is
// one kernel call that failed.
func countErrnos(err error) int {
	switch e := err.(type) {
	case nil:
		return 0
	case syscall.Errno:
		return 1
	case interface{ Unwrap() []error }:
		n := 0
		for _, inner := range e.Unwrap() {
			n += countErrnos(inner)
		}
		return n
	case interface{ Unwrap() error }:
		return countErrnos(e.Unwrap())
	}
	return 0
}
