package razor

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/razor/pick"
	"github.com/v6pod/v6pod/razor/rrl"
	"github.com/v6pod/v6pod/razor/zone"
)

// The query path works on wire bytes: it parses the header, the question
// and the OPT record itself and writes the response into a buffer owned by
// the worker, from prebuilt record tails. Owner names are compression
// pointers: to the question name (offset 12) or to the target of the CNAME
// written just before, so every prebuilt piece fits any response.

const (
	hdrLen    = 12
	maxMsg    = 65535
	optCookie = 10
	maxChain  = 8 // CNAME hops followed
)

// scratch is one worker's memory; a query allocates nothing else.
type scratch struct {
	key     [256]byte
	buf     [2 + maxMsg + 1024]byte // 2 bytes of TCP length, then the message
	choices []pick.Choice
	q       query
}

func newScratch() *scratch {
	return &scratch{choices: make([]pick.Choice, 0, pick.MaxAnswers)}
}

// query is what parseQuery found in a request.
type query struct {
	qd       bool // a question was parsed
	qname    []byte
	qtype    uint16
	qclass   uint16
	qend     int
	edns     bool
	udpSize  uint16
	version  uint8
	do       bool
	cookie   []byte // the COOKIE option's data
	isCookie bool
}

// parseQuery reads the header, question and OPT record. It returns the
// lower-case wire key of the query name, an rcode (FORMERR for malformed
// input), and drop when the packet must not be answered at all (too short
// for a header, or a response).
func parseQuery(p []byte, q *query, key []byte) (k []byte, rcode int, drop bool) {
	if len(p) < hdrLen || p[2]&0x80 != 0 {
		return nil, 0, true
	}
	qd := binary.BigEndian.Uint16(p[4:])
	an := int(binary.BigEndian.Uint16(p[6:]))
	ns := int(binary.BigEndian.Uint16(p[8:]))
	ar := int(binary.BigEndian.Uint16(p[10:]))
	off := hdrLen
	if qd > 1 {
		return nil, dns.RcodeFormatError, false
	}
	if qd == 1 {
		k = key[:0]
		for {
			if off >= len(p) {
				return nil, dns.RcodeFormatError, false
			}
			l := int(p[off])
			if l&0xC0 != 0 { // no pointer can precede the first name
				return nil, dns.RcodeFormatError, false
			}
			if off+1+l > len(p) || len(k)+1+l > 255 {
				return nil, dns.RcodeFormatError, false
			}
			k = append(k, p[off:off+1+l]...)
			off += 1 + l
			if l == 0 {
				break
			}
		}
		if off+4 > len(p) {
			return nil, dns.RcodeFormatError, false
		}
		zone.LowerWire(k)
		q.qname = p[hdrLen:off]
		q.qtype = binary.BigEndian.Uint16(p[off:])
		q.qclass = binary.BigEndian.Uint16(p[off+2:])
		off += 4
		q.qend = off
		q.qd = true
	}
	// Step over answer and authority records (a query has none, but they
	// are not worth a FORMERR), then read the additional section.
	for i := 0; i < an+ns+ar; i++ {
		start := off
		var ok bool
		if off, ok = skipName(p, off); !ok || off+10 > len(p) {
			return k, dns.RcodeFormatError, false
		}
		typ := binary.BigEndian.Uint16(p[off:])
		class := binary.BigEndian.Uint16(p[off+2:])
		ttl := binary.BigEndian.Uint32(p[off+4:])
		rdlen := int(binary.BigEndian.Uint16(p[off+8:]))
		off += 10
		if off+rdlen > len(p) {
			return k, dns.RcodeFormatError, false
		}
		if typ == dns.TypeOPT && i >= an+ns {
			// RFC 6891 §6.1.1: one OPT, owned by the root.
			if q.edns || off-10-start != 1 || p[start] != 0 {
				return k, dns.RcodeFormatError, false
			}
			q.edns = true
			q.udpSize = class
			q.version = uint8(ttl >> 16)
			q.do = ttl&0x8000 != 0
			for o := off; o < off+rdlen; {
				if o+4 > off+rdlen {
					return k, dns.RcodeFormatError, false
				}
				code := binary.BigEndian.Uint16(p[o:])
				olen := int(binary.BigEndian.Uint16(p[o+2:]))
				o += 4
				if o+olen > off+rdlen {
					return k, dns.RcodeFormatError, false
				}
				if code == optCookie {
					// RFC 7873 §5.2.2: 8 bytes, or 16 to 40.
					if olen != 8 && (olen < 16 || olen > 40) || q.isCookie {
						return k, dns.RcodeFormatError, false
					}
					q.cookie, q.isCookie = p[o:o+olen], true
				}
				o += olen
			}
		}
		off += rdlen
	}
	if !q.qd && !q.isCookie {
		// Only a cookie-only query may lack a question (RFC 7873 §5.4).
		return k, dns.RcodeFormatError, false
	}
	return k, 0, false
}

