package nat64

import (
	"github.com/v6pod/v6pod/dns64/nat64/packet"
)

// Translate4to6 translates one IPv4 packet (in) to IPv6 in out, per RFC
// 7915 section 4 and the RFC 6146 state. An IPv4 packet without DF that
// would exceed the configured IPv6 MTU (mtu6, default 1280) is fragmented
// (RFC 7915 section 4 / 4.1): out then holds Result.Parts packets back to
// back, each with its own IPv6 header. out must not overlap in; 64 KiB +
// 64*48 bytes is always enough.
func (p *Path) Translate4to6(in, out []byte) Result {
	return p.translate4to6(in, out, false)
}

// translate4to6 is Translate4to6; hairpin is set for the second half of a
// hairpinned packet (RFC 6146 section 3.8): its source is a pool4 address
// and its TTL was already decremented by the first half.
func (p *Path) translate4to6(in, out []byte, hairpin bool) Result {
	t := p.t
	if len(in) < 20 || in[0]>>4 != 4 {
		return p.drop(dropMalformed)
	}
	ihl := int(in[0]&0x0f) * 4
	tot := int(be.Uint16(in[packet.IPv4TotalLen:]))
	if ihl < 20 || tot < ihl || tot > len(in) {
		return p.drop(dropMalformed)
	}
	in = in[:tot]
	dst4 := [4]byte(in[16:20])
	if !t.inPool4(dst4) {
		return p.drop(dropNotPool4)
	}
	src4 := [4]byte(in[12:16])
	if !hairpin && !t.validRemote4(src4) {
		return p.drop(dropBadAddress)
	}
	if ihl > 20 && hasSourceRoute(in[20:ihl]) {
		// RFC 7915 section 4.1: an unexpired source route is not
		// translated; answer "source route failed" (type 3 code 5),
		// counted as a drop too.
		p.stats.drops[dropSourceRoute].Add(1)
		if hairpin {
			return Result{Verdict: Drop, Reason: dropSourceRoute}
		}
		return p.reply4(in, out, 3, 5, 0)
	}
	ff := be.Uint16(in[packet.IPv4FlagsFrag:])
	mf := ff&packet.IPv4FlagMF != 0
	df := ff&packet.IPv4FlagDF != 0
	fragOff := (ff & packet.IPv4FragOffMask) << 3
	isFrag := mf || fragOff != 0
	proto := in[packet.IPv4Protocol]
	l4 := in[ihl:]
	ttl := in[packet.IPv4TTL]
	// RFC 7915 4.1: TTL exhausted -> ICMPv4 time exceeded, never about an
	// ICMP error or a non-first fragment; and only once the packet passed
	// filtering and found its state (RFC 6146 section 3.5), so that
	// unsolicited packets get no answer.
	expired := !hairpin && ttl <= 1
	if hairpin {
		ttl++ // decremented once, by the first half
	} else if expired && (fragOff != 0 || proto == protoICMP && (len(l4) < 1 || isICMP4Error(l4[0]))) {
		return p.drop(dropHopLimit)
	}
	h := packet.IPv6Fields{
		TrafficClass: in[packet.IPv4TOS],
		NextHeader:   proto,
		HopLimit:     ttl - 1,
		Src:          t.prefix.Embed(src4),
	}
	now := t.now().UnixNano()
	// RFC 7915 section 4 / 4.1: a packet without DF whose translation
	// (with its fragment header, when it is already a fragment) would
	// exceed the IPv6 MTU is fragmented.
	hl := 40
	if isFrag {
		hl = 48
	}
	needFrag := !df && hl+len(l4) > t.cfg.MTU6
	withFrag := isFrag || needFrag
	if withFrag {
		hl = 48
	}
	if hl+len(l4) > len(out) {
		return p.drop(dropTooBig)
	}

	switch proto {
	case protoTCP, protoUDP:
		if fragOff != 0 {
			var fk fragKey
			fk[0] = 4
			fk[1] = proto
			copy(fk[2:6], src4[:])
			copy(fk[6:10], dst4[:])
			copy(fk[10:12], in[4:6])
			v, ok := t.frags.get(&fk, now)
			if !ok {
				return p.drop(dropFragUnknown)
			}
			h.Dst = v
			copy(out[hl:], l4)
			return p.emit6(in, out, &h, l4, withFrag, needFrag, fragOff, mf)
		}
		csumOff := packet.UDPChecksum
		minLen := packet.UDPHeaderLen
		if proto == protoTCP {
			csumOff, minLen = packet.TCPChecksum, packet.TCPMinHeaderLen
		}
		if len(l4) < minLen {
			if isFrag {
				return p.drop(dropFragTooSmall)
			}
			return p.drop(dropMalformed)
		}
		sport := be.Uint16(l4[0:])
		dport := be.Uint16(l4[2:])
		old := be.Uint16(l4[csumOff:])
		if proto == protoUDP && old == 0 && isFrag {
			// RFC 7915 4.5: a zero checksum over a fragment cannot be
			// computed without reassembly: drop.
			return p.drop(dropUDPZeroChecksum)
		}
		k := makeKey(proto, dst4[:], dport, src4, sport)
		s := t.tab.lookup4(&k)
		var fl uint8
		if proto == protoTCP {
			fl = l4[packet.TCPFlags]
		}
		if s == nil {
			if proto == protoTCP && (fl&tcpSYN == 0 || fl&tcpRST != 0) {
				return p.drop(dropTCPNoSession)
			}
			var r dropReason
			if s, r = t.tab.createInbound(proto, dst4, dport, src4, sport, now); s == nil {
				return p.drop(r)
			}
		}
		if proto == protoTCP {
			t.tab.tcpPacket(s, fl, false, now)
		} else {
			t.tab.touch(s, now)
		}
		if expired {
			return p.reply4(in, out, 11, 0, 0)
		}
		h.Dst = s.b.v6
		o := out[hl : hl+len(l4)]
		copy(o, l4)
		be.PutUint16(o[2:], s.b.port6)
		var c uint16
		if proto == protoUDP && old == 0 {
			// RFC 7915 4.5: compute the checksum IPv6 requires.
			o[6], o[7] = 0, 0
			c = packet.Checksum(o, packet.PseudoHeader6(h.Src[:], h.Dst[:], protoUDP, uint16(len(l4))))
		} else {
			oldSum := packet.Combine(packet.Sum(in[12:20], 0), dport)
			newSum := packet.Combine(packet.Combine(packet.Sum(h.Src[:], 0), packet.Sum(h.Dst[:], 0)), s.b.port6)
			c = packet.UpdateSum(old, oldSum, newSum)
		}
		if proto == protoUDP && c == 0 {
			c = 0xffff
		}
		be.PutUint16(o[csumOff:], c)
		if isFrag && mf {
			var fk fragKey
			fk[0] = 4
			fk[1] = proto
			copy(fk[2:6], src4[:])
			copy(fk[6:10], dst4[:])
			copy(fk[10:12], in[4:6])
			t.frags.put(&fk, s.b.v6[:], now)
		}
		return p.emit6(in, out, &h, l4, withFrag, needFrag, fragOff, mf)

	case protoICMP:
		if isFrag {
			return p.drop(dropICMPFragment)
		}
		if len(l4) < 8 {
			return p.drop(dropMalformed)
		}
		h.NextHeader = protoICMPv6
		typ := l4[0]
		switch typ {
		case 0, 8: // echo reply / request (RFC 7915 4.2)
			id := be.Uint16(l4[4:])
			k := makeKey(protoICMP, dst4[:], id, src4, 0)
			s := t.tab.lookup4(&k)
			if s == nil {
				if typ == 0 {
					return p.drop(dropNoSession)
				}
				var r dropReason
				if s, r = t.tab.createInbound(protoICMP, dst4, id, src4, 0, now); s == nil {
					return p.drop(r)
				}
			}
			t.tab.touch(s, now)
			if expired {
				return p.reply4(in, out, 11, 0, 0)
			}
			h.Dst = s.b.v6
			o := out[hl : hl+len(l4)]
			copy(o, l4)
			t6 := uint8(129)
			if typ == 8 {
				t6 = 128
			}
			o[0] = t6
			be.PutUint16(o[4:], s.b.port6)
			pseudo := packet.PseudoHeader6(h.Src[:], h.Dst[:], protoICMPv6, uint16(len(l4)))
			oldSum := packet.Combine(uint16(typ)<<8|uint16(l4[1]), id)
			newSum := packet.Combine(pseudo, packet.Combine(uint16(t6)<<8|uint16(l4[1]), s.b.port6))
			be.PutUint16(o[2:], packet.UpdateSum(be.Uint16(l4[2:]), oldSum, newSum))
			return p.emit6(in, out, &h, l4, withFrag, needFrag, 0, false)
		case 3, 11, 12:
			return p.icmpError4to6(in, out, l4, &h)
		default: // timestamps, information, redirect, source quench...
			return p.drop(dropICMPUntranslatable)
		}
	default:
		return p.drop(dropUnknownProto)
	}
}

