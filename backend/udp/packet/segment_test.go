package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// refSegmentsTCP cuts a TCP super-packet the long way: each segment built from scratch
// by makeTCP with the reference checksums.
func refSegmentsTCP(s tcpSpec, mss int) [][]byte {
	var out [][]byte
	payload := s.payload
	flags := s.flags
	for i := 0; len(payload) > 0; i++ {
		n := min(mss, len(payload))
		seg := s
		seg.payload = payload[:n]
		seg.seq = s.seq + uint32(i*mss)
		seg.id = s.id + uint16(i)
		seg.flags = flags
		if n < len(payload) {
			seg.flags &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			seg.flags &^= tcpCWR
		}
		out = append(out, makeTCP(seg))
		payload = payload[n:]
	}
	return out
}

// join reassembles segment i of a split.
func join(s Split, pkt, hdrs []byte, i int) []byte {
	return append(bytes.Clone(s.Header(hdrs, i)), s.Payload(pkt, i)...)
}

func TestSplitTCP4(t *testing.T) {
	tests := map[string]struct {
		payload int
		mss     int
		flags   uint8
		options []byte
		odd     bool
	}{
		"even cut":    {payload: 4 * 1400, mss: 1400, flags: tcpACK | tcpPSH},
		"short last":  {payload: 65000, mss: 1432, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR},
		"one segment": {payload: 100, mss: 1432, flags: tcpACK},
		"timestamps": {payload: 10000, mss: 1420, flags: tcpACK,
			options: []byte{1, 1, 8, 10, 0, 0, 1, 2, 0, 0, 3, 4}},
		"odd segment size":      {payload: 5001, mss: 999, flags: tcpACK | tcpPSH},
		"one byte per segment":  {payload: 7, mss: 1, flags: tcpACK | tcpFIN},
		"ECN sender, CWR first": {payload: 3000, mss: 1000, flags: tcpACK | tcpCWR | tcpECE},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := defaultSpec()
			s.flags = tt.flags
			s.options = tt.options
			s.payload = pattern(tt.payload, 5)
			s.id = 0xfffe // the IP ID wraps inside the split
			s.seq = 0xffffff00
			super := makeTCP(s)
			// As the kernel hands it over: checksum to finish, which the split ignores.
			binary.BigEndian.PutUint16(super[36:], 0x1234)
			before := bytes.Clone(super)

			hdrs := make([]byte, 64*80)
			sp, err := SplitTCP4(super, tt.mss, hdrs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(super, before) {
				t.Errorf("SplitTCP4 changed the super-packet")
			}

			want := refSegmentsTCP(s, tt.mss)
			if sp.N != len(want) {
				t.Fatalf("%d segments, want %d", sp.N, len(want))
			}
			for i := range want {
				got := join(sp, super, hdrs, i)
				if !bytes.Equal(got, want[i]) {
					t.Errorf("segment %d:\n got %x\nwant %x", i, got[:60], want[i][:60])
				}
				if sp.SegmentLen(i) != len(want[i]) {
					t.Errorf("SegmentLen(%d) = %d, want %d", i, sp.SegmentLen(i), len(want[i]))
				}
				assertValid(t, "segment", got)
			}
		})
	}
}

func TestSplitTCP4Rejects(t *testing.T) {
	s := defaultSpec()
	s.payload = pattern(3000, 1)
	good := makeTCP(s)
	with := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	setByte := func(i int, v byte) []byte {
		return with(func(p []byte) []byte { p[i] = v; return p })
	}

	tests := map[string]struct {
		pkt  []byte
		mss  int
		hdrs int
	}{
		"UDP":             {pkt: makeUDP(s.src, s.dst, 1, pattern(100, 1)), mss: 1000, hdrs: 4000},
		"fragment":        {pkt: setByte(6, 0x60), mss: 1000, hdrs: 4000},
		"zero MSS":        {pkt: good, mss: 0, hdrs: 4000},
		"no payload":      {pkt: makeTCP(defaultSpec()), mss: 1000, hdrs: 4000},
		"data offset 4":   {pkt: setByte(32, 0x40), mss: 1000, hdrs: 4000},
		"data offset big": {pkt: setByte(32, 0xf0)[:60], mss: 1000, hdrs: 4000},
		"no room":         {pkt: good, mss: 10, hdrs: 4000},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if tt.pkt[0]>>4 == 4 {
				binary.BigEndian.PutUint16(tt.pkt[2:], uint16(len(tt.pkt)))
			}
			if _, err := SplitTCP4(tt.pkt, tt.mss, make([]byte, tt.hdrs)); err == nil {
				t.Errorf("SplitTCP4 accepted it")
			}
		})
	}
}

func TestSplitUDP4(t *testing.T) {
	src, dst := [4]byte{198, 19, 1, 2}, [4]byte{198, 19, 2, 2}
	payload := pattern(3*1200+17, 3)
	super := makeUDP(src, dst, 0xffff, payload)
	hdrs := make([]byte, 64*28)

	sp, err := SplitUDP4(super, 1200, hdrs)
	if err != nil {
		t.Fatal(err)
	}
	if sp.N != 4 {
		t.Fatalf("%d datagrams, want 4", sp.N)
	}
	for i := 0; i < sp.N; i++ {
		got := join(sp, super, hdrs, i)
		chunk := payload[i*1200 : min((i+1)*1200, len(payload))]
		want := makeUDP(src, dst, 0xffff+uint16(i), chunk)
		if !bytes.Equal(got, want) {
			t.Errorf("datagram %d:\n got %x\nwant %x", i, got[:28], want[:28])
		}
	}

	if _, err := SplitUDP4(makeTCP(defaultSpec()), 1200, hdrs); err == nil {
		t.Errorf("SplitUDP4 accepted a TCP packet")
	}
}
