package nat64

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

func vnet(flags, gso uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) []byte {
	b := make([]byte, vnetHdrLen)
	(&vnetHdr{flags, gso, hdrLen, gsoSize, csumStart, csumOffset}).encode(b)
	return b
}

// withPartial replaces a transport checksum by the partial sum Linux leaves
// for the device: the uncomplemented pseudo-header sum (length 0 for TCP
// super-packets, the real length otherwise).
func withPartial(seg []byte, off int, src, dst []byte, proto uint8, length int) []byte {
	seg = append([]byte{}, seg...)
	binary.BigEndian.PutUint16(seg[off:], ^csum(pseudo(src, dst, proto, length)))
	return seg
}

func TestTranslateOffload(t *testing.T) {
	_, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	data := bytesN(5000, 9)
	// A session for the super-packets.
	if r := tcp6to4(p, out, c6, 1234, s4, 80, tcpSYN); r.Verdict != Forward {
		t.Fatal(r.ReasonName())
	}
	udpData := bytesN(100, 4)
	big := bytesN(1400, 5)
	for _, tc := range []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{
			name: "tcp super-packet 6to4 keeps its partial checksum, GSO TCPv6 -> TCPv4 (ECN kept)",
			in: cat(vnet(vnetNeedsCsum, gsoTCPv6|gsoECN, 60, 1440, 40, 16),
				ip6(0, 6, 64, c6, s6, withPartial(tcpSeg(c6, s6, 1234, 80, tcpACK, data), 16, c6, s6, 6, 0))),
			want: [][]byte{cat(vnet(vnetNeedsCsum, gsoTCPv4|gsoECN, 40, 1440, 20, 16),
				ip4(0, 0x1234, df, 63, 6, p4, s4, withPartial(tcpSeg(p4, s4, 40000, 80, tcpACK, data), 16, p4, s4, 6, 0)))},
		},
		{
			name: "tcp super-packet 4to6",
			in: cat(vnet(vnetNeedsCsum, gsoTCPv4, 40, 1400, 20, 16),
				ip4(0, 77, df, 50, 6, s4, p4, withPartial(tcpSeg(s4, p4, 80, 40000, tcpACK, data), 16, s4, p4, 6, 0))),
			want: [][]byte{cat(vnet(vnetNeedsCsum, gsoTCPv6, 60, 1400, 40, 16),
				ip6(0, 6, 49, s6, c6, withPartial(tcpSeg(s6, c6, 80, 1234, tcpACK, data), 16, s6, c6, 6, 0)))},
		},
		{
			name: "partial udp checksum is completed, then translated as usual",
			in: cat(vnet(vnetNeedsCsum, gsoNone, 0, 0, 40, 6),
				ip6(0, 17, 64, c6, s6, withPartial(udpSeg(c6, s6, 1234, 53, udpData), 6, c6, s6, 17, 8+len(udpData)))),
			want: [][]byte{cat(make([]byte, vnetHdrLen), ip4(0, 0x1234, 0, 63, 17, p4, s4, udpSeg(p4, s4, 40000, 53, udpData)))},
		},
		{
			name: "fragments each get a header",
			in:   cat(make([]byte, vnetHdrLen), ip4(0, 0x7777, 0, 50, 17, s4, p4, udpSeg(s4, p4, 53, 40000, big))),
			want: [][]byte{
				cat(make([]byte, vnetHdrLen), ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 0, true, 0x7777), udpSeg(s6, c6, 53, 1234, big)[:1232]))),
				cat(make([]byte, vnetHdrLen), ip6(0, 44, 49, s6, c6, cat(fragHdr(17, 1232, false, 0x7777), udpSeg(s6, c6, 53, 1234, big)[1232:]))),
			},
		},
	} {
		p.ipID = 0x1233
		r := p.TranslateOffload(tc.in, out)
		want := cat(tc.want...)
		if r.Verdict != Forward || r.Parts != len(tc.want) || !bytes.Equal(out[:r.Len], want) {
			t.Errorf("%s: %+v (%s)\n got %s\nwant %s", tc.name, r, r.ReasonName(), hex.EncodeToString(out[:min(r.Len, 200)]), hex.EncodeToString(want[:min(len(want), 200)]))
		}
	}
	// An IPv4 super-packet without DF is translated whole all the same.
	p.ipID = 0x1233
	in := cat(vnet(vnetNeedsCsum, gsoTCPv4, 40, 1400, 20, 16),
		ip4(0, 77, 0, 50, 6, s4, p4, withPartial(tcpSeg(s4, p4, 80, 40000, tcpACK, data), 16, s4, p4, 6, 0)))
	orig := append([]byte{}, in...)
	want := cat(vnet(vnetNeedsCsum, gsoTCPv6, 60, 1400, 40, 16),
		ip6(0, 6, 49, s6, c6, withPartial(tcpSeg(s6, c6, 80, 1234, tcpACK, data), 16, s6, c6, 6, 0)))
	if r := p.TranslateOffload(in, out); r.Verdict != Forward || !bytes.Equal(out[:r.Len], want) || !bytes.Equal(in, orig) {
		t.Errorf("super-packet without DF: %+v (%s)", r, r.ReasonName())
	}
	// Super-packets that are not plain TCP are refused.
	for _, in := range [][]byte{
		cat(vnet(vnetNeedsCsum, gsoUDP, 48, 1400, 40, 6), ip6(0, 17, 64, c6, s6, udpSeg(c6, s6, 1234, 53, data))),
		cat(vnet(vnetNeedsCsum, gsoTCPv4, 40, 1400, 20, 16), ip4(0, 77, mf, 50, 6, s4, p4, tcpSeg(s4, p4, 80, 40000, tcpACK, data))),
		cat(vnet(0, gsoTCPv6, 60, 1400, 40, 16), ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, tcpACK, data))),
	} {
		if r := p.TranslateOffload(in, out); r.ReasonName() != "offload" {
			t.Errorf("got %+v (%s), want an offload drop", r, r.ReasonName())
		}
	}
}

func FuzzTranslateOffload(f *testing.F) {
	for _, tc := range translationCases() {
		f.Add(cat(make([]byte, vnetHdrLen), tc.in), uint16(3000))
		f.Add(cat(vnet(vnetNeedsCsum, gsoTCPv6, 60, 1400, 40, 16), tc.in), uint16(3000))
		f.Add(cat(vnet(vnetNeedsCsum, gsoTCPv4, 40, 1400, 20, 16), tc.in), uint16(3000))
	}
	f.Fuzz(func(t *testing.T, in []byte, outLen uint16) {
		_, p := fuzzTranslator(t)
		buf := make([]byte, int(outLen)+64)
		for i := range buf {
			buf[i] = 0xa5
		}
		out := buf[:outLen:outLen]
		r := p.TranslateOffload(in, out)
		if r.Verdict != Drop && (r.Len > int(outLen) || r.Len < vnetHdrLen) {
			t.Fatalf("result %+v outside out (%d)", r, outLen)
		}
		for _, b := range buf[outLen:] {
			if b != 0xa5 {
				t.Fatal("write past out")
			}
		}
	})
}
