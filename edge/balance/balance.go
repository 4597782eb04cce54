// Package balance holds an app's upstreams and picks one per request: power
// of two choices on in-flight requests (p2c), Maglev by client address, or
// round robin, skipping upstreams that passive or active health has taken out.
package balance

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/v6pod/v6pod/internal/maglev"
)

// Policy names a selection policy.
type Policy string

// The policies.
const (
	P2C        Policy = "p2c"
	Maglev     Policy = "maglev"
	RoundRobin Policy = "roundrobin"
)

// Valid reports whether p is a known policy.
func (p Policy) Valid() bool { return p == P2C || p == Maglev || p == RoundRobin }

// Health configures passive health checking of a pool.
type Health struct {
	// MaxFails consecutive connect failures or 5xx answers eject an
	// upstream; 0 turns passive ejection off.
	MaxFails int
	// EjectBase is the first ejection's length; each further ejection in a
	// row doubles it, up to EjectMax.
	EjectBase, EjectMax time.Duration
	// MaxEjectedShare bounds the share of a pool's upstreams that may be
	// ejected at once (0..1).
	MaxEjectedShare float64
}

// DefaultHealth is used where a pool has no health configuration.
var DefaultHealth = Health{MaxFails: 3, EjectBase: 5 * time.Second, EjectMax: 5 * time.Minute, MaxEjectedShare: 0.5}

// Upstream is one target of an app. Its counters survive list updates that
// keep it.
type Upstream struct {
	Addr netip.AddrPort
	// HostPort is Addr in URL host form, [2001:db8::1]:8080.
	HostPort string

	inflight     atomic.Int64
	fails        atomic.Int32 // consecutive failures
	ejections    atomic.Int32 // ejections in a row (back-off exponent)
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when in service
	activeDown   atomic.Bool
}

// NewUpstream returns an upstream in service.
func NewUpstream(ap netip.AddrPort) *Upstream {
	return &Upstream{Addr: ap, HostPort: ap.String()}
}

// InFlight is the number of requests the upstream is serving now.
func (u *Upstream) InFlight() int64 { return u.inflight.Load() }

// Acquire counts a request starting; Release counts it done.
func (u *Upstream) Acquire() { u.inflight.Add(1) }

// Release counts a request done.
func (u *Upstream) Release() { u.inflight.Add(-1) }

// Ejected reports whether passive health has the upstream out at now.
func (u *Upstream) Ejected(now int64) bool {
	t := u.ejectedUntil.Load()
	return t != 0 && now < t
}

// SetActiveDown records the result of an active check.
func (u *Upstream) SetActiveDown(down bool) { u.activeDown.Store(down) }

// ActiveDown reports the last active check failed.
func (u *Upstream) ActiveDown() bool { return u.activeDown.Load() }

func (u *Upstream) usable(now int64) bool { return !u.activeDown.Load() && !u.Ejected(now) }

// set is the immutable upstream list of a pool at one moment.
type set struct {
	ups []*Upstream
	mg  *maglev.Table
	mgU []*Upstream // upstreams by maglev backend index
}

// Pool is the upstreams of one app and how to pick among them. Pick is safe
// for concurrent use with Update; an update replaces the list copy-on-write,
// so its cost is proportional to this app's upstreams only.
type Pool struct {
	Name   string
	policy Policy
	health Health
	now    func() int64

	set atomic.Pointer[set]
	rr  atomic.Uint64

	mu      sync.Mutex // serializes writers
	builder maglev.Builder
	ejectMu sync.Mutex // makes the max_ejected check and the ejection one step

	// OnEject is called (if set) when an upstream is ejected.
	OnEject func(u *Upstream, d time.Duration)
}

// NewPool returns an empty pool.
func NewPool(name string, policy Policy, h Health) *Pool {
	if !policy.Valid() {
		policy = P2C
	}
	p := &Pool{Name: name, policy: policy, health: h, now: func() int64 { return time.Now().UnixNano() }}
	p.set.Store(&set{})
	return p
}

// Policy returns the pool's policy.
func (p *Pool) Policy() Policy { return p.policy }

