// Package model holds the shared data of a pod: pools of edge addresses,
// the routes razor answers from them, and the host → app → upstream maps the
// edges serve, with the strict checks every reader and writer applies.
package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// PoolState says whether razor hands out a pool's addresses.
type PoolState string

const (
	Active   PoolState = "active"   // handed out while healthy
	Draining PoolState = "draining" // still served by its edge, no longer handed out
	Disabled PoolState = "disabled" // never handed out, not even when failing open
)

// Valid reports whether s is one of the three states.
func (s PoolState) Valid() bool { return s == Active || s == Draining || s == Disabled }

// DefaultWeight is a pool's weight when none is given.
const DefaultWeight = 100

// MaxWeight bounds a pool's weight so weighted sums never overflow.
const MaxWeight = 1_000_000

// Pool is the set of addresses one edge node owns and serves.
type Pool struct {
	Name   string    `yaml:"name" json:"name"`
	Edge   string    `yaml:"edge" json:"edge"`
	Site   string    `yaml:"site,omitempty" json:"site,omitempty"`
	Weight uint32    `yaml:"weight" json:"weight"`
	State  PoolState `yaml:"state" json:"state"`
	V4     AddrList  `yaml:"v4" json:"v4"`
	V6     AddrList  `yaml:"v6" json:"v6"`
	// Drain holds addresses the edge still serves but razor no longer
	// hands out (an address under attack, on its way out).
	Drain AddrList `yaml:"drain,omitempty" json:"drain,omitempty"`
	// Rotation records an unfinished `ops pool rotate`, so it can resume.
	Rotation *Rotation `yaml:"rotation,omitempty" json:"rotation,omitempty"`
}

// Rotation is the persisted state of an address rotation of a pool.
type Rotation struct {
	Out AddrList `yaml:"out" json:"out"`
	In  AddrList `yaml:"in" json:"in"`
	// DrainedAt is when the outgoing addresses were drained (RFC 3339);
	// they may be removed once twice the largest route TTL has passed.
	DrainedAt string `yaml:"drained_at,omitempty" json:"drained_at,omitempty"`
	// Drained are the outgoing addresses the rotation drained itself (the
	// others were drained before it started): an abort undrains only these.
	Drained AddrList `yaml:"drained,omitempty" json:"drained,omitempty"`
	// TTL is the largest TTL of the routes using the pool when the
	// outgoing addresses were drained, in seconds.
	TTL uint32 `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// Wait, when set, is the wait after draining the operator asked for
	// (a Go duration, "90s"), instead of twice the TTL.
	Wait string `yaml:"wait,omitempty" json:"wait,omitempty"`
}

// Eligible returns the addresses of the pool that razor may hand out, in
// the pool's order: all of v4 (or v6) minus the drained ones.
func (p *Pool) Eligible(v6 bool) []netip.Addr {
	src := p.V4
	if v6 {
		src = p.V6
	}
	if len(p.Drain) == 0 {
		return src
	}
	out := make([]netip.Addr, 0, len(src))
	for _, a := range src {
		if !slices.Contains(p.Drain, a) {
			out = append(out, a)
		}
	}
	return out
}

// Shard modes of a route.
const (
	ShardNone  = "none"
	ShardLabel = "label"
)

// Route defaults.
const (
	DefaultAnswers   = 4
	DefaultTTL       = 30
	DefaultShardSize = 8
	MaxAnswers       = 64
	MaxTTL           = 86400
)

// Route is a DNS name razor answers with addresses from pools.
type Route struct {
	Name      string   `yaml:"name" json:"name"`
	Pools     []string `yaml:"pools" json:"pools"`
	Answers   int      `yaml:"answers" json:"answers"`
	TTL       uint32   `yaml:"ttl" json:"ttl"`
	Shard     string   `yaml:"shard,omitempty" json:"shard,omitempty"`
	ShardSize int      `yaml:"shard_size,omitempty" json:"shard_size,omitempty"`
}

// Document is everything a store holds: the file store's whole file, or the
// Consul KV tree under the prefix.
type Document struct {
	// Version is the file's top-level version, or the Consul index the
	// document was read at; writers check it.
	Version uint64                  `yaml:"version" json:"version"`
	Pools   []Pool                  `yaml:"pools,omitempty" json:"pools,omitempty"`
	Routes  []Route                 `yaml:"routes,omitempty" json:"routes,omitempty"`
	Hosts   map[string]string       `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	Apps    map[string]EndpointList `yaml:"apps,omitempty" json:"apps,omitempty"`
}

