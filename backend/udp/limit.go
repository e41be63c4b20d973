package udp

import "time"

// icmpLimiter keeps the ICMP errors one worker generates to a steady rate with a short
// burst, so that a flood of undeliverable packets does not become a flood of errors (RFC
// 1812, 4.3.2.8). It belongs to one goroutine.
type icmpLimiter struct {
	tokens float64
	last   time.Time
}

const (
	icmpPerSecond = 1000
	icmpBurst     = 50
)

// allow reports whether an error may be sent at now, taking a token when it may.
func (l *icmpLimiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = icmpBurst
	} else {
		l.tokens = min(icmpBurst, l.tokens+now.Sub(l.last).Seconds()*icmpPerSecond)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
