package nat64

import (
	"encoding/binary"

	"github.com/v6pod/v6pod/dns64/nat64/packet"
)

var be = binary.BigEndian

// Translate6to4 translates one IPv6 packet (in, as read from the TUN
// device) to IPv4 in out, per RFC 7915 section 5 and the RFC 6146 state.
// out must not overlap in; 64 KiB + 64 bytes is always enough. It never
// writes outside out and never keeps either slice.
func (p *Path) Translate6to4(in, out []byte) Result {
	return p.translate6to4(in, out, false)
}

// hairpin translates a packet from an IPv6 client to pool6 + a pool4
// address (RFC 6146 section 3.8): first to IPv4 as any outbound packet
// (its source becomes the client's own binding), then, since its
// destination is ours, back to IPv6 as an inbound packet to the binding
// it names. The result is an IPv6 packet for the other client.
func (p *Path) hairpin(in, out []byte) Result {
	if p.hpBuf == nil {
		p.hpBuf = make([]byte, 65536+64)
	}
	r := p.translate6to4(in, p.hpBuf, true)
	switch r.Verdict {
	case Drop:
		return r
	case Reply: // an ICMPv6 error for the sender, at most 1280 bytes
		if r.Len > len(out) {
			return p.drop(dropTooBig)
		}
		copy(out, p.hpBuf[:r.Len])
		return r
	}
	p.stats.out4.Add(^uint64(0)) // counted once, as 4to6
	p.stats.hairpins.Add(1)
	return p.translate4to6(p.hpBuf[:r.Len], out, true)
}

