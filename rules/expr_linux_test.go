package rules

import (
	"net/netip"
	"testing"

	"github.com/google/nftables/expr"
)

// exprReader turns fuzz bytes into a sequence of the expressions a chain may hold,
// biased towards the shapes weft writes so that the fuzzer reaches deep into the parser.
type exprReader struct{ data []byte }

func (r *exprReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *exprReader) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = r.byte()
	}
	return out
}

func (r *exprReader) exprs(f family) []expr.Any {
	var out []expr.Any
	for len(r.data) > 0 && len(out) < 16 {
		length := uint32(4)
		if f == ipv6 {
			length = 16
		}
		switch r.byte() % 7 {
		case 0:
			out = append(out, &expr.Meta{Key: expr.MetaKey(r.byte() % 4), Register: 1})
		case 1:
			offsets := []uint32{8, 12, 16, 24, uint32(r.byte())}
			out = append(out, &expr.Payload{
				DestRegister: uint32(1 + r.byte()%2),
				Base:         expr.PayloadBase(r.byte() % 2),
				Offset:       offsets[r.byte()%5],
				Len:          []uint32{length, 4, 16}[r.byte()%3],
			})
		case 2:
			n := []int{int(length), 4, int(r.byte() % 17)}[r.byte()%3]
			bits := int(r.byte()) % (n*8 + 1)
			mask := prefixMask(netip.PrefixFrom(netip.IPv6Unspecified(), bits))[:n]
			if r.byte()%8 == 0 {
				mask = r.bytes(n)
			}
			xor := make([]byte, n)
			if r.byte()%8 == 0 {
				xor = r.bytes(n)
			}
			out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1,
				Len: uint32(n), Mask: mask, Xor: xor})
		case 3:
			n := []int{int(length), 4, int(r.byte() % 17)}[r.byte()%3]
			out = append(out, &expr.Cmp{Op: expr.CmpOp(r.byte() % 3), Register: 1,
				Data: r.bytes(n)})
		case 4:
			out = append(out, &expr.Verdict{Kind: expr.VerdictKind(int64(r.byte()%8) - 5)})
		case 5:
			b := r.byte()
			out = append(out, &expr.Masq{FullyRandom: b&1 != 0, Random: b&2 != 0,
				Persistent: b&4 != 0})
		case 6:
			out = append(out, &expr.Counter{})
		}
	}
	return out
}

// FuzzParseRule feeds the rule parser expression sequences such as another program may
// have left in flanneld's chains. It must not panic, and whatever it accepts must come
// back unchanged when compiled and parsed again.
func FuzzParseRule(f *testing.F) {
	f.Add(false, []byte{1, 0, 1, 1, 1, 0, 2, 0, 0, 24, 3, 0, 0, 198, 19, 0, 0, 4, 5})
	f.Add(true, []byte{0, 3, 2, 1, 0, 32, 1, 3, 1, 0, 64, 0, 0, 0, 0, 4, 4})
	f.Add(false, []byte{1, 0, 1, 1, 1, 0, 5, 1})

	f.Fuzz(func(t *testing.T, v6 bool, data []byte) {
		fam := ipv4
		if v6 {
			fam = ipv6
		}
		exprs := (&exprReader{data: data}).exprs(fam)
		r, ok := parseRule(fam, exprs, nil)
		if !ok {
			return
		}
		again, ok := parseRule(fam, r.exprs(fam), r.userData())
		if !ok || again.format(fam) != r.format(fam) {
			t.Errorf("%s did not survive compiling: got %s (%v)",
				r.format(fam), again.format(fam), ok)
		}
	})
}

func TestParseRuleRoundTrip(t *testing.T) {
	for _, f := range []family{ipv4, ipv6} {
		for _, c := range testCfg.desired(f).chains {
			for _, r := range c.rules {
				got, ok := parseRule(f, r.exprs(f), r.userData())
				if !ok || got.format(f) != r.format(f) {
					t.Errorf("%s: parsed back as %s (%v)", r.format(f), got.format(f), ok)
				}
			}
		}
	}
}

func TestParseRuleRefuses(t *testing.T) {
	payload := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader,
		Offset: 12, Len: 4}
	tests := []struct {
		name  string
		exprs []expr.Any
	}{
		{name: "empty"},
		{name: "no verdict", exprs: []expr.Any{payload,
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 2, 3, 4}}}},
		{name: "counter", exprs: []expr.Any{&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "drop", exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}},
		{name: "verdict not last", exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "port offset", exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 12,
				Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 2, 3, 4}},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "holes in mask", exprs: []expr.Any{payload,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: []byte{255, 0, 255, 0}, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 0, 3, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "host bits", exprs: []expr.Any{payload,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: []byte{255, 255, 0, 0}, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 5, 0, 1}},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "less than", exprs: []expr.Any{payload,
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{1, 2, 3, 4}},
			&expr.Verdict{Kind: expr.VerdictAccept}}},
		{name: "persistent masquerade", exprs: []expr.Any{&expr.Masq{Persistent: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, ok := parseRule(ipv4, tt.exprs, nil); ok {
				t.Errorf("accepted as %s", r.format(ipv4))
			}
		})
	}
}
