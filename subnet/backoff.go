package subnet

import (
	"context"
	"time"
)

// backoff yields exponentially growing waits from min to max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns the wait before the next attempt: min first, then doubling up to max.
func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

// reset starts the sequence again from min, after a success.
func (b *backoff) reset() { b.cur = 0 }

// sleep waits for d or until ctx is done, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
