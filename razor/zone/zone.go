// Package zone loads RFC 1035 zone files into an immutable, wire-ready
// form and looks names up in it with the rules of RFC 1034 §4.3.2 and
// RFC 4592 (wildcards): exact matches, CNAMEs, delegations, NODATA and
// NXDOMAIN.
package zone

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Key returns the lower-case wire form of a domain name, the form every
// lookup uses ("\x03www\x04test\x00").
func Key(name string) (string, error) {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	LowerWire(buf[:n])
	return string(buf[:n]), nil
}

// LowerWire lower-cases the ASCII letters of a wire-form name in place
// (the label lengths are below 'A', so they are left alone).
func LowerWire(b []byte) {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// Parent strips the first label of a wire key; the root is its own parent.
func Parent(key string) string {
	if len(key) <= 1 {
		return key
	}
	return key[1+int(key[0]):]
}

// Name returns the presentation form of a wire key.
func Name(key string) string {
	n, _, err := dns.UnpackDomainName([]byte(key), 0)
	if err != nil {
		return "?"
	}
	return n
}

// IsBelow reports whether key equals or lies below parent (both wire keys).
func IsBelow(key, parent string) bool {
	for {
		if key == parent {
			return true
		}
		if len(key) <= 1 {
			return false
		}
		key = Parent(key)
	}
}

// RRSet is one RRset in wire form. Each tail is a record without its owner
// name (type, class, TTL, RDLENGTH, uncompressed RDATA), so the owner can be
// written as a compression pointer to wherever the name sits in a response.
type RRSet struct {
	Type  uint16
	TTL   uint32
	Tails [][]byte
	RRs   []dns.RR
	// Target is the wire key of a CNAME's target.
	Target string
}

// Node is the data at one name. A node without sets is an empty
// non-terminal (it exists, RFC 4592 §2.2.2).
type Node struct {
	Key  string
	Sets []*RRSet // sorted by type
	// Cut is set on a delegation point (NS below the apex).
	Cut bool
	// Wild is the wildcard child *.<this name>, if any.
	Wild *Node
	// Referral holds the prebuilt referral of a cut.
	Referral *Referral
}

// Set returns the node's RRset of type t, or nil.
func (n *Node) Set(t uint16) *RRSet {
	for _, s := range n.Sets {
		if s.Type == t {
			return s
		}
	}
	return nil
}

// Referral is the authority and additional sections of a referral to a
// delegated child zone, as full records (owner names uncompressed).
type Referral struct {
	NS        []byte
	NSCount   int
	Glue      []byte
	GlueCount int
}

// Zone is one loaded zone. It is never changed after Parse.
type Zone struct {
	Origin string // presentation form, fully qualified
	Key    string // wire key of the apex
	Apex   *Node
	Nodes  map[string]*Node
	SOA    *dns.SOA
	// NegSOA is the SOA as a full record for the authority section of
	// negative answers, its TTL the smaller of the SOA's TTL and MINIMUM
	// (RFC 2308 §3).
	NegSOA  []byte
	HasCuts bool
}

// Load reads the zone file path for origin.
func Load(origin, path string) (*Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	defer f.Close()
	return Parse(origin, f, path)
}

// Parse reads a zone in RFC 1035 master file format. filename names the
// input in errors and resolves $INCLUDE.
func Parse(origin string, r io.Reader, filename string) (*Zone, error) {
	origin = dns.CanonicalName(origin)
	zk, err := Key(origin)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	z := &Zone{Origin: origin, Key: zk, Nodes: map[string]*Node{}}
	zp := dns.NewZoneParser(r, origin, filename)
	zp.SetIncludeAllowed(true)
	bad := func(rr dns.RR, format string, args ...any) error {
		return fmt.Errorf("zone %s: %s: %s", origin, rr.Header().Name, fmt.Sprintf(format, args...))
	}
	sets := map[string]map[uint16][]dns.RR{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			return nil, bad(rr, "class %s: only IN is served", dns.ClassToString[h.Class])
		}
		h.Name = dns.CanonicalName(h.Name)
		if !dns.IsSubDomain(origin, h.Name) {
			return nil, bad(rr, "outside the zone")
		}
		switch h.Rrtype {
		case dns.TypeDNAME:
			return nil, bad(rr, "DNAME is not supported")
		case dns.TypeSOA:
			if h.Name != origin {
				return nil, bad(rr, "SOA below the apex")
			}
		}
		k, err := Key(h.Name)
		if err != nil {
			return nil, bad(rr, "%v", err)
		}
		if sets[k] == nil {
			sets[k] = map[uint16][]dns.RR{}
		}
		dup := false
		for _, o := range sets[k][h.Rrtype] {
			if dns.IsDuplicate(o, rr) {
				dup = true // RFC 2181 §5: an RRset holds no duplicates
			}
		}
		if !dup {
			sets[k][h.Rrtype] = append(sets[k][h.Rrtype], rr)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	apex := sets[zk]
	switch {
	case len(apex[dns.TypeSOA]) == 0:
		return nil, fmt.Errorf("zone %s: no SOA at the apex", origin)
	case len(apex[dns.TypeSOA]) > 1:
		return nil, fmt.Errorf("zone %s: more than one SOA", origin)
	case len(apex[dns.TypeNS]) == 0:
		return nil, fmt.Errorf("zone %s: no NS at the apex", origin)
	}
	z.SOA = apex[dns.TypeSOA][0].(*dns.SOA)

	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		byType := sets[k]
		if c := byType[dns.TypeCNAME]; len(c) > 0 {
			if len(c) > 1 {
				return nil, bad(c[0], "more than one CNAME (RFC 2181 §10.1)")
			}
			for t := range byType {
				if t != dns.TypeCNAME && t != dns.TypeRRSIG && t != dns.TypeNSEC {
					return nil, bad(c[0], "CNAME and other data (%s) (RFC 1034 §3.6.2)", dns.TypeToString[t])
				}
			}
		}
		n := z.node(k)
		types := make([]uint16, 0, len(byType))
		for t := range byType {
			types = append(types, t)
		}
		slices.Sort(types)
		for _, t := range types {
			s, err := newRRSet(byType[t])
			if err != nil {
				return nil, fmt.Errorf("zone %s: %s: %w", origin, Name(k), err)
			}
			n.Sets = append(n.Sets, s)
		}
		if k != zk && byType[dns.TypeNS] != nil {
			n.Cut = true
			z.HasCuts = true
		}
	}
	z.Apex = z.Nodes[zk]
	for k, n := range z.Nodes {
		if k != zk && strings.HasPrefix(k, "\x01*") {
			z.Nodes[Parent(k)].Wild = n
		}
	}
	for _, n := range z.Nodes {
		if n.Cut {
			n.Referral = z.referral(n)
		}
	}
	neg := dns.Copy(z.SOA).(*dns.SOA)
	neg.Hdr.Ttl = min(z.SOA.Hdr.Ttl, z.SOA.Minttl)
	z.NegSOA, err = full(neg)
	if err != nil {
		return nil, fmt.Errorf("zone %s: SOA: %w", origin, err)
	}
	return z, nil
}

// node returns the node at k, creating it and the empty non-terminals
// between it and the apex.
func (z *Zone) node(k string) *Node {
	if n := z.Nodes[k]; n != nil {
		return n
	}
	n := &Node{Key: k}
	z.Nodes[k] = n
	if k != z.Key {
		z.node(Parent(k))
	}
	return n
}

// WithNames returns a copy of z in which the names keys (wire keys inside
// the zone) and the empty non-terminals above them exist, for names whose
// data lives elsewhere (razor's routes). z itself is not changed; the
// copy shares every existing node.
func (z *Zone) WithNames(keys []string) *Zone {
	c := *z
	c.Nodes = maps.Clone(z.Nodes)
	for _, k := range keys {
		if IsBelow(k, z.Key) {
			c.node(k)
		}
	}
	return &c
}

func (z *Zone) referral(cut *Node) *Referral {
	r := &Referral{}
	ns := cut.Set(dns.TypeNS)
	for _, rr := range ns.RRs {
		b, _ := full(rr)
		r.NS = append(r.NS, b...)
		r.NSCount++
	}
	for _, rr := range ns.RRs {
		target, err := Key(rr.(*dns.NS).Ns)
		if err != nil || !IsBelow(target, z.Key) {
			continue
		}
		n := z.Nodes[target]
		if n == nil {
			continue
		}
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if s := n.Set(t); s != nil {
				for _, g := range s.RRs {
					b, _ := full(g)
					r.Glue = append(r.Glue, b...)
					r.GlueCount++
				}
			}
		}
	}
	return r
}

