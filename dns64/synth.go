package dns64

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/internal/addr"
)

// The RFC 6147 logic. Every function here builds the canonical answer to a
// question from upstream answers; the server adds ID, flags and EDNS.

// defaultSynthTTL bounds synthesized TTLs when no SOA is known (RFC 6147
// section 5.1.7: "If a value cannot be found, 600 seconds").
const defaultSynthTTL = 600

// prefixFor returns the Pref64::/n for v4: the longest configured IPv4
// range that holds it, else the default prefix.
func (s *Server) prefixFor(v4 netip.Addr) addr.NAT64Prefix {
	for i := range s.cc.ranges {
		if s.cc.ranges[i].v4.Contains(v4) {
			return s.cc.ranges[i].pfx
		}
	}
	return s.cc.defPrefix
}

// synthesizable reports whether v4 may be mapped with pfx: not in the
// excluded ranges, and not a non-global address under the well-known
// prefix (RFC 6052 section 3.1).
func (s *Server) synthesizable(v4 netip.Addr, pfx addr.NAT64Prefix) bool {
	for _, p := range s.cc.exclude4 {
		if p.Contains(v4) {
			return false
		}
	}
	if pfx.Prefix() == addr.WellKnownPrefix {
		for _, p := range s.cc.nonGlobal {
			if p.Contains(v4) {
				return false
			}
		}
	}
	return true
}

// excludedAAAA reports whether a is in the AAAA exclusion set (RFC 6147
// section 5.1.4).
func (s *Server) excludedAAAA(a netip.Addr) bool {
	for _, p := range s.cc.excludeAAAA {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// query makes an upstream query for one question.
func (s *Server) query(ctx context.Context, name string, qtype uint16, do, cd bool) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	q.RecursionDesired = true
	q.CheckingDisabled = cd
	q.SetEdns0(uint16(s.cfg.UDPSize), do)
	return s.up.Exchange(ctx, q)
}

// answer is the canonical result of resolution, before the per-request
// header fields are set.
type answer struct {
	rcode  int
	ad     bool
	an, ns []dns.RR
	extra  []dns.RR    // without OPT
	ede    []dns.EDNS0 // Extended DNS Errors of the upstream's answer
}

func fromUpstream(m *dns.Msg) *answer {
	if hopRcode(m.Rcode) {
		// BADVERS, the TSIG errors and BADCOOKIE concern our exchange
		// with the upstream, not the client's: told to a client that
		// sent no cookie, or EDNS version 0, they would mislead it.
		return servfail
	}
	a := &answer{rcode: m.Rcode, ad: m.AuthenticatedData, an: m.Answer, ns: m.Ns}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			a.extra = append(a.extra, rr)
			continue
		}
		// Extended DNS Errors (RFC 8914) tell why the answer is what it
		// is (DNSSEC bogus, blocked, stale...): they go with the answer.
		// Every other option is about our hop to the upstream.
		for _, o := range rr.(*dns.OPT).Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok && len(a.ede) < 4 {
				a.ede = append(a.ede, e)
			}
		}
	}
	return a
}

// hopRcode reports whether an extended rcode is about one hop (RFC 6891
// BADVERS, RFC 8945 TSIG errors, RFC 7873 BADCOOKIE) rather than about the
// question; other extended rcodes are passed through to EDNS clients.
func hopRcode(rcode int) bool {
	return rcode >= dns.RcodeBadVers && rcode <= dns.RcodeBadCookie
}

var servfail = &answer{rcode: dns.RcodeServerFailure}

// forward resolves anything DNS64 leaves alone.
func (s *Server) forward(ctx context.Context, q dns.Question, do, cd bool) *answer {
	if q.Qclass != dns.ClassINET {
		m := new(dns.Msg)
		m.Question = []dns.Question{q}
		m.RecursionDesired = true
		m.CheckingDisabled = cd
		m.SetEdns0(uint16(s.cfg.UDPSize), do)
		resp, err := s.up.Exchange(ctx, m)
		if err != nil {
			return servfail
		}
		return fromUpstream(resp)
	}
	resp, err := s.query(ctx, q.Name, q.Qtype, do, cd)
	if err != nil {
		return servfail
	}
	return fromUpstream(resp)
}

