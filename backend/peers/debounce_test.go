package peers

import (
	"testing"
	"time"
)

func TestDebounce(t *testing.T) {
	const ms = time.Millisecond
	start := time.Unix(1000, 0)
	tests := []struct {
		name string
		// signals are the times of the signals, from start; reset marks a repair done
		// after the signal at that position.
		signals []time.Duration
		reset   int
		// want is the wait each signal returns.
		want []time.Duration
	}{
		{
			name:    "one signal waits the quiet time",
			signals: []time.Duration{0},
			reset:   -1,
			want:    []time.Duration{100 * ms},
		},
		{
			name:    "each signal of a burst pushes the repair back",
			signals: []time.Duration{0, 30 * ms, 90 * ms},
			reset:   -1,
			want:    []time.Duration{100 * ms, 100 * ms, 100 * ms},
		},
		{
			name:    "a burst that never ends is repaired at the limit",
			signals: []time.Duration{0, 500 * ms, 950 * ms, 1000 * ms, 1200 * ms},
			reset:   -1,
			want:    []time.Duration{100 * ms, 100 * ms, 50 * ms, 0, 0},
		},
		{
			name:    "after a repair the limit counts from the next signal",
			signals: []time.Duration{0, 2000 * ms, 2950 * ms},
			reset:   0,
			want:    []time.Duration{100 * ms, 100 * ms, 50 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := debounce{quiet: 100 * ms, limit: 1000 * ms}
			for i, at := range tt.signals {
				if got := d.signal(start.Add(at)); got != tt.want[i] {
					t.Errorf("signal %d at %s: wait %s, want %s", i, at, got, tt.want[i])
				}
				if i == tt.reset {
					d.reset()
				}
			}
		})
	}
}
