package packet

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the 16-bit one's complement sum (RFC 1071) of b added to initial, folded
// but not complemented: store ^Checksum(...) in a header, and a received header whose sum
// over its own bytes folds to 0xffff is intact. initial carries a partial sum such as a
// pseudo-header; pass 0 for none. b is read as big-endian 16-bit words, an odd last byte
// padded with zero, so a message checksummed in pieces must cut them at even offsets.
func Checksum(b []byte, initial uint16) uint16 {
	// The sum is byte-order independent (RFC 1071, 2.B): add little-endian words, which the
	// loads below make cheap on every machine, and swap the folded result once.
	acc := sumLE(b, uint64(bits.ReverseBytes16(initial)))
	return bits.ReverseBytes16(fold(acc))
}

// PseudoHeaderSum returns the partial sum of the IPv4 pseudo-header that TCP and UDP
// checksums cover: source, destination, protocol and the transport length.
func PseudoHeaderSum(proto uint8, src, dst []byte, length int) uint16 {
	acc := uint64(binary.LittleEndian.Uint32(src)) + uint64(binary.LittleEndian.Uint32(dst))
	acc += uint64(proto) << 8
	acc += uint64(bits.ReverseBytes16(uint16(length)))
	return bits.ReverseBytes16(fold(acc))
}

// sumLE adds b to acc as little-endian words with end-around carry. Two carry chains
// of 64 bytes a round keep the adder busy.
func sumLE(b []byte, acc uint64) uint64 {
	var acc2, c, c2 uint64
	for len(b) >= 64 {
		x := b[:64:64]
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(x[0:8]), c)
		acc2, c2 = bits.Add64(acc2, binary.LittleEndian.Uint64(x[8:16]), c2)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(x[16:24]), c)
		acc2, c2 = bits.Add64(acc2, binary.LittleEndian.Uint64(x[24:32]), c2)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(x[32:40]), c)
		acc2, c2 = bits.Add64(acc2, binary.LittleEndian.Uint64(x[40:48]), c2)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(x[48:56]), c)
		acc2, c2 = bits.Add64(acc2, binary.LittleEndian.Uint64(x[56:64]), c2)
		b = b[64:]
	}
	acc, c = bits.Add64(acc, acc2, c)
	acc, c = bits.Add64(acc, c2, c)
	acc += c
	c = 0
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c

	var tail uint64
	if len(b) >= 4 {
		tail = uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		tail += uint64(b[0])
	}
	acc, c = bits.Add64(acc, tail, 0)
	return acc + c
}

// fold reduces a 64-bit end-around-carry accumulator to 16 bits.
func fold(acc uint64) uint16 {
	acc = (acc & 0xffffffff) + (acc >> 32)
	acc = (acc & 0xffffffff) + (acc >> 32)
	acc = (acc & 0xffff) + (acc >> 16)
	acc = (acc & 0xffff) + (acc >> 16)
	acc = (acc & 0xffff) + (acc >> 16)
	return uint16(acc)
}
