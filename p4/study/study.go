// Package study measures how many Maglev slots and flows move when one
// backend joins or leaves, across table sizes and backend counts (`ops
// maglev study`).
package study

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/v6pod/v6pod/internal/maglev"
	"github.com/v6pod/v6pod/p4"
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
	// Flows is the number of simulated flows (random client 5-tuples
	// through the switch's CRC-32 hash) per measurement.
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
	flows := flowHashes(c.Flows, c.Seed)
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
				rm.FlowsMoved += movedFlows(&full, &less, flows)
				rm.Disturbed += dist

				// Add: a new backend joins the N-1 others.
				name := fmt.Sprintf("nat64-new-%d", trial)
				grown := append(rest, maglev.Backend{Name: name})
				if err := bld.BuildInto(&more, grown, m); err != nil {
					panic(err)
				}
				slots, dist = moved(&more, &less, name)
				ad.SlotsMoved += slots
				ad.FlowsMoved += movedFlows(&less, &more, flows)
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

// flowHashes returns the switch's hash (p4.FlowHash: CRC-32 of the
// 5-tuple) of n random TCP flows from IPv6 clients to one EIP.
func flowHashes(n int, seed uint64) []uint64 {
	r := rand.New(rand.NewPCG(seed, 0x666c6f7773)) // "flows"
	dst := netip.MustParseAddr("64:ff9b::c000:201").As16()
	out := make([]uint64, n)
	for i := range out {
		var src [16]byte
		src[0], src[1] = 0x20, 0x01
		binary.BigEndian.PutUint64(src[8:], r.Uint64())
		binary.BigEndian.PutUint32(src[4:], r.Uint32())
		out[i] = uint64(p4.FlowHash(src, dst, 6, uint16(1024+r.IntN(64512)), 443))
	}
	return out
}

// movedFlows looks the flows up in both tables (slot = hash mod M, as the
// switch does) and returns the share that land on a different backend.
func movedFlows(a, b *maglev.Table, flows []uint64) float64 {
	if len(flows) == 0 {
		return 0
	}
	n := 0
	for _, h := range flows {
		if a.Lookup(h).Name != b.Lookup(h).Name {
			n++
		}
	}
	return float64(n) / float64(len(flows))
}
