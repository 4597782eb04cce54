package nat64

import (
	"encoding/binary"
	"testing"
)

// RFC 6146 section 3.8: a packet from an IPv6 client to pool6 + (T, t),
// the binding of another client, reaches that client, from pool6 + the
// sender's own binding, and the answer goes back the same way.
func TestHairpinning(t *testing.T) {
	for _, proto := range []uint8{protoUDP, protoTCP} {
		tr, p, _ := newTestTranslator(t, testConfig())
		out := make([]byte, 70000)
		c6b := a6("2001:db8::2")
		dst := a6("64:ff9b::c633:6401") // 198.51.100.1, where 2001:db8::1 port 1234 is bound
		var seg []byte
		if proto == protoUDP {
			seg = udpSeg(c6b, dst, 5555, 40000, []byte("hairpin"))
		} else {
			seg = tcpSeg(c6b, dst, 5555, 40000, tcpSYN, []byte("hairpin"))
		}
		r := p.Translate6to4(ip6(0, proto, 64, c6b, dst, seg), out)
		if r.Verdict != Forward || r.Parts != 1 {
			t.Fatalf("proto %d: hairpin: %+v (%s)", proto, r, r.ReasonName())
		}
		o := out[:r.Len]
		if o[0]>>4 != 6 || o[6] != proto || o[7] != 63 {
			t.Fatalf("proto %d: not an IPv6 packet, hop limit 63: % x", proto, o[:40])
		}
		if good, ok := valid(o); !ok || !good {
			t.Fatalf("proto %d: checksum of % x", proto, o)
		}
		if [16]byte(o[24:40]) != [16]byte(c6) || binary.BigEndian.Uint16(o[42:]) != 1234 {
			t.Fatalf("proto %d: went to [%x]:%d, want the static binding's client", proto, o[24:40], binary.BigEndian.Uint16(o[42:]))
		}
		// The source is the sender's own binding, embedded in pool6.
		b := tr.tab.bib6[makeBibKey6(proto, c6b, 5555)]
		if b == nil {
			t.Fatalf("proto %d: no binding for the sender", proto)
		}
		src := tr.prefix.Embed(b.v4)
		if [16]byte(o[8:24]) != src || binary.BigEndian.Uint16(o[40:]) != b.port4 {
			t.Fatalf("proto %d: source [%x]:%d, want pool6 + %v:%d", proto, o[8:24], binary.BigEndian.Uint16(o[40:]), b.v4, b.port4)
		}
		if string(o[len(o)-7:]) != "hairpin" {
			t.Fatalf("proto %d: payload % x", proto, o[40:])
		}
		// The answer, from 2001:db8::1 port 1234 to where the packet came from.
		if proto == protoUDP {
			seg = udpSeg(c6, src[:], 1234, b.port4, []byte("answer"))
		} else {
			seg = tcpSeg(c6, src[:], 1234, b.port4, tcpSYN|tcpACK, []byte("answer"))
		}
		r = p.Translate6to4(ip6(0, proto, 64, c6, src[:], seg), out)
		if r.Verdict != Forward {
			t.Fatalf("proto %d: answer: %+v (%s)", proto, r, r.ReasonName())
		}
		o = out[:r.Len]
		if good, ok := valid(o); !ok || !good {
			t.Fatalf("proto %d: answer checksum", proto)
		}
		if [16]byte(o[24:40]) != [16]byte(c6b) || binary.BigEndian.Uint16(o[42:]) != 5555 ||
			[16]byte(o[8:24]) != [16]byte(dst) || binary.BigEndian.Uint16(o[40:]) != 40000 {
			t.Fatalf("proto %d: answer % x", proto, o[:44])
		}
	}
}

// A hairpinned TCP super-packet (TSO) stays one: IPv6 in, IPv6 out, GSO
// TCPv6, its partial checksum moved to the new pseudo-header.
func TestHairpinOffload(t *testing.T) {
	tr, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	c6b := a6("2001:db8::2")
	dst := a6("64:ff9b::c633:6401")
	if r := p.Translate6to4(ip6(0, 6, 64, c6b, dst, tcpSeg(c6b, dst, 5555, 40000, tcpSYN, nil)), out); r.Verdict != Forward {
		t.Fatalf("SYN: %+v (%s)", r, r.ReasonName())
	}
	b := tr.tab.bib6[makeBibKey6(protoTCP, c6b, 5555)]
	src := tr.prefix.Embed(b.v4)
	data := bytesN(5000, 9)
	in := cat(vnet(vnetNeedsCsum, gsoTCPv6|gsoECN, 60, 1440, 40, 16),
		ip6(0, 6, 64, c6b, dst, withPartial(tcpSeg(c6b, dst, 5555, 40000, tcpACK, data), 16, c6b, dst, 6, 0)))
	want := cat(vnet(vnetNeedsCsum, gsoTCPv6|gsoECN, 60, 1440, 40, 16),
		ip6(0, 6, 63, src[:], c6, withPartial(tcpSeg(src[:], c6, b.port4, 1234, tcpACK, data), 16, src[:], c6, 6, 0)))
	r := p.TranslateOffload(in, out)
	if r.Verdict != Forward || r.Parts != 1 || string(out[:r.Len]) != string(want) {
		t.Fatalf("%+v (%s)\n got % x\nwant % x", r, r.ReasonName(), out[:min(r.Len, 120)], want[:120])
	}
}

