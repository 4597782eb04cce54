package nat64

import (
	"testing"
)

// The fast path (a packet of an existing session) allocates nothing.
func TestFastPathZeroAllocs(t *testing.T) {
	_, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 70000)
	data := bytesN(512, 1)
	up := ip6(0, 17, 64, c6, s6, udpSeg(c6, s6, 1234, 53, data))
	down := ip4(0, 7, 0, 50, 17, s4, p4, udpSeg(s4, p4, 53, 40000, data))
	tcpUp := ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, tcpSYN, data))
	tcpAck := ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, tcpACK, data))
	tcpDown := ip4(0, 7, 0, 50, 6, s4, p4, tcpSeg(s4, p4, 80, 40000, tcpACK, data))
	pingUp := ip6(0, 58, 64, c6, s6, icmpMsg(c6, s6, 128, 0, 77<<16|1, data))
	pingDown := ip4(0, 7, 0, 50, 1, s4, p4, icmpMsg(nil, nil, 0, 0, 4077<<16|1, data))
	for _, b := range [][]byte{up, tcpUp, pingUp} {
		if r := p.Translate6to4(b, out); r.Verdict != Forward {
			t.Fatal(r.ReasonName())
		}
	}
	gso := cat(vnet(vnetNeedsCsum, gsoTCPv6, 60, 1440, 40, 16),
		ip6(0, 6, 64, c6, s6, withPartial(tcpSeg(c6, s6, 1234, 80, tcpACK, bytesN(20000, 1)), 16, c6, s6, 6, 0)))
	partial := cat(vnet(vnetNeedsCsum, gsoNone, 0, 0, 40, 6),
		ip6(0, 17, 64, c6, s6, withPartial(udpSeg(c6, s6, 1234, 53, data), 6, c6, s6, 17, 8+len(data))))
	for name, f := range map[string]func() Result{
		"tcp super-packet 6to4": func() Result { return p.TranslateOffload(gso, out) },
		"partial udp 6to4":      func() Result { return p.TranslateOffload(partial, out) },
		"udp 6to4":              func() Result { return p.Translate6to4(up, out) },
		"udp 4to6":              func() Result { return p.Translate4to6(down, out) },
		"tcp 6to4":              func() Result { return p.Translate6to4(tcpAck, out) },
		"tcp 4to6":              func() Result { return p.Translate4to6(tcpDown, out) },
		"ping 6to4":             func() Result { return p.Translate6to4(pingUp, out) },
		"ping 4to6":             func() Result { return p.Translate4to6(pingDown, out) },
	} {
		if a := testing.AllocsPerRun(200, func() {
			if r := f(); r.Verdict != Forward {
				t.Fatal(name, r.ReasonName())
			}
		}); a != 0 {
			t.Errorf("%s: %.1f allocations per packet", name, a)
		}
	}
}

func benchPath(b *testing.B, from6 bool, proto uint8, size int) {
	cfg := testConfig()
	_, p, _ := newTestTranslator(b, cfg)
	out := make([]byte, 70000)
	data := bytesN(size, 1)
	var up, down []byte
	switch proto {
	case protoUDP:
		up = ip6(0, 17, 64, c6, s6, udpSeg(c6, s6, 1234, 53, data))
		down = ip4(0, 7, 0x4000, 50, 17, s4, p4, udpSeg(s4, p4, 53, 40000, data))
	case protoTCP:
		up = ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, tcpSYN, data))
		down = ip4(0, 7, 0x4000, 50, 6, s4, p4, tcpSeg(s4, p4, 80, 40000, tcpACK, data))
	}
	p.Translate6to4(up, out)
	in := down
	if from6 {
		in = up
		if proto == protoTCP {
			in = ip6(0, 6, 64, c6, s6, tcpSeg(c6, s6, 1234, 80, tcpACK, data))
		}
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if from6 {
			p.Translate6to4(in, out)
		} else {
			p.Translate4to6(in, out)
		}
	}
}

func BenchmarkTranslate6to4UDP64(b *testing.B)   { benchPath(b, true, protoUDP, 64) }
func BenchmarkTranslate6to4UDP1400(b *testing.B) { benchPath(b, true, protoUDP, 1400) }
func BenchmarkTranslate4to6UDP64(b *testing.B)   { benchPath(b, false, protoUDP, 64) }
func BenchmarkTranslate4to6TCP1400(b *testing.B) { benchPath(b, false, protoTCP, 1400) }
func BenchmarkTranslate6to4TCP1400(b *testing.B) { benchPath(b, true, protoTCP, 1400) }

// BenchmarkSessionCreate measures new UDP sessions (binding + session) per
// second and the heap per session.
func BenchmarkSessionCreate(b *testing.B) {
	cfg := testConfig()
	cfg.Pool4 = []string{"198.51.100.0/24"}
	cfg.MaxSessionsPerClient = -1
	cfg.MaxSessions = -1
	_, p, _ := newTestTranslator(b, cfg)
	out := make([]byte, 2000)
	pkt := ip6(0, 17, 64, c6, s6, udpSeg(c6, s6, 1, 53, nil))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		// 256 source ports per client, a new client every 256 sessions
		pkt[8+15], pkt[8+14], pkt[8+13] = byte(i>>8), byte(i>>16), byte(i>>24)
		pkt[40], pkt[41] = 4, byte(i)
		p.Translate6to4(pkt, out) // checksum is wrong but not checked on this path
	}
}
