// Package maglev builds the lookup tables of Maglev consistent hashing
// (Eisenbud et al., NSDI 2016, section 3.4).
//
// A table has M slots, M prime. Every backend owns a permutation of the slots
// given by an offset and a skip derived from two hashes of its stable name;
// backends take turns claiming their next preferred free slot until the table
// is full. The result depends only on the set of backends (they are sorted by
// name first), so two controllers building a table for the same backends in a
// different order agree slot for slot.
package maglev

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// DefaultSize is the default table size, a prime.
const DefaultSize = 65537

// MaxSize bounds the table size so that slot indices fit an int32.
const MaxSize = 1<<31 - 1

// Backend is one target of a table.
type Backend struct {
	// Name identifies the backend; it is hashed for the offset and skip
	// and decides the order of backends. Names must be unique in a table.
	Name string
	// Weight is the relative share of slots. 0 counts as 1; remove a
	// backend to give it no slots.
	Weight uint32
	// Offset and Skip, when both set, replace the hashed permutation
	// (offset < M, 1 <= skip < M). They exist for worked examples and
	// for interoperating with tables computed elsewhere.
	Offset, Skip *uint64
}

// Table is a filled Maglev lookup table. It is immutable once built.
type Table struct {
	backends []Backend // sorted by name
	slots    []int32   // index into backends
}

// Errors returned by Build.
var (
	ErrNotPrime       = errors.New("maglev: table size is not a prime")
	ErrTooSmall       = errors.New("maglev: table size below the backend count")
	ErrNoBackends     = errors.New("maglev: no backends")
	ErrDuplicateName  = errors.New("maglev: duplicate backend name")
	ErrBadPermutation = errors.New("maglev: bad explicit permutation")
)

// Build fills a table of size m (0 means DefaultSize) for the backends.
func Build(backends []Backend, m uint64) (*Table, error) {
	var b Builder
	return b.Build(backends, m)
}

// Builder builds tables and keeps its scratch buffers between builds, so a
// caller rebuilding tables often allocates only the result.
type Builder struct {
	taken []uint64
	perm  []perm
}

type perm struct {
	next, skip uint64
	weight     uint32
}

// Build is like the package-level Build, reusing b's buffers.
func (b *Builder) Build(backends []Backend, m uint64) (*Table, error) {
	t := &Table{}
	if err := b.BuildInto(t, backends, m); err != nil {
		return nil, err
	}
	return t, nil
}

// BuildInto fills t, reusing t's slot and backend storage when large
// enough. t must not be in use by readers while it is rebuilt.
func (b *Builder) BuildInto(t *Table, backends []Backend, m uint64) error {
	if m == 0 {
		m = DefaultSize
	}
	n := len(backends)
	switch {
	case n == 0:
		return ErrNoBackends
	case m > MaxSize:
		return fmt.Errorf("maglev: table size %d above %d", m, uint64(MaxSize))
	case !IsPrime(m):
		return fmt.Errorf("%w: %d", ErrNotPrime, m)
	case uint64(n) > m:
		return fmt.Errorf("%w: %d backends, size %d", ErrTooSmall, n, m)
	}

	// Sort a copy by name: the order of backends must not depend on the
	// caller's order (ties in the fill are broken by this order).
	t.backends = append(t.backends[:0], backends...)
	sb := t.backends
	slices.SortFunc(sb, func(x, y Backend) int { return strings.Compare(x.Name, y.Name) })
	for i := 1; i < n; i++ {
		if sb[i].Name == sb[i-1].Name {
			return fmt.Errorf("%w: %q", ErrDuplicateName, sb[i].Name)
		}
	}

	// Permutations and weights (divided by their gcd, so that equal
	// weights behave exactly like weight 1).
	b.perm = slices.Grow(b.perm[:0], n)[:n]
	var g uint32
	for i := range sb {
		w := sb[i].Weight
		if w == 0 {
			w = 1
		}
		g = gcd(g, w)
		off, skip, err := Permutation(sb[i], m)
		if err != nil {
			return err
		}
		b.perm[i] = perm{next: off, skip: skip, weight: w}
	}
	for i := range b.perm {
		b.perm[i].weight /= g
	}

	words := (m + 63) / 64
	b.taken = slices.Grow(b.taken[:0], int(words))[:words]
	clear(b.taken)
	if uint64(cap(t.slots)) >= m {
		t.slots = t.slots[:m]
	} else {
		t.slots = make([]int32, m)
	}
	fill(t.slots, b.taken, b.perm, m)
	return nil
}

// fill claims slots round-robin. taken is a bitmap of claimed slots: it fits
// the L1/L2 cache even for large tables, unlike the slot array itself.
func fill(slots []int32, taken []uint64, ps []perm, m uint64) {
	filled := uint64(0)
	for {
		for i := range ps {
			p := &ps[i]
			for w := p.weight; w > 0; w-- {
				c, skip := p.next, p.skip
				for taken[c>>6]&(1<<(c&63)) != 0 {
					c += skip
					if c >= m {
						c -= m
					}
				}
				taken[c>>6] |= 1 << (c & 63)
				slots[c] = int32(i)
				c += skip
				if c >= m {
					c -= m
				}
				p.next = c
				filled++
				if filled == m {
					return
				}
			}
		}
	}
}