// An ICMPv6 error about a hairpinned packet goes back to its sender the
// same way (RFC 6146 3.8 with 3.5.3): the client answers port unreachable
// to pool6 + the sender's binding, the sender gets it about its own packet.
func TestHairpinICMPError(t *testing.T) {
	tr, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	c6b := a6("2001:db8::2")
	dst := a6("64:ff9b::c633:6401")
	sent := udpSeg(c6b, dst, 5555, 40000, []byte("hairpin"))
	if r := p.Translate6to4(ip6(0, 17, 64, c6b, dst, sent), out); r.Verdict != Forward {
		t.Fatalf("hairpin: %+v (%s)", r, r.ReasonName())
	}
	b := tr.tab.bib6[makeBibKey6(protoUDP, c6b, 5555)]
	src := tr.prefix.Embed(b.v4)
	got := append([]byte{}, out[:40+8+7]...) // what 2001:db8::1 received
	r := p.Translate6to4(ip6(0, 58, 64, c6, src[:], icmpMsg(c6, src[:], 1, 4, 0, got)), out)
	if r.Verdict != Forward {
		t.Fatalf("port unreachable: %+v (%s)", r, r.ReasonName())
	}
	o := out[:r.Len]
	if good, ok := valid(o); !ok || !good {
		t.Fatalf("checksum of % x", o)
	}
	if o[6] != 58 || o[40] != 1 || o[41] != 4 || [16]byte(o[24:40]) != [16]byte(c6b) {
		t.Fatalf("not a port unreachable for 2001:db8::2: % x", o[:48])
	}
	in := o[48:]
	if [16]byte(in[8:24]) != [16]byte(c6b) || [16]byte(in[24:40]) != [16]byte(dst) ||
		binary.BigEndian.Uint16(in[40:]) != 5555 || binary.BigEndian.Uint16(in[42:]) != 40000 {
		t.Fatalf("inner packet is not the one 2001:db8::2 sent: % x", in[:44])
	}
	if string(in[40:]) != string(sent) {
		t.Fatalf("inner UDP % x, want what was sent % x", in[40:], sent)
	}
}

// Hairpinned fragments: the first fragment finds both bindings, the
// second follows it through both fragment caches (RFC 6146 3.4 and 3.8),
// and the reassembled datagram verifies.
func TestHairpinFragments(t *testing.T) {
	tr, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	c6b := a6("2001:db8::2")
	dst := a6("64:ff9b::c633:6401")
	seg := udpSeg(c6b, dst, 5555, 40000, bytesN(32, 7)) // 40 bytes
	var parts [][]byte
	for _, f := range []struct {
		off  int
		more bool
		data []byte
	}{{0, true, seg[:24]}, {24, false, seg[24:]}} {
		r := p.Translate6to4(ip6(0, 44, 64, c6b, dst, cat(fragHdr(17, f.off, f.more, 0x5eed0042), f.data)), out)
		if r.Verdict != Forward || r.Parts != 1 {
			t.Fatalf("fragment at %d: %+v (%s)", f.off, r, r.ReasonName())
		}
		o := append([]byte{}, out[:r.Len]...)
		if o[0]>>4 != 6 || o[6] != 44 || [16]byte(o[24:40]) != [16]byte(c6) {
			t.Fatalf("fragment at %d: % x", f.off, o[:48])
		}
		fo := binary.BigEndian.Uint16(o[42:])
		if int(fo&^7) != f.off || (fo&1 != 0) != f.more || binary.BigEndian.Uint32(o[44:]) != 0x0042 {
			t.Fatalf("fragment at %d: fragment header % x", f.off, o[40:48])
		}
		parts = append(parts, o[48:])
	}
	b := tr.tab.bib6[makeBibKey6(protoUDP, c6b, 5555)]
	src := tr.prefix.Embed(b.v4)
	whole := ip6(0, 17, 63, src[:], c6, cat(parts...))
	if good, ok := valid(whole); !ok || !good || binary.BigEndian.Uint16(whole[42:]) != 1234 {
		t.Fatalf("reassembled datagram % x", whole)
	}
}