// translate6to4 is Translate6to4; hairpin is set for the first half of a
// hairpinned packet (its destination is a pool4 address).
func (p *Path) translate6to4(in, out []byte, hairpin bool) Result {
	t := p.t
	if len(in) < 40 || in[0]>>4 != 6 {
		return p.drop(dropMalformed)
	}
	plen := int(be.Uint16(in[packet.IPv6PayloadLen:]))
	if 40+plen > len(in) {
		return p.drop(dropMalformed)
	}
	in = in[:40+plen]
	dst4, ok := t.prefix.Extract([16]byte(in[24:40]))
	if !ok {
		return p.drop(dropNotPool6)
	}
	if t.inPool4(dst4) {
		if !hairpin {
			return p.hairpin(in, out)
		}
	} else if !t.validRemote4(dst4) {
		return p.drop(dropBadAddress)
	}

	// Extension headers (RFC 7915 section 5.1): skipped, except a routing
	// header with segments left (parameter problem) and the fragment
	// header (becomes the IPv4 fragment fields).
	nh := in[packet.IPv6NextHeader]
	off := 40
	var frag, mf bool
	var fragOff uint16
	var fragID uint32
	hasFragHdr := false
walk:
	for {
		switch nh {
		case packet.ProtoHopByHop, packet.ProtoDestOpts, packet.ProtoRouting:
			if off+8 > len(in) {
				return p.drop(dropMalformed)
			}
			if nh == packet.ProtoRouting && in[off+3] != 0 {
				// RFC 7915 5.1: segments left non-zero -> ICMPv6 parameter
				// problem, code 0, pointing at the Segments Left field.
				return p.reply6(in, out, 4, 0, uint32(off+3))
			}
			nh = in[off]
			off += (int(in[off+1]) + 1) * 8
			if off > len(in) {
				return p.drop(dropMalformed)
			}
		case packet.ProtoFragment:
			if hasFragHdr || off+8 > len(in) {
				return p.drop(dropMalformed)
			}
			hasFragHdr = true
			nh = in[off]
			fo := be.Uint16(in[off+2:])
			fragOff = fo & packet.IPv6FragOffMask
			mf = fo&packet.IPv6FragMoreFlag != 0
			fragID = be.Uint32(in[off+4:])
			frag = fragOff != 0 || mf // an atomic fragment is a whole packet
			off += 8
			if frag {
				// What follows is the fragmentable part: in a non-first
				// fragment it is data, not headers; extension headers in
				// a first fragment would shift the IPv4 offsets of the
				// others. Only the upper-layer header may follow.
				switch nh {
				case packet.ProtoHopByHop, packet.ProtoDestOpts, packet.ProtoRouting, packet.ProtoFragment:
					return p.drop(dropUnknownProto)
				}
				break walk
			}
		default:
			break walk
		}
	}
	l4 := in[off:]
	hop := in[packet.IPv6HopLimit]
	// RFC 7915 5.1: hop limit exhausted -> ICMPv6 time exceeded, but never
	// about an ICMP error or a non-first fragment; and only once the
	// packet passed filtering and found its state (RFC 6146 section 3.5:
	// translation, where the hop limit is decremented, comes after).
	expired := hop <= 1
	if expired && (fragOff != 0 || nh == protoICMPv6 && (len(l4) < 1 || l4[0] < 128)) {
		return p.drop(dropHopLimit)
	}
	if 20+len(l4) > len(out) {
		return p.drop(dropTooBig)
	}

	h := packet.IPv4Fields{
		TOS:      packet.IPv6(in).TrafficClass(),
		TotalLen: uint16(20 + len(l4)),
		TTL:      hop - 1,
		Protocol: nh,
		Dst:      dst4,
	}
	// RFC 7915 5.1: DF and identification.
	if hasFragHdr {
		h.ID = uint16(fragID)
		h.FlagsFrag = fragOff >> 3
		if mf {
			h.FlagsFrag |= packet.IPv4FlagMF
		}
	} else {
		p.ipID++
		h.ID = p.ipID
		if 20+len(l4) > 1260 {
			h.FlagsFrag = packet.IPv4FlagDF
		}
	}
	now := t.now().UnixNano()

	switch nh {
	case protoTCP, protoUDP:
		if fragOff != 0 {
			// Non-first fragment: no ports; the first fragment told us
			// the pool4 address (RFC 6146 section 3.4).
			var fk fragKey
			fk[0] = 6
			fk[1] = nh
			copy(fk[2:18], in[8:24])
			copy(fk[18:22], dst4[:])
			be.PutUint32(fk[22:], fragID)
			v, ok := t.frags.get(&fk, now)
			if !ok {
				return p.drop(dropFragUnknown)
			}
			h.Src = [4]byte(v[:4])
			packet.IPv4(out).Encode(&h)
			copy(out[20:], l4)
			return p.forward4(20 + len(l4))
		}
		csumOff := packet.UDPChecksum
		minLen := packet.UDPHeaderLen
		if nh == protoTCP {
			csumOff, minLen = packet.TCPChecksum, packet.TCPMinHeaderLen
		}
		if len(l4) < minLen {
			if frag {
				return p.drop(dropFragTooSmall)
			}
			return p.drop(dropMalformed)
		}
		sport := be.Uint16(l4[0:])
		dport := be.Uint16(l4[2:])
		k := makeKey(nh, in[8:24], sport, dst4, dport)
		s := t.tab.lookup6(&k)
		var fl uint8
		if nh == protoTCP {
			fl = l4[packet.TCPFlags]
			if fl&(tcpSYN|tcpACK) == tcpSYN && !t.syn.allow(dst4, now) {
				return p.drop(dropSYNRate)
			}
		}
		if s == nil {
			if nh == protoTCP && (fl&tcpSYN == 0 || fl&tcpRST != 0) {
				return p.drop(dropTCPNoSession)
			}
			var r dropReason
			if s, r = t.tab.create6(nh, in[8:24], sport, dst4, dport, now); s == nil {
				return p.drop(r)
			}
		}
		if nh == protoTCP {
			t.tab.tcpPacket(s, fl, true, now)
		} else {
			t.tab.touch(s, now)
		}
		if expired {
			return p.reply6(in, out, 3, 0, 0)
		}
		old := be.Uint16(l4[csumOff:])
		if nh == protoUDP && old == 0 {
			// RFC 8200 section 8.1: IPv6 UDP must carry a checksum.
			return p.drop(dropUDPZeroChecksum)
		}
		h.Src = s.b.v4
		packet.IPv4(out).Encode(&h)
		o := out[20 : 20+len(l4)]
		copy(o, l4)
		// RFC 7915 5.5: update the checksum for the new pseudo-header and
		// port (incrementally, RFC 1624).
		oldSum := packet.Combine(packet.Sum(in[8:40], 0), sport)
		newSum := packet.Combine(packet.Sum(out[12:20], 0), s.b.port4)
		c := packet.UpdateSum(old, oldSum, newSum)
		if nh == protoUDP && c == 0 {
			c = 0xffff
		}
		be.PutUint16(o[0:], s.b.port4)
		be.PutUint16(o[csumOff:], c)
		if frag && mf {
			var fk fragKey
			fk[0] = 6
			fk[1] = nh
			copy(fk[2:18], in[8:24])
			copy(fk[18:22], dst4[:])
			be.PutUint32(fk[22:], fragID)
			t.frags.put(&fk, s.b.v4[:], now)
		}
		return p.forward4(20 + len(l4))

	case protoICMPv6:
		if frag {
			return p.drop(dropICMPFragment)
		}
		if len(l4) < 8 {
			return p.drop(dropMalformed)
		}
		h.Protocol = protoICMP
		typ := l4[0]
		switch typ {
		case 128, 129: // echo request / reply (RFC 7915 5.2)
			id := be.Uint16(l4[4:])
			k := makeKey(protoICMP, in[8:24], id, dst4, 0)
			s := t.tab.lookup6(&k)
			if s == nil {
				if typ == 129 {
					return p.drop(dropNoSession)
				}
				var r dropReason
				if s, r = t.tab.create6(protoICMP, in[8:24], id, dst4, 0, now); s == nil {
					return p.drop(r)
				}
			}
			t.tab.touch(s, now)
			if expired {
				return p.reply6(in, out, 3, 0, 0)
			}
			h.Src = s.b.v4
			packet.IPv4(out).Encode(&h)
			o := out[20 : 20+len(l4)]
			copy(o, l4)
			t4 := uint8(8)
			if typ == 129 {
				t4 = 0
			}
			o[0] = t4
			// ICMPv4 has no pseudo-header: take it out, with the type and
			// identifier changes.
			pseudo := packet.PseudoHeader6(in[8:24], in[24:40], protoICMPv6, uint16(len(l4)))
			oldSum := packet.Combine(pseudo, packet.Combine(uint16(typ)<<8|uint16(l4[1]), id))
			newSum := packet.Combine(uint16(t4)<<8|uint16(l4[1]), s.b.port4)
			be.PutUint16(o[4:], s.b.port4)
			be.PutUint16(o[2:], packet.UpdateSum(be.Uint16(l4[2:]), oldSum, newSum))
			return p.forward4(20 + len(l4))
		case 1, 2, 3, 4:
			return p.icmpError6to4(in, out, l4, dst4, &h)
		default: // MLD, ND, unknown informational: RFC 7915 5.2 drops them
			return p.drop(dropICMPUntranslatable)
		}
	default:
		return p.drop(dropUnknownProto)
	}
}