// Upstreams returns the current list; it must not be modified.
func (p *Pool) Upstreams() []*Upstream { return p.set.Load().ups }

// Len is the number of upstreams.
func (p *Pool) Len() int { return len(p.set.Load().ups) }

// Update replaces the list of upstreams. Upstreams that stay keep their
// counters and health. It reports whether anything changed.
func (p *Pool) Update(eps []netip.AddrPort) (bool, error) {
	sorted := slices.Clone(eps)
	slices.SortFunc(sorted, func(a, b netip.AddrPort) int { return a.Compare(b) })
	sorted = slices.Compact(sorted)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.set.Load()
	if len(old.ups) == len(sorted) {
		same := true
		for i, u := range old.ups {
			if u.Addr != sorted[i] {
				same = false
				break
			}
		}
		if same {
			return false, nil
		}
	}
	// Both lists are sorted: walk them together, keeping the upstreams
	// (and their counters) that stay.
	ns := &set{ups: make([]*Upstream, 0, len(sorted))}
	i := 0
	for _, ap := range sorted {
		for i < len(old.ups) && old.ups[i].Addr.Compare(ap) < 0 {
			i++
		}
		if i < len(old.ups) && old.ups[i].Addr == ap {
			ns.ups = append(ns.ups, old.ups[i])
		} else {
			ns.ups = append(ns.ups, NewUpstream(ap))
		}
	}
	if p.policy == Maglev && len(ns.ups) > 0 {
		var cur uint64
		if old.mg != nil {
			cur = uint64(old.mg.Size())
		}
		if err := p.buildMaglev(ns, cur); err != nil {
			return false, err
		}
	}
	p.set.Store(ns)
	return true, nil
}

// maglevSizes is the ladder of table sizes (primes): a pool keeps its size
// while it has at least 5 slots per upstream, so that upstreams coming and
// going never reshuffle the whole table.
var maglevSizes = []uint64{1009, 10007, 65537, 655373}

// maglevSize picks the table size for n upstreams, given the current one.
func maglevSize(n int, cur uint64) uint64 {
	if cur != 0 && uint64(n)*5 <= cur {
		return cur
	}
	for _, m := range maglevSizes {
		if uint64(n)*100 <= m {
			return m
		}
	}
	for _, m := range maglevSizes {
		if uint64(n)*5 <= m {
			return m
		}
	}
	return maglev.NextPrime(uint64(n) * 5)
}

func (p *Pool) buildMaglev(ns *set, cur uint64) error {
	bes := make([]maglev.Backend, len(ns.ups))
	for i, u := range ns.ups {
		bes[i] = maglev.Backend{Name: u.HostPort}
	}
	t, err := p.builder.Build(bes, maglevSize(len(bes), cur))
	if err != nil {
		return fmt.Errorf("balance: app %s: maglev: %w", p.Name, err)
	}
	byName := make(map[string]*Upstream, len(ns.ups))
	for _, u := range ns.ups {
		byName[u.HostPort] = u
	}
	ns.mg = t
	ns.mgU = make([]*Upstream, len(t.Backends()))
	for i, b := range t.Backends() {
		ns.mgU[i] = byName[b.Name]
	}
	return nil
}

// Pick returns an upstream for a request from client, never one in
// exclude (upstreams already tried). It prefers upstreams in service; when
// none is, it falls back to any not excluded (better a likely failure than
// a certain one). It returns nil only when every upstream is excluded or
// the list is empty.
func (p *Pool) Pick(client netip.Addr, exclude []*Upstream) *Upstream {
	s := p.set.Load()
	n := len(s.ups)
	if n == 0 {
		return nil
	}
	now := p.now()
	switch p.policy {
	case Maglev:
		if u := p.pickMaglev(s, client, exclude, now); u != nil {
			return u
		}
	case RoundRobin:
		start := int(p.rr.Add(1) % uint64(n))
		for i := range n {
			u := s.ups[(start+i)%n]
			if u.usable(now) && !slices.Contains(exclude, u) {
				return u
			}
		}
	default:
		if u := pickP2C(s.ups, exclude, now); u != nil {
			return u
		}
	}
	// Nothing in service: any upstream not yet tried.
	start := rand.IntN(n)
	for i := range n {
		u := s.ups[(start+i)%n]
		if !slices.Contains(exclude, u) {
			return u
		}
	}
	return nil
}

