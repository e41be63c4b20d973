package packet

import (
	"encoding/binary"
	"fmt"
)

// VirtioNetHdrLen is the size of struct virtio_net_hdr, which a TUN device opened with
// IFF_VNET_HDR puts in front of every packet read and expects in front of every packet
// written.
const VirtioNetHdrLen = 10

// Virtio-net header flags and GSO types (include/uapi/linux/virtio_net.h).
const (
	VirtioNeedsCsum = 1 // the checksum at CsumStart+CsumOffset is still to be computed
	VirtioDataValid = 2 // the checksums were verified

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3 // UFO, fragmenting UDP; never requested by weft
	GSOTCPv6 = 4
	GSOUDPL4 = 5 // USO, one UDP datagram per segment
	GSOECN   = 0x80
)

// VirtioNetHdr is the per-packet offload metadata of a TUN device with IFF_VNET_HDR. A
// TUN device speaks it in the machine's byte order unless told otherwise, so the codec
// uses native byte order.
type VirtioNetHdr struct {
	Flags   uint8
	GSOType uint8
	// HdrLen is the length of the headers in front of the payload, a hint.
	HdrLen uint16
	// GSOSize is the payload bytes per segment when GSOType is not GSONone.
	GSOSize uint16
	// CsumStart and CsumOffset locate the checksum to finish when Flags has
	// VirtioNeedsCsum: it covers the packet from CsumStart on and is stored at
	// CsumStart+CsumOffset.
	CsumStart  uint16
	CsumOffset uint16
}

// DecodeVirtioNetHdr reads the header at the front of b.
func DecodeVirtioNetHdr(b []byte) (VirtioNetHdr, error) {
	if len(b) < VirtioNetHdrLen {
		return VirtioNetHdr{}, fmt.Errorf("virtio-net header: %d bytes, need %d",
			len(b), VirtioNetHdrLen)
	}
	return VirtioNetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:]),
	}, nil
}

// Encode writes h into the first VirtioNetHdrLen bytes of b.
func (h VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}

// FinishChecksum computes the checksum that a packet read with VirtioNeedsCsum still
// lacks: the one's complement sum of pkt from start on, where the field at start+offset
// already holds the pseudo-header sum, is complemented and stored there. A result of zero
// is stored as 0xffff, which UDP requires and TCP accepts.
func FinishChecksum(pkt []byte, start, offset int) error {
	if start < 0 || offset < 0 || start+offset+2 > len(pkt) {
		return fmt.Errorf("checksum at %d+%d lies outside the %d-byte packet",
			start, offset, len(pkt))
	}
	sum := ^Checksum(pkt[start:], 0)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[start+offset:], sum)
	return nil
}
