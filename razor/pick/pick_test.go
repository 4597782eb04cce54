package pick

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
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
			a := s.Pools[c.Pool].Addrs[c.Index]
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
			hits[s.Pools[c.Pool].Addrs[c.Index]]++
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

// A shard's mix of pools follows their weights (weighted rendezvous
// hashing), whatever the pools' sizes; and it is the same computed with
// or without PrepareShards.
func TestShardFollowsWeights(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pools  []Pool
		wantA  float64 // expected share of pool 0 in shards
		within float64
	}{
		{"weights 3:1, equal sizes", []Pool{{ID: 0, Weight: 300, Addrs: addrs("10.1.0.", 100)}, {ID: 1, Weight: 100, Addrs: addrs("10.2.0.", 100)}}, 0.75, 0.03},
		{"equal weights, sizes 3:1", []Pool{{ID: 0, Weight: 100, Addrs: addrs("10.1.0.", 150)}, {ID: 1, Weight: 100, Addrs: addrs("10.2.0.", 50)}}, 0.5, 0.03},
		{"weights 1:3, sizes 3:1", []Pool{{ID: 0, Weight: 100, Addrs: addrs("10.1.0.", 150)}, {ID: 1, Weight: 300, Addrs: addrs("10.2.0.", 50)}}, 0.25, 0.03},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSet(tc.pools)
			p := NewSet(tc.pools)
			p.PrepareShards()
			inA, all := 0, 0
			for i := range 4000 {
				label := []byte(fmt.Sprintf("label-%d", i))
				sh := s.Shard(label, 8)
				if got, want := fmt.Sprint(sh.Pools), fmt.Sprint(p.Shard(label, 8).Pools); got != want {
					t.Fatalf("%s: shard differs with PrepareShards: %s vs %s", label, got, want)
				}
				for _, pl := range sh.Pools {
					all += len(pl.Addrs)
					if pl.ID == 0 {
						inA += len(pl.Addrs)
					}
				}
			}
			if got := float64(inA) / float64(all); math.Abs(got-tc.wantA) > tc.within {
				t.Fatalf("pool 0 holds %.3f of the shard places, want %.2f±%.2f", got, tc.wantA, tc.within)
			}
		})
	}
}

// The weighted score is pinned: every razor must rank addresses alike.
func TestWeightedScoreGolden(t *testing.T) {
	for _, tc := range []struct {
		h    uint64
		w    float64
		want float64
	}{
		{1 << 63, 1, 1.4426950408889638},       // u just above 1/2: about 1/ln 2
		{1 << 63, 3, 4.3280851226668915},       // three times that
		{0, 1, 0.027220661148848368},           // the smallest u
		{^uint64(0), 2, 1.8014398509481984e16}, // the largest u, below 1
	} {
		if got := WeightedScore(tc.h, tc.w); got != tc.want {
			t.Errorf("WeightedScore(%#x, %v) = %v, want %v", tc.h, tc.w, got, tc.want)
		}
	}
}

// Equal weights per address: no logarithm (compare BenchmarkShardMiss500).
func BenchmarkShardMiss500Uniform(b *testing.B) {
	s := NewSet([]Pool{{Weight: 1, Addrs: addrs("2001:db8::", 250)}, {Weight: 1, Addrs: addrs("2001:db8:1::", 250)}})
	s.PrepareShards()
	b.ReportAllocs()
	for b.Loop() {
		s.Shard([]byte("some-customer"), 8)
	}
}

// Shard's shortcut (hashCut) changes nothing: the shard is the n best of
// every address's full score.
func TestShardMatchesFullRanking(t *testing.T) {
	pools := []Pool{{ID: 0, Weight: 1, Addrs: addrs("10.1.0.", 200)}, {ID: 1, Weight: 7, Addrs: addrs("10.2.0.", 30)},
		{ID: 2, Weight: 1000, Addrs: addrs("10.3.0.", 3)}}
	s := NewSet(pools)
	s.PrepareShards()
	for i := range 3000 {
		label := []byte(fmt.Sprintf("l%d", i))
		var all []scored
		hl := LabelHash(label)
		for pi, p := range s.Pools {
			for j, a := range p.Addrs {
				h := mix(hl ^ AddrHash(a))
				all = append(all, scored{score: h, wscore: WeightedScore(h, float64(p.Weight)/float64(len(p.Addrs))), pool: pi, idx: j})
			}
		}
		slices.SortFunc(all, func(x, y scored) int {
			if better(x, y) {
				return -1
			}
			return 1
		})
		want := map[netip.Addr]bool{}
		for _, c := range all[:8] {
			want[s.Pools[c.pool].Addrs[c.idx]] = true
		}
		got := 0
		for _, p := range s.Shard(label, 8).Pools {
			for _, a := range p.Addrs {
				if !want[a] {
					t.Fatalf("%s: %s in the shard, not among the 8 best", label, a)
				}
				got++
			}
		}
		if got != 8 {
			t.Fatalf("%s: %d addresses in the shard, want 8", label, got)
		}
	}
}

// detLog agrees with math.Log to within an ulp or two over (0, 1].
func TestDetLog(t *testing.T) {
	for i := range 100000 {
		x := (float64(i) + 0.5) / 100000
		if got, want := detLog(x), math.Log(x); math.Abs(got-want) > 4e-16*math.Abs(want)+1e-300 {
			t.Fatalf("detLog(%v) = %v, math.Log %v", x, got, want)
		}
	}
	if got := detLog(1); got != 0 {
		t.Fatalf("detLog(1) = %v", got)
	}
}
