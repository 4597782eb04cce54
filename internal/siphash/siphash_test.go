package siphash

import (
	"testing"
)

// The reference vectors of the SipHash paper (appendix A) and the
// reference implementation's vectors.h: key 00..0f, message 00..(n-1).
func TestReferenceVectors(t *testing.T) {
	var kb [16]byte
	for i := range kb {
		kb[i] = byte(i)
	}
	k := KeyFromBytes(kb)
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tc := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5}, // the paper's example
		{63, 0x958a324ceb064572},
	} {
		if got := Sum64(k, msg[:tc.n]); got != tc.want {
			t.Errorf("len %d: got %#x, want %#x", tc.n, got, tc.want)
		}
		// Incremental writes in odd pieces give the same sum.
		d := New(k)
		for i := 0; i < tc.n; i += 3 {
			d.Write(msg[i:min(i+3, tc.n)])
		}
		if got := d.Sum64(); got != tc.want {
			t.Errorf("len %d in pieces: got %#x, want %#x", tc.n, got, tc.want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	p := []byte("shop.route.v6pod.test and some address bytes")
	if n := testing.AllocsPerRun(100, func() { _ = Sum64(Key{1, 2}, p) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