func isICMP4Error(t uint8) bool { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12 }

// hasSourceRoute reports an unexpired LSRR or SSRR option (RFC 791: its
// pointer still within the option).
func hasSourceRoute(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return false
		case 1:
			i++
			continue
		case 131, 137:
			return i+2 < len(opts) && opts[i+1] >= 3 && opts[i+2] <= opts[i+1]
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return false
		}
		i += int(opts[i+1])
	}
	return false
}

// emit6 writes the IPv6 header (and fragment header) in front of the
// payload already at out[hl:], fragmenting it when needFrag (RFC 7915
// section 4 and 4.1: fragment header ID = the IPv4 ID, offsets copied).
func (p *Path) emit6(in, out []byte, h *packet.IPv6Fields, l4 []byte, withFrag, needFrag bool, fragOff uint16, mf bool) Result {
	n := len(l4)
	if !withFrag {
		h.PayloadLen = uint16(n)
		packet.IPv6(out).Encode(h)
		p.stats.out6.Add(1)
		return Result{Verdict: Forward, Len: 40 + n, Parts: 1}
	}
	proto := h.NextHeader
	h.NextHeader = packet.ProtoFragment
	id := uint32(be.Uint16(in[packet.IPv4ID:]))
	if !needFrag {
		h.PayloadLen = uint16(8 + n)
		packet.IPv6(out).Encode(h)
		writeFragHdr(out[40:], proto, fragOff, mf, id)
		p.stats.out6.Add(1)
		return Result{Verdict: Forward, Len: 48 + n, Parts: 1}
	}
	m := (p.t.cfg.MTU6 - 48) &^ 7
	parts := (n + m - 1) / m
	total := parts*48 + n
	if total > len(out) {
		return p.drop(dropTooBig)
	}
	// Spread the payload out from the last piece to the first so no copy
	// overwrites data not yet moved (each piece only moves forward).
	for i := parts - 1; i >= 0; i-- {
		sz := m
		if i == parts-1 {
			sz = n - i*m
		}
		src := 48 + i*m
		dst := i*(48+m) + 48
		copy(out[dst:dst+sz], out[src:src+sz])
		packet.IPv6(out[dst-48:]).Encode(&packet.IPv6Fields{
			TrafficClass: h.TrafficClass, PayloadLen: uint16(8 + sz), NextHeader: packet.ProtoFragment,
			HopLimit: h.HopLimit, Src: h.Src, Dst: h.Dst,
		})
		writeFragHdr(out[dst-8:], proto, fragOff+uint16(i*m), mf || i < parts-1, id)
	}
	p.stats.out6.Add(uint64(parts))
	return Result{Verdict: Forward, Len: total, Parts: parts}
}

