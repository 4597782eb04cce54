package nat64

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

var (
	c6   = a6("2001:db8::1")       // the IPv6-only client
	s4   = a4("192.0.2.1")         // the IPv4-only server
	s6   = a6("64:ff9b::c000:201") // the server as the client sees it
	p4   = a4("198.51.100.1")      // pool4 address of the static bindings
	r4   = a4("203.0.113.9")       // an IPv4 router
	r6   = a6("64:ff9b::cb00:7109")
	rt6  = a6("2001:db8:ffff::1")   // an IPv6 router
	src6 = a6("64:ff9b::c633:6400") // the translator's own ICMPv6 source (pool4[0] embedded)
)

const df = 0x4000
const mf = 0x2000

type tcase struct {
	name   string
	rfc    string // the clause that decides the expected output
	from6  bool
	in     []byte
	want   [][]byte // Forward/Reply parts; nil: dropped
	reply  bool
	reason string
}

func translationCases() []tcase {
	data := bytesN(32, 1)
	big := bytesN(1300, 3)
	d1400 := bytesN(1400, 5)
	frUDP6 := udpSeg(c6, s6, 1234, 53, data) // 40 bytes, sent in two fragments
	frUDP4 := udpSeg(p4, s4, 40000, 53, data)
	inUDP4 := udpSeg(s4, p4, 53, 40000, data)
	inUDP6 := udpSeg(s6, c6, 53, 1234, data)
	bigUDP4 := udpSeg(s4, p4, 53, 40000, d1400)
	bigUDP6 := udpSeg(s6, c6, 53, 1234, d1400)
	out4big := udpSeg(p4, s4, 40000, 53, d1400)
	out6big := udpSeg(c6, s6, 1234, 53, d1400)
	routing := []byte{17, 2, 0, 1, 0, 0, 0, 0}
	routing = append(routing, make([]byte, 16)...)
	ttl1in := ip4(0, 5, 0, 1, 17, s4, p4, inUDP4)
	hop1in := ip6(0, 17, 1, c6, s6, udpSeg(c6, s6, 1234, 53, data))
	rtIn := ip6(0, 43, 64, c6, s6, cat(routing, udpSeg(c6, s6, 1234, 53, data)))
	ew, eb := echo(77, 9, data)
	ew4, _ := echo(4077, 9, data)
	innerFN := ip4Len(20+len(out4big), 0, 0x1234, df, 63, 17, p4, s4, out4big[:28])
	innerPTB := ip6Len(len(bigUDP6), 0, 17, 59, s6, c6, bigUDP6[:48])
	innerPU := ip6(0, 17, 59, s6, c6, inUDP6)
	badICMP := icmpMsg(nil, nil, 3, 3, 0, ip4(0, 0x1234, 0, 63, 17, p4, s4, frUDP4))
	badICMP[2] ^= 0xff
	withOpt := func(opt []byte) []byte {
		b := ip4(0, 7, 0, 50, 17, s4, p4, cat(opt, inUDP4))
		b[0] = 0x45 + byte(len(opt)/4)
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], csum(b[:20+len(opt)]))
		return b
	}
	srIn := withOpt([]byte{131, 7, 4, 0, 0, 0, 0, 0})   // LSRR, pointer 4: one hop left
	srDone := withOpt([]byte{137, 7, 8, 0, 0, 0, 0, 0}) // SSRR, pointer 8 > length 7: expired

	return []tcase{
		{
			name: "udp 6to4", rfc: "RFC 7915 5.1 (TTL = hop limit - 1, TOS = traffic class, DF=0 up to 1260 bytes, ID generated) and 5.5 (checksum)",
			from6: true,
			in:    ip6(0xb8, 17, 64, c6, s6, udpSeg(c6, s6, 1234, 53, data)),
			want:  [][]byte{ip4(0xb8, 0x1234, 0, 63, 17, p4, s4, udpSeg(p4, s4, 40000, 53, data))},
		},
		{
			name: "tcp syn 6to4 over 1260 bytes", rfc: "RFC 7915 5.1 (DF=1 when the IPv4 packet exceeds 1260 bytes)",
			from6: true,
			in:    ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, 0x02, big)),
			want:  [][]byte{ip4(0, 0x1234, df, 63, 6, p4, s4, tcpSeg(p4, s4, 40000, 80, 0x02, big))},
		},
		{
			name: "echo request 6to4", rfc: "RFC 7915 5.2 (type 128 -> 8, identifier from the BIB; checksum without pseudo-header)",
			from6: true,
			in:    ip6(0, 58, 64, c6, s6, icmpMsg(c6, s6, 128, 0, ew, eb)),
			want:  [][]byte{ip4(0, 0x1234, 0, 63, 1, p4, s4, icmpMsg(nil, nil, 8, 0, ew4, eb))},
		},
		{
			name: "echo reply 4to6", rfc: "RFC 7915 4.2 (type 0 -> 129, checksum with pseudo-header)",
			in:   ip4(0, 9, 0, 50, 1, s4, p4, icmpMsg(nil, nil, 0, 0, ew4, eb)),
			want: [][]byte{ip6(0, 58, 49, s6, c6, icmpMsg(s6, c6, 129, 0, ew, eb))},
		},
		{
			name: "udp 4to6", rfc: "RFC 7915 4.1 (hop limit = TTL - 1, traffic class = TOS, RFC 6052 source) and 4.5 (checksum)",
			in:   ip4(0x28, 7, df, 50, 17, s4, p4, inUDP4),
			want: [][]byte{ip6(0x28, 17, 49, s6, c6, inUDP6)},
		},
		{
			name: "udp zero checksum 4to6", rfc: "RFC 7915 4.5 (a zero UDP checksum is computed)",
			in:   ip4(0, 7, 0, 50, 17, s4, p4, udpSeg(nil, nil, 53, 40000, data)),
			want: [][]byte{ip6(0, 17, 49, s6, c6, inUDP6)},
		},
		{
			name: "hop limit 1 6to4", rfc: "RFC 7915 5.1 (hop limit exhausted: ICMPv6 time exceeded, code 0)",
			from6: true, reply: true,
			in:   hop1in,
			want: [][]byte{ip6(0, 58, 64, src6, c6, icmpMsg(src6, c6, 3, 0, 0, hop1in))},
		},
		{
			name: "ttl 1 4to6", rfc: "RFC 7915 4.1 (TTL exhausted: ICMPv4 time exceeded, code 0)",
			reply: true,
			in:    ttl1in,
			want:  [][]byte{ip4(0, 0x1234, 0, 64, 1, p4, s4, icmpMsg(nil, nil, 11, 0, 0, ttl1in))},
		},
		{
			name: "routing header with segments left", rfc: "RFC 7915 5.1 (parameter problem, code 0, pointer to Segments Left)",
			from6: true, reply: true,
			in:   rtIn,
			want: [][]byte{ip6(0, 58, 64, src6, c6, icmpMsg(src6, c6, 4, 0, 43, rtIn))},
		},
		{
			name: "first fragment 6to4", rfc: "RFC 7915 5.1.1 (fragment header -> ID low 16 bits, MF, offset; DF=0)",
			from6: true,
			in:    ip6(0, 44, 64, c6, s6, cat(fragHdr(17, 0, true, 0xabcd0001), frUDP6[:24])),
			want:  [][]byte{ip4(0, 0x0001, mf, 63, 17, p4, s4, frUDP4[:24])},
		},
		{
			name: "second fragment 6to4", rfc: "RFC 7915 5.1.1 (offset 24 -> 3 units; address from the first fragment, RFC 6146 3.4)",
			from6: true,
			in:    ip6(0, 44, 64, c6, s6, cat(fragHdr(17, 24, false, 0xabcd0001), frUDP6[24:])),
			want:  [][]byte{ip4(0, 0x0001, 3, 63, 17, p4, s4, frUDP4[24:])},
		},
		{
			name: "first fragment 4to6", rfc: "RFC 7915 4.1 (IPv4 fragment -> fragment header, ID, M, offset)",
			in:   ip4(0, 0x4242, mf, 50, 17, s4, p4, inUDP4[:24]),
			want: [][]byte{ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 0, true, 0x4242), inUDP6[:24]))},
		},
		{
			name: "second fragment 4to6", rfc: "RFC 7915 4.1 (non-first fragment, offset 24)",
			in:   ip4(0, 0x4242, 3, 50, 17, s4, p4, inUDP4[24:]),
			want: [][]byte{ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 24, false, 0x4242), inUDP6[24:]))},
		},
		{
			name: "DF=0 over mtu6 4to6", rfc: "RFC 7915 4 (DF clear and larger than 1280: fragmented to 1280 with fragment headers)",
			in: ip4(0, 0x7777, 0, 50, 17, s4, p4, bigUDP4),
			want: [][]byte{
				ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 0, true, 0x7777), bigUDP6[:1232])),
				ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 1232, false, 0x7777), bigUDP6[1232:])),
			},
		},
		{
			name: "DF=1 over mtu6 4to6", rfc: "RFC 7915 4 (DF set: not fragmented; the IPv6 path answers with Packet Too Big)",
			in:   ip4(0, 0x7777, df, 50, 17, s4, p4, bigUDP4),
			want: [][]byte{ip6(0, 17, 49, s6, c6, bigUDP6)},
		},
		{
			name: "udp 6to4 big", rfc: "RFC 7915 5.1 (DF=1 over 1260 bytes)",
			from6: true,
			in:    ip6(0, 17, 64, c6, s6, out6big),
			want:  [][]byte{ip4(0, 0x1234, df, 63, 17, p4, s4, out4big)},
		},
		{
			name: "fragmentation needed 4to6", rfc: "RFC 7915 4.2 (type 3 code 4 -> Packet Too Big, MTU + 20) and 4.3 (inner packet translated)",
			in:   ip4(0, 1, 0, 60, 1, r4, p4, icmpMsg(nil, nil, 3, 4, 1400, innerFN)),
			want: [][]byte{ip6(0, 58, 59, r6, c6, icmpMsg(r6, c6, 2, 0, 1420, ip6Len(len(out6big), 0, 17, 63, c6, s6, out6big[:28])))},
		},
		{
			name: "packet too big 6to4", rfc: "RFC 7915 5.2 (Packet Too Big -> type 3 code 4, MTU - 20) and 5.3 (inner packet translated)",
			from6: true,
			in:    ip6(0, 58, 64, rt6, s6, icmpMsg(rt6, s6, 2, 0, 1300, innerPTB)),
			want:  [][]byte{ip4(0, 0x1234, 0, 63, 1, p4, s4, icmpMsg(nil, nil, 3, 4, 1280, ip4Len(20+len(bigUDP6), 0, 0, 0, 59, 17, s4, p4, bigUDP4[:48])))},
		},
		{
			name: "port unreachable 6to4", rfc: "RFC 7915 5.2 (type 1 code 4 -> type 3 code 3)",
			from6: true,
			in:    ip6(0, 58, 64, c6, s6, icmpMsg(c6, s6, 1, 4, 0, innerPU)),
			want:  [][]byte{ip4(0, 0x1234, 0, 63, 1, p4, s4, icmpMsg(nil, nil, 3, 3, 0, ip4(0, 0, 0, 59, 17, s4, p4, inUDP4)))},
		},
		{
			name: "parameter problem 4to6", rfc: "RFC 7915 4.2 (type 12 code 0, pointer 9 (protocol) -> type 4 code 0, pointer 6 (next header))",
			in:   ip4(0, 1, 0, 60, 1, r4, p4, icmpMsg(nil, nil, 12, 0, 9<<24, ip4(0, 0x1234, 0, 63, 17, p4, s4, frUDP4))),
			want: [][]byte{ip6(0, 58, 59, r6, c6, icmpMsg(r6, c6, 4, 0, 6, ip6(0, 17, 63, c6, s6, frUDP6)))},
		},
		{
			name: "protocol unreachable 4to6", rfc: "RFC 7915 4.2 (type 3 code 2 -> parameter problem code 1, pointer 6)",
			in:   ip4(0, 1, 0, 60, 1, r4, p4, icmpMsg(nil, nil, 3, 2, 0, ip4(0, 0x1234, 0, 63, 17, p4, s4, frUDP4))),
			want: [][]byte{ip6(0, 58, 59, r6, c6, icmpMsg(r6, c6, 4, 1, 6, ip6(0, 17, 63, c6, s6, frUDP6)))},
		},
		// What is not translated is dropped and counted (README "Untranslatable").
		{name: "outside pool6", rfc: "RFC 6146 3.5 (only pool6 destinations)", from6: true, reason: "not_pool6",
			in: ip6(0, 17, 64, c6, a6("2001:db8::2"), udpSeg(c6, a6("2001:db8::2"), 1, 2, data))},
		{name: "neighbor solicitation", rfc: "RFC 7915 5.2 (ND is single-hop: silently dropped)", from6: true, reason: "icmp_untranslatable",
			in: ip6(0, 58, 64, c6, s6, icmpMsg(c6, s6, 135, 0, 0, data))},
		{name: "unknown protocol", rfc: "RFC 6146 1.1 (TCP, UDP, ICMP only)", from6: true, reason: "unknown_protocol",
			in: ip6(0, 47, 64, c6, s6, data)},
		{name: "tcp without session", rfc: "RFC 6146 3.5.2.2 (non-SYN without state)", from6: true, reason: "tcp_no_session",
			in: ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 5555, 80, 0x10, nil))},
		{name: "inbound without binding", rfc: "RFC 6146 3.5.1 (no BIB entry)", reason: "no_binding",
			in: ip4(0, 7, 0, 50, 17, s4, a4("198.51.100.2"), udpSeg(s4, a4("198.51.100.2"), 53, 5555, data))},
		{name: "timestamp request", rfc: "RFC 7915 4.2 (timestamp: silently dropped)", reason: "icmp_untranslatable",
			in: ip4(0, 7, 0, 50, 1, s4, p4, icmpMsg(nil, nil, 13, 0, 0, data))},
		{name: "udp zero checksum from IPv6", rfc: "RFC 8200 8.1 (IPv6 UDP needs a checksum)", from6: true, reason: "udp_zero_checksum",
			in: ip6(0, 17, 64, c6, s6, udpSeg(nil, nil, 1234, 53, data))},
		{name: "udp zero checksum fragment 4to6", rfc: "RFC 7915 4.5 (zero checksum in a fragment: dropped)", reason: "udp_zero_checksum",
			in: ip4(0, 0x99, mf, 50, 17, s4, p4, udpSeg(nil, nil, 53, 40000, data)[:24])},
		{name: "icmp error with bad checksum", rfc: "RFC 792 (checksum verified before translating an error)", reason: "bad_checksum",
			in: ip4(0, 1, 0, 60, 1, r4, p4, badICMP)},
		{name: "hairpin to pool4 without a binding", rfc: "RFC 6146 3.8 (hairpinned, then dropped as an inbound packet without a BIB entry)", from6: true, reason: "no_binding",
			in: ip6(0, 17, 64, c6, a6("64:ff9b::c633:6402"), udpSeg(c6, a6("64:ff9b::c633:6402"), 1234, 53, data))},
		{name: "ttl 1 without a binding 4to6", rfc: "RFC 6146 3.5 (filtering before translation: an unsolicited packet gets no time exceeded) and RFC 7915 4.1", reason: "no_binding",
			in: ip4(0, 7, 0, 1, 17, s4, a4("198.51.100.2"), udpSeg(s4, a4("198.51.100.2"), 53, 5555, data))},
		{name: "extension header after a fragment header", rfc: "RFC 7915 5.1.1 (the fragmentable part is the upper-layer payload: a destination options header there is not translated)", from6: true, reason: "unknown_protocol",
			in: ip6(0, 44, 64, c6, s6, cat(fragHdr(60, 24, false, 0xabcd0002), []byte{17, 0, 1, 4, 0, 0, 0, 0}, frUDP6[24:]))},
		{name: "pool4 source from IPv4", rfc: "RFC 6146 3.8 (only hairpinned packets come from pool4; from outside it is spoofed)", reason: "bad_address",
			in: ip4(0, 7, 0, 50, 17, a4("198.51.100.2"), p4, udpSeg(a4("198.51.100.2"), p4, 53, 40000, data))},
		{
			name: "fragment at mtu6 4to6", rfc: "RFC 7915 4.1 (a fragment without DF is refragmented when it no longer fits mtu6 with its fragment header)",
			in: ip4(0, 0x7778, mf, 50, 17, s4, p4, bigUDP4[:1240]),
			want: [][]byte{
				ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 0, true, 0x7778), bigUDP6[:1232])),
				ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 1232, true, 0x7778), bigUDP6[1232:1240])),
			},
		},
		{
			name: "fragmentation needed above the next-hop MTU 4to6", rfc: "RFC 7915 4.2 (MTU = min(MTU + 20, IPv6 next hop MTU, IPv4 next hop MTU + 20): the TUN MTU, 1500)",
			in:   ip4(0, 1, 0, 60, 1, r4, p4, icmpMsg(nil, nil, 3, 4, 4000, innerFN)),
			want: [][]byte{ip6(0, 58, 59, r6, c6, icmpMsg(r6, c6, 2, 0, 1500, ip6Len(len(out6big), 0, 17, 63, c6, s6, out6big[:28])))},
		},
		{
			name: "fragmentation needed with MTU 0 4to6", rfc: "RFC 7915 4.2 (MTU 0: RFC 1191 plateau below the total length 1428 is 1006, + 20, at least 1280)",
			in:   ip4(0, 1, 0, 60, 1, r4, p4, icmpMsg(nil, nil, 3, 4, 0, innerFN)),
			want: [][]byte{ip6(0, 58, 59, r6, c6, icmpMsg(r6, c6, 2, 0, 1280, ip6Len(len(out6big), 0, 17, 63, c6, s6, out6big[:28])))},
		},
		{
			name: "packet too big above the next-hop MTU 6to4", rfc: "RFC 7915 5.2 (MTU = min(MTU - 20, IPv4 next hop MTU, IPv6 next hop MTU - 20): TUN MTU 1500 - 20)",
			from6: true,
			in:    ip6(0, 58, 64, rt6, s6, icmpMsg(rt6, s6, 2, 0, 9000, innerPTB)),
			want:  [][]byte{ip4(0, 0x1234, 0, 63, 1, p4, s4, icmpMsg(nil, nil, 3, 4, 1480, ip4Len(20+len(bigUDP6), 0, 0, 0, 59, 17, s4, p4, bigUDP4[:48])))},
		},
		{name: "loopback destination", rfc: "RFC 6052 3.1 (special-purpose IPv4 addresses are not translated)", from6: true, reason: "bad_address",
			in: ip6(0, 17, 64, c6, a6("64:ff9b::7f00:1"), udpSeg(c6, a6("64:ff9b::7f00:1"), 1234, 53, data))},
		{name: "non-first fragment without a first one", rfc: "RFC 6146 3.4 (no state for the fragment: dropped)", reason: "fragment_unknown",
			in: ip4(0, 0x5151, 3, 50, 17, s4, p4, inUDP4[24:])},
		{name: "fragmented ICMP", rfc: "RFC 7915 4.2 (the ICMPv6 checksum needs the whole message)", reason: "icmp_fragment",
			in: ip4(0, 9, mf, 50, 1, s4, p4, icmpMsg(nil, nil, 0, 0, ew4, eb)[:16])},
		{name: "IPv4 source route", rfc: "RFC 7915 4.1 (unexpired LSRR/SSRR: not translated, ICMPv4 source route failed, type 3 code 5)",
			reply: true,
			in:    srIn,
			want:  [][]byte{ip4(0, 0x1234, 0, 64, 1, p4, s4, icmpMsg(nil, nil, 3, 5, 0, srIn))}},
		{name: "IPv4 expired source route", rfc: "RFC 7915 4.1 (options are ignored; an expired source route too)",
			in:   srDone,
			want: [][]byte{ip6(0, 17, 49, s6, c6, inUDP6)}},
		{name: "echo request to a static ICMP binding", rfc: "RFC 6146 3.5.3 (inbound echo through a static binding)",
			in:   ip4(0, 9, 0, 50, 1, s4, p4, icmpMsg(nil, nil, 8, 0, ew4, eb)),
			want: [][]byte{ip6(0, 58, 49, s6, c6, icmpMsg(s6, c6, 128, 0, ew, eb))}},
		{name: "time exceeded from an IPv6 router", rfc: "RFC 7915 5.2 (type 3 -> type 11, same code) and 5.3",
			from6: true,
			in:    ip6(0, 58, 64, rt6, s6, icmpMsg(rt6, s6, 3, 0, 0, innerPU)),
			want:  [][]byte{ip4(0, 0x1234, 0, 63, 1, p4, s4, icmpMsg(nil, nil, 11, 0, 0, ip4(0, 0, 0, 59, 17, s4, p4, inUDP4)))}},
		{name: "truncated", rfc: "RFC 8200 3 (payload length beyond the packet)", from6: true, reason: "malformed",
			in: ip6(0, 17, 64, c6, s6, data)[:50]},
	}
}

