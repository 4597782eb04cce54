package razor

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Zone semantics, each case tied to the RFC section that decides it.
func TestZoneSemantics(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	type want struct {
		rcode  int
		aa     bool
		answer []string // "owner type [rdata]" substrings, in order
		ns     []string
		extra  []string
	}
	for _, tc := range []struct {
		name  string
		rfc   string
		qname string
		qtype uint16
		want  want
	}{
		{"exact match", "RFC 1034 §4.3.2 step 3a", "ns1.v6pod.test", dns.TypeA,
			want{aa: true, answer: []string{"ns1.v6pod.test.\t3600\tIN\tA\t127.0.0.1"}}},
		{"case preserved in the answer owner", "RFC 4343 §4.1", "NS1.V6pod.Test", dns.TypeAAAA,
			want{aa: true, answer: []string{"NS1.V6pod.Test.\t3600\tIN\tAAAA\t::1"}}},
		{"apex NS", "RFC 1034 §4.3.2", "v6pod.test", dns.TypeNS,
			want{aa: true, answer: []string{"NS\tns1.v6pod.test.", "NS\tns2.v6pod.test."}}},
		{"MX", "RFC 1035 §3.3.9", "v6pod.test", dns.TypeMX, want{aa: true, answer: []string{"MX\t10 mail.v6pod.test."}}},
		{"TXT", "RFC 1035 §3.3.14", "v6pod.test", dns.TypeTXT, want{aa: true, answer: []string{"TXT\t\"v=spf1 -all\""}}},
		{"CAA", "RFC 8659 §4", "v6pod.test", dns.TypeCAA, want{aa: true, answer: []string{"CAA\t0 issue \"letsencrypt.org\""}}},
		{"SRV", "RFC 2782", "_sip._udp.v6pod.test", dns.TypeSRV, want{aa: true, answer: []string{"SRV\t10 60 5060 sip.v6pod.test."}}},
		{"PTR", "RFC 1035 §3.3.12", "1.2.0.192.in-addr.v6pod.test", dns.TypePTR, want{aa: true, answer: []string{"PTR\twww.v6pod.test."}}},
		{"SOA", "RFC 1035 §3.3.13", "v6pod.test", dns.TypeSOA, want{aa: true, answer: []string{"SOA\tns1.v6pod.test."}}},
		{"NXDOMAIN carries the SOA with the negative TTL", "RFC 2308 §2.1, §3 (min of SOA TTL 3600 and MINIMUM 300)",
			"nope.v6pod.test", dns.TypeA, want{rcode: dns.RcodeNameError, aa: true, ns: []string{"v6pod.test.\t300\tIN\tSOA"}}},
		{"NODATA: the name exists, not the type", "RFC 2308 §2.2", "ns2.v6pod.test", dns.TypeAAAA,
			want{aa: true, ns: []string{"v6pod.test.\t300\tIN\tSOA"}}},
		{"empty non-terminal is NODATA, not NXDOMAIN", "RFC 4592 §2.2.2, RFC 8020", "a.b.v6pod.test", dns.TypeA,
			want{aa: true, ns: []string{"SOA"}}},
		{"negative TTL of another zone", "RFC 2308 §3 (SOA TTL 300, MINIMUM 60)", "nope.customer.test", dns.TypeA,
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{"customer.test.\t60\tIN\tSOA"}}},
		{"CNAME followed inside the zone", "RFC 1034 §4.3.2 step 3a, §3.6.2", "alias.v6pod.test", dns.TypeTXT,
			want{aa: true, answer: []string{"alias.v6pod.test.\t3600\tIN\tCNAME\twww.v6pod.test.", "www.v6pod.test.\t3600\tIN\tCNAME\tshop.route.v6pod.test."},
				ns: []string{"SOA"}}},
		{"CNAME asked for itself", "RFC 1034 §3.6.2", "www.v6pod.test", dns.TypeCNAME,
			want{aa: true, answer: []string{"CNAME\tshop.route.v6pod.test."}}},
		{"CNAME out of razor's zones: the resolver follows", "RFC 1034 §4.3.2 step 3a", "outside.v6pod.test", dns.TypeA,
			want{aa: true, answer: []string{"CNAME\twww.example.net."}}},
		{"dangling CNAME: rcode of the last name", "RFC 6604 §3", "dangling.v6pod.test", dns.TypeA,
			want{rcode: dns.RcodeNameError, aa: true, answer: []string{"CNAME\tnothing.v6pod.test."}, ns: []string{"SOA"}}},
		{"CNAME loop stops", "RFC 1034 §3.6.2 (loops are errors)", "loop1.v6pod.test", dns.TypeA,
			want{aa: true, answer: []string{"CNAME\tloop2.v6pod.test.", "CNAME\tloop1.v6pod.test."}}},
		{"CNAME across zones to a route label", "DESIGN.md Names", "www.customer.test", dns.TypeTXT,
			want{aa: true, answer: []string{"www.customer.test.\t300\tIN\tCNAME\tshop.route.v6pod.test."}, ns: []string{"v6pod.test.\t300\tIN\tSOA"}}},
		{"wildcard synthesis takes the query name", "RFC 4592 §3.3.1", "anything.wild.v6pod.test", dns.TypeA,
			want{aa: true, answer: []string{"anything.wild.v6pod.test.\t3600\tIN\tA\t192.0.2.80"}}},
		{"wildcard matches several labels", "RFC 4592 §3.3.1", "a.b.wild.v6pod.test", dns.TypeTXT,
			want{aa: true, answer: []string{"a.b.wild.v6pod.test.\t3600\tIN\tTXT\t\"wildcard\""}}},
		{"wildcard NODATA", "RFC 4592 §3.3.1 (no RRset of the type)", "x.wild.v6pod.test", dns.TypeMX,
			want{aa: true, ns: []string{"SOA"}}},
		{"the wildcard's parent is not matched", "RFC 4592 §2.2.1", "wild.v6pod.test", dns.TypeA,
			want{aa: true, ns: []string{"SOA"}}},
		{"an existing name is not covered by the wildcard", "RFC 4592 §3.3.1", "real.wild.v6pod.test", dns.TypeA,
			want{aa: true, ns: []string{"SOA"}}},
		{"nor is anything below it", "RFC 4592 §2.2.1 (closest encloser real.wild has no wildcard)", "x.real.wild.v6pod.test", dns.TypeA,
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{"SOA"}}},
		{"wildcard CNAME to a route", "RFC 4592 §4.4", "x.cname.v6pod.test", dns.TypeTXT,
			want{aa: true, answer: []string{"x.cname.v6pod.test.\t3600\tIN\tCNAME\troute.v6pod.test.", "route.v6pod.test.\t3600\tIN\tTXT"}}},
		{"referral at a delegation, with glue, not authoritative", "RFC 1034 §4.3.2 step 3b",
			"host.sub.v6pod.test", dns.TypeA,
			want{ns: []string{"sub.v6pod.test.\t3600\tIN\tNS\tns.sub.v6pod.test."},
				extra: []string{"ns.sub.v6pod.test.\t3600\tIN\tA\t192.0.2.53", "ns.sub.v6pod.test.\t3600\tIN\tAAAA\t2001:db8:53::53"}}},
		{"glue itself is a referral", "RFC 1034 §4.3.2 step 3b", "ns.sub.v6pod.test", dns.TypeA,
			want{ns: []string{"NS"}, extra: []string{"A", "AAAA"}}},
		{"DS at the cut is the parent's", "RFC 4035 §3.1.4.1", "sub.v6pod.test", dns.TypeDS,
			want{aa: true, answer: []string{"sub.v6pod.test.\t3600\tIN\tDS\t12345 13 2"}}},
		{"outside every zone: REFUSED", "RFC 1035 §4.1.1", "www.example.com", dns.TypeA,
			want{rcode: dns.RcodeRefused}},
		{"ANY gets one RRset", "RFC 8482 §4.1", "ns1.v6pod.test", dns.TypeANY,
			want{aa: true, answer: []string{"ns1.v6pod.test.\t3600\tIN\tA"}}},
		{"ANY at a CNAME is the CNAME alone, not followed", "RFC 1034 §4.3.2 step 3a", "alias.v6pod.test", dns.TypeANY,
			want{aa: true, answer: []string{"alias.v6pod.test.\t3600\tIN\tCNAME\twww.v6pod.test."}}},
		{"ANY at a wildcard CNAME is the CNAME alone", "RFC 1034 §4.3.2 step 3a, RFC 4592 §3.3.1", "x.cname.v6pod.test", dns.TypeANY,
			want{aa: true, answer: []string{"x.cname.v6pod.test.\t3600\tIN\tCNAME\troute.v6pod.test."}}},
		{"route: other types from the zone", "DESIGN.md Names", "route.v6pod.test", dns.TypeTXT,
			want{aa: true, answer: []string{"TXT\t\"steered by razor\""}}},
		{"route: other types NODATA", "RFC 2308 §2.2", "route.v6pod.test", dns.TypeMX,
			want{aa: true, ns: []string{"SOA"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, s, newQuery(tc.qname, tc.qtype), false)
			if r == nil {
				t.Fatal("no answer")
			}
			ctx := tc.rfc + "\n" + r.String()
			if r.Rcode != tc.want.rcode {
				t.Errorf("rcode %s, want %s (%s)", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want.rcode], ctx)
			}
			if r.Authoritative != tc.want.aa {
				t.Errorf("AA %v, want %v (%s)", r.Authoritative, tc.want.aa, ctx)
			}
			check := func(sec string, got []dns.RR, want []string) {
				if len(got) != len(want) {
					t.Errorf("%s: %d records, want %d (%s)", sec, len(got), len(want), ctx)
					return
				}
				for i, w := range want {
					if !strings.Contains(got[i].String(), w) {
						t.Errorf("%s[%d] = %q, want it to contain %q (%s)", sec, i, got[i].String(), w, tc.rfc)
					}
				}
			}
			check("answer", r.Answer, tc.want.answer)
			check("authority", r.Ns, tc.want.ns)
			var extra []dns.RR
			for _, rr := range r.Extra {
				if rr.Header().Rrtype != dns.TypeOPT {
					extra = append(extra, rr)
				}
			}
			check("additional", extra, tc.want.extra)
		})
	}
}

