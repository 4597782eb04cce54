package nat64

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Independent packet builders for the tests: full checksums computed the
// RFC 1071 way, no code shared with the translator.

func csum(parts ...[]byte) uint16 {
	var s uint32
	for _, b := range parts {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func a4(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
func a6(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }

func pseudo(src, dst []byte, proto uint8, n int) []byte {
	p := append(append([]byte{}, src...), dst...)
	if len(src) == 4 {
		return append(p, 0, proto, byte(n>>8), byte(n))
	}
	return append(p, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
}

func bytesN(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// udpSeg builds a UDP segment with the checksum over src/dst (nil: zero).
func udpSeg(src, dst []byte, sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	if src != nil {
		c := csum(pseudo(src, dst, 17, len(b)), b)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[6:], c)
	}
	return b
}

func tcpSeg(src, dst []byte, sport, dport uint16, flags uint8, data []byte) []byte {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 64240)
	copy(b[20:], data)
	binary.BigEndian.PutUint16(b[16:], csum(pseudo(src, dst, 6, len(b)), b))
	return b
}

// icmpMsg builds an ICMP message; src/dst non-nil means ICMPv6 (with the
// pseudo-header).
func icmpMsg(src, dst []byte, typ, code uint8, word uint32, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], word)
	copy(b[8:], body)
	if src != nil {
		binary.BigEndian.PutUint16(b[2:], csum(pseudo(src, dst, 58, len(b)), b))
	} else {
		binary.BigEndian.PutUint16(b[2:], csum(b))
	}
	return b
}

func echo(id, seq uint16, data []byte) (word uint32, body []byte) {
	return uint32(id)<<16 | uint32(seq), data
}

func ip4(tos uint8, id, ff uint16, ttl, proto uint8, src, dst []byte, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	b[0], b[1] = 0x45, tos
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], ff)
	b[8], b[9] = ttl, proto
	copy(b[12:], src)
	copy(b[16:], dst)
	binary.BigEndian.PutUint16(b[10:], csum(b[:20]))
	copy(b[20:], payload)
	return b
}

// ip4Len is ip4 with an explicit Total Length (inner packets cut short).
func ip4Len(total int, tos uint8, id, ff uint16, ttl, proto uint8, src, dst []byte, payload []byte) []byte {
	b := ip4(tos, id, ff, ttl, proto, src, dst, payload)
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], csum(b[:20]))
	return b
}

func ip6(tc, nh, hop uint8, src, dst []byte, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 0x60 | tc>>4
	b[1] = tc << 4
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = nh, hop
	copy(b[8:], src)
	copy(b[24:], dst)
	copy(b[40:], payload)
	return b
}

func ip6Len(plen int, tc, nh, hop uint8, src, dst []byte, payload []byte) []byte {
	b := ip6(tc, nh, hop, src, dst, payload)
	binary.BigEndian.PutUint16(b[4:], uint16(plen))
	return b
}

func fragHdr(nh uint8, off int, more bool, id uint32) []byte {
	b := make([]byte, 8)
	b[0] = nh
	v := uint16(off)
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// testConfig is the fixed setup of the table tests: pool6 64:ff9b::/96,
// pool4 198.51.100.0/30, static bindings for 2001:db8::1.
func testConfig() Config {
	return Config{
		Pool6: "64:ff9b::/96",
		Pool4: []string{"198.51.100.0/30"},
		Static: []Static{
			{Proto: "udp", V6: "[2001:db8::1]:1234", V4: "198.51.100.1:40000"},
			{Proto: "tcp", V6: "[2001:db8::1]:1234", V4: "198.51.100.1:40000"},
			{Proto: "icmp", V6: "[2001:db8::1]:77", V4: "198.51.100.1:4077"},
		},
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestTranslator(t testing.TB, cfg Config, opts ...Option) (*Translator, *Path, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	tr, err := NewTranslator(cfg, append([]Option{WithClock(clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, tr.NewPath(), clk
}
