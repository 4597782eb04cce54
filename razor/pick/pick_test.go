package pick

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func addrs(prefix string, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range n {
		out[i] = netip.MustParseAddr(fmt.Sprintf("%s%d", prefix, i+1))
	}
	return out
}

func TestPickDistinctAndFewerWhenFewer(t *testing.T) {
	s := NewSet([]Pool{{ID: 0, Weight: 100, Addrs: addrs("192.0.2.", 3)}, {ID: 1, Weight: 1, Addrs: addrs("198.51.100.", 2)}})
	for range 1000 {
		got := s.Pick(4, nil)
		if len(got) != 4 {
			t.Fatalf("got %d records, want 4", len(got))
		}
		seen := map[netip.Addr]bool{}
		for _, c := range got {
			a := s.Addr(c)
			if seen[a] {
				t.Fatalf("duplicate %s in %v", a, got)
			}
			seen[a] = true
		}
	}
	if got := s.Pick(10, nil); len(got) != 5 {
		t.Fatalf("asked 10 of 5: got %d, want all 5", len(got))
	}
	if got := NewSet(nil).Pick(4, nil); len(got) != 0 {
		t.Fatalf("empty set gave %v", got)
	}
}

func TestPickWeightedShares(t *testing.T) {
	s := NewSet([]Pool{
		{ID: 0, Weight: 300, Addrs: addrs("192.0.2.", 20)},
		{ID: 1, Weight: 100, Addrs: addrs("198.51.100.", 10)},
	})
	const rounds = 40000
	hits := map[netip.Addr]int{}
	var out []Choice
	for range rounds {
		out = s.Pick(4, out[:0])
		for _, c := range out {
			hits[s.Addr(c)]++
		}
	}
	records := float64(rounds * 4)
	for pi, p := range s.Pools {
		want := records * float64(p.Weight) / 400 / float64(len(p.Addrs))
		for _, a := range p.Addrs {
			if d := math.Abs(float64(hits[a])-want) / want; d > 0.1 {
				t.Errorf("pool %d %s: %d hits, want %.0f ±10%%", pi, a, hits[a], want)
			}
		}
	}
}

func TestPickAllocs(t *testing.T) {
	s := NewSet([]Pool{{Weight: 1, Addrs: addrs("192.0.2.", 200)}, {Weight: 2, Addrs: addrs("198.51.100.", 100)}})
	out := make([]Choice, 0, MaxAnswers)
	if n := testing.AllocsPerRun(200, func() { out = s.Pick(8, out[:0]) }); n != 0 {
		t.Fatalf("Pick allocates %v times", n)
	}
}

func TestShardDeterministicAndMinimalChange(t *testing.T) {
	base := addrs("2001:db8::", 100)
	s := NewSet([]Pool{{Weight: 1, Addrs: base[:50]}, {Weight: 1, Addrs: base[50:]}})
	members := func(s *Set) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, p := range s.Pools {
			for _, a := range p.Addrs {
				m[a] = true
			}
		}
		return m
	}
	for _, label := range []string{"shop", "blog", "x"} {
		a := members(s.Shard([]byte(label), 8))
		b := members(s.Shard([]byte(label), 8))
		if len(a) != 8 || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: shard not stable: %v vs %v", label, a, b)
		}
		// Case does not matter (DNS names).
		if c := members(s.Shard([]byte("SHOP"), 8)); label == "shop" && fmt.Sprint(a) != fmt.Sprint(c) {
			t.Fatalf("shard depends on case")
		}
		// Remove one address outside the shard: nothing moves. Remove one
		// inside: only it is replaced.
		for _, drop := range []netip.Addr{base[0], firstOf(a)} {
			var left []netip.Addr
			for _, x := range base {
				if x != drop {
					left = append(left, x)
				}
			}
			c := members(NewSet([]Pool{{Weight: 1, Addrs: left}}).Shard([]byte(label), 8))
			moved := 0
			for x := range a {
				if !c[x] {
					moved++
				}
			}
			want := 0
			if a[drop] {
				want = 1
			}
			if moved != want {
				t.Errorf("%s: dropping %s moved %d addresses, want %d", label, drop, moved, want)
			}
		}
	}
}

func firstOf(m map[netip.Addr]bool) netip.Addr {
	for a := range m {
		return a
	}
	return netip.Addr{}
}

// A golden value pins the hash: a change here would reshuffle every
// customer's shard on upgrade.
func TestScoreGolden(t *testing.T) {
	got := Score([]byte("shop"), netip.MustParseAddr("2001:db8::1"))
	if got != Score([]byte("Shop"), netip.MustParseAddr("2001:db8::1")) {
		t.Fatal("score depends on case")
	}
	if want := uint64(0x264743aaad3e72f8); got != want {
		t.Fatalf("Score changed: got %#x, want %#x", got, want)
	}
}

func TestShardAllocsBounded(t *testing.T) {
	s := NewSet([]Pool{{Weight: 1, Addrs: addrs("2001:db8::", 500)}})
	s.PrepareShards()
	// A miss builds the shard's Set: a handful of allocations, not one
	// per address.
	if n := testing.AllocsPerRun(50, func() { s.Shard([]byte("random-label"), 8) }); n > 8 {
		t.Fatalf("Shard allocates %v times", n)
	}
}

// A shard of 8 out of 500 addresses, as for a label not seen before (the
// cost of a random-label flood).
func BenchmarkShardMiss500(b *testing.B) {
	s := NewSet([]Pool{{Weight: 1, Addrs: addrs("2001:db8::", 250)}, {Weight: 2, Addrs: addrs("2001:db8:1::", 250)}})
	s.PrepareShards()
	b.ReportAllocs()
	for b.Loop() {
		s.Shard([]byte("some-customer"), 8)
	}
}

func BenchmarkPick4of300(b *testing.B) {
	s := NewSet([]Pool{{Weight: 1, Addrs: addrs("192.0.2.", 200)}, {Weight: 2, Addrs: addrs("198.51.100.", 100)}})
	out := make([]Choice, 0, MaxAnswers)
	b.ReportAllocs()
	for b.Loop() {
		out = s.Pick(4, out[:0])
	}
}