// Pool returns the named pool, or nil.
func (d *Document) Pool(name string) *Pool {
	for i := range d.Pools {
		if d.Pools[i].Name == name {
			return &d.Pools[i]
		}
	}
	return nil
}

// Route returns the named route (any case, with or without the final dot),
// or nil.
func (d *Document) Route(name string) *Route {
	name = CanonicalName(name)
	for i := range d.Routes {
		if d.Routes[i].Name == name {
			return &d.Routes[i]
		}
	}
	return nil
}

// Clone returns a deep copy, so a writer can change it without touching
// what readers hold.
func (d *Document) Clone() *Document {
	c := &Document{Version: d.Version}
	for _, p := range d.Pools {
		p.V4 = slices.Clone(p.V4)
		p.V6 = slices.Clone(p.V6)
		p.Drain = slices.Clone(p.Drain)
		if p.Rotation != nil {
			r := *p.Rotation
			r.In, r.Out, r.Drained = slices.Clone(r.In), slices.Clone(r.Out), slices.Clone(r.Drained)
			p.Rotation = &r
		}
		c.Pools = append(c.Pools, p)
	}
	for _, r := range d.Routes {
		r.Pools = slices.Clone(r.Pools)
		c.Routes = append(c.Routes, r)
	}
	if d.Hosts != nil {
		c.Hosts = make(map[string]string, len(d.Hosts))
		for k, v := range d.Hosts {
			c.Hosts[k] = v
		}
	}
	if d.Apps != nil {
		c.Apps = make(map[string]EndpointList, len(d.Apps))
		for k, v := range d.Apps {
			c.Apps[k] = slices.Clone(v)
		}
	}
	return c
}

// CanonicalName lower-cases a DNS name and makes it fully qualified.
func CanonicalName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// Normalize fills defaults and puts names in canonical form. It does not
// check anything; Validate does.
func (d *Document) Normalize() {
	for i := range d.Pools {
		p := &d.Pools[i]
		if p.Weight == 0 {
			p.Weight = DefaultWeight
		}
		if p.State == "" {
			p.State = Active
		}
	}
	for i := range d.Routes {
		r := &d.Routes[i]
		r.Name = CanonicalName(r.Name)
		if r.Answers == 0 {
			r.Answers = DefaultAnswers
		}
		if r.TTL == 0 {
			r.TTL = DefaultTTL
		}
		if r.Shard == "" {
			r.Shard = ShardNone
		}
		if r.Shard == ShardLabel && r.ShardSize == 0 {
			r.ShardSize = max(DefaultShardSize, r.Answers)
		}
	}
	if len(d.Hosts) > 0 {
		h := make(map[string]string, len(d.Hosts))
		for k, v := range d.Hosts {
			h[CanonicalHost(k)] = v
		}
		d.Hosts = h
	}
}

// CanonicalHost lower-cases a host name and drops a final dot.
func CanonicalHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// Validate checks the whole document and returns every problem found, each
// naming the object and what is wrong. Call Normalize first.
func (d *Document) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	owner := map[netip.Addr]string{}
	pools := map[string]bool{}
	for i := range d.Pools {
		p := &d.Pools[i]
		if err := CheckName(p.Name); err != nil {
			bad("pool #%d: name: %v", i+1, err)
			continue
		}
		if pools[p.Name] {
			bad("pool %s: defined twice", p.Name)
		}
		pools[p.Name] = true
		for _, err := range p.check(owner) {
			bad("pool %s: %v", p.Name, err)
		}
	}
	routes := map[string]bool{}
	for i := range d.Routes {
		r := &d.Routes[i]
		if routes[r.Name] {
			bad("route %s: defined twice", r.Name)
		}
		routes[r.Name] = true
		for _, err := range r.check(pools) {
			bad("route %s: %v", r.Name, err)
		}
	}
	for h, app := range d.Hosts {
		if err := CheckHost(h); err != nil {
			bad("host %q: %v", h, err)
		}
		if err := CheckName(app); err != nil {
			bad("host %s: app: %v", h, err)
		}
	}
	for app, eps := range d.Apps {
		if err := CheckName(app); err != nil {
			bad("app %q: %v", app, err)
		}
		seen := map[netip.AddrPort]bool{}
		for _, ep := range eps {
			if seen[ep] {
				bad("app %s: upstream %s listed twice", app, ep)
			}
			seen[ep] = true
		}
	}
	return errors.Join(errs...)
}