func newRRSet(rrs []dns.RR) (*RRSet, error) {
	h := rrs[0].Header()
	s := &RRSet{Type: h.Rrtype, TTL: h.Ttl, RRs: rrs}
	for _, rr := range rrs {
		s.TTL = min(s.TTL, rr.Header().Ttl)
	}
	for _, rr := range rrs {
		rr.Header().Ttl = s.TTL // RFC 2181 §5.2: one TTL per RRset
		t, err := tail(rr)
		if err != nil {
			return nil, err
		}
		s.Tails = append(s.Tails, t)
	}
	if c, ok := rrs[0].(*dns.CNAME); ok {
		k, err := Key(c.Target)
		if err != nil {
			return nil, err
		}
		s.Target = k
	}
	return s, nil
}

// full packs rr with its owner name, uncompressed.
func full(rr dns.RR) ([]byte, error) {
	buf := make([]byte, 65535)
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	return slices.Clone(buf[:n]), nil
}

// tail packs rr without its owner name.
func tail(rr dns.RR) ([]byte, error) {
	b, err := full(rr)
	if err != nil {
		return nil, err
	}
	k, err := Key(rr.Header().Name)
	if err != nil {
		return nil, err
	}
	return b[len(k):], nil
}

// Kind says how a name was found.
type Kind int

