package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// flow returns n consecutive segments of mss payload bytes each (the last one short by
// short bytes), as a sender's kernel would cut them.
func flow(s tcpSpec, n, mss, short int) [][]byte {
	s.payload = pattern(n*mss-short, byte(s.sport))
	return refSegmentsTCP(s, mss)
}

// written is what reaches the kernel for one item: the virtio-net header and the bytes.
type written struct {
	hdr VirtioNetHdr
	pkt []byte
}

func drain(c *Coalescer) []written {
	var out []written
	for i := 0; i < c.Len(); i++ {
		h, parts := c.Item(i)
		out = append(out, written{hdr: h, pkt: bytes.Join(parts, nil)})
	}
	c.Reset()
	return out
}

// resegment does what the kernel does with a merged item on its way to a receiver that
// wants plain packets: finish nothing, cut it at GSOSize.
func resegment(t *testing.T, w written) [][]byte {
	t.Helper()
	if w.hdr.GSOType == GSONone {
		return [][]byte{w.pkt}
	}
	if w.hdr.GSOType != GSOTCPv4 || w.hdr.Flags != VirtioNeedsCsum ||
		w.hdr.CsumStart != 20 || w.hdr.CsumOffset != 16 {
		t.Fatalf("merged item has header %+v", w.hdr)
	}
	if CheckIPv4(w.pkt) != NoDefect || !ipv4Valid(w.pkt) {
		t.Fatalf("merged item is not sound IPv4 with a valid header checksum")
	}
	pseudo := PseudoHeaderSum(ProtoTCP, w.pkt[12:16], w.pkt[16:20], len(w.pkt)-20)
	if got := binary.BigEndian.Uint16(w.pkt[36:]); got != pseudo {
		t.Fatalf("merged item's checksum field %#04x, want the pseudo-header sum %#04x", got, pseudo)
	}
	if int(w.hdr.HdrLen) != 20+int(w.pkt[32]>>4)*4 {
		t.Fatalf("HdrLen %d for a %d-byte TCP header", w.hdr.HdrLen, int(w.pkt[32]>>4)*4)
	}
	hdrs := make([]byte, 64*80)
	sp, err := SplitTCP4(w.pkt, int(w.hdr.GSOSize), hdrs)
	if err != nil {
		t.Fatal(err)
	}
	var segs [][]byte
	for i := 0; i < sp.N; i++ {
		segs = append(segs, join(sp, w.pkt, hdrs, i))
	}
	return segs
}