// Check validates one pool on its own (the checks Validate makes, except
// for addresses shared with other pools).
func (p *Pool) Check() error {
	if err := CheckName(p.Name); err != nil {
		return fmt.Errorf("pool %q: name: %w", p.Name, err)
	}
	var errs []error
	for _, err := range p.check(map[netip.Addr]string{}) {
		errs = append(errs, fmt.Errorf("pool %s: %w", p.Name, err))
	}
	return errors.Join(errs...)
}

func (p *Pool) check(owner map[netip.Addr]string) []error {
	var errs []error
	if err := CheckName(p.Edge); err != nil {
		errs = append(errs, fmt.Errorf("edge: %w", err))
	}
	if !p.State.Valid() {
		errs = append(errs, fmt.Errorf("state %q: want active, draining or disabled", p.State))
	}
	if p.Weight > MaxWeight {
		errs = append(errs, fmt.Errorf("weight %d: above the maximum %d", p.Weight, MaxWeight))
	}
	mine := map[netip.Addr]bool{}
	for _, fam := range []struct {
		name string
		list AddrList
		v6   bool
	}{{"v4", p.V4, false}, {"v6", p.V6, true}} {
		for _, a := range fam.list {
			switch {
			case !a.IsValid():
				errs = append(errs, fmt.Errorf("%s: empty address", fam.name))
				continue
			case a.Is6() != fam.v6:
				errs = append(errs, fmt.Errorf("%s: %s is not an %s address", fam.name, a, map[bool]string{false: "IPv4", true: "IPv6"}[fam.v6]))
				continue
			case a.IsUnspecified() || a.IsMulticast():
				errs = append(errs, fmt.Errorf("%s: %s cannot be handed out", fam.name, a))
			}
			if mine[a] {
				errs = append(errs, fmt.Errorf("%s: %s listed twice", fam.name, a))
			} else if other, ok := owner[a]; ok && other != p.Name {
				errs = append(errs, fmt.Errorf("%s: %s is already in pool %s", fam.name, a, other))
			}
			mine[a] = true
			owner[a] = p.Name
		}
	}
	for _, a := range p.Drain {
		if !mine[a] {
			errs = append(errs, fmt.Errorf("drain: %s is not an address of the pool", a))
		}
	}
	if r := p.Rotation; r != nil && r.Wait != "" {
		if d, err := time.ParseDuration(r.Wait); err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("rotation: wait %q: want a duration such as 90s", r.Wait))
		}
	}
	return errs
}

// Check validates one route on its own (the checks Validate makes, except
// that its pools exist).
func (r *Route) Check() error {
	var errs []error
	for _, err := range r.check(nil) {
		errs = append(errs, fmt.Errorf("route %s: %w", r.Name, err))
	}
	return errors.Join(errs...)
}

// check checks a route; pools, when not nil, holds the pools that exist.
func (r *Route) check(pools map[string]bool) []error {
	var errs []error
	if err := CheckDomain(r.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if len(r.Pools) == 0 {
		errs = append(errs, fmt.Errorf("no pools"))
	}
	seen := map[string]bool{}
	for _, p := range r.Pools {
		if seen[p] {
			errs = append(errs, fmt.Errorf("pool %s listed twice", p))
			continue
		}
		seen[p] = true
		if pools != nil && !pools[p] {
			errs = append(errs, fmt.Errorf("pool %q does not exist", p))
		}
	}
	if r.Answers < 1 || r.Answers > MaxAnswers {
		errs = append(errs, fmt.Errorf("answers %d: want 1 to %d", r.Answers, MaxAnswers))
	}
	if r.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("ttl %d: above the maximum %d", r.TTL, MaxTTL))
	}
	switch r.Shard {
	case ShardNone:
		if r.ShardSize != 0 {
			errs = append(errs, fmt.Errorf("shard_size %d given without shard: label", r.ShardSize))
		}
	case ShardLabel:
		if r.ShardSize < r.Answers {
			errs = append(errs, fmt.Errorf("shard_size %d: must be at least answers (%d)", r.ShardSize, r.Answers))
		}
	default:
		errs = append(errs, fmt.Errorf("shard %q: want none or label", r.Shard))
	}
	return errs
}
