package nat64

import (
	"encoding/binary"

	"github.com/v6pod/v6pod/dns64/nat64/packet"
)

// With offloads on (the default), the TUN device is opened with
// IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO4|TSO6|TSO_ECN): every packet
// carries a 10-byte virtio_net_hdr, the kernel hands the translator whole
// TCP super-packets (up to 64 KiB, not segmented) and packets whose
// transport checksum is still partial, and takes super-packets back, so
// one header translation serves tens of segments. This is the technique
// of wireguard-go's TUN offloads, applied to translation.

const vnetHdrLen = 10

// virtio_net_hdr flags and GSO types (include/uapi/linux/virtio_net.h).
const (
	vnetNeedsCsum = 1
	gsoNone       = 0
	gsoTCPv4      = 1
	gsoUDP        = 3
	gsoTCPv6      = 4
	gsoECN        = 0x80
)

type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnet(b []byte) vnetHdr {
	le := binary.LittleEndian
	return vnetHdr{b[0], b[1], le.Uint16(b[2:]), le.Uint16(b[4:]), le.Uint16(b[6:]), le.Uint16(b[8:])}
}

func (h *vnetHdr) encode(b []byte) {
	le := binary.LittleEndian
	b[0], b[1] = h.flags, h.gsoType
	le.PutUint16(b[2:], h.hdrLen)
	le.PutUint16(b[4:], h.gsoSize)
	le.PutUint16(b[6:], h.csumStart)
	le.PutUint16(b[8:], h.csumOffset)
}