func TestTranslationTable(t *testing.T) {
	_, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	for _, tc := range translationCases() {
		p.ipID = 0x1233 // the next generated identification is 0x1234
		var r Result
		if tc.from6 {
			r = p.Translate6to4(tc.in, out)
		} else {
			r = p.Translate4to6(tc.in, out)
		}
		if tc.want == nil {
			if r.Verdict != Drop || r.ReasonName() != tc.reason {
				t.Errorf("%s (%s): got verdict %d reason %s, want drop %s", tc.name, tc.rfc, r.Verdict, r.ReasonName(), tc.reason)
			}
			continue
		}
		wantV := Forward
		if tc.reply {
			wantV = Reply
		}
		if r.Verdict != wantV {
			t.Errorf("%s (%s): verdict %d (reason %s), want %d", tc.name, tc.rfc, r.Verdict, r.ReasonName(), wantV)
			continue
		}
		want := cat(tc.want...)
		if r.Parts != len(tc.want) || !bytes.Equal(out[:r.Len], want) {
			t.Errorf("%s (%s): %d parts\n got %s\nwant %s", tc.name, tc.rfc, r.Parts, hex.EncodeToString(out[:r.Len]), hex.EncodeToString(want))
		}
	}
}

// RFC 6052 section 2.2: any prefix length works; with /40 the IPv4
// address straddles the u octet (bits 64-71 stay zero).
func TestPrefixLengths(t *testing.T) {
	for _, tc := range []struct{ prefix, server string }{
		{"2001:db8::/32", "2001:db8:c000:201::"},
		{"2001:db8:100::/40", "2001:db8:1c0:2:1::"},
		{"2001:db8:122::/48", "2001:db8:122:c000:2:100::"},
		{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:201::"},
		{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:100:0"},
		{"64:ff9b::/96", "64:ff9b::c000:201"},
	} {
		cfg := testConfig()
		cfg.Pool6 = tc.prefix
		_, p, _ := newTestTranslator(t, cfg)
		out := make([]byte, 2000)
		srv := a6(tc.server)
		data := []byte("rfc6052")
		p.ipID = 0x1233
		r := p.Translate6to4(ip6(0, 17, 64, c6, srv, udpSeg(c6, srv, 1234, 53, data)), out)
		want := ip4(0, 0x1234, 0, 63, 17, p4, s4, udpSeg(p4, s4, 40000, 53, data))
		if r.Verdict != Forward || !bytes.Equal(out[:r.Len], want) {
			t.Errorf("%s: 6to4 %+v (%s)", tc.prefix, r, r.ReasonName())
		}
		r = p.Translate4to6(ip4(0, 1, 0, 64, 17, s4, p4, udpSeg(s4, p4, 53, 40000, data)), out)
		want = ip6(0, 17, 63, srv, c6, udpSeg(srv, c6, 53, 1234, data))
		if r.Verdict != Forward || !bytes.Equal(out[:r.Len], want) {
			t.Errorf("%s: 4to6 %+v (%s)\n got %x\nwant %x", tc.prefix, r, r.ReasonName(), out[:r.Len], want)
		}
	}
}
