package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 1100; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		initial := uint16(r.Uint32())

		want := refChecksum(append([]byte{byte(initial >> 8), byte(initial)}, b...))
		if got := Checksum(b, initial); got != want {
			t.Fatalf("len %d initial %#04x: Checksum = %#04x, reference %#04x",
				n, initial, got, want)
		}
	}
}

func TestChecksumAllOnes(t *testing.T) {
	// 0xffff words exercise every carry; a sum of them stays 0xffff.
	b := bytes.Repeat([]byte{0xff}, 1501)
	if got, want := Checksum(b, 0xffff), refChecksum(append([]byte{0xff, 0xff}, b...)); got != want {
		t.Errorf("Checksum of 0xff bytes = %#04x, reference %#04x", got, want)
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	src, dst := []byte{198, 19, 1, 2}, []byte{198, 19, 200, 9}
	ref := []byte{198, 19, 1, 2, 198, 19, 200, 9, 0, ProtoTCP, 0x05, 0xb4}
	if got, want := PseudoHeaderSum(ProtoTCP, src, dst, 1460), refChecksum(ref); got != want {
		t.Errorf("PseudoHeaderSum = %#04x, reference %#04x", got, want)
	}
}

func TestCheckIPv4(t *testing.T) {
	good := makeTCP(defaultSpec())
	mutate := func(f func(p []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	// setByte returns good with byte i set to v.
	setByte := func(i int, v byte) []byte {
		return mutate(func(p []byte) []byte { p[i] = v; return p })
	}
	tests := map[string]struct {
		pkt  []byte
		want Defect
	}{
		"sound":            {pkt: good, want: NoDefect},
		"empty":            {pkt: nil, want: TooShort},
		"19 bytes":         {pkt: good[:19], want: TooShort},
		"IPv6":             {pkt: setByte(0, 0x60), want: NotIPv4},
		"IHL 4":            {pkt: setByte(0, 0x44), want: BadHeaderLen},
		"IHL past the end": {pkt: setByte(0, 0x4f)[:44], want: BadTotalLen},
		"truncated":        {pkt: good[:len(good)-1], want: BadTotalLen},
		"trailing bytes":   {pkt: append(bytes.Clone(good), 0), want: BadTotalLen},
		"total length zero": {pkt: mutate(func(p []byte) []byte { p[2], p[3] = 0, 0; return p }),
			want: BadTotalLen},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := CheckIPv4(tt.pkt); got != tt.want {
				t.Errorf("CheckIPv4 = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("IHL past a short packet", func(t *testing.T) {
		p := make([]byte, 40)
		p[0] = 0x4f // 60-byte header in a 40-byte packet
		binary.BigEndian.PutUint16(p[2:], 40)
		if got := CheckIPv4(p); got != BadHeaderLen {
			t.Errorf("CheckIPv4 = %v, want %v", got, BadHeaderLen)
		}
	})
}

func TestDecrementTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		s := defaultSpec()
		s.ttl = uint8(r.Uint32())
		s.id = uint16(r.Uint32())
		s.tos = uint8(r.Uint32())
		s.src = [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		s.dst = [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		p := makeTCP(s)
		orig := bytes.Clone(p)

		ok := DecrementTTL(p)
		if s.ttl <= 1 {
			if ok || !bytes.Equal(p, orig) {
				t.Fatalf("TTL %d: DecrementTTL = %v and changed the packet; want false, untouched",
					s.ttl, ok)
			}
			continue
		}
		if !ok || p[8] != s.ttl-1 {
			t.Fatalf("TTL %d: DecrementTTL = %v, TTL now %d", s.ttl, ok, p[8])
		}

		// The incremental fix must equal a checksum computed afresh.
		fresh := bytes.Clone(p[:20])
		fresh[10], fresh[11] = 0, 0
		want := ^refChecksum(fresh)
		if got := binary.BigEndian.Uint16(p[10:]); got != want {
			t.Fatalf("TTL %d, header %x: checksum %#04x after decrement, fresh %#04x",
				s.ttl, orig[:20], got, want)
		}
	}
}

func TestICMPError(t *testing.T) {
	src := [4]byte{198, 19, 1, 0}
	tests := map[string]struct {
		orig      []byte
		typ, code uint8
		quoted    int
	}{
		"net unreachable for TCP": {
			orig: makeTCP(func() tcpSpec { s := defaultSpec(); s.payload = pattern(100, 1); return s }()),
			typ:  ICMPDestUnreachable, code: CodeNetUnreachable, quoted: 28,
		},
		"time exceeded for UDP": {
			orig: makeUDP([4]byte{198, 19, 3, 4}, [4]byte{198, 19, 9, 9}, 7, pattern(30, 2)),
			typ:  ICMPTimeExceeded, code: CodeTTLExceeded, quoted: 28,
		},
		"short original quoted whole": {
			orig: makeUDP([4]byte{198, 19, 3, 4}, [4]byte{198, 19, 9, 9}, 7, nil),
			typ:  ICMPTimeExceeded, code: CodeTTLExceeded, quoted: 28,
		},
		"header only": {
			orig: func() []byte {
				p := makeUDP([4]byte{198, 19, 3, 4}, [4]byte{198, 19, 9, 9}, 7, nil)[:20]
				binary.BigEndian.PutUint16(p[2:], 20)
				return p
			}(),
			typ: ICMPDestUnreachable, code: CodeNetUnreachable, quoted: 20,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, 0, ICMPErrorMaxLen)
			m := AppendICMPError(buf, tt.typ, tt.code, src, tt.orig)

			if d := CheckIPv4(m); d != NoDefect {
				t.Fatalf("ICMP error is not sound IPv4: %v", d)
			}
			if !ipv4Valid(m) {
				t.Errorf("IPv4 header checksum is wrong")
			}
			if refChecksum(m[20:]) != 0xffff {
				t.Errorf("ICMP checksum is wrong")
			}
			if Proto(m) != ProtoICMP || m[20] != tt.typ || m[21] != tt.code {
				t.Errorf("protocol %d type %d code %d, want 1 %d %d",
					Proto(m), m[20], m[21], tt.typ, tt.code)
			}
			if !bytes.Equal(m[12:16], src[:]) || !bytes.Equal(m[16:20], tt.orig[12:16]) {
				t.Errorf("ICMP goes %v -> %v, want %v -> %v", m[12:16], m[16:20], src, tt.orig[12:16])
			}
			if got := m[28:]; !bytes.Equal(got, tt.orig[:tt.quoted]) {
				t.Errorf("quoted %x, want the first %d bytes of the original %x",
					got, tt.quoted, tt.orig[:tt.quoted])
			}
			if m[8] != 64 || m[1] != 0xc0 {
				t.Errorf("TTL %d TOS %#x, want 64 0xc0", m[8], m[1])
			}
			if cap(m) != cap(buf) {
				t.Errorf("AppendICMPError grew a buffer of capacity ICMPErrorMaxLen")
			}
		})
	}
}

func TestWantsICMPError(t *testing.T) {
	tcp := makeTCP(defaultSpec())
	icmp := func(typ uint8) []byte {
		p := bytes.Clone(tcp)
		p[9] = ProtoICMP
		p[20] = typ
		return p
	}
	with := func(f func(p []byte)) []byte {
		p := bytes.Clone(tcp)
		f(p)
		return p
	}
	tests := map[string]struct {
		pkt  []byte
		want bool
	}{
		"TCP":               {pkt: tcp, want: true},
		"echo request":      {pkt: icmp(8), want: true},
		"echo reply":        {pkt: icmp(0), want: true},
		"unreachable":       {pkt: icmp(3), want: false},
		"time exceeded":     {pkt: icmp(11), want: false},
		"redirect":          {pkt: icmp(5), want: false},
		"parameter problem": {pkt: icmp(12), want: false},
		"first fragment":    {pkt: with(func(p []byte) { p[6] = 0x20 }), want: true},
		"later fragment":    {pkt: with(func(p []byte) { p[7] = 0x10 }), want: false},
		"source 0.0.0.0":    {pkt: with(func(p []byte) { clear(p[12:16]) }), want: false},
		"source loopback":   {pkt: with(func(p []byte) { p[12] = 127 }), want: false},
		"source multicast":  {pkt: with(func(p []byte) { p[12] = 224 }), want: false},
		"destination broadcast": {pkt: with(func(p []byte) { copy(p[16:], []byte{255, 255, 255, 255}) }),
			want: false},
		"destination multicast": {pkt: with(func(p []byte) { p[16] = 239 }), want: false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := WantsICMPError(tt.pkt); got != tt.want {
				t.Errorf("WantsICMPError = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{Flags: VirtioNeedsCsum, GSOType: GSOTCPv4 | GSOECN, HdrLen: 52,
		GSOSize: 1420, CsumStart: 20, CsumOffset: 16}
	b := make([]byte, VirtioNetHdrLen)
	h.Encode(b)
	got, err := DecodeVirtioNetHdr(b)
	if err != nil || got != h {
		t.Errorf("decoded %+v, %v; want %+v", got, err, h)
	}
	if _, err := DecodeVirtioNetHdr(b[:9]); err == nil {
		t.Errorf("a 9-byte header decoded without error")
	}
}

func TestFinishChecksum(t *testing.T) {
	p := makeUDP([4]byte{198, 19, 1, 2}, [4]byte{198, 19, 2, 2}, 1, pattern(333, 9))
	want := bytes.Clone(p)

	// What the kernel hands over: the pseudo-header sum in the field.
	binary.BigEndian.PutUint16(p[26:], PseudoHeaderSum(ProtoUDP, p[12:16], p[16:20], len(p)-20))
	if err := FinishChecksum(p, 20, 6); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want) {
		t.Errorf("finished checksum %x, want %x", p[26:28], want[26:28])
	}

	for _, at := range [][2]int{{-1, 6}, {20, -1}, {len(p) - 1, 0}, {20, len(p)}} {
		if err := FinishChecksum(p, at[0], at[1]); err == nil {
			t.Errorf("FinishChecksum at %d+%d of %d bytes: no error", at[0], at[1], len(p))
		}
	}
}

func TestHeadersLen(t *testing.T) {
	s := defaultSpec()
	s.options = []byte{1, 1, 1, 1}
	s.payload = pattern(10, 1)
	tcp := makeTCP(s)
	udp := makeUDP(s.src, s.dst, 1, pattern(10, 1))
	short := bytes.Clone(tcp[:30])
	binary.BigEndian.PutUint16(short[2:], 30)
	icmp := bytes.Clone(udp)
	icmp[9] = ProtoICMP

	tests := map[string]struct {
		pkt  []byte
		want int
	}{
		"TCP with options": {pkt: tcp, want: 44},
		"UDP":              {pkt: udp, want: 28},
		"TCP cut short":    {pkt: short, want: 0},
		"ICMP":             {pkt: icmp, want: 0},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := HeadersLen(tt.pkt); got != tt.want {
				t.Errorf("HeadersLen = %d, want %d", got, tt.want)
			}
		})
	}
}
