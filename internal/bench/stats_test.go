package bench

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{name: "empty", xs: nil, want: 0},
		{name: "one", xs: []float64{3}, want: 3},
		{name: "odd unsorted", xs: []float64{9, 1, 5}, want: 5},
		{name: "even takes the mean of the middle two", xs: []float64{4, 1, 3, 10}, want: 3.5},
		{name: "repeated values", xs: []float64{2, 2, 2, 7}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.xs)
			if got := Median(tt.xs); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
			}
			if !slices.Equal(in, tt.xs) {
				t.Errorf("Median reordered its input to %v", tt.xs)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	// 1..100 us, shuffled: the nearest rank of p is p us.
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration((i*37)%100+1)*time.Microsecond)
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{name: "p50 of 100", ds: ds, p: 50, want: 50 * time.Microsecond},
		{name: "p99 of 100", ds: ds, p: 99, want: 99 * time.Microsecond},
		{name: "p100 is the maximum", ds: ds, p: 100, want: 100 * time.Microsecond},
		{name: "tiny p is the minimum", ds: ds, p: 0.001, want: time.Microsecond},
		{name: "p99 of 3 is the largest", ds: []time.Duration{3, 1, 2}, p: 99, want: 3},
		{name: "p50 of 4 is the lower middle", ds: []time.Duration{4, 1, 3, 2}, p: 50, want: 2},
		{name: "empty", ds: nil, p: 50, want: 0},
		{name: "p 0 is out of range", ds: ds, p: 0, want: 0},
		{name: "p above 100 is out of range", ds: ds, p: 101, want: 0},
		{name: "NaN is out of range", ds: ds, p: math.NaN(), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestRatioAndSpread(t *testing.T) {
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{name: "ratio", got: Ratio(3, 4), want: 0.75},
		{name: "ratio to zero", got: Ratio(3, 0), want: 0},
		{name: "ratio to negative", got: Ratio(3, -1), want: 0},
		{name: "ratio to NaN", got: Ratio(3, math.NaN()), want: 0},
		{name: "spread of one", got: Spread([]float64{5}), want: 0},
		{name: "spread", got: Spread([]float64{9, 10, 11}), want: 0.2},
		{name: "spread around a zero median", got: Spread([]float64{-1, 0, 1}), want: 0},
		{name: "micros", got: Micros(1500 * time.Nanosecond), want: 1.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if math.Abs(tt.got-tt.want) > 1e-12 {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParseStreams(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr string
	}{
		{name: "one", in: "1", want: []int{1}},
		{name: "order kept", in: "4, 1,8", want: []int{4, 1, 8}},
		{name: "zero", in: "0", wantErr: `stream count "0"`},
		{name: "too many", in: "1,65", wantErr: `stream count "65"`},
		{name: "not a number", in: "1,x", wantErr: `stream count "x"`},
		{name: "empty item", in: "1,,4", wantErr: `stream count ""`},
		{name: "empty", in: "", wantErr: `stream count ""`},
		{name: "twice", in: "4,1,4", wantErr: "stream count 4 is in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStreams(tt.in)
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseStreams(%q) = %v, %v; want an error with %q", tt.in, got,
						err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseStreams(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseStreams(f *testing.F) {
	for _, s := range []string{"1,4", "64", "0", "1,1", " 2 ,3", "", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseStreams(s)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParseStreams(%q) accepted no counts", s)
		}
		seen := map[int]bool{}
		for _, n := range got {
			if n < 1 || n > MaxStreams || seen[n] {
				t.Fatalf("ParseStreams(%q) = %v: %d out of range or repeated", s, got, n)
			}
			seen[n] = true
		}
	})
}