// Permutation returns the offset and skip of backend in a table of size m:
// the explicit ones when set, otherwise offset = h1(name) mod m and
// skip = h2(name) mod (m-1) + 1.
func Permutation(be Backend, m uint64) (offset, skip uint64, err error) {
	if be.Offset != nil || be.Skip != nil {
		if be.Offset == nil || be.Skip == nil || *be.Offset >= m || *be.Skip == 0 || *be.Skip >= m {
			return 0, 0, fmt.Errorf("%w: backend %q in table size %d", ErrBadPermutation, be.Name, m)
		}
		return *be.Offset, *be.Skip, nil
	}
	h1, h2 := hashName(be.Name)
	if m == 1 {
		return 0, 1, nil
	}
	return h1 % m, h2%(m-1) + 1, nil
}

// hashName returns two independent 64-bit hashes of name: FNV-1a, then two
// differently keyed splitmix64 finalizers. The functions are part of the
// table format (two controllers must agree); never change them.
func hashName(name string) (uint64, uint64) {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return mix(h ^ 0x6d61676c65762d31), mix(h ^ 0x6d61676c65762d32) // "maglev-1", "maglev-2"
}

func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Size is the number of slots, M.
func (t *Table) Size() int { return len(t.slots) }

// Backends returns the backends in table order (sorted by name). The slice
// must not be modified.
func (t *Table) Backends() []Backend { return t.backends }

// Slots returns the backend index (into Backends) of every slot. The slice
// must not be modified.
func (t *Table) Slots() []int32 { return t.slots }

// Slot returns the backend of slot i.
func (t *Table) Slot(i int) *Backend { return &t.backends[t.slots[i]] }

// Lookup returns the backend for a flow hash: slot hash mod M, the same
// reduction the P4 program does.
func (t *Table) Lookup(hash uint64) *Backend {
	return &t.backends[t.slots[hash%uint64(len(t.slots))]]
}

// LookupIndex is Lookup returning the backend's index into Backends.
func (t *Table) LookupIndex(hash uint64) int {
	return int(t.slots[hash%uint64(len(t.slots))])
}

// Names returns the backend name of every slot.
func (t *Table) Names() []string {
	out := make([]string, len(t.slots))
	for i, s := range t.slots {
		out[i] = t.backends[s].Name
	}
	return out
}

// Counts returns the number of slots of each backend, by Backends index.
func (t *Table) Counts() []int {
	c := make([]int, len(t.backends))
	for _, s := range t.slots {
		c[s]++
	}
	return c
}

// Diff returns, in increasing order, the slots whose backend name differs
// between old and new. A nil old (or one of another size) means every slot
// changed.
func Diff(old, new *Table) []int {
	if new == nil {
		return nil
	}
	if old == nil || len(old.slots) != len(new.slots) {
		out := make([]int, len(new.slots))
		for i := range out {
			out[i] = i
		}
		return out
	}
	// Map old backend indices to new ones (by name), -1 when gone; then
	// comparing slots is an integer compare.
	remap := make([]int32, len(old.backends))
	j := 0
	for i := range old.backends {
		remap[i] = -1
		for j < len(new.backends) && new.backends[j].Name < old.backends[i].Name {
			j++
		}
		if j < len(new.backends) && new.backends[j].Name == old.backends[i].Name {
			remap[i] = int32(j)
		}
	}
	var out []int
	for i, s := range old.slots {
		if remap[s] != new.slots[i] {
			out = append(out, i)
		}
	}
	return out
}

// Rebuild builds a table for backends of old's size and reports which slots
// changed (see Diff).
func Rebuild(old *Table, backends []Backend) (*Table, []int, error) {
	m := uint64(0)
	if old != nil {
		m = uint64(len(old.slots))
	}
	t, err := Build(backends, m)
	if err != nil {
		return nil, nil, err
	}
	return t, Diff(old, t), nil
}

// IsPrime reports whether n is prime (deterministic Miller-Rabin for 64 bits).
func IsPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for _, p := range []uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37} {
		if n%p == 0 {
			return n == p
		}
	}
	d, s := n-1, 0
	for d&1 == 0 {
		d >>= 1
		s++
	}
	for _, a := range []uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37} {
		x := powmod(a, d, n)
		if x == 1 || x == n-1 {
			continue
		}
		composite := true
		for r := 1; r < s; r++ {
			x = mulmod(x, x, n)
			if x == n-1 {
				composite = false
				break
			}
		}
		if composite {
			return false
		}
	}
	return true
}

// NextPrime returns the smallest prime >= n.
func NextPrime(n uint64) uint64 {
	if n <= 2 {
		return 2
	}
	if n%2 == 0 {
		n++
	}
	for !IsPrime(n) {
		n += 2
	}
	return n
}

func mulmod(a, b, m uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	_, r := bits.Div64(hi%m, lo, m)
	return r
}

func powmod(a, e, m uint64) uint64 {
	r := uint64(1)
	a %= m
	for e > 0 {
		if e&1 == 1 {
			r = mulmod(r, a, m)
		}
		a = mulmod(a, a, m)
		e >>= 1
	}
	return r
}