func skipName(p []byte, off int) (int, bool) {
	for n := 0; n < 128; n++ {
		if off >= len(p) {
			return 0, false
		}
		l := int(p[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xC0 == 0xC0:
			return off + 2, off+2 <= len(p)
		case l&0xC0 != 0:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

// resp accumulates a response in a scratch buffer.
type resp struct {
	b          []byte
	an, ns, ar int
}

func (r *resp) ptrTail(ptr int, tail []byte) {
	r.b = append(r.b, 0xC0|byte(ptr>>8), byte(ptr))
	r.b = append(r.b, tail...)
}

// set writes an RRset into the answer section, owned by the name at ptr,
// and returns where its first record starts.
func (r *resp) set(ptr int, s *zone.RRSet) int {
	at := len(r.b)
	for _, t := range s.Tails {
		r.ptrTail(ptr, t)
	}
	r.an += len(s.Tails)
	return at
}

func (r *resp) negative(z *zone.Zone) {
	r.b = append(r.b, z.NegSOA...)
	r.ns++
}

// outcome of resolving a query, for the header, RRL and metrics.
type outcome struct {
	rcode   int
	aa      bool
	kind    rrl.Kind
	rrlName string
}

// respond answers the DNS message p from client over UDP or TCP. The
// response is a slice of sc.buf[2:], or nil when nothing must be sent.
func (s *Server) respond(sc *scratch, p []byte, client netip.AddrPort, tcp bool) []byte {
	if tcp {
		s.m.proto[1].Inc()
	} else {
		s.m.proto[0].Inc()
	}
	q := &sc.q
	*q = query{}
	kb, rcode, drop := parseQuery(p, q, sc.key[:])
	if drop {
		s.m.dropped.Inc()
		return nil
	}
	key := unsafe.String(unsafe.SliceData(kb), len(kb)) // lives in sc.key for this query only
	snap := s.snap.Load()
	r := resp{b: sc.buf[2:2]}
	// Header: ID, QR, opcode and RD copied, CD copied (RFC 6840 §5.9).
	r.b = append(r.b, p[0], p[1], 0x80|p[2]&0x79, p[3]&0x10, 0, 0, 0, 0, 0, 0, 0, 0)
	if q.qd {
		r.b = append(r.b, p[hdrLen:q.qend]...)
		r.b[5] = 1
	}
	out := outcome{rcode: rcode, kind: rrl.Error}
	cookie := cookieNone
	if rcode == 0 && q.isCookie && s.cookies {
		cookie = s.checkCookie(q.cookie, client.Addr())
	}
	opcode := p[2] >> 3 & 0xF
	switch {
	case rcode != 0:
	case q.edns && q.version > 0:
		out.rcode = dns.RcodeBadVers // RFC 6891 §6.1.3, before anything else in the message
	case !q.qd:
		out.rcode = dns.RcodeSuccess // a cookie-only query: the OPT is the answer
	case opcode != dns.OpcodeQuery:
		out.rcode = dns.RcodeNotImplemented
	case q.qclass != dns.ClassINET:
		out.rcode = dns.RcodeRefused
	case q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR:
		out.rcode = dns.RcodeRefused // no zone transfers
	case q.qtype == dns.TypeOPT:
		out.rcode = dns.RcodeFormatError
	default:
		out = s.resolve(sc, snap, q, key, &r)
	}
	if out.aa {
		r.b[2] |= 0x04
	}
	// RRL: not for TCP and not for clients that proved their address
	// with a valid server cookie.
	if s.rrl != nil && !tcp && cookie != cookieValid {
		switch s.rrl.Check(client.Addr(), out.kind, out.rrlName, q.qtype, s.now().UnixNano()) {
		case rrl.Drop:
			s.m.rrl[0].Inc()
			return nil
		case rrl.Slip:
			s.m.rrl[1].Inc()
			r.b = r.b[:hdrLen]
			if q.qd {
				r.b = append(r.b, p[hdrLen:q.qend]...)
			}
			r.an, r.ns, r.ar = 0, 0, 0
			r.b[2] |= 0x02
		}
	}
	limit := maxMsg
	if !tcp {
		limit = 512
		if q.edns {
			limit = max(512, min(int(q.udpSize), s.cfg.EDNSSize))
		}
	}
	optLen := 0
	if q.edns {
		optLen = 11
		if cookie != cookieNone {
			optLen += 4 + 24
		}
	}
	if len(r.b)+optLen > limit {
		// Does not fit: TC and no records, the client retries over TCP
		// (RFC 2181 §9, RFC 6891 §7).
		r.b = r.b[:hdrLen]
		if q.qd {
			r.b = append(r.b, p[hdrLen:q.qend]...)
		}
		r.an, r.ns, r.ar = 0, 0, 0
		r.b[2] |= 0x02
		s.m.truncated.Inc()
	}
	if q.edns {
		rc := out.rcode
		r.b = append(r.b, 0, 0, 41, byte(s.cfg.EDNSSize>>8), byte(s.cfg.EDNSSize), byte(rc>>4), 0, 0, 0, 0, 0)
		if q.do {
			r.b[len(r.b)-4] = 0x80 // DO copied (RFC 3225 §3)
		}
		if cookie != cookieNone {
			o := len(r.b)
			r.b = append(r.b, 0, optCookie, 0, 24)
			r.b = append(r.b, q.cookie[:8]...)
			r.b = s.serverCookie(r.b, q.cookie[:8], client.Addr())
			binary.BigEndian.PutUint16(r.b[o-2:], uint16(len(r.b)-o))
		}
		r.ar++
	}
	r.b[3] |= byte(out.rcode & 0xF)
	binary.BigEndian.PutUint16(r.b[6:], uint16(r.an))
	binary.BigEndian.PutUint16(r.b[8:], uint16(r.ns))
	binary.BigEndian.PutUint16(r.b[10:], uint16(r.ar))
	s.m.query(q.qtype, out.rcode)
	return r.b
}

// resolve fills the answer, authority and additional sections: RFC 1034
// §4.3.2 over razor's zones, with routes answered from the pools and
// CNAMEs followed across zones and routes.
func (s *Server) resolve(sc *scratch, snap *snapshot, q *query, key string, r *resp) outcome {
	qtype := q.qtype
	ptr := hdrLen // where the current owner name sits: the question
	var visited [maxChain + 1]string
	out := outcome{}
	for hop := 0; ; hop++ {
		visited[hop] = key
		z := zoneFor(snap.zones, key, qtype)
		if z == nil {
			if hop == 0 {
				return outcome{rcode: dns.RcodeRefused, kind: rrl.Error}
			}
			return out // the chain leaves razor's zones; the resolver goes on
		}
		if hop == 0 {
			out.aa = true
			out.kind, out.rrlName = rrl.Negative, z.Key
		}
		if rt, label := snap.routeFor(key, z); rt != nil {
			fi := -1
			switch qtype {
			case dns.TypeA, dns.TypeANY:
				fi = 0
			case dns.TypeAAAA:
				fi = 1
			}
			if fi >= 0 && s.writeRoute(sc, snap, rt, fi, label, ptr, r) > 0 {
				if hop == 0 {
					// Every label of a route counts as the route, so
					// random labels do not escape RRL.
					out.kind, out.rrlName = rrl.Answer, rt.key
				}
				return out
			}
			if fi < 0 && qtype != dns.TypeCNAME {
				if n := z.Nodes[key]; n != nil {
					if set := n.Set(qtype); set != nil {
						r.set(ptr, set)
						if hop == 0 {
							out.kind, out.rrlName = rrl.Answer, key
						}
						return out
					}
				}
			}
			if fi >= 0 {
				r.b = append(r.b, rt.negSOA...) // NODATA at the route's TTL
				r.ns++
			} else {
				r.negative(z) // NODATA (RFC 2308 §2.2)
			}
			return out
		}
		res := z.Lookup(key, qtype)
		if res.Kind == zone.NoData && qtype == dns.TypeANY && len(res.Node.Sets) > 0 {
			// RFC 8482 §4.1: answer ANY with one RRset.
			res.Kind, res.Set = zone.Answer, res.Node.Sets[0]
		}
		if hop == 0 && (res.Kind == zone.Answer || res.Kind == zone.CNAME) {
			// Answers synthesized from one wildcard count as one name
			// (the BIND RRL design), so random labels do not escape RRL.
			out.kind, out.rrlName = rrl.Answer, key
			if res.Wildcard {
				out.rrlName = res.Node.Key
			}
		}
		switch res.Kind {
		case zone.Answer:
			r.set(ptr, res.Set)
			return out
		case zone.CNAME:
			at := r.set(ptr, res.Set)
			ptr = at + 2 + 10 // the target, in the CNAME's RDATA
			key = res.Set.Target
			if hop >= maxChain || ptr > 0x3FFF {
				return out
			}
			for _, v := range visited[:hop+1] {
				if v == key {
					return out // a loop: give what we have
				}
			}
		case zone.NoData:
			r.negative(z)
			return out
		case zone.NXDomain:
			r.negative(z)
			out.rcode = dns.RcodeNameError // RFC 6604 §3: of the last name
			return out
		case zone.Delegation:
			ref := res.Node.Referral
			r.b = append(r.b, ref.NS...)
			r.ns += ref.NSCount
			r.b = append(r.b, ref.Glue...)
			r.ar += ref.GlueCount
			if hop == 0 {
				out.aa = false // a referral is not authoritative
				out.kind, out.rrlName = rrl.Referral, res.Node.Key
			}
			return out
		}
	}
}

// writeRoute writes the route's records of family fi (0 A, 1 AAAA) owned
// by the name at ptr, and returns how many it wrote.
func (s *Server) writeRoute(sc *scratch, snap *snapshot, rt *route, fi int, label string, ptr int, r *resp) int {
	f := &rt.fam[fi]
	set := f.set
	if set.Len() == 0 {
		return 0
	}
	if rt.shard {
		set = f.shardSet(label, rt.shardSize)
	}
	ch := set.Pick(rt.answers, sc.choices[:0])
	var perPool [8]int // records per pool of the set, for the first pools
	for _, c := range ch {
		p := &set.Pools[c.Pool]
		a := p.Addrs[c.Index]
		r.b = append(r.b, 0xC0|byte(ptr>>8), byte(ptr))
		r.b = append(r.b, f.hdr[:]...)
		if fi == 0 {
			b := a.As4()
			r.b = append(r.b, b[:]...)
		} else {
			b := a.As16()
			r.b = append(r.b, b[:]...)
		}
		if c.Pool < len(perPool) {
			perPool[c.Pool]++
		} else {
			snap.pools[p.ID].answers.Inc()
		}
	}
	for i, n := range perPool {
		if n > 0 {
			snap.pools[set.Pools[i].ID].answers.Add(float64(n))
		}
	}
	r.an += len(ch)
	if f.failOpen {
		rt.failOpen.Inc()
	}
	return len(ch)
}