// TranslateOffload translates one packet read from a TUN device with
// IFF_VNET_HDR: in and out both start with a virtio_net_hdr. A partial
// checksum of a packet that is not a super-packet is completed in software
// first; a TCP super-packet keeps its partial checksum (the pseudo-header
// sum), which is moved from the IPv6 to the IPv4 pseudo-header or back,
// and its GSO type is switched. Super-packets that are not plain TCP are
// dropped and counted as "offload"; an IPv4 one without DF is translated
// as if DF were set (the kernel segments it, nothing needs fragmenting). A Forward of several parts (IPv6 fragments) writes each part
// with its own virtio_net_hdr, back to back.
func (p *Path) TranslateOffload(in, out []byte) Result {
	if len(in) < vnetHdrLen+1 || len(out) < vnetHdrLen {
		return p.drop(dropMalformed)
	}
	h := decodeVnet(in)
	pkt := in[vnetHdrLen:]
	v6 := pkt[0]>>4 == 6
	gso := h.gsoType &^ gsoECN
	if gso == gsoNone {
		if h.flags&vnetNeedsCsum != 0 {
			// Complete the checksum: the field holds the pseudo-header sum,
			// the device would add the data from csum_start.
			cs, co := int(h.csumStart), int(h.csumOffset)
			if cs >= len(pkt) || cs+co+2 > len(pkt) {
				return p.drop(dropMalformed)
			}
			c := packet.Checksum(pkt[cs:], 0)
			if c == 0 && co == packet.UDPChecksum {
				c = 0xffff
			}
			be.PutUint16(pkt[cs+co:], c) // in place: in is the caller's read buffer
		}
		var r Result
		switch {
		case v6:
			r = p.Translate6to4(pkt, out[vnetHdrLen:])
		case pkt[0]>>4 == 4:
			r = p.Translate4to6(pkt, out[vnetHdrLen:])
		default:
			return p.drop(dropMalformed)
		}
		if r.Verdict == Drop {
			return r
		}
		if r.Parts > 1 {
			return p.spreadParts(out, r)
		}
		clear(out[:vnetHdrLen])
		r.Len += vnetHdrLen
		return r
	}

	// A TCP super-packet.
	if (gso != gsoTCPv6 || !v6) && (gso != gsoTCPv4 || v6) || h.flags&vnetNeedsCsum == 0 {
		return p.drop(dropOffload)
	}
	cs := int(h.csumStart)
	if h.csumOffset != packet.TCPChecksum || cs+packet.TCPMinHeaderLen > len(pkt) {
		return p.drop(dropOffload)
	}
	if v6 && (cs != 40 || pkt[packet.IPv6NextHeader] != protoTCP) {
		return p.drop(dropOffload) // extension headers: not worth it
	}
	if !v6 && (cs != int(pkt[0]&0x0f)*4 || pkt[packet.IPv4Protocol] != protoTCP ||
		be.Uint16(pkt[packet.IPv4FlagsFrag:])&(packet.IPv4FlagMF|packet.IPv4FragOffMask) != 0) {
		return p.drop(dropOffload) // a fragment cannot be a super-packet
	}
	if !v6 {
		// A super-packet without DF (a sender without path MTU discovery)
		// is segmented by the kernel, not fragmented: translate it as if
		// DF were set, then restore the input.
		ff := be.Uint16(pkt[packet.IPv4FlagsFrag:])
		if ff&packet.IPv4FlagDF == 0 {
			be.PutUint16(pkt[packet.IPv4FlagsFrag:], ff|packet.IPv4FlagDF)
			defer be.PutUint16(pkt[packet.IPv4FlagsFrag:], ff)
		}
	}
	l4 := pkt[cs:]
	partial := be.Uint16(l4[packet.TCPChecksum:])
	oldPorts := packet.Sum(l4[0:4], 0)
	// Present the partial sum as a complete checksum so the translator's
	// incremental update applies; undo the port part afterwards (ports are
	// data the device sums itself).
	be.PutUint16(l4[packet.TCPChecksum:], ^partial)
	var r Result
	if v6 {
		r = p.Translate6to4(pkt, out[vnetHdrLen:])
	} else {
		r = p.Translate4to6(pkt, out[vnetHdrLen:])
	}
	be.PutUint16(l4[packet.TCPChecksum:], partial)
	if r.Verdict != Forward {
		if r.Verdict == Reply {
			clear(out[:vnetHdrLen])
			r.Len += vnetHdrLen
		}
		return r
	}
	o := out[vnetHdrLen : r.Len+vnetHdrLen]
	ol4 := 20
	oh := vnetHdr{flags: vnetNeedsCsum, gsoType: gsoTCPv4 | h.gsoType&gsoECN, gsoSize: h.gsoSize, csumOffset: packet.TCPChecksum}
	// The output's family decides (a hairpinned IPv6 super-packet comes
	// out as IPv6, RFC 6146 section 3.8).
	switch o[0] >> 4 {
	case 4:
		if o[packet.IPv4Protocol] != protoTCP {
			return p.drop(dropOffload)
		}
	case 6:
		if o[packet.IPv6NextHeader] != protoTCP {
			return p.drop(dropOffload)
		}
		ol4 = 40
		oh.gsoType = gsoTCPv6 | h.gsoType&gsoECN
	default:
		return p.drop(dropOffload)
	}
	ot := o[ol4:]
	f := ^be.Uint16(ot[packet.TCPChecksum:])
	f = packet.Combine(packet.Combine(f, ^packet.Sum(ot[0:4], 0)), oldPorts)
	be.PutUint16(ot[packet.TCPChecksum:], f)
	oh.csumStart = uint16(ol4)
	oh.hdrLen = uint16(ol4 + int(ot[12]>>4)*4)
	oh.encode(out)
	r.Len += vnetHdrLen
	return r
}

// spreadParts moves the parts of a fragmented result apart so each gets
// its own virtio_net_hdr.
func (p *Path) spreadParts(out []byte, r Result) Result {
	total := r.Len + r.Parts*vnetHdrLen
	if total > len(out) {
		return p.drop(dropTooBig)
	}
	// Part boundaries, from the IPv6 payload lengths.
	var offs [64]int
	off := vnetHdrLen
	for i := 0; i < r.Parts; i++ {
		if i >= len(offs) {
			return p.drop(dropTooBig)
		}
		offs[i] = off
		off += 40 + int(be.Uint16(out[off+4:]))
	}
	end := off
	// Move from the last part to the first; part i shifts by i headers.
	for i := r.Parts - 1; i >= 0; i-- {
		partEnd := end
		if i < r.Parts-1 {
			partEnd = offs[i+1]
		}
		shift := i * vnetHdrLen
		copy(out[offs[i]+shift:partEnd+shift], out[offs[i]:partEnd])
		clear(out[offs[i]+shift-vnetHdrLen : offs[i]+shift])
	}
	r.Len = total
	return r
}
