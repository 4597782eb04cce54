// Package pick chooses the addresses of a route answer: distinct records,
// pools weighted, addresses uniform within a pool, and the deterministic
// per-label shards of shuffle sharding (rendezvous hashing).
package pick

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/v6pod/v6pod/internal/siphash"
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
	// hashes[i][j] is AddrHash of Pools[i].Addrs[j], computed once, so a
	// shard costs one cheap mix per address (see Shard).
	hashes [][]uint64
	// addrWeight[i] is the rendezvous weight of every address of
	// Pools[i]: the pool's weight over its size, so a shard's mix of pools
	// follows their weights. uniform: all are equal (or one pool), and
	// the ordering of the hashes alone decides (no logarithm).
	addrWeight []float64
	uniform    bool
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

// PrepareShards computes every address's AddrHash once, so later Shard
// calls cost one mix per address. Call it before the set is shared.
func (s *Set) PrepareShards() {
	s.hashes = s.computeHashes()
	s.addrWeight, s.uniform = s.weights()
}

func (s *Set) weights() ([]float64, bool) {
	w := make([]float64, len(s.Pools))
	uniform := true
	for i, p := range s.Pools {
		w[i] = float64(p.Weight) / float64(len(p.Addrs))
		if w[i] != w[0] {
			uniform = false
		}
	}
	return w, uniform
}

func (s *Set) computeHashes() [][]uint64 {
	h := make([][]uint64, len(s.Pools))
	for i, p := range s.Pools {
		h[i] = make([]uint64, len(p.Addrs))
		for j, a := range p.Addrs {
			h[i][j] = AddrHash(a)
		}
	}
	return h
}

// Len is the number of addresses in the set.
func (s *Set) Len() int { return s.total }

// Choice is one picked record: a pool of the set and an address index in it.
type Choice struct {
	Pool, Index int
}

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

// LabelHash is SipHash-2-4 of the lower-case label, prefixed with 'L'.
func LabelHash(label []byte) uint64 {
	d := siphash.New(ShardKey)
	var lb [64]byte
	lb[0] = 'L'
	n := copy(lb[1:], label)
	for i := 1; i <= n; i++ {
		if c := lb[i]; c >= 'A' && c <= 'Z' {
			lb[i] = c + 'a' - 'A'
		}
	}
	d.Write(lb[:1+n])
	if len(label) > n {
		d.Write(label[n:]) // labels are at most 63 bytes; never here
	}
	return d.Sum64()
}

// AddrHash is SipHash-2-4 of 'A' and the 16-byte form of a.
func AddrHash(a netip.Addr) uint64 {
	var b [17]byte
	b[0] = 'A'
	a16 := a.As16()
	copy(b[1:], a16[:])
	return siphash.Sum64(ShardKey, b[:])
}

// mix is the 64-bit finalizer of MurmurHash3: a bijection in which every
// input bit flips every output bit with probability about one half.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Score is the rendezvous weight of address a for label:
// mix(LabelHash(label) XOR AddrHash(a)). The keyed hashes are fixed per
// label and per address, so a shard needs one SipHash of the label and one
// mix per address.
func Score(label []byte, a netip.Addr) uint64 { return mix(LabelHash(label) ^ AddrHash(a)) }

// WeightedScore is the weighted rendezvous score of an address of weight
// w whose Score is h: -w / ln(u), with u = h mapped into (0, 1). The
// address with the highest score wins with probability proportional to its
// weight (Schindelhauer and Schomaker, "Weighted distributed hash
// tables", 2005); for equal weights the order is that of h.
func WeightedScore(h uint64, w float64) float64 {
	u := (float64(h>>12) + 0.5) / (1 << 52) // in (0, 1): 1 is never reached
	return -w / detLog(u)
}