func writeFragHdr(b []byte, nh uint8, off uint16, more bool, id uint32) {
	b[0], b[1] = nh, 0
	v := off &^ 7
	if more {
		v |= 1
	}
	be.PutUint16(b[2:], v)
	be.PutUint32(b[4:], id)
}

// icmpError4to6 translates an ICMPv4 error and the packet inside it (RFC
// 7915 section 4.2 and 4.3; RFC 6146 section 3.5.3).
func (p *Path) icmpError4to6(in, out, l4 []byte, h *packet.IPv6Fields) Result {
	t := p.t
	if packet.Sum(l4, 0) != 0xffff {
		return p.drop(dropBadChecksum)
	}
	typ, code := l4[0], l4[1]
	inner := l4[8:]
	if len(inner) < 20 || inner[0]>>4 != 4 {
		return p.drop(dropMalformed)
	}
	iihl := int(inner[0]&0x0f) * 4
	if iihl < 20 || iihl > len(inner) {
		return p.drop(dropMalformed)
	}
	itot := int(be.Uint16(inner[2:]))
	if itot < iihl {
		return p.drop(dropMalformed)
	}
	var t6, c6 uint8
	var word uint32
	switch typ {
	case 3: // destination unreachable
		switch code {
		case 0, 1, 5, 6, 7, 8, 11, 12:
			t6, c6 = 1, 0
		case 9, 10, 13, 15:
			t6, c6 = 1, 1
		case 2: // protocol unreachable -> parameter problem, next header
			t6, c6, word = 4, 1, 6
		case 3:
			t6, c6 = 1, 4
		case 4: // fragmentation needed -> packet too big, MTU + 20
			t6 = 2
			mtu := uint32(be.Uint16(l4[6:]))
			if mtu == 0 {
				mtu = plateau(itot) // RFC 1191 section 5
			}
			// RFC 7915 section 4.2: minimum(advertised MTU + 20,
			// MTU of the IPv6 next hop, MTU of the IPv4 next hop + 20);
			// both next hops are the TUN device, whose MTU bounds what
			// the kernel hands us and what we hand back.
			mtu = min(mtu+20, uint32(t.cfg.MTU))
			if mtu < 1280 { // IPv6 hosts never go below 1280 (RFC 8200 section 5)
				mtu = 1280
			}
			word = mtu
		default:
			return p.drop(dropICMPUntranslatable)
		}
	case 11: // time exceeded
		t6, c6 = 3, code
		if code > 1 {
			return p.drop(dropICMPUntranslatable)
		}
	case 12: // parameter problem
		if code != 0 && code != 2 {
			return p.drop(dropICMPUntranslatable)
		}
		ptr, ok := ptr4to6(l4[4])
		if !ok {
			return p.drop(dropICMPUntranslatable)
		}
		t6, c6, word = 4, 0, uint32(ptr)
	}
	isrc4 := [4]byte(inner[12:16])
	idst4 := [4]byte(inner[16:20])
	iproto := inner[9]
	il4 := inner[iihl:]
	var k key
	switch iproto {
	case protoTCP, protoUDP:
		if len(il4) < 4 {
			return p.drop(dropMalformed)
		}
		k = makeKey(iproto, isrc4[:], be.Uint16(il4[0:]), idst4, be.Uint16(il4[2:]))
	case protoICMP:
		if len(il4) < 8 || il4[0] != 8 && il4[0] != 0 {
			return p.drop(dropICMPUntranslatable) // no errors about errors
		}
		k = makeKey(protoICMP, isrc4[:], be.Uint16(il4[4:]), idst4, 0)
	default:
		return p.drop(dropUnknownProto)
	}
	s := t.tab.lookup4(&k)
	if s == nil {
		return p.drop(dropNoSession)
	}
	// Layout: outer IPv6 (40) | ICMPv6 (8) | inner IPv6 (40) | inner L4,
	// at most 1280 bytes (RFC 4443 section 2.4).
	n := len(il4)
	if 88+n > 1280 {
		n = 1280 - 88
	}
	if 88+n > len(out) {
		return p.drop(dropTooBig)
	}
	iplen := itot - iihl
	h.Dst = s.b.v6
	h.NextHeader = protoICMPv6
	h.PayloadLen = uint16(48 + n)
	packet.IPv6(out).Encode(h)
	ih := packet.IPv6Fields{
		TrafficClass: inner[1],
		PayloadLen:   uint16(iplen),
		NextHeader:   iproto,
		HopLimit:     inner[8],
		Src:          s.b.v6,
		Dst:          t.prefix.Embed(idst4),
	}
	if iproto == protoICMP {
		ih.NextHeader = protoICMPv6
	}
	packet.IPv6(out[48:]).Encode(&ih)
	o := out[88 : 88+n]
	copy(o, il4[:n])
	switch iproto {
	case protoTCP, protoUDP:
		rewriteInnerPort(o, iproto, 0, s.b.port6, packet.Sum(inner[12:20], 0), packet.Sum(out[48+8:48+40], 0))
	case protoICMP:
		it := il4[0]
		nt := uint8(129)
		if it == 8 {
			nt = 128
		}
		o[0] = nt
		id := be.Uint16(il4[4:])
		be.PutUint16(o[4:], s.b.port6)
		pseudo := packet.PseudoHeader6(out[48+8:48+24], out[48+24:48+40], protoICMPv6, uint16(iplen))
		oldSum := packet.Combine(uint16(it)<<8|uint16(il4[1]), id)
		newSum := packet.Combine(pseudo, packet.Combine(uint16(nt)<<8|uint16(il4[1]), s.b.port6))
		be.PutUint16(o[2:], packet.UpdateSum(be.Uint16(il4[2:]), oldSum, newSum))
	}
	ic := out[40:48]
	ic[0], ic[1], ic[2], ic[3] = t6, c6, 0, 0
	be.PutUint32(ic[4:], word)
	be.PutUint16(ic[2:], packet.Checksum(out[40:88+n], packet.PseudoHeader6(out[8:24], out[24:40], protoICMPv6, uint16(48+n))))
	p.stats.out6.Add(1)
	return Result{Verdict: Forward, Len: 88 + n, Parts: 1}
}

