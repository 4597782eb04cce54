package rrl

import (
	"net/netip"
	"testing"
)

func TestLimitsPerPrefixAndSlips(t *testing.T) {
	l := New(Config{ResponsesPerSecond: 5, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 1024})
	now := int64(1_000 * nano)
	name := "\x04shop\x04test\x00"
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.200") // same /24: same bucket
	c := netip.MustParseAddr("198.51.100.1")
	counts := map[Action]int{}
	for i := range 20 {
		client := a
		if i%2 == 1 {
			client = b
		}
		counts[l.Check(client, Answer, name, 1, now)]++
	}
	if counts[Send] != 5 || counts[Slip] != 7 || counts[Drop] != 8 {
		t.Fatalf("20 responses at rate 5, slip 2: got %v, want 5 sent, 7 slipped, 8 dropped", counts)
	}
	if got := l.Check(c, Answer, name, 1, now); got != Send {
		t.Fatalf("another prefix is limited: %v", got)
	}
	if got := l.Check(a, Answer, name, 28, now); got != Send {
		t.Fatalf("another type is limited: %v", got)
	}
	// A fifth of a second later one token is back (rate 5).
	if got := l.Check(a, Answer, name, 1, now+nano/5); got != Send {
		t.Fatalf("after refill: %v", got)
	}
	if got := l.Check(a, Answer, name, 1, now+nano/5); got == Send {
		t.Fatalf("refilled more than one token")
	}
	// IPv6 clients share a bucket per /56.
	x := netip.MustParseAddr("2001:db8:0:1::1")
	y := netip.MustParseAddr("2001:db8:0:2::1")
	for range 5 {
		l.Check(x, Error, "", 0, now)
	}
	if got := l.Check(y, Error, "", 0, now); got == Send {
		t.Fatalf("same /56 not limited together")
	}
}

func TestNoAllocs(t *testing.T) {
	l := New(Config{ResponsesPerSecond: 100, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 1024})
	a := netip.MustParseAddr("2001:db8::1")
	name := "\x04shop\x04test\x00"
	if n := testing.AllocsPerRun(100, func() { l.Check(a, Answer, name, 1, 5) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}