// chainTargets returns the lower-cased names of the CNAME chain that starts
// at name in rrs: name itself and every target (RFC 6147 section 5.1.5).
func chainTargets(name string, rrs []dns.RR) map[string]bool {
	names := map[string]bool{strings.ToLower(name): true}
	cur := strings.ToLower(name)
	for range 16 {
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(c.Target)
				break
			}
		}
		if next == "" || names[next] {
			break
		}
		names[next] = true
		cur = next
	}
	return names
}

// negativeTTL is the SOA-derived negative TTL of a NODATA answer
// (RFC 2308 section 5), or false when it carries no SOA.
func negativeTTL(m *dns.Msg) (uint32, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

// resolveAAAA applies RFC 6147 section 5.1 to an AAAA question.
func (s *Server) resolveAAAA(ctx context.Context, q dns.Question, do, cd bool) *answer {
	// 5.5: a security-aware client that sets CD validates itself and
	// synthesizes itself; records we made up would fail its validation.
	if do && cd {
		return s.forward(ctx, q, do, cd)
	}
	aaaa, err := s.query(ctx, q.Name, dns.TypeAAAA, do, cd)
	if err == nil {
		switch aaaa.Rcode {
		case dns.RcodeNameError:
			// 5.1.2: Name Error is returned as it is.
			return fromUpstream(aaaa)
		case dns.RcodeSuccess:
			if a := s.realAAAA(q, aaaa, do); a != nil {
				return a // 5.1.1 (and 5.1.4 when some were excluded)
			}
		}
		// 5.1.2: any other rcode counts as an empty answer.
	}
	// 5.1.3: a timeout counts as SERVFAIL, thus as an empty answer too.
	am, errA := s.query(ctx, q.Name, dns.TypeA, do, cd)
	if errA != nil {
		return servfail
	}
	if am.Rcode != dns.RcodeSuccess {
		// 5.1.6: the error of the A query is the answer.
		return fromUpstream(am)
	}
	bound := uint32(defaultSynthTTL)
	if err == nil && aaaa.Rcode == dns.RcodeSuccess {
		if ttl, ok := negativeTTL(aaaa); ok {
			bound = ttl
		}
	}
	chain := chainTargets(q.Name, am.Answer)
	out := &answer{rcode: dns.RcodeSuccess, ns: am.Ns}
	synthesized := 0
	for _, rr := range am.Answer {
		switch r := rr.(type) {
		case *dns.A:
			if !chain[strings.ToLower(r.Hdr.Name)] {
				continue
			}
			v4, ok := netip.AddrFromSlice(r.A.To4())
			if !ok {
				continue
			}
			pfx := s.prefixFor(v4)
			if !s.synthesizable(v4, pfx) {
				continue
			}
			b := pfx.Embed(v4.As4())
			out.an = append(out.an, &dns.AAAA{
				Hdr: dns.RR_Header{Name: r.Hdr.Name, Rrtype: dns.TypeAAAA, Class: r.Hdr.Class,
					Ttl: min(r.Hdr.Ttl, bound)}, // 5.1.7
				AAAA: b[:],
			})
			synthesized++
		case *dns.RRSIG:
			// 5.5: signatures over A records do not cover what we made.
			if r.TypeCovered == dns.TypeA {
				continue
			}
			out.an = append(out.an, rr)
		default:
			out.an = append(out.an, rr) // 5.1.5: the CNAME/DNAME chain is kept
		}
	}
	if synthesized == 0 {
		// Nothing usable to synthesize from: the answer to the AAAA query
		// is the one to give (5.1.6), without its excluded records.
		if err == nil && aaaa.Rcode == dns.RcodeSuccess {
			return s.withoutExcluded(fromUpstream(aaaa))
		}
		out.an = out.an[:0]
		for _, rr := range am.Answer {
			if t := rr.Header().Rrtype; t != dns.TypeA && !(t == dns.TypeRRSIG && rr.(*dns.RRSIG).TypeCovered == dns.TypeA) {
				out.an = append(out.an, rr)
			}
		}
		return out
	}
	s.m.synthesized.Inc()
	return out // AD stays clear: synthesized data is not validated (5.5)
}

// realAAAA returns the answer built from the upstream's own AAAA records
// when at least one is outside the exclusion set, else nil.
func (s *Server) realAAAA(q dns.Question, m *dns.Msg, do bool) *answer {
	chain := chainTargets(q.Name, m.Answer)
	usable, excluded := 0, 0
	for _, rr := range m.Answer {
		if r, ok := rr.(*dns.AAAA); ok && chain[strings.ToLower(r.Hdr.Name)] {
			a, ok := netip.AddrFromSlice(r.AAAA)
			if ok && !s.excludedAAAA(a) {
				usable++
			} else {
				excluded++
			}
		}
	}
	if usable == 0 {
		return nil
	}
	a := fromUpstream(m)
	if excluded > 0 && !do {
		// 5.1.4: the excluded records MAY be left out. With DO set they
		// stay, so that the RRset still matches its signature.
		a = s.withoutExcluded(a)
	}
	return a
}

// withoutExcluded drops AAAA records in the exclusion set from the answer.
func (s *Server) withoutExcluded(a *answer) *answer {
	keep := make([]dns.RR, 0, len(a.an))
	dropped := false
	for _, rr := range a.an {
		if r, ok := rr.(*dns.AAAA); ok {
			if ip, ok := netip.AddrFromSlice(r.AAAA); !ok || s.excludedAAAA(ip) {
				dropped = true
				continue
			}
		}
		keep = append(keep, rr)
	}
	if !dropped {
		return a
	}
	out := *a
	out.an = keep
	out.ad = false
	return &out
}

// reverseV4 returns the IPv4 address a full ip6.arpa name stands for when
// it lies inside one of the prefixes and would have been synthesized.
func (s *Server) reverseV4(name string) (netip.Addr, bool) {
	const suffix = "ip6.arpa."
	if len(name) != 64+len(suffix) || !strings.EqualFold(name[64:], suffix) {
		return netip.Addr{}, false
	}
	var b [16]byte
	for i := range 32 {
		c := name[2*i]
		if name[2*i+1] != '.' {
			return netip.Addr{}, false
		}
		var n byte
		switch {
		case c >= '0' && c <= '9':
			n = c - '0'
		case c >= 'a' && c <= 'f':
			n = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			n = c - 'A' + 10
		default:
			return netip.Addr{}, false
		}
		// Nibble i counts from the least significant end.
		pos := 15 - i/2
		if i%2 == 0 {
			b[pos] |= n
		} else {
			b[pos] |= n << 4
		}
	}
	try := func(p addr.NAT64Prefix) (netip.Addr, bool) {
		v4b, ok := p.Extract(b)
		if !ok {
			return netip.Addr{}, false
		}
		v4 := netip.AddrFrom4(v4b)
		if s.prefixFor(v4) != p || !s.synthesizable(v4, p) {
			return netip.Addr{}, false
		}
		if p.Embed(v4b) != b { // suffix bits beyond the IPv4 address
			return netip.Addr{}, false
		}
		return v4, true
	}
	if v4, ok := try(s.cc.defPrefix); ok {
		return v4, true
	}
	for _, r := range s.cc.ranges {
		if v4, ok := try(r.pfx); ok {
			return v4, true
		}
	}
	return netip.Addr{}, false
}

// resolvePTR answers a PTR query for a synthesized address with a CNAME to
// its in-addr.arpa name, followed by what that name resolves to (RFC 6147
// section 5.3.1).
func (s *Server) resolvePTR(ctx context.Context, q dns.Question, v4 netip.Addr, do, cd bool) *answer {
	b := v4.As4()
	target := itoa(b[3]) + "." + itoa(b[2]) + "." + itoa(b[1]) + "." + itoa(b[0]) + ".in-addr.arpa."
	cname := &dns.CNAME{
		Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: uint32(s.cfg.PTRTTL.Seconds())},
		Target: target,
	}
	s.m.ptrCNAME.Inc()
	resp, err := s.query(ctx, target, dns.TypePTR, do, cd)
	if err != nil {
		return servfail
	}
	a := fromUpstream(resp)
	a.an = append([]dns.RR{cname}, a.an...)
	a.ad = false
	return a
}

func itoa(b byte) string {
	const digits = "0123456789"
	switch {
	case b >= 100:
		return string([]byte{digits[b/100], digits[b/10%10], digits[b%10]})
	case b >= 10:
		return string([]byte{digits[b/10], digits[b%10]})
	}
	return string(digits[b])
}
