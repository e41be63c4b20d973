package packet

import (
	"bytes"
	"testing"
)

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{40, 1432, 65000} {
		buf := pattern(n, 1)
		b.Run(byteSize(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				Checksum(buf, 0)
			}
		})
	}
}

func BenchmarkSplitTCP4(b *testing.B) {
	s := defaultSpec()
	s.options = []byte{1, 1, 8, 10, 0, 0, 1, 2, 0, 0, 3, 4}
	s.payload = pattern(65535-20-32, 1)
	super := makeTCP(s)
	hdrs := make([]byte, 64*80)
	b.SetBytes(int64(len(super)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SplitTCP4(super, 1420, hdrs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCoalesce(b *testing.B) {
	s := defaultSpec()
	s.options = []byte{1, 1, 8, 10, 0, 0, 1, 2, 0, 0, 3, 4}
	s.payload = pattern(44*1420, 1)
	in := refSegmentsTCP(s, 1420)
	work := make([][]byte, len(in))
	for i := range in {
		work[i] = bytes.Clone(in[i])
	}
	c := NewCoalescer(64)
	b.SetBytes(int64(len(s.payload)))
	b.ReportAllocs()
	for b.Loop() {
		// Item rewrites the first packet's header; restore it so each round merges.
		copy(work[0][:52], in[0][:52])
		for _, p := range work {
			c.Add(p)
		}
		for i := 0; i < c.Len(); i++ {
			c.Item(i)
		}
		c.Reset()
	}
}

func BenchmarkDecrementTTL(b *testing.B) {
	p := makeTCP(defaultSpec())
	b.ReportAllocs()
	for b.Loop() {
		p[8] = 64
		DecrementTTL(p)
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1000:
		return string(rune('0'+n/10000%10)) + string(rune('0'+n/1000%10)) + "k"
	default:
		return string(rune('0'+n/10%10)) + string(rune('0'+n%10)) + "B"
	}
}
