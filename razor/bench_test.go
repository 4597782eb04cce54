package razor

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func benchQuery(b testing.TB, name string, qtype uint16, edns bool) []byte {
	m := newQuery(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	p, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

var allocCases = []struct {
	name  string
	qname string
	qtype uint16
	max   float64 // allocations per query allowed
}{
	{"route A", "route.v6pod.test", dns.TypeA, 0},
	{"route AAAA via CNAME", "www.customer.test", dns.TypeAAAA, 0},
	{"shard label (cached)", "blog.shard.v6pod.test", dns.TypeAAAA, 0},
	{"zone A", "ns1.v6pod.test", dns.TypeA, 0},
	{"NXDOMAIN", "nope.v6pod.test", dns.TypeA, 0},
	{"wildcard", "x.wild.v6pod.test", dns.TypeA, 0},
	{"referral", "host.sub.v6pod.test", dns.TypeA, 0},
}

// allocsPerQuery is the fewest allocations per call of f over three
// rounds: AllocsPerRun counts the whole process, and the file store
// re-reads its file every 2s in the background, which must not be
// charged to the query path.
func allocsPerQuery(f func()) float64 {
	n := testing.AllocsPerRun(200, f)
	for range 2 {
		n = min(n, testing.AllocsPerRun(200, f))
	}
	return n
}

// The query path allocates nothing: route answers, zone answers, negative
// answers, referrals.
func TestQueryAllocs(t *testing.T) {
	s, _ := testServer(t, "")
	sc := newScratch()
	client := netip.MustParseAddrPort("192.0.2.1:5300")
	for _, tc := range allocCases {
		for _, edns := range []bool{false, true} {
			p := benchQuery(t, tc.qname, tc.qtype, edns)
			if s.respond(sc, p, client, false) == nil {
				t.Fatalf("%s: no answer", tc.name)
			}
			n := allocsPerQuery(func() { s.respond(sc, p, client, false) })
			if n > tc.max {
				t.Errorf("%s (edns %v): %v allocations per query, want at most %v", tc.name, edns, n, tc.max)
			}
		}
	}
}

// With RRL and cookies in play the path still allocates nothing.
func TestQueryAllocsRRLAndCookies(t *testing.T) {
	s, _ := testServer(t, "", func(c *Config) { c.RRL.ResponsesPerSecond = 1 << 30 })
	sc := newScratch()
	client := netip.MustParseAddrPort("192.0.2.1:5300")
	m := withEDNS(newQuery("a-rather-long-label-to-defeat-small-buffers.route.v6pod.test", dns.TypeA), 1232, "0123456789abcdef")
	p, _ := m.Pack()
	if s.respond(sc, p, client, false) == nil {
		t.Fatal("no answer")
	}
	if n := allocsPerQuery(func() { s.respond(sc, p, client, false) }); n != 0 {
		t.Errorf("%v allocations per query with RRL and a cookie", n)
	}
}

func BenchmarkRespond(b *testing.B) {
	s, _ := testServer(b, "")
	client := netip.MustParseAddrPort("192.0.2.1:5300")
	for _, tc := range allocCases {
		b.Run(tc.name, func(b *testing.B) {
			sc := newScratch()
			p := benchQuery(b, tc.qname, tc.qtype, true)
			b.ReportAllocs()
			for b.Loop() {
				s.respond(sc, p, client, false)
			}
		})
	}
}
