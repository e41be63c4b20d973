package rules

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// nftFamily returns the nftables table family of f.
func (f family) nftFamily() nftables.TableFamily {
	if f == ipv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

// addrField returns where a source or destination address sits in f's network header.
func (f family) addrField(dst bool) (offset, length uint32) {
	if f == ipv6 {
		if dst {
			return 24, 16
		}
		return 8, 16
	}
	if dst {
		return 16, 4
	}
	return 12, 4
}

// exprs compiles r into nftables expressions, in the form nft itself produces, so that
// `nft list` shows the rule as [rule.format] does.
func (r rule) exprs(f family) []expr.Any {
	var out []expr.Any
	if r.mark != 0 {
		mark := binary.NativeEndian.AppendUint32(nil, r.mark)
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mark,
				Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
		)
	}
	for _, m := range r.matches {
		offset, length := f.addrField(m.dst)
		out = append(out, &expr.Payload{
			DestRegister: 1,
			Base:         expr.PayloadBaseNetworkHeader,
			Offset:       offset,
			Len:          length,
		})
		p := m.prefix.Masked()
		if p.Bits() < p.Addr().BitLen() {
			out = append(out, &expr.Bitwise{
				SourceRegister: 1,
				DestRegister:   1,
				Len:            length,
				Mask:           prefixMask(p),
				Xor:            make([]byte, length),
			})
		}
		op := expr.CmpOpEq
		if m.negate {
			op = expr.CmpOpNeq
		}
		out = append(out, &expr.Cmp{Op: op, Register: 1, Data: p.Addr().AsSlice()})
	}
	switch r.verdict {
	case accept:
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	case ret:
		out = append(out, &expr.Verdict{Kind: expr.VerdictReturn})
	case masquerade:
		out = append(out, &expr.Masq{FullyRandom: r.fullyRandom})
	}
	return out
}

// userData returns the rule's comment in the encoding nft uses.
func (r rule) userData() []byte {
	if r.comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, r.comment)
}

// prefixMask returns p's netmask as bytes.
func prefixMask(p netip.Prefix) []byte {
	mask := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return mask
}

// parseRule turns a rule read from the kernel back into the shapes weft writes. It
// reports false for anything else, which the reconciler then replaces.
func parseRule(f family, exprs []expr.Any, udata []byte) (rule, bool) {
	var r rule
	if c, ok := userdata.GetString(udata, userdata.TypeComment); ok {
		r.comment = c
	}

	for i := 0; i < len(exprs); i++ {
		last := i == len(exprs)-1
		switch e := exprs[i].(type) {
		case *expr.Meta:
			if e.Key != expr.MetaKeyMARK || e.SourceRegister || r.mark != 0 ||
				i+2 >= len(exprs) {
				return rule{}, false
			}
			bw, ok1 := exprs[i+1].(*expr.Bitwise)
			cmp, ok2 := exprs[i+2].(*expr.Cmp)
			if !ok1 || !ok2 || bw.SourceRegister != e.Register || cmp.Register != bw.DestRegister ||
				cmp.Op != expr.CmpOpEq || bw.Len != 4 || len(bw.Mask) != 4 ||
				!bytes.Equal(bw.Xor, make([]byte, 4)) || !bytes.Equal(bw.Mask, cmp.Data) {
				return rule{}, false
			}
			r.mark = binary.NativeEndian.Uint32(bw.Mask)
			if r.mark == 0 {
				return rule{}, false
			}
			i += 2

		case *expr.Payload:
			m, n, ok := parseMatch(f, exprs[i:])
			if !ok {
				return rule{}, false
			}
			r.matches = append(r.matches, m)
			i += n - 1

		case *expr.Verdict:
			if !last {
				return rule{}, false
			}
			switch e.Kind {
			case expr.VerdictAccept:
				r.verdict = accept
			case expr.VerdictReturn:
				r.verdict = ret
			default:
				return rule{}, false
			}
			return r, true

		case *expr.Masq:
			if !last || e.Random || e.Persistent || e.ToPorts {
				return rule{}, false
			}
			r.verdict, r.fullyRandom = masquerade, e.FullyRandom
			return r, true

		default:
			return rule{}, false
		}
	}
	return rule{}, false
}

// parseMatch reads an address match, a payload load optionally masked and then
// compared, from the start of exprs, and reports how many expressions it used.
func parseMatch(f family, exprs []expr.Any) (match, int, bool) {
	load, ok := exprs[0].(*expr.Payload)
	if !ok || load.OperationType != expr.PayloadLoad || load.Base != expr.PayloadBaseNetworkHeader {
		return match{}, 0, false
	}
	var m match
	srcOffset, length := f.addrField(false)
	dstOffset, _ := f.addrField(true)
	switch load.Offset {
	case srcOffset:
	case dstOffset:
		m.dst = true
	default:
		return match{}, 0, false
	}
	if load.Len != length {
		return match{}, 0, false
	}

	n := 1
	reg := load.DestRegister
	bits := int(length) * 8
	if n < len(exprs) {
		if bw, ok := exprs[n].(*expr.Bitwise); ok {
			if bw.SourceRegister != reg || bw.Len != length ||
				!bytes.Equal(bw.Xor, make([]byte, length)) {
				return match{}, 0, false
			}
			b, ok := maskBits(bw.Mask)
			if !ok {
				return match{}, 0, false
			}
			bits, reg = b, bw.DestRegister
			n++
		}
	}
	if n >= len(exprs) {
		return match{}, 0, false
	}
	cmp, ok := exprs[n].(*expr.Cmp)
	if !ok || cmp.Register != reg {
		return match{}, 0, false
	}
	switch cmp.Op {
	case expr.CmpOpEq:
	case expr.CmpOpNeq:
		m.negate = true
	default:
		return match{}, 0, false
	}
	addr, ok := netip.AddrFromSlice(cmp.Data)
	if !ok || len(cmp.Data) != int(length) {
		return match{}, 0, false
	}
	m.prefix = netip.PrefixFrom(addr, bits)
	if m.prefix.Masked() != m.prefix {
		return match{}, 0, false
	}
	return m, n + 1, true
}

// maskBits returns the prefix length of a contiguous netmask.
func maskBits(mask []byte) (int, bool) {
	bits := 0
	for bits < len(mask)*8 && mask[bits/8]&(0x80>>(bits%8)) != 0 {
		bits++
	}
	for i := bits; i < len(mask)*8; i++ {
		if mask[i/8]&(0x80>>(i%8)) != 0 {
			return 0, false
		}
	}
	return bits, true
}
