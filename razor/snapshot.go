package razor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/siphash"
	"github.com/v6pod/v6pod/razor/pick"
	"github.com/v6pod/v6pod/razor/zone"
)

// snapshot is everything a query reads, built whole from the zones, the
// store's document and the pools' health, and swapped in atomically: no
// query ever sees half an update. It is never changed once published
// (the shard caches fill lazily, entry by entry, atomically).
type snapshot struct {
	zones  map[string]*zone.Zone // by wire key of the apex
	routes map[string]*route     // by wire key of the route name
	pools  []*poolInfo
	// version of the store document.
	version uint64
	// withNames are the zones that hold routes, by apex key.
	withNames map[string]withNames
}

// withNames is a zone with its routes' names added (zone.WithNames).
type withNames struct {
	base  *zone.Zone // the zone as loaded
	names string     // the route keys added, sorted and joined
	zone  *zone.Zone
}

func (s *snapshot) lend(zk string) (withNames, bool) {
	if s == nil {
		return withNames{}, false
	}
	w, ok := s.withNames[zk]
	return w, ok
}

type poolInfo struct {
	name    string
	healthy bool
	answers prometheus.Counter
}

type route struct {
	key       string
	name      string
	answers   int
	shard     bool
	shardSize int
	fam       [2]family // A, AAAA
	// negSOA is the zone's negative SOA with the TTL of the route's
	// NODATA answers.
	negSOA   []byte
	failOpen prometheus.Counter
}

// family is a route's prebuilt answer material for A or AAAA.
type family struct {
	set      *pick.Set
	failOpen bool // set holds every non-disabled pool: none was healthy
	// hdr is the record after its owner: type, class IN, TTL, RDLENGTH.
	hdr    [10]byte
	shards *shardCache
}

// inputs are what a snapshot is built from.
type inputs struct {
	zones map[string]*zone.Zone
	doc   *model.Document
	// edgeUp is the Consul catalog's view (edge → no critical check); nil
	// while unknown or not configured, when every edge counts as up.
	edgeUp map[string]bool
	// probeDown holds the pools razor's own probe found down.
	probeDown map[string]bool
}

func (in *inputs) poolHealthy(p *model.Pool) bool {
	if in.edgeUp != nil && !in.edgeUp[p.Edge] {
		return false
	}
	return !in.probeDown[p.Name]
}

// zoneFor returns the zone that holds key: the one with the longest
// origin. A DS query at a zone's apex belongs to the parent zone when
// razor serves that too (RFC 4035 §3.1.4.1).
func zoneFor(zones map[string]*zone.Zone, key string, qtype uint16) *zone.Zone {
	var child *zone.Zone
	for k := key; ; k = zone.Parent(k) {
		if z := zones[k]; z != nil {
			if qtype == dns.TypeDS && k == key && len(k) > 1 {
				child = z
			} else {
				return z
			}
		}
		if len(k) <= 1 {
			return child
		}
	}
}