const (
	NXDomain   Kind = iota // no such name (RFC 1034 §4.3.2 step 3c)
	NoData                 // the name exists, not the type (RFC 2308 §2.2)
	Answer                 // the RRset (Set) was found
	CNAME                  // the name holds a CNAME (Set), follow it
	Delegation             // the name is at or below a cut (Node): refer
)

// Result of a lookup. Wildcard says the answer was synthesized from a
// wildcard (RFC 4592 §3.3.1): its records take the query name as owner.
type Result struct {
	Kind     Kind
	Node     *Node
	Set      *RRSet
	Wildcard bool
}

// Lookup finds qkey (a wire key inside the zone) for qtype, following
// RFC 1034 §4.3.2: delegations first, then an exact match, then the
// wildcard at the closest encloser (RFC 4592 §3.3), else NXDOMAIN.
func (z *Zone) Lookup(qkey string, qtype uint16) Result {
	if z.HasCuts {
		var cut *Node
		for k := qkey; k != z.Key && len(k) > 1; k = Parent(k) {
			if n := z.Nodes[k]; n != nil && n.Cut {
				cut = n
			}
		}
		// DS lives on the parent side of a cut (RFC 4035 §3.1.4.1).
		if cut != nil && !(cut.Key == qkey && qtype == dns.TypeDS) {
			return Result{Kind: Delegation, Node: cut}
		}
	}
	n := z.Nodes[qkey]
	wild := false
	if n == nil {
		ce := Parent(qkey)
		for z.Nodes[ce] == nil && len(ce) > 1 {
			ce = Parent(ce)
		}
		c := z.Nodes[ce]
		if c == nil || c.Wild == nil {
			return Result{Kind: NXDomain}
		}
		n, wild = c.Wild, true
	}
	if s := n.Set(dns.TypeCNAME); s != nil && qtype != dns.TypeCNAME {
		if qtype == dns.TypeANY {
			// ANY matches the CNAME itself: no chain (RFC 1034 §4.3.2
			// step 3a).
			return Result{Kind: Answer, Node: n, Set: s, Wildcard: wild}
		}
		return Result{Kind: CNAME, Node: n, Set: s, Wildcard: wild}
	}
	if s := n.Set(qtype); s != nil {
		return Result{Kind: Answer, Node: n, Set: s, Wildcard: wild}
	}
	return Result{Kind: NoData, Node: n, Wildcard: wild}
}