// ptr4to6 maps an ICMPv4 parameter problem pointer to ICMPv6 (RFC 7915
// section 4.2, figure 3).
func ptr4to6(p uint8) (uint8, bool) {
	switch {
	case p == 0:
		return 0, true
	case p == 1:
		return 1, true
	case p == 2 || p == 3:
		return 4, true
	case p == 8:
		return 7, true
	case p == 9:
		return 6, true
	case p >= 12 && p <= 15:
		return 8, true
	case p >= 16 && p <= 19:
		return 24, true
	}
	return 0, false
}

// plateau is RFC 1191 section 7's table: the largest plateau below the
// length of the packet that did not fit.
func plateau(tot int) uint32 {
	for _, m := range [...]int{65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68} {
		if m < tot {
			return uint32(m)
		}
	}
	return 68
}

// reply4 builds an ICMPv4 error about in for its sender (RFC 792: the
// header and some of the data; we keep at most 576 bytes in all). Its
// source is the pool4 address the packet was sent to.
func (p *Path) reply4(in, out []byte, typ, code uint8, word uint32) Result {
	if !p.allowICMPError() {
		return p.drop(dropICMPRate)
	}
	n := len(in)
	if 28+n > 576 {
		n = 576 - 28
	}
	if 28+n > len(out) {
		return p.drop(dropTooBig)
	}
	p.ipID++
	packet.IPv4(out).Encode(&packet.IPv4Fields{
		TotalLen: uint16(28 + n),
		ID:       p.ipID,
		TTL:      64,
		Protocol: protoICMP,
		Src:      [4]byte(in[16:20]),
		Dst:      [4]byte(in[12:16]),
	})
	ic := out[20:28]
	ic[0], ic[1], ic[2], ic[3] = typ, code, 0, 0
	be.PutUint32(ic[4:], word)
	copy(out[28:], in[:n])
	be.PutUint16(ic[2:], packet.Checksum(out[20:28+n], 0))
	p.stats.replies.Add(1)
	return Result{Verdict: Reply, Len: 28 + n, Parts: 1}
}
