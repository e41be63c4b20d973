package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzIPv4 feeds arbitrary bytes through what the data path does to a packet from
// outside: the soundness check, the TTL decrement and, when allowed, an ICMP error.
func FuzzIPv4(f *testing.F) {
	f.Add(makeTCP(defaultSpec()))
	f.Add(makeUDP([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, []byte("hello")))
	f.Add([]byte{0x4f, 0, 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckIPv4(b) != NoDefect {
			return
		}
		if len(b) < HeaderLen(b) || HeaderLen(b) < IPv4MinHeaderLen {
			t.Fatalf("CheckIPv4 passed a header length of %d in %d bytes", HeaderLen(b), len(b))
		}
		valid := refChecksum(b[:HeaderLen(b)]) == 0xffff
		ttl := TTL(b)
		if DecrementTTL(b) {
			if TTL(b) != ttl-1 {
				t.Fatalf("TTL %d became %d", ttl, TTL(b))
			}
			if valid && refChecksum(b[:HeaderLen(b)]) != 0xffff {
				t.Fatalf("a valid header checksum broke in the TTL decrement")
			}
		}
		if WantsICMPError(b) {
			m := AppendICMPError(make([]byte, 0, ICMPErrorMaxLen), ICMPTimeExceeded, 0,
				[4]byte{198, 19, 0, 0}, b)
			if CheckIPv4(m) != NoDefect || !ipv4Valid(m) || refChecksum(m[20:]) != 0xffff {
				t.Fatalf("ICMP error %x is not a valid packet", m)
			}
			if len(m) > ICMPErrorMaxLen {
				t.Fatalf("ICMP error of %d bytes exceeds ICMPErrorMaxLen", len(m))
			}
		}
	})
}

// FuzzSplit splits arbitrary TCP and UDP super-packets and checks that the segments are
// valid packets carrying the whole payload in order.
func FuzzSplit(f *testing.F) {
	s := defaultSpec()
	s.payload = pattern(5000, 1)
	f.Add(makeTCP(s), uint16(1400))
	f.Add(makeUDP(s.src, s.dst, 9, pattern(3000, 2)), uint16(1000))
	f.Fuzz(func(t *testing.T, pkt []byte, mss uint16) {
		if len(pkt) >= 4 {
			binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		}
		if CheckIPv4(pkt) != NoDefect {
			return
		}
		before := bytes.Clone(pkt)
		hdrs := make([]byte, 256*80)
		var sp Split
		var err error
		if Proto(pkt) == ProtoUDP {
			sp, err = SplitUDP4(pkt, int(mss), hdrs)
		} else {
			sp, err = SplitTCP4(pkt, int(mss), hdrs)
		}
		if !bytes.Equal(pkt, before) {
			t.Fatalf("the split changed the super-packet")
		}
		if err != nil {
			return
		}

		var payload []byte
		for i := 0; i < sp.N; i++ {
			seg := join(sp, pkt, hdrs, i)
			if len(seg) != sp.SegmentLen(i) {
				t.Fatalf("segment %d is %d bytes, SegmentLen says %d", i, len(seg), sp.SegmentLen(i))
			}
			if i < sp.N-1 && len(seg) != sp.SegmentLen(0) {
				t.Fatalf("segment %d is %d bytes, the first %d", i, len(seg), sp.SegmentLen(0))
			}
			assertValid(t, "segment", seg)
			payload = append(payload, seg[sp.HdrLen:]...)
		}
		if !bytes.Equal(payload, pkt[sp.HdrLen:]) {
			t.Fatalf("segments carry other payload than the super-packet")
		}
	})
}

// FuzzCoalesce builds batches of segments from a few flows, steered by the input (which
// flow, how much payload, which flags, jumps in sequence), and checks that cutting the
// merged items as the kernel would gives back the batch exactly, per flow in order.
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 3, 1, 0, 0, 3, 2, 0, 2, 1, 0, 5, 0, 2, 0, 0})
	f.Add([]byte{0, 3, 1, 0, 0, 3, 2, 0, 2, 1, 0, 5, 0, 2, 0, 0, 1})
	f.Fuzz(func(t *testing.T, steer []byte) {
		specs := [3]tcpSpec{defaultSpec(), defaultSpec(), defaultSpec()}
		specs[1].sport = 40001
		specs[2].src, specs[2].dst = specs[0].dst, specs[0].src
		sizes := [...]int{1400, 1400, 1400, 700, 0, 1, 1399, 1401}
		flagSets := [...]uint8{tcpACK, tcpACK, tcpACK | tcpPSH, tcpACK | tcpECE, tcpACK | tcpFIN,
			tcpSYN, tcpACK | tcpURG, tcpACK}

		c := NewCoalescer(64)
		// An odd-length input runs a Coalescer that trusts checksums, given only
		// segments whose checksums are right, as its contract asks.
		trusted := len(steer)%2 == 1
		if trusted {
			c.TrustChecksums()
		}
		var in [][]byte
		for len(steer) >= 4 && len(in) < 200 {
			s := &specs[int(steer[0])%len(specs)]
			p := *s
			p.payload = pattern(sizes[int(steer[1])%len(sizes)], steer[3])
			p.flags = flagSets[int(steer[2])%len(flagSets)]
			if steer[3]&0x80 != 0 {
				p.seq += uint32(steer[3])
			}
			if steer[3]&0x40 != 0 {
				p.window++
			}
			pkt := makeTCP(p)
			if steer[2]&0x80 != 0 && !trusted {
				pkt[len(pkt)-1] ^= 1 // a bad checksum, or a bad header checksum without payload
			}
			s.seq = p.seq + uint32(len(p.payload))
			s.id++
			in = append(in, bytes.Clone(pkt))
			c.Add(pkt)
			steer = steer[4:]
		}

		var got [][]byte
		for _, w := range drain(c) {
			got = append(got, resegment(t, w)...)
		}
		if !sameMultiset(got, in) || !samePerFlowOrder(got, in) {
			t.Fatalf("resegmented output differs from the input")
		}
	})
}
