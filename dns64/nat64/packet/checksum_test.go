package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// naive is RFC 1071's reference algorithm.
func naive(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestSumMatchesRFC1071(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Sum(b, 0), naive(b); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d: Sum %#04x, naive %#04x", n, got, want)
		}
	}
}

// RFC 1071 section 3 example: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
func TestSumRFC1071Example(t *testing.T) {
	if got := Sum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0xddf2 {
		t.Fatalf("got %#04x", got)
	}
}

// Incremental update (RFC 1624) agrees with a full recomputation.
func TestUpdateMatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		b := make([]byte, 2+2*r.IntN(40))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		x := Checksum(b, 0)
		w := 2 * r.IntN(len(b)/2)
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(r.Uint32())
		binary.BigEndian.PutUint16(b[w:], nw)
		got, want := Update(x, old, nw), Checksum(b, 0)
		if got != want && !(got == 0 && want == 0xffff) && !(got == 0xffff && want == 0) {
			t.Fatalf("update %#04x, recompute %#04x", got, want)
		}
	}
}
