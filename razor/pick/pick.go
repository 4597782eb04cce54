// Package pick chooses the addresses of a route answer: distinct records,
// pools weighted, addresses uniform within a pool, and the deterministic
// per-label shards of shuffle sharding (rendezvous hashing).
package pick

import (
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/v6pod/v6pod/razor/siphash"
)

// MaxAnswers bounds the records of one pick (model.MaxAnswers).
const MaxAnswers = 64

// Pool is one pool's eligible addresses of one family, with its weight.
type Pool struct {
	ID     int // the caller's name for the pool (an index of its own)
	Weight uint64
	Addrs  []netip.Addr
}

// Set is what a pick draws from: pools with at least one address each.
type Set struct {
	Pools []Pool
	total int // addresses in all pools
}

// NewSet builds a set, leaving out pools without addresses or weight.
func NewSet(pools []Pool) *Set {
	s := &Set{}
	for _, p := range pools {
		if len(p.Addrs) == 0 || p.Weight == 0 {
			continue
		}
		s.Pools = append(s.Pools, p)
		s.total += len(p.Addrs)
	}
	return s
}

// Len is the number of addresses in the set.
func (s *Set) Len() int { return s.total }

// Choice is one picked record: a pool of the set and an address index in it.
type Choice struct {
	Pool, Index int
}

// Addr returns the address a choice names.
func (s *Set) Addr(c Choice) netip.Addr { return s.Pools[c.Pool].Addrs[c.Index] }

// Pick appends k distinct choices (fewer when the set holds fewer) to out
// and returns it. Each record's pool is drawn with probability proportional
// to its weight among the pools that still have unpicked addresses, then an
// address uniformly among that pool's unpicked ones. With out's capacity at
// least k it does not allocate.
func (s *Set) Pick(k int, out []Choice) []Choice {
	k = min(k, s.total, MaxAnswers)
	if k <= 0 {
		return out
	}
	base := len(out)
	if len(s.Pools) == 1 {
		return pickOne(0, len(s.Pools[0].Addrs), k, out)
	}
	var used [MaxAnswers]int // picks so far per pool, for the first pools
	var usedMore []int
	if len(s.Pools) > MaxAnswers {
		usedMore = make([]int, len(s.Pools)-MaxAnswers)
	}
	count := func(p int) *int {
		if p < MaxAnswers {
			return &used[p]
		}
		return &usedMore[p-MaxAnswers]
	}
	var total uint64
	for i := range s.Pools {
		total += s.Pools[i].Weight
	}
	for range k {
		// Weighted draw among pools not exhausted (total counts only those).
		r := rand.Uint64N(total)
		p := 0
		for i := range s.Pools {
			if *count(i) >= len(s.Pools[i].Addrs) {
				continue
			}
			if w := s.Pools[i].Weight; r >= w {
				r -= w
				continue
			}
			p = i
			break
		}
		n := len(s.Pools[p].Addrs)
		nt := *count(p)
		out = append(out, Choice{Pool: p, Index: unpicked(p, n, nt, out[base:])})
		*count(p) = nt + 1
		if nt+1 == n {
			total -= s.Pools[p].Weight
		}
	}
	return out
}

// pickOne picks k distinct addresses of a set's only pool p of n.
func pickOne(p, n, k int, out []Choice) []Choice {
	base := len(out)
	for i := range k {
		out = append(out, Choice{Pool: p, Index: unpicked(p, n, i, out[base:len(out)])})
	}
	return out
}

// unpicked returns a uniformly chosen index of pool p (of n addresses)
// that picked (holding nt choices of p) does not hold yet.
func unpicked(p, n, nt int, picked []Choice) int {
	if nt < n/2 {
		// Mostly free: draw until the index is new (expected < 2 draws).
		for {
			idx := rand.IntN(n)
			dup := false
			for _, c := range picked {
				if c.Pool == p && c.Index == idx {
					dup = true
					break
				}
			}
			if !dup {
				return idx
			}
		}
	}
	// Mostly taken: the idx-th free index, stepping over the taken ones
	// in ascending order.
	var taken [MaxAnswers]int
	m := 0
	for _, c := range picked {
		if c.Pool == p {
			taken[m] = c.Index
			m++
		}
	}
	slices.Sort(taken[:m])
	idx := rand.IntN(n - m)
	for _, t := range taken[:m] {
		if t <= idx {
			idx++
		}
	}
	return idx
}

// ShardKey is the fixed SipHash key of rendezvous hashing. It must never
// change: every razor, on every machine and after every restart, derives
// the same shards from it.
var ShardKey = siphash.Key{K0: 0x7636706f642d7261, K1: 0x7a6f722d73686172} // "v6pod-razor-shar"

// Score is the rendezvous weight of address a for label: SipHash-2-4 of
// the lower-case label, a zero byte, and the 16-byte form of a.
func Score(label []byte, a netip.Addr) uint64 {
	d := siphash.New(ShardKey)
	var lb [64]byte
	n := copy(lb[:], label)
	for i := range n {
		if c := lb[i]; c >= 'A' && c <= 'Z' {
			lb[i] = c + 'a' - 'A'
		}
	}
	d.Write(lb[:n])
	d.Write([]byte{0})
	b := a.As16()
	d.Write(b[:])
	return d.Sum64()
}

// Shard returns the subset of s that label is served from: the n addresses
// with the highest Score (highest random weight), grouped by pool as in s,
// with the pools' weights. When s holds n or fewer addresses it is s.
// Adding or removing an address changes a shard by at most that address
// (and the one it displaces).
func (s *Set) Shard(label []byte, n int) *Set {
	if s.total <= n {
		return s
	}
	type scored struct {
		score uint64
		pool  int
		addr  netip.Addr
	}
	all := make([]scored, 0, s.total)
	for pi, p := range s.Pools {
		for _, a := range p.Addrs {
			all = append(all, scored{Score(label, a), pi, a})
		}
	}
	slices.SortFunc(all, func(x, y scored) int {
		switch {
		case x.score > y.score:
			return -1
		case x.score < y.score:
			return 1
		}
		return x.addr.Compare(y.addr)
	})
	all = all[:n]
	// Keep each pool's addresses in the pool's order.
	slices.SortFunc(all, func(x, y scored) int {
		if x.pool != y.pool {
			return x.pool - y.pool
		}
		return x.addr.Compare(y.addr)
	})
	var pools []Pool
	last := -1
	for _, sc := range all {
		if sc.pool != last {
			src := s.Pools[sc.pool]
			pools = append(pools, Pool{ID: src.ID, Weight: src.Weight})
			last = sc.pool
		}
		pools[len(pools)-1].Addrs = append(pools[len(pools)-1].Addrs, sc.addr)
	}
	return NewSet(pools)
}
