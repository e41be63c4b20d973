package netlab

import (
	"net/netip"
	"slices"
	"time"
)

// PingResult is what a run of echo requests from one namespace to one address achieved.
type PingResult struct {
	// Src names the namespace the requests came from.
	Src string
	Dst netip.Addr

	Sent     int
	Received int
	// RTTs holds one entry per request sent, in order: the round-trip time, or 0 for a
	// request whose reply did not come.
	RTTs []time.Duration
	// Lost lists the indexes into RTTs of the requests without a reply, in order.
	Lost []int
	// Err is the error of one lost request, to say why; nil when nothing was lost.
	Err error
}

// OK reports whether at least one request was sent and every one was answered.
func (r PingResult) OK() bool { return r.Sent > 0 && r.Received == r.Sent }

// received returns the round-trip times of the answered requests, sorted.
func (r PingResult) received() []time.Duration {
	var out []time.Duration
	for i, d := range r.RTTs {
		if !slices.Contains(r.Lost, i) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// Min returns the shortest round-trip time, 0 when nothing was answered.
func (r PingResult) Min() time.Duration {
	if rtts := r.received(); len(rtts) > 0 {
		return rtts[0]
	}
	return 0
}

// Median returns the median round-trip time (the lower middle one of an even count), 0
// when nothing was answered.
func (r PingResult) Median() time.Duration {
	if rtts := r.received(); len(rtts) > 0 {
		return rtts[(len(rtts)-1)/2]
	}
	return 0
}

// Max returns the longest round-trip time, 0 when nothing was answered.
func (r PingResult) Max() time.Duration {
	if rtts := r.received(); len(rtts) > 0 {
		return rtts[len(rtts)-1]
	}
	return 0
}
