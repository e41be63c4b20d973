package logbuf

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

func TestLinesAndCount(t *testing.T) {
	var b Buffer
	fmt.Fprint(&b, "alpha one\n\nbeta one\nalpha two")
	if got := b.Lines("alpha"); !slices.Equal(got, []string{"alpha one", "alpha two"}) {
		t.Errorf("Lines(alpha) = %q", got)
	}
	if got := b.Lines("one", "beta"); !slices.Equal(got, []string{"beta one"}) {
		t.Errorf("Lines(one, beta) = %q", got)
	}
	if n := b.Count(); n != 3 {
		t.Errorf("Count() = %d, want 3: the empty line is not one", n)
	}
	if n := b.Count("gamma"); n != 0 {
		t.Errorf("Count(gamma) = %d", n)
	}
}

// TestConcurrentWrites writes from many goroutines, as slog handlers do, while reading;
// run with -race it finds a missing lock.
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.Info("step", "writer", i, "n", j)
				_ = b.Count("step")
			}
		})
	}
	wg.Wait()
	if n := b.Count("msg=step"); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}
