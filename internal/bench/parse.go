package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxStreams bounds the number of parallel TCP streams of one run.
const MaxStreams = 64

// ParseStreams reads a comma-separated list of stream counts, like "1,4": each from 1 to
// MaxStreams, none twice. The counts keep their order, which is the order they are run
// and shown in.
func ParseStreams(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxStreams {
			return nil, fmt.Errorf("stream count %q in %q: want a number from 1 to %d", f, s,
				MaxStreams)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("stream count %d is in %q twice", n, s)
		}
		out = append(out, n)
	}
	return out, nil
}
