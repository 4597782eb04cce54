// Package study measures how many Maglev slots and flows move when one
// backend joins or leaves, across table sizes and backend counts (`ops
// maglev study`).
package study

import (
	"fmt"
	"math/rand/v2"

	"github.com/v6pod/v6pod/internal/maglev"
)

// Config selects the sweep. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Backends lists the backend counts N studied.
	Backends []int
	// MinSize is the smallest table size (rounded up to a prime).
	MinSize uint64
	// MaxRatio bounds the largest table size at about MaxRatio×N: sizes
	// are the largest primes below 2^k, from MinSize up to the first one
	// at or above MaxRatio×N.
	MaxRatio uint64
	// Flows is the number of simulated flows per measurement.
	Flows int
	// Trials averages each measurement over this many different backends
	// added or removed.
	Trials int
	// Seed makes the simulated flows and the chosen backends repeatable.
	Seed uint64
}

// DefaultConfig is the default sweep (a few seconds on one core).
func DefaultConfig() Config {
	return Config{
		Backends: []int{4, 16, 100, 1000},
		MinSize:  1021,
		MaxRatio: 2000,
		Flows:    200000,
		Trials:   8,
		Seed:     1,
	}
}

// Row is one measurement; its JSON form is the `ops maglev study -o json`
// schema.
type Row struct {
	Backends   int     `json:"backends"`
	TableSize  uint64  `json:"table_size"`
	Op         string  `json:"op"` // "remove" (N → N-1) or "add" (N-1 → N)
	SlotsMoved float64 `json:"slots_moved"`
	FlowsMoved float64 `json:"flows_moved"`
	Ideal      float64 `json:"ideal"` // 1/N
	// Disturbed is the share of slots that moved between two backends
	// that are both present before and after: the moves beyond the
	// minimum. Not part of the JSON schema.
	Disturbed float64 `json:"-"`
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Backends) == 0 {
		c.Backends = d.Backends
	}
	if c.MinSize == 0 {
		c.MinSize = d.MinSize
	}
	if c.MaxRatio == 0 {
		c.MaxRatio = d.MaxRatio
	}
	if c.Flows == 0 {
		c.Flows = d.Flows
	}
	if c.Trials == 0 {
		c.Trials = d.Trials
	}
	return c
}

// Validate checks a configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	for _, n := range c.Backends {
		if n < 2 {
			return fmt.Errorf("study: backend count %d: need at least 2", n)
		}
		if n > 100000 {
			return fmt.Errorf("study: backend count %d: at most 100000", n)
		}
	}
	if c.Flows < 0 || c.Trials < 0 {
		return fmt.Errorf("study: flows and trials must be positive")
	}
	if c.MaxRatio > 100000 {
		return fmt.Errorf("study: max ratio %d: at most 100000", c.MaxRatio)
	}
	return nil
}

// Sizes returns the table sizes studied for n backends.
func Sizes(c Config, n int) []uint64 {
	c = c.withDefaults()
	lo := maglev.NextPrime(max(c.MinSize, uint64(n)))
	hi := c.MaxRatio * uint64(n)
	out := []uint64{lo}
	for k := 1; k < 40; k++ {
		p := prevPrime(uint64(1) << k)
		if p <= lo {
			continue
		}
		if p > maglev.MaxSize {
			break
		}
		out = append(out, p)
		if p >= hi {
			break
		}
	}
	return out
}

func prevPrime(n uint64) uint64 {
	for n > 2 && !maglev.IsPrime(n) {
		n--
	}
	return n
}

// Study runs the sweep. Rows come ordered by backends, table size, then
// op (remove before add).
func Study(cfg Config) []Row {
	c := cfg.withDefaults()
	var rows []Row
	var bld maglev.Builder
	var full, less, more maglev.Table
	for _, n := range c.Backends {
		bs := make([]maglev.Backend, n)
		for i := range bs {
			bs[i].Name = fmt.Sprintf("nat64-%05d", i)
		}
		for _, m := range Sizes(c, n) {
			var rm, ad Row
			rm = Row{Backends: n, TableSize: m, Op: "remove", Ideal: 1 / float64(n)}
			ad = Row{Backends: n, TableSize: m, Op: "add", Ideal: 1 / float64(n)}
			r := rand.New(rand.NewPCG(c.Seed, uint64(n)<<32|m))
			if err := bld.BuildInto(&full, bs, m); err != nil {
				panic(err) // sizes are primes >= n by construction
			}
			for trial := range c.Trials {
				// Remove: backend k leaves the full set.
				k := r.IntN(n)
				rest := make([]maglev.Backend, 0, n)
				rest = append(append(rest, bs[:k]...), bs[k+1:]...)
				if err := bld.BuildInto(&less, rest, m); err != nil {
					panic(err)
				}
				slots, dist := moved(&full, &less, bs[k].Name)
				rm.SlotsMoved += slots
				rm.FlowsMoved += movedFlows(&full, &less, c.Flows, r)
				rm.Disturbed += dist

				// Add: a new backend joins the N-1 others.
				name := fmt.Sprintf("nat64-new-%d", trial)
				grown := append(rest, maglev.Backend{Name: name})
				if err := bld.BuildInto(&more, grown, m); err != nil {
					panic(err)
				}
				slots, dist = moved(&more, &less, name)
				ad.SlotsMoved += slots
				ad.FlowsMoved += movedFlows(&less, &more, c.Flows, r)
				ad.Disturbed += dist
			}
			for _, row := range []*Row{&rm, &ad} {
				row.SlotsMoved /= float64(c.Trials)
				row.FlowsMoved /= float64(c.Trials)
				row.Disturbed /= float64(c.Trials)
			}
			rows = append(rows, rm, ad)
		}
	}
	return rows
}

// moved returns the share of slots whose backend differs between a and b,
// and the share that moved between two backends other than the one
// (name) that is in a but not in b.
func moved(a, b *maglev.Table, name string) (all, disturbed float64) {
	an, bn := a.Slots(), b.Slots()
	ab, bb := a.Backends(), b.Backends()
	var n, d int
	for i := range an {
		x, y := ab[an[i]].Name, bb[bn[i]].Name
		if x != y {
			n++
			if x != name {
				d++
			}
		}
	}
	return float64(n) / float64(len(an)), float64(d) / float64(len(an))
}

// movedFlows hashes simulated flows (uniform 64-bit flow hashes, as the
// switch's 5-tuple hash produces) into both tables and returns the share
// that land on a different backend.
func movedFlows(a, b *maglev.Table, flows int, r *rand.Rand) float64 {
	if flows == 0 {
		return 0
	}
	n := 0
	for range flows {
		h := r.Uint64()
		if a.Lookup(h).Name != b.Lookup(h).Name {
			n++
		}
	}
	return float64(n) / float64(flows)
}