func pickP2C(ups []*Upstream, exclude []*Upstream, now int64) *Upstream {
	n := len(ups)
	if n == 1 {
		u := ups[0]
		if u.usable(now) && !slices.Contains(exclude, u) {
			return u
		}
		return nil
	}
	// Two random distinct candidates; retry a few times when one is out,
	// then scan.
	for range 4 {
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := ups[i], ups[j]
		aok := a.usable(now) && !slices.Contains(exclude, a)
		bok := b.usable(now) && !slices.Contains(exclude, b)
		switch {
		case aok && bok:
			la, lb := a.inflight.Load(), b.inflight.Load()
			if la < lb || la == lb && rand.IntN(2) == 0 {
				return a
			}
			return b
		case aok:
			return a
		case bok:
			return b
		}
	}
	var best *Upstream
	start := rand.IntN(n)
	for k := range n {
		u := ups[(start+k)%n]
		if u.usable(now) && !slices.Contains(exclude, u) && (best == nil || u.inflight.Load() < best.inflight.Load()) {
			best = u
		}
	}
	return best
}

// ClientHash hashes a client address for Maglev (FNV-1a over the 16 bytes
// followed by a 64-bit finalizer).
func ClientHash(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

func (p *Pool) pickMaglev(s *set, client netip.Addr, exclude []*Upstream, now int64) *Upstream {
	if s.mg == nil {
		return nil
	}
	slots := s.mg.Slots()
	m := uint64(len(slots))
	h := ClientHash(client) % m
	// The client's slot; when its upstream is out, walk on to the next
	// slots, so that every client of that upstream spreads over the others
	// and comes back when it returns.
	for i := uint64(0); i < m && i < 4*uint64(len(s.mgU))+16; i++ {
		u := s.mgU[slots[(h+i)%m]]
		if u.usable(now) && !slices.Contains(exclude, u) {
			return u
		}
	}
	return nil
}

// Success records a good answer from u: its failure count resets.
func (p *Pool) Success(u *Upstream) {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
	if u.ejections.Load() != 0 && u.ejectedUntil.Load() != 0 && !u.Ejected(p.now()) {
		u.ejections.Store(0)
		u.ejectedUntil.Store(0)
	}
}

// Failure records a connect failure or 5xx answer from u; after MaxFails in
// a row u is ejected, unless that would take more than MaxEjectedShare of
// the pool out. It reports the ejection length, 0 when not ejected.
func (p *Pool) Failure(u *Upstream) time.Duration {
	h := p.health
	if h.MaxFails <= 0 {
		return 0
	}
	if int(u.fails.Add(1)) < h.MaxFails {
		return 0
	}
	// Count and eject under one lock: two upstreams failing at once must
	// not both pass the cap check (failures past MaxFails are rare, so
	// the lock costs nothing on the hot path).
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	now := p.now()
	if u.Ejected(now) {
		return 0
	}
	s := p.set.Load()
	ejected := 0
	for _, o := range s.ups {
		if o.Ejected(now) {
			ejected++
		}
	}
	if float64(ejected+1) > h.MaxEjectedShare*float64(len(s.ups)) {
		return 0
	}
	n := u.ejections.Add(1)
	d := h.EjectBase
	for i := int32(1); i < n && d < h.EjectMax; i++ {
		d *= 2
	}
	d = min(d, h.EjectMax)
	u.ejectedUntil.Store(now + int64(d))
	u.fails.Store(0)
	if p.OnEject != nil {
		p.OnEject(u, d)
	}
	return d
}

// Ejected counts the upstreams ejected now.
func (p *Pool) Ejected() int {
	now := p.now()
	n := 0
	for _, u := range p.set.Load().ups {
		if u.Ejected(now) {
			n++
		}
	}
	return n
}