// A route answers A and AAAA with `answers` distinct addresses of its
// active pools, also under a label and through a CNAME.
func TestRouteAnswers(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	eligible := map[netip.Addr]bool{}
	for _, a := range strings.Fields("203.0.113.1 203.0.113.2 203.0.113.3 203.0.113.4 203.0.113.5 203.0.113.6 203.0.113.7 " +
		"198.51.100.1 198.51.100.2 198.51.100.3 198.51.100.4 " +
		"2001:db8:1::1 2001:db8:1::2 2001:db8:1::3 2001:db8:1::4 2001:db8:1::5 2001:db8:1::6 2001:db8:1::7 " +
		"2001:db8:2::1 2001:db8:2::2 2001:db8:2::3 2001:db8:2::4") {
		eligible[netip.MustParseAddr(a)] = true
	}
	for _, tc := range []struct {
		qname string
		qtype uint16
		chain int
	}{
		{"route.v6pod.test", dns.TypeA, 0},
		{"route.v6pod.test", dns.TypeAAAA, 0},
		{"ShOp.route.v6pod.test", dns.TypeA, 0},
		{"www.customer.test", dns.TypeAAAA, 1},
		{"alias.v6pod.test", dns.TypeA, 2},
		{"x.cname.v6pod.test", dns.TypeAAAA, 1},
	} {
		for range 200 {
			r := ask(t, s, newQuery(tc.qname, tc.qtype), false)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
				t.Fatalf("%s: %s", tc.qname, r)
			}
			got := addrsOf(r.Answer)
			if len(got) != 4 || len(r.Answer) != 4+tc.chain {
				t.Fatalf("%s %s: %d addresses, %d records, want 4 + %d CNAMEs:\n%s", tc.qname, dns.TypeToString[tc.qtype], len(got), len(r.Answer), tc.chain, r)
			}
			seen := map[netip.Addr]bool{}
			for _, a := range got {
				if !eligible[a] || seen[a] {
					t.Fatalf("%s: %s is a duplicate or not eligible (drained, draining or disabled):\n%s", tc.qname, a, r)
				}
				seen[a] = true
			}
			if h := r.Answer[len(r.Answer)-1].Header(); h.Ttl != 30 {
				t.Fatalf("route TTL %d, want 30", h.Ttl)
			}
		}
	}
}