// icmpError6to4 translates an ICMPv6 error and the packet inside it (RFC
// 7915 section 5.2 and 5.3; RFC 6146 section 3.5.3).
func (p *Path) icmpError6to4(in, out, l4 []byte, dst4 [4]byte, h *packet.IPv4Fields) Result {
	t := p.t
	if packet.Sum(l4, packet.PseudoHeader6(in[8:24], in[24:40], protoICMPv6, uint16(len(l4)))) != 0xffff {
		return p.drop(dropBadChecksum)
	}
	typ, code := l4[0], l4[1]
	var t4, c4 uint8
	var word uint32
	switch typ {
	case 1: // destination unreachable
		switch code {
		case 0, 2, 3:
			t4, c4 = 3, 1
		case 1:
			t4, c4 = 3, 10
		case 4:
			t4, c4 = 3, 3
		default:
			return p.drop(dropICMPUntranslatable)
		}
	case 2: // packet too big -> fragmentation needed, MTU - 20
		t4, c4 = 3, 4
		mtu := be.Uint32(l4[4:])
		if mtu < 20+68 {
			mtu = 20 + 68
		}
		// RFC 7915 section 5.2: minimum(advertised MTU - 20, MTU of the
		// IPv4 next hop, MTU of the IPv6 next hop - 20); both next hops
		// are the TUN device.
		mtu = min(mtu-20, uint32(t.cfg.MTU)-20)
		word = mtu
	case 3: // time exceeded
		t4, c4 = 11, code
		if code > 1 {
			return p.drop(dropICMPUntranslatable)
		}
	case 4: // parameter problem
		switch code {
		case 0:
			ptr, ok := ptr6to4(be.Uint32(l4[4:]))
			if !ok {
				return p.drop(dropICMPUntranslatable)
			}
			t4, c4, word = 12, 0, uint32(ptr)<<24
		case 1:
			t4, c4 = 3, 2
		default:
			return p.drop(dropICMPUntranslatable)
		}
	}
	inner := l4[8:]
	if len(inner) < 40 || inner[0]>>4 != 6 {
		return p.drop(dropMalformed)
	}
	isrc4, ok := t.prefix.Extract([16]byte(inner[8:24]))
	if !ok {
		return p.drop(dropNotPool6)
	}
	inh := inner[6]
	ioff := 40
	for n := 0; n < 4 && (inh == packet.ProtoHopByHop || inh == packet.ProtoDestOpts || inh == packet.ProtoRouting || inh == packet.ProtoFragment); n++ {
		if ioff+8 > len(inner) {
			return p.drop(dropMalformed)
		}
		next := inner[ioff]
		if inh == packet.ProtoFragment {
			ioff += 8
		} else {
			ioff += (int(inner[ioff+1]) + 1) * 8
		}
		inh = next
		if ioff > len(inner) {
			return p.drop(dropMalformed)
		}
	}
	il4 := inner[ioff:]
	iplen := int(be.Uint16(inner[4:])) + 40 - ioff // upper-layer length as sent
	if iplen < 0 {
		return p.drop(dropMalformed)
	}
	var k key
	switch inh {
	case protoTCP, protoUDP:
		if len(il4) < 4 {
			return p.drop(dropMalformed)
		}
		k = makeKey(inh, inner[24:40], be.Uint16(il4[2:]), isrc4, be.Uint16(il4[0:]))
	case protoICMPv6:
		if len(il4) < 8 || il4[0] < 128 {
			return p.drop(dropICMPUntranslatable) // no errors about errors
		}
		k = makeKey(protoICMP, inner[24:40], be.Uint16(il4[4:]), isrc4, 0)
	default:
		return p.drop(dropUnknownProto)
	}
	s := t.tab.lookup6(&k)
	if s == nil {
		return p.drop(dropNoSession)
	}
	// Layout: outer IPv4 (20) | ICMPv4 (8) | inner IPv4 (20) | inner L4,
	// at most 576 bytes in all.
	n := len(il4)
	if 48+n > 576 {
		n = 576 - 48
	}
	if 48+n > len(out) {
		return p.drop(dropTooBig)
	}
	h.Src = s.b.v4
	h.Dst = dst4
	h.TotalLen = uint16(48 + n)
	h.FlagsFrag = 0
	packet.IPv4(out).Encode(h)
	ih := packet.IPv4Fields{
		TOS:      packet.IPv6(inner).TrafficClass(),
		TotalLen: uint16(20 + iplen),
		TTL:      inner[7],
		Protocol: inh,
		Src:      isrc4,
		Dst:      s.b.v4,
	}
	if inh == protoICMPv6 {
		ih.Protocol = protoICMP
	}
	packet.IPv4(out[28:]).Encode(&ih)
	o := out[48 : 48+n]
	copy(o, il4[:n])
	switch inh {
	case protoTCP, protoUDP:
		rewriteInnerPort(o, inh, 2, s.b.port4, packet.Sum(inner[8:40], 0), packet.Sum(out[28+12:28+20], 0))
	case protoICMPv6:
		it := il4[0]
		nt := uint8(0)
		if it == 128 {
			nt = 8
		}
		o[0] = nt
		id := be.Uint16(il4[4:])
		be.PutUint16(o[4:], s.b.port4)
		pseudo := packet.PseudoHeader6(inner[8:24], inner[24:40], protoICMPv6, uint16(iplen))
		oldSum := packet.Combine(pseudo, packet.Combine(uint16(it)<<8|uint16(il4[1]), id))
		newSum := packet.Combine(uint16(nt)<<8|uint16(il4[1]), s.b.port4)
		be.PutUint16(o[2:], packet.UpdateSum(be.Uint16(il4[2:]), oldSum, newSum))
	}
	ic := out[20:28]
	ic[0], ic[1], ic[2], ic[3] = t4, c4, 0, 0
	be.PutUint32(ic[4:], word)
	be.PutUint16(ic[2:], packet.Checksum(out[20:48+n], 0))
	return p.forward4(48 + n)
}