// buildSnapshot checks the document against the zones (a route must lie
// inside a served zone) and prebuilds every route's answer material.
// prev, the snapshot in use (or nil), lends its zones with route names
// when neither the zone nor its routes' names changed, so a health change
// does not copy every zone.
func buildSnapshot(in inputs, m *metrics, prev *snapshot) (*snapshot, error) {
	s := &snapshot{zones: in.zones, routes: map[string]*route{}}
	doc := in.doc
	if doc == nil {
		doc = &model.Document{}
	}
	s.version = doc.Version
	index := map[string]int{}
	for i := range doc.Pools {
		p := &doc.Pools[i]
		index[p.Name] = i
		s.pools = append(s.pools, &poolInfo{name: p.Name, healthy: in.poolHealthy(p)})
	}
	var errs []error
	routeKeys := map[string][]string{} // zone apex → route names in it
	for i := range doc.Routes {
		r := &doc.Routes[i]
		key, err := zone.Key(r.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Name, err))
			continue
		}
		z := zoneFor(in.zones, key, dns.TypeA)
		if z == nil {
			errs = append(errs, fmt.Errorf("route %s: not inside any zone razor serves", r.Name))
			continue
		}
		if key == z.Key {
			// The apex holds the zone's SOA and NS, and a route there
			// would answer every first-level name of the zone.
			errs = append(errs, fmt.Errorf("route %s: at the apex of zone %s", r.Name, z.Origin))
			continue
		}
		if res := z.Lookup(key, dns.TypeA); res.Kind == zone.Delegation {
			errs = append(errs, fmt.Errorf("route %s: below the delegation %s of zone %s", r.Name, zone.Name(res.Node.Key), z.Origin))
			continue
		}
		if n := z.Nodes[key]; n != nil && n.Set(dns.TypeCNAME) != nil {
			// RFC 1034 §3.6.2: a CNAME owner holds no other data.
			errs = append(errs, fmt.Errorf("route %s: the name holds a CNAME in zone %s", r.Name, z.Origin))
			continue
		}
		routeKeys[z.Key] = append(routeKeys[z.Key], key)
		// NODATA at the route (no eligible address) lives the route's TTL,
		// at most the zone's negative TTL (RFC 2308 §5): addresses may
		// come back soon.
		neg := slices.Clone(z.NegSOA)
		at := len(z.Key) + 4 // after the owner, type and class
		binary.BigEndian.PutUint32(neg[at:], min(r.TTL, binary.BigEndian.Uint32(neg[at:])))
		rt := &route{
			key: key, name: r.Name, answers: r.Answers, negSOA: neg,
			shard: r.Shard == model.ShardLabel, shardSize: r.ShardSize,
		}
		for fi, v6 := range []bool{false, true} {
			f := &rt.fam[fi]
			typ, rdlen := dns.TypeA, 4
			if v6 {
				typ, rdlen = dns.TypeAAAA, 16
			}
			binary.BigEndian.PutUint16(f.hdr[0:], typ)
			binary.BigEndian.PutUint16(f.hdr[2:], dns.ClassINET)
			binary.BigEndian.PutUint32(f.hdr[4:], r.TTL)
			binary.BigEndian.PutUint16(f.hdr[8:], uint16(rdlen))
			var healthy, open []pick.Pool
			activeCandidates := 0
			for _, name := range r.Pools {
				pi, ok := index[name]
				if !ok {
					continue // Validate reports it
				}
				p := &doc.Pools[pi]
				el := p.Eligible(v6)
				if len(el) == 0 || p.State == model.Disabled {
					continue
				}
				pp := pick.Pool{ID: pi, Weight: uint64(p.Weight), Addrs: el}
				open = append(open, pp)
				if p.State != model.Active {
					continue
				}
				activeCandidates++
				if s.pools[pi].healthy {
					healthy = append(healthy, pp)
				}
			}
			f.set = pick.NewSet(healthy)
			if f.set.Len() == 0 && activeCandidates > 0 {
				// No active pool is healthy: fail open (as Route 53 does).
				f.set, f.failOpen = pick.NewSet(open), true
			}
			if rt.shard {
				f.set.PrepareShards()
				f.shards = &shardCache{}
			}
		}
		s.routes[key] = rt
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Metric series only for data that is used (a rejected document
	// leaves none behind).
	for _, p := range s.pools {
		p.answers = m.poolAnswers.WithLabelValues(p.name)
	}
	for _, rt := range s.routes {
		rt.failOpen = m.failOpen.WithLabelValues(routeLabel(rt.name))
	}
	if len(routeKeys) > 0 {
		// Route names and the empty non-terminals above them exist in
		// their zones (RFC 8020, RFC 4592 §2.2.2: they are closest
		// enclosers too).
		s.zones = maps.Clone(in.zones)
		s.withNames = map[string]withNames{}
		for zk, keys := range routeKeys {
			slices.Sort(keys)
			w := withNames{base: in.zones[zk], names: strings.Join(keys, "")}
			if p, ok := prev.lend(zk); ok && p.base == w.base && p.names == w.names {
				w.zone = p.zone
			} else {
				w.zone = w.base.WithNames(keys)
			}
			s.zones[zk] = w.zone
			s.withNames[zk] = w
		}
	}
	return s, nil
}

// routeFor returns the route that answers key in zone z: the route
// itself, or a label directly under it (customers CNAME <label>.<route>),
// with that label, which picks the shard of a shard: label route. A label
// that exists in the zone (records, a cut, an empty non-terminal) is the
// zone's, never the route's.
func (s *snapshot) routeFor(key string, z *zone.Zone) (*route, string) {
	if len(s.routes) == 0 {
		return nil, ""
	}
	if r := s.routes[key]; r != nil {
		return r, ""
	}
	if len(key) > 1 && z.Nodes[key] == nil {
		if r := s.routes[zone.Parent(key)]; r != nil {
			return r, key[1 : 1+int(key[0])]
		}
	}
	return nil, ""
}

// shardCache remembers the shards of recent labels, so a query for a
// label seen before costs no hashing of every address. It is direct mapped
// and bounded: a flood of random labels only evicts.
type shardCache struct {
	slots [1024]atomic.Pointer[shardEntry]
}

type shardEntry struct {
	label string
	set   *pick.Set
}

var cacheKey = siphash.Key{K0: 0x1234, K1: 0x5678}

// shardSet returns the addresses label is served from.
func (f *family) shardSet(label string, n int) *pick.Set {
	if f.set.Len() <= n {
		return f.set
	}
	h := siphash.Sum64(cacheKey, []byte(label))
	slot := &f.shards.slots[h&uint64(len(f.shards.slots)-1)]
	if e := slot.Load(); e != nil && e.label == label {
		return e.set
	}
	set := f.set.Shard([]byte(label), n)
	slot.Store(&shardEntry{label: strings.Clone(label), set: set})
	return set
}

// routeLabel is a route's value of the route label of metrics.
func routeLabel(name string) string { return strings.TrimSuffix(name, ".") }