// detLog is the natural logarithm of x in (0, 1], the same on every
// architecture: Go's portable math.log (FreeBSD's e_log.c), with each
// product rounded by an explicit conversion so that no compiler fuses a
// multiply-add (the Go spec allows fusion otherwise), unlike math.Log,
// which is assembly on amd64 and Go elsewhere. Shards must not depend on
// the machine.
func detLog(x float64) float64 {
	const (
		Ln2Hi = 6.93147180369123816490e-01 /* 3fe62e42 fee00000 */
		Ln2Lo = 1.90821492927058770002e-10 /* 3dea39ef 35793c76 */
		L1    = 6.666666666666735130e-01   /* 3FE55555 55555593 */
		L2    = 3.999999999940941908e-01   /* 3FD99999 9997FA04 */
		L3    = 2.857142874366239149e-01   /* 3FD24924 94229359 */
		L4    = 2.222219843214978396e-01   /* 3FCC71C5 1D8E78AF */
		L5    = 1.818357216161805012e-01   /* 3FC74664 96CB03DE */
		L6    = 1.531383769920937332e-01   /* 3FC39A09 D078C69F */
		L7    = 1.479819860511658591e-01   /* 3FC2F112 DF3E5244 */
	)
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (L1 + float64(s4*(L3+float64(s4*(L5+float64(s4*L7)))))))
	t2 := float64(s4 * (L2 + float64(s4*(L4+float64(s4*L6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*Ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*Ln2Lo))) - f)
}

// hashCut returns a hash below which an address of weight w scores below
// t for sure: WeightedScore(h, w) > t needs u > exp(-w/t), and the cut
// lies a margin under that, far beyond any rounding, so the shard is
// exactly what comparing every score gives.
func hashCut(w, t float64) uint64 {
	u0 := math.Exp(-w/t)*(1-1e-6) - 1.0/(1<<40) // a bound only: need not be exact
	if u0 <= 0 {
		return 0
	}
	return uint64(u0 * (1 << 64))
}

type scored struct {
	score  uint64  // Score, deciding when the weights are uniform
	wscore float64 // WeightedScore, deciding otherwise
	pool   int
	idx    int
}

// better orders candidates: higher score first, ties by pool and index.
func better(x, y scored) bool {
	if x.wscore != y.wscore {
		return x.wscore > y.wscore
	}
	if x.score != y.score {
		return x.score > y.score
	}
	if x.pool != y.pool {
		return x.pool < y.pool
	}
	return x.idx < y.idx
}

// Shard returns the subset of s that label is served from: the n addresses
// with the highest weighted rendezvous score (WeightedScore of Score, each
// address weighing its pool's weight over the pool's size, so the pools'
// shares of a shard follow their weights), grouped by pool as in s, with
// the pools' weights. When s holds n or fewer addresses it is s. With
// uniform weights, adding or removing an address changes a shard by at
// most that address (and the one it displaces); otherwise it also changes
// its pool's address weight, which moves a few more.
func (s *Set) Shard(label []byte, n int) *Set {
	if s.total <= n {
		return s
	}
	hl := LabelHash(label)
	hashes, aw, uniform := s.hashes, s.addrWeight, s.uniform
	if hashes == nil {
		hashes = s.computeHashes()
		aw, uniform = s.weights()
	}
	var buf [64]scored
	top := buf[:0]
	if n > len(buf) {
		top = make([]scored, 0, n)
	}
	// Keep the n best in descending order (insertion: n is small). With
	// weights, an address of pool pi whose hash lies below cut cannot
	// beat the n-th best: the logarithm is left out for most addresses.
	for pi := range s.Pools {
		var cut uint64
		if !uniform && len(top) == n {
			cut = hashCut(aw[pi], top[n-1].wscore)
		}
		for j, ha := range hashes[pi] {
			c := scored{score: mix(hl ^ ha), pool: pi, idx: j}
			if c.score < cut {
				continue
			}
			if !uniform {
				c.wscore = WeightedScore(c.score, aw[pi])
			}
			if len(top) == n && !better(c, top[n-1]) {
				continue
			}
			if len(top) < n {
				top = append(top, c)
			}
			k := len(top) - 1
			for k > 0 && better(c, top[k-1]) {
				top[k] = top[k-1]
				k--
			}
			top[k] = c
			if !uniform && len(top) == n {
				cut = hashCut(aw[pi], top[n-1].wscore)
			}
		}
	}
	// Group by pool, each pool's addresses in the pool's order.
	slices.SortFunc(top, func(x, y scored) int {
		if x.pool != y.pool {
			return x.pool - y.pool
		}
		return x.idx - y.idx
	})
	var pools []Pool
	last := -1
	for _, sc := range top {
		if sc.pool != last {
			src := s.Pools[sc.pool]
			pools = append(pools, Pool{ID: src.ID, Weight: src.Weight})
			last = sc.pool
		}
		pools[len(pools)-1].Addrs = append(pools[len(pools)-1].Addrs, s.Pools[sc.pool].Addrs[sc.idx])
	}
	return NewSet(pools)
}