func TestCoalesce(t *testing.T) {
	a := defaultSpec()
	b := defaultSpec()
	b.sport = 40001
	b.seq = 555
	reverse := defaultSpec()
	reverse.src, reverse.dst = a.dst, a.src
	reverse.sport, reverse.dport = a.dport, a.sport

	pshLast := func(segs [][]byte) [][]byte {
		last := segs[len(segs)-1]
		s := defaultSpec()
		s.seq = binary.BigEndian.Uint32(last[24:])
		s.id = binary.BigEndian.Uint16(last[4:])
		s.flags = tcpACK | tcpPSH
		s.payload = last[40:]
		segs[len(segs)-1] = makeTCP(s)
		return segs
	}

	// after returns a's spec moved on by seq bytes and ids packets.
	after := func(seq uint32, ids uint16) tcpSpec {
		s := a
		s.seq += seq
		s.id += ids
		return s
	}

	tests := map[string]struct {
		in    [][]byte
		items []int // segments per item, in order
		// trustedItems, when set, are the items of a Coalescer that trusts checksums.
		trustedItems []int
	}{
		"one flow": {
			in:    flow(a, 10, 1400, 0),
			items: []int{10},
		},
		"short last closes": {
			in:    append(flow(a, 3, 1400, 400), flow(after(3*1400-400, 3), 2, 1400, 0)...),
			items: []int{3, 2},
		},
		"PSH closes": {
			in:    append(pshLast(flow(a, 4, 1000, 0)), flow(after(4000, 4), 2, 1000, 0)...),
			items: []int{4, 2},
		},
		"two flows interleaved": {
			in: func() [][]byte {
				fa, fb := flow(a, 5, 1400, 0), flow(b, 5, 1400, 0)
				var out [][]byte
				for i := range fa {
					out = append(out, fa[i], fb[i])
				}
				return out
			}(),
			items: []int{5, 5},
		},
		"gap in sequence": {
			in:    append(flow(a, 3, 1000, 0), flow(after(4000, 3), 3, 1000, 0)...),
			items: []int{3, 3},
		},
		"pure ACK passes and cuts the flow": {
			in: func() [][]byte {
				segs := flow(a, 4, 1000, 0)
				ack := makeTCP(a)
				return [][]byte{segs[0], segs[1], ack, segs[2], segs[3]}
			}(),
			items: []int{2, 1, 2},
		},
		"other direction does not cut": {
			in: func() [][]byte {
				segs := flow(a, 4, 1000, 0)
				return [][]byte{segs[0], segs[1], makeTCP(reverse), segs[2], segs[3]}
			}(),
			items: []int{4, 1},
		},
		"window change": {
			in: func() [][]byte {
				segs := flow(a, 2, 1000, 0)
				s := a
				s.seq += 2000
				s.id += 2
				s.window++
				s.payload = pattern(1000, 1)
				return append(segs, makeTCP(s))
			}(),
			items: []int{2, 1},
		},
		"bad checksum is not merged": {
			in: func() [][]byte {
				segs := flow(a, 3, 1000, 0)
				segs[1][100] ^= 0xff
				return segs
			}(),
			items:        []int{1, 1, 1},
			trustedItems: []int{3},
		},
		"UDP passes through": {
			in: [][]byte{
				makeUDP(a.src, a.dst, 1, pattern(100, 1)),
				makeUDP(a.src, a.dst, 2, pattern(100, 2)),
			},
			items: []int{1, 1},
		},
		"SYN is not merged": {
			in: func() [][]byte {
				s := a
				s.flags = tcpSYN | tcpACK
				s.payload = pattern(10, 1)
				return [][]byte{makeTCP(s), makeTCP(s)}
			}(),
			items: []int{1, 1},
		},
		"at most 64 segments": {
			in:    flow(a, 70, 900, 0),
			items: []int{64, 6},
		},
		"65535 bytes at most": {
			in:    flow(a, 50, 1400, 0),
			items: []int{46, 4},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			checkCoalesce(t, NewCoalescer(128), tt.in, tt.items, true)
		})
		t.Run(name+"/trusted", func(t *testing.T) {
			c := NewCoalescer(128)
			c.TrustChecksums()
			if tt.trustedItems != nil {
				// The merged packet's checksum is computed afresh, so the bytes
				// cannot come back as they went in.
				checkCoalesce(t, c, tt.in, tt.trustedItems, false)
				return
			}
			checkCoalesce(t, c, tt.in, tt.items, true)
		})
	}
}

// checkCoalesce adds copies of in to c and checks that the items hold the numbers of
// segments in items and, with same, that cutting them up again gives back what came in.
func checkCoalesce(t *testing.T, c *Coalescer, in [][]byte, items []int, same bool) {
	t.Helper()
	var want [][]byte
	for _, p := range in {
		want = append(want, p)
		c.Add(bytes.Clone(p))
	}
	out := drain(c)

	var counts []int
	var got [][]byte
	for _, w := range out {
		segs := resegment(t, w)
		counts = append(counts, len(segs))
		got = append(got, segs...)
	}
	if !equalInts(counts, items) {
		t.Errorf("items of %v segments, want %v", counts, items)
	}
	// The kernel's cut must give back exactly what came in, in per-flow order.
	if same && (!sameMultiset(got, want) || !samePerFlowOrder(got, want)) {
		t.Errorf("resegmented output differs from the input")
	}
}

func TestCoalesceZeroAlloc(t *testing.T) {
	in := flow(defaultSpec(), 40, 1400, 0)
	c := NewCoalescer(64)
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range in {
			c.Add(p)
		}
		for i := 0; i < c.Len(); i++ {
			c.Item(i)
		}
		c.Reset()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameMultiset(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && bytes.Equal(x, y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// samePerFlowOrder reports whether the packets of each flow (addresses and ports) come in
// the same order in a and b.
func samePerFlowOrder(a, b [][]byte) bool {
	byFlow := func(ps [][]byte) map[string][][]byte {
		m := map[string][][]byte{}
		for _, p := range ps {
			k := string(p[12:24])
			m[k] = append(m[k], p)
		}
		return m
	}
	fa, fb := byFlow(a), byFlow(b)
	for k, pa := range fa {
		pb := fb[k]
		if len(pa) != len(pb) {
			return false
		}
		for i := range pa {
			if !bytes.Equal(pa[i], pb[i]) {
				return false
			}
		}
	}
	return true
}
