package nat64

import (
	"encoding/binary"
	"sync"
	"testing"
)

// valid reports whether pkt is a whole (unfragmented) IPv4 or IPv6 packet
// with TCP, UDP or ICMP whose transport checksum verifies; ok is false
// when it cannot tell (fragments, other protocols, extension headers).
func valid(pkt []byte) (good, ok bool) {
	if len(pkt) < 1 {
		return false, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 || pkt[0]&15 != 5 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return false, false
		}
		l4 := pkt[20:]
		switch pkt[9] {
		case 1:
			return csum(l4) == 0, true
		case 6, 17:
			if pkt[9] == 17 && len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) == 0 {
				return true, true
			}
			return csum(pseudo(pkt[12:16], pkt[16:20], pkt[9], len(l4)), l4) == 0, true
		}
	case 6:
		if len(pkt) < 40 || int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return false, false
		}
		l4 := pkt[40:]
		switch pkt[6] {
		case 6, 17, 58:
			return csum(pseudo(pkt[8:24], pkt[24:40], pkt[6], len(l4)), l4) == 0, true
		}
	}
	return false, false
}

// checkOutput asserts what every translated packet must satisfy.
func checkOutput(t *testing.T, in, out []byte, r Result, outLen int) {
	t.Helper()
	if r.Verdict == Drop {
		if r.Len != 0 || r.Reason == dropNone {
			t.Fatalf("drop with len %d reason %s", r.Len, r.ReasonName())
		}
		return
	}
	if r.Len <= 0 || r.Len > outLen || r.Parts < 1 {
		t.Fatalf("result %+v outside out (%d bytes)", r, outLen)
	}
	off := 0
	for i := 0; i < r.Parts; i++ {
		p := out[off:r.Len]
		var n int
		switch p[0] >> 4 {
		case 4:
			n = int(binary.BigEndian.Uint16(p[2:]))
			if csum(p[:20]) != 0 {
				t.Fatalf("bad IPv4 header checksum in % x", p[:20])
			}
		case 6:
			n = 40 + int(binary.BigEndian.Uint16(p[4:]))
		default:
			t.Fatalf("part %d: version %d", i, p[0]>>4)
		}
		if n > len(p) {
			t.Fatalf("part %d: length %d beyond %d", i, n, len(p))
		}
		off += n
	}
	if off != r.Len {
		t.Fatalf("parts cover %d of %d bytes", off, r.Len)
	}
	// A packet whose checksum was right stays right.
	if r.Parts == 1 {
		if ig, iok := valid(in); iok && ig {
			if og, ook := valid(out[:r.Len]); ook && !og {
				t.Fatalf("checksum broken by translation:\n in % x\nout % x", in, out[:r.Len])
			}
		}
	}
}

func fuzzSeeds(f *testing.F, from6 bool) {
	for _, tc := range translationCases() {
		if tc.from6 == from6 {
			f.Add(tc.in, uint16(2000))
		}
	}
}

var fuzzState struct {
	once sync.Once
	p    *Path
}

// fuzzTranslator returns one translator per process, with the sessions
// the seeds refer to (the fuzz function runs sequentially in a process).
func fuzzTranslator(t *testing.T) (*Translator, *Path) {
	fuzzState.once.Do(func() { fuzzState.p = newFuzzPath() })
	return fuzzState.p.t, fuzzState.p
}

func newFuzzPath() *Path {
	cfg := testConfig()
	cfg.SYNRate = -1
	tr, err := NewTranslator(cfg)
	if err != nil {
		panic(err)
	}
	p := tr.NewPath()
	// Sessions the seeds refer to.
	out := make([]byte, 70000)
	for _, tc := range translationCases() {
		if tc.from6 {
			p.Translate6to4(tc.in, out)
		}
	}
	return p
}

// FuzzTranslate6to4: never a panic, never a write outside out (out is cut
// to its length and capacity), every output well formed.
func FuzzTranslate6to4(f *testing.F) {
	fuzzSeeds(f, true)
	f.Fuzz(func(t *testing.T, in []byte, outLen uint16) {
		_, p := fuzzTranslator(t)
		buf := make([]byte, int(outLen)+64)
		for i := range buf {
			buf[i] = 0xa5
		}
		out := buf[:outLen:outLen]
		r := p.Translate6to4(in, out)
		checkOutput(t, in, out, r, int(outLen))
		for _, b := range buf[outLen:] {
			if b != 0xa5 {
				t.Fatal("write past out")
			}
		}
	})
}

func FuzzTranslate4to6(f *testing.F) {
	fuzzSeeds(f, false)
	f.Fuzz(func(t *testing.T, in []byte, outLen uint16) {
		_, p := fuzzTranslator(t)
		buf := make([]byte, int(outLen)+64)
		for i := range buf {
			buf[i] = 0xa5
		}
		out := buf[:outLen:outLen]
		r := p.Translate4to6(in, out)
		checkOutput(t, in, out, r, int(outLen))
		for _, b := range buf[outLen:] {
			if b != 0xa5 {
				t.Fatal("write past out")
			}
		}
	})
}

func FuzzParseBindingLine(f *testing.F) {
	f.Add("2026-11-22T03:00:00.000000Z nat64-binding add proto=udp v6=[2001:db8::85]:4321 v4=198.51.100.1:2000")
	f.Fuzz(func(t *testing.T, s string) { ParseBindingLine(s) })
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(readmeConfig(f)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil {
			c.SetDefaults()
			c.Validate()
		}
	})
}
