package bench

import (
	"math"
	"slices"
	"time"
)

// Median returns the middle value of xs, or the mean of the two middle values when their
// number is even; 0 when xs is empty. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile returns the p-th percentile (0 < p <= 100) of ds by the nearest-rank method:
// the smallest value that at least p percent of the values do not exceed. It returns 0
// when ds is empty or p is out of range. ds is not changed.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 || !(p > 0 && p <= 100) {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Ratio returns a/b, or 0 when b is not positive: a figure without a reference has no
// ratio.
func Ratio(a, b float64) float64 {
	if !(b > 0) {
		return 0
	}
	return a / b
}

// Spread returns the range of xs relative to their median, (max-min)/median: 0.1 means
// the runs differ by 10 % of their median. It is 0 for fewer than two values or a median
// that is not positive.
func Spread(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	return Ratio(slices.Max(xs)-slices.Min(xs), Median(xs))
}

// Micros returns d in microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