// ptr6to4 maps an ICMPv6 parameter problem pointer to ICMPv4 (RFC 7915
// section 5.2, figure 6).
func ptr6to4(p uint32) (uint8, bool) {
	switch {
	case p == 0:
		return 0, true
	case p == 1:
		return 1, true
	case p == 4 || p == 5:
		return 2, true
	case p == 6:
		return 9, true
	case p == 7:
		return 8, true
	case p >= 8 && p <= 23:
		return 12, true
	case p >= 24 && p <= 39:
		return 16, true
	}
	return 0, false
}

// reply6 builds an ICMPv6 error about in, for its sender (RFC 4443
// section 2.4: as much of the packet as fits in 1280 bytes).
func (p *Path) reply6(in, out []byte, typ, code uint8, word uint32) Result {
	if !p.allowICMPError() {
		return p.drop(dropICMPRate)
	}
	n := len(in)
	if 48+n > 1280 {
		n = 1280 - 48
	}
	if 48+n > len(out) {
		return p.drop(dropTooBig)
	}
	packet.IPv6(out).Encode(&packet.IPv6Fields{
		PayloadLen: uint16(8 + n),
		NextHeader: protoICMPv6,
		HopLimit:   64,
		Src:        p.t.icmpSrc6,
		Dst:        [16]byte(in[8:24]),
	})
	ic := out[40:48]
	ic[0], ic[1], ic[2], ic[3] = typ, code, 0, 0
	be.PutUint32(ic[4:], word)
	copy(out[48:], in[:n])
	be.PutUint16(ic[2:], packet.Checksum(out[40:48+n], packet.PseudoHeader6(out[8:24], out[24:40], protoICMPv6, uint16(8+n))))
	p.stats.replies.Add(1)
	return Result{Verdict: Reply, Len: 48 + n, Parts: 1}
}

func (p *Path) drop(r dropReason) Result {
	p.stats.drops[r].Add(1)
	return Result{Verdict: Drop, Reason: r}
}

func (p *Path) forward4(n int) Result {
	p.stats.out4.Add(1)
	return Result{Verdict: Forward, Len: n, Parts: 1}
}
