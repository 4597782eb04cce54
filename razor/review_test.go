package razor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/razor/zone"
)

// reviewZone is a zone whose names sit next to, under and above routes.
const reviewZone = `$ORIGIN r.test.
$TTL 3600
@             IN SOA  ns.r.test. hostmaster.r.test. 1 7200 900 1209600 300
@             IN NS   ns.r.test.
ns            IN A    127.0.0.1
mail          IN AAAA 2001:db8:ffff::25
cn.route      IN CNAME mail.r.test.
del.route     IN NS   ns.del.route.r.test.
ns.del.route  IN A    192.0.2.53
txt.route     IN TXT  "zone data under a route"
*.wild        IN A    192.0.2.80
sub           IN NS   ns.sub.r.test.
ns.sub        IN A    192.0.2.54
cname         IN CNAME mail.r.test.
`

// reviewPods holds one active pool and the routes of the review tests.
func reviewPods(routes ...string) string {
	var b strings.Builder
	b.WriteString(`version: 1
pools:
  - name: edge-a
    edge: a
    weight: 100
    state: active
    v4: [10.1.0.1, 10.1.0.2]
    v6: ["fd00:1::1", "fd00:1::2"]
  - name: edge-off
    edge: off
    weight: 100
    state: disabled
    v4: [10.2.0.1]
routes:
`)
	for _, r := range routes {
		pool := "edge-a"
		if name, p, ok := strings.Cut(r, "="); ok {
			r, pool = name, p
		}
		b.WriteString("  - name: " + r + "\n    pools: [" + pool + "]\n    answers: 2\n    ttl: 30\n    shard: none\n")
	}
	return b.String()
}

func reviewZones(t testing.TB) func(*Config) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "r.test.zone")
	if err := os.WriteFile(p, []byte(reviewZone), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.Zones = append(c.Zones, ZoneConfig{Origin: "r.test", File: p})
	}
}

// zoneCase is one query and what its answer must hold ("owner type
// rdata" substrings, in order).
type zoneCase struct {
	name   string
	rfc    string
	qname  string
	qtype  uint16
	rcode  int
	aa     bool
	answer []string
	ns     []string
}

func runZoneCases(t *testing.T, s *Server, cases []zoneCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, s, newQuery(tc.qname, tc.qtype), false)
			if r == nil {
				t.Fatal("no answer")
			}
			ctx := tc.rfc + "\n" + r.String()
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s (%s)", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode], ctx)
			}
			if r.Authoritative != tc.aa {
				t.Errorf("AA %v, want %v (%s)", r.Authoritative, tc.aa, ctx)
			}
			check := func(sec string, got []dns.RR, want []string) {
				if len(got) != len(want) {
					t.Errorf("%s: %d records, want %d (%s)", sec, len(got), len(want), ctx)
					return
				}
				for i, w := range want {
					if !strings.Contains(got[i].String(), w) {
						t.Errorf("%s[%d] = %q, want it to contain %q (%s)", sec, i, got[i].String(), w, ctx)
					}
				}
			}
			check("answer", r.Answer, tc.answer)
			check("authority", r.Ns, tc.ns)
		})
	}
}

// Names the zone holds one label under a route are the zone's: the route
// answers only labels the zone does not have.
func TestRouteLabelsYieldToZoneNames(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, reviewPods("route.r.test."), reviewZones(t))
	runZoneCases(t, s, []zoneCase{
		{name: "CNAME under a route is followed, not answered from pools", rfc: "RFC 1034 §4.3.2 step 3a",
			qname: "cn.route.r.test", qtype: dns.TypeAAAA, aa: true,
			answer: []string{"cn.route.r.test.\t3600\tIN\tCNAME\tmail.r.test.", "mail.r.test.\t3600\tIN\tAAAA\t2001:db8:ffff::25"}},
		{name: "delegation under a route is a referral", rfc: "RFC 1034 §4.3.2 step 3b",
			qname: "del.route.r.test", qtype: dns.TypeA,
			ns: []string{"del.route.r.test.\t3600\tIN\tNS\tns.del.route.r.test."}},
		{name: "below a delegation under a route is a referral", rfc: "RFC 1034 §4.3.2 step 3b",
			qname: "x.del.route.r.test", qtype: dns.TypeA,
			ns: []string{"del.route.r.test.\t3600\tIN\tNS"}},
		{name: "an existing name under a route keeps its data", rfc: "RFC 1034 §4.3.2 step 3a",
			qname: "txt.route.r.test", qtype: dns.TypeTXT, aa: true,
			answer: []string{"txt.route.r.test.\t3600\tIN\tTXT"}},
		{name: "an existing name under a route without the type is NODATA", rfc: "RFC 2308 §2.2",
			qname: "txt.route.r.test", qtype: dns.TypeA, aa: true, ns: []string{"SOA"}},
		{name: "a label the zone lacks is the route's", rfc: "DESIGN.md Names",
			qname: "shop.route.r.test", qtype: dns.TypeA, aa: true,
			answer: []string{"shop.route.r.test.\t30\tIN\tA\t10.1.0.", "shop.route.r.test.\t30\tIN\tA\t10.1.0."}},
	})
}

// Routes are rejected where they would hide zone data: at an apex, at a
// CNAME, at or below a cut. The error names the route.
func TestRouteConflictsRejected(t *testing.T) {
	t.Parallel()
	zones := reviewZones(t)
	for _, tc := range []struct{ route, want string }{
		{"r.test.", "route r.test.: at the apex of zone r.test."},
		{"cname.r.test.", "route cname.r.test.: the name holds a CNAME"},
		{"sub.r.test.", "route sub.r.test.: below the delegation sub.r.test."},
		{"x.sub.r.test.", "route x.sub.r.test.: below the delegation sub.r.test."},
	} {
		cfg := Config{Listen: []string{"127.0.0.1:0"}, UDPWorkers: 1}
		zones(&cfg)
		p := filepath.Join(t.TempDir(), "pods.yaml")
		os.WriteFile(p, []byte(reviewPods(tc.route)), 0o644)
		cfg.Store = "file://" + p
		s, err := New(cfg)
		if err == nil {
			s.Close()
			t.Fatalf("route %s accepted", tc.route)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("route %s: got %v, want %q", tc.route, err, tc.want)
		}
	}
}

// A conflicting route written to a running razor's store is logged and
// the last good data kept.
func TestRouteConflictKeepsLastGood(t *testing.T) {
	t.Parallel()
	s, path := testServer(t, reviewPods("route.r.test."), reviewZones(t))
	// A new pool and a route at a CNAME: rejected, and neither leaves a
	// metric series behind.
	bad := strings.Replace(reviewPods("route.r.test.", "cname.r.test."), "version: 1", "version: 2", 1)
	bad = strings.Replace(bad, "name: edge-off", "name: edge-new", 1)
	if err := os.WriteFile(path+".tmp", []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(path+".tmp", path)
	eventually(t, 5e9, "the store error is counted", func() bool {
		return counterValue(t, s, "razor_store_errors_total") > 0
	})
	mfs, _ := s.m.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v == "edge-new" || v == "cname.r.test" {
					t.Errorf("%s has a series for %s of the rejected document", mf.GetName(), v)
				}
			}
		}
	}
	if r := ask(t, s, newQuery("route.r.test", dns.TypeA), false); len(addrsOf(r.Answer)) != 2 {
		t.Fatalf("route lost after a bad update:\n%s", r)
	}
	if r := ask(t, s, newQuery("cname.r.test", dns.TypeA), false); len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("cname.r.test is no longer the zone's CNAME:\n%s", r)
	}
}

// Route names and the empty non-terminals above them exist in the zone.
func TestRouteNamesExistInZone(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, reviewPods("deep.x.r.test.", "foo.wild.r.test."), reviewZones(t))
	runZoneCases(t, s, []zoneCase{
		{name: "the parent of a route is an empty non-terminal: NODATA", rfc: "RFC 8020 §2, RFC 9156 §3",
			qname: "x.r.test", qtype: dns.TypeA, aa: true, ns: []string{"SOA"}},
		{name: "a route is a closest encloser: the wildcard above it does not apply", rfc: "RFC 4592 §3.3.1",
			qname: "x.bar.foo.wild.r.test", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError, ns: []string{"SOA"}},
		{name: "the wildcard still covers other names", rfc: "RFC 4592 §3.3.1",
			qname: "other.wild.r.test", qtype: dns.TypeA, aa: true, answer: []string{"other.wild.r.test.\t3600\tIN\tA\t192.0.2.80"}},
		{name: "a label under the route is the route's", rfc: "DESIGN.md Names",
			qname: "bar.foo.wild.r.test", qtype: dns.TypeA, aa: true,
			answer: []string{"bar.foo.wild.r.test.\t30\tIN\tA\t10.1.0.", "bar.foo.wild.r.test.\t30\tIN\tA\t10.1.0."}},
		{name: "two labels under a route do not exist", rfc: "RFC 1034 §4.3.2 step 3c",
			qname: "a.b.deep.x.r.test", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError, ns: []string{"SOA"}},
	})
}

// RRL counts answers the way BIND does, so random labels do not make new
// buckets: a route's labels count as the route, a wildcard's answers as
// the wildcard, NXDOMAINs as the zone.
func TestRRLKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, format string
		qtype        uint16
		want         int // answered of 20 at 5/s, slip 0
	}{
		{"labels under a route count as the route", "r%d.route.v6pod.test", dns.TypeA, 5},
		{"labels under a sharded route count as the route", "r%d.shard.v6pod.test", dns.TypeAAAA, 5},
		{"wildcard answers count as the wildcard (BIND RRL design)", "r%d.wild.v6pod.test", dns.TypeA, 5},
		{"wildcard CNAMEs count as the wildcard", "r%d.cname.v6pod.test", dns.TypeA, 5},
		{"NXDOMAIN counts as the zone (BIND RRL design)", "r%d.nope.v6pod.test", dns.TypeA, 5},
		{"distinct real names have their own buckets", "ns%d.v6pod.test", dns.TypeA, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			zero := 0
			fixed := time.Now()
			s, _ := testServer(t, "", func(c *Config) {
				c.RRL.ResponsesPerSecond = 5
				c.RRL.Slip = &zero
			}, WithClock(func() time.Time { return fixed }))
			sent := 0
			for i := range 20 {
				n := i
				if strings.HasPrefix(tc.format, "ns") {
					n = 1 + i%2
				}
				if ask(t, s, newQuery(fmt.Sprintf(tc.format, n), tc.qtype), false) != nil {
					sent++
				}
			}
			if sent != tc.want {
				t.Fatalf("%d of 20 answered, want %d", sent, tc.want)
			}
		})
	}
}

// tcpQuery asks one query over an open TCP connection.
func tcpQuery(c net.Conn, name string) (*dns.Msg, error) {
	conn := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMsg(newQuery(name, dns.TypeA)); err != nil {
		return nil, err
	}
	return conn.ReadMsg()
}

// Idle TCP connections from one client prefix cannot fill razor: each
// prefix has its own limit, and at tcp_max_conns the longest idle
// connection is closed for a new one (RFC 7766 §6.2.2 lets servers close
// idle connections).
func TestTCPConnectionLimits(t *testing.T) {
	t.Parallel()
	dial := func(t *testing.T, s *Server) net.Conn {
		c, err := net.DialTimeout("tcp", s.TCPAddrs()[0].String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("per prefix", func(t *testing.T) {
		t.Parallel()
		s, _ := testServer(t, "", func(c *Config) { c.TCPMaxConnsPerPrefix = 2 })
		for range 2 {
			if _, err := tcpQuery(dial(t, s), "ns1.v6pod.test"); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := tcpQuery(dial(t, s), "ns1.v6pod.test"); err == nil {
			t.Fatalf("a third connection from 127.0.0.0/24 was answered:\n%s", r)
		}
		eventually(t, 5*time.Second, "the refusal counted", func() bool { return counterValue(t, s, "razor_tcp_refused_total") == 1 })
	})
	t.Run("evict the longest idle", func(t *testing.T) {
		t.Parallel()
		s, _ := testServer(t, "", func(c *Config) { c.TCPMaxConns = 2 })
		c1, c2 := dial(t, s), dial(t, s)
		for _, c := range []net.Conn{c1, c2} {
			if _, err := tcpQuery(c, "ns1.v6pod.test"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tcpQuery(dial(t, s), "ns1.v6pod.test"); err != nil {
			t.Fatalf("a new connection at tcp_max_conns: %v", err)
		}
		if _, err := tcpQuery(c1, "ns1.v6pod.test"); err == nil {
			t.Fatal("the longest idle connection was not closed")
		}
		if _, err := tcpQuery(c2, "ns1.v6pod.test"); err != nil {
			t.Fatalf("the newer connection was closed: %v", err)
		}
		if v := counterValue(t, s, "razor_tcp_evicted_total"); v != 1 {
			t.Fatalf("razor_tcp_evicted_total %v, want 1", v)
		}
	})
	t.Run("full and none idle", func(t *testing.T) {
		t.Parallel()
		s, _ := testServer(t, "", func(c *Config) { c.TCPMaxConns = 1 })
		c1 := dial(t, s)
		if _, err := tcpQuery(c1, "ns1.v6pod.test"); err != nil {
			t.Fatal(err)
		}
		c1.Write([]byte{0, 40, 0}) // a query in hand: not idle
		eventually(t, 5*time.Second, "the connection busy", func() bool {
			s.connMu.Lock()
			defer s.connMu.Unlock()
			for _, tc := range s.conns {
				return tc.since.Load() == 0
			}
			return false
		})
		if r, err := tcpQuery(dial(t, s), "ns1.v6pod.test"); err == nil {
			t.Fatalf("answered while full with a busy connection:\n%s", r)
		}
		if v := counterValue(t, s, "razor_tcp_refused_total"); v != 1 {
			t.Fatalf("razor_tcp_refused_total %v, want 1", v)
		}
	})
}

// NODATA at a route without eligible addresses lives the route's TTL (30),
// not the zone's negative TTL (300), which still bounds it (RFC 2308 §5);
// other types at the route keep the zone's.
func TestRouteNoDataTTL(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, reviewPods("route.r.test.", "empty.r.test.=edge-off"), reviewZones(t))
	runZoneCases(t, s, []zoneCase{
		{name: "A at a route without addresses", rfc: "RFC 2308 §5 (at most the SOA's negative TTL)",
			qname: "empty.r.test", qtype: dns.TypeA, aa: true, ns: []string{"r.test.\t30\tIN\tSOA"}},
		{name: "AAAA under a route without addresses", rfc: "RFC 2308 §5",
			qname: "x.empty.r.test", qtype: dns.TypeAAAA, aa: true, ns: []string{"r.test.\t30\tIN\tSOA"}},
		{name: "other types at a route keep the zone's negative TTL", rfc: "RFC 2308 §5",
			qname: "route.r.test", qtype: dns.TypeMX, aa: true, ns: []string{"r.test.\t300\tIN\tSOA"}},
		{name: "NXDOMAIN keeps the zone's negative TTL", rfc: "RFC 2308 §3",
			qname: "nope.r.test", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError, ns: []string{"r.test.\t300\tIN\tSOA"}},
	})
	// A route TTL above the negative TTL is bounded by it.
	s2, _ := testServer(t, strings.Replace(reviewPods("empty.r.test.=edge-off"), "ttl: 30", "ttl: 3600", 1), reviewZones(t))
	runZoneCases(t, s2, []zoneCase{
		{name: "bounded by the SOA negative TTL", rfc: "RFC 2308 §5",
			qname: "empty.r.test", qtype: dns.TypeA, aa: true, ns: []string{"r.test.\t300\tIN\tSOA"}},
	})
}

// Metrics: the Go and process collectors are on razor's registry, every
// received packet counts (also those dropped), and the series of removed
// pools and routes go away.
func TestMetricsHousekeeping(t *testing.T) {
	t.Parallel()
	zero := 0
	s, path := testServer(t, reviewPods("route.r.test.", "other.r.test."), reviewZones(t), func(c *Config) {
		c.RRL.ResponsesPerSecond = 1
		c.RRL.Slip = &zero
	})
	names := func() map[string]bool {
		mfs, err := s.m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, mf := range mfs {
			m[mf.GetName()] = true
			for _, x := range mf.GetMetric() {
				for _, l := range x.GetLabel() {
					m[mf.GetName()+"{"+l.GetValue()+"}"] = true
				}
			}
		}
		return m
	}
	for _, n := range []string{"go_goroutines", "process_cpu_seconds_total", "razor_pool_answers_total{edge-a}", "razor_fail_open_total{other.r.test}"} {
		if !names()[n] {
			t.Errorf("%s missing", n)
		}
	}
	before := counterValue(t, s, "razor_requests_total")
	s.Handle([]byte{1, 2, 3}, testClient, false) // a runt: dropped
	ask(t, s, newQuery("ns.r.test", dns.TypeA), false)
	ask(t, s, newQuery("ns.r.test", dns.TypeA), false) // over 1/s: dropped by RRL
	if got := counterValue(t, s, "razor_requests_total") - before; got != 3 {
		t.Errorf("razor_requests_total grew by %v for 3 packets, want 3", got)
	}
	write := strings.Replace(reviewPods("route.r.test.=edge-off"), "version: 1", "version: 2", 1)
	write = strings.Replace(write, `  - name: edge-a
    edge: a
    weight: 100
    state: active
    v4: [10.1.0.1, 10.1.0.2]
    v6: ["fd00:1::1", "fd00:1::2"]
`, "", 1)
	os.WriteFile(path+".tmp", []byte(write), 0o644)
	os.Rename(path+".tmp", path)
	eventually(t, 5*time.Second, "the new document applied", func() bool { return gaugeValue(t, s, "razor_store_version") == 2 })
	got := names()
	if got["razor_pool_answers_total{edge-a}"] || got["razor_fail_open_total{other.r.test}"] {
		t.Errorf("series of the removed pool or route remain")
	}
}

// A rebuild (a health change) reuses the zones with route names of the
// snapshot in use instead of copying them again; the zones as loaded never
// get the route names.
func TestRebuildReusesZonesWithRouteNames(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, reviewPods("route.r.test.", "deep.x.r.test."), reviewZones(t))
	zk, _ := zone.Key("r.test.")
	rk, _ := zone.Key("x.r.test.") // an empty non-terminal above a route
	a := s.snap.Load()
	s.mu.Lock()
	s.rebuild()
	base := s.in.zones[zk]
	s.mu.Unlock()
	b := s.snap.Load()
	if a == b {
		t.Fatal("no new snapshot")
	}
	if a.zones[zk] != b.zones[zk] || b.zones[zk] == base {
		t.Fatal("the zone with route names was copied again (or not made)")
	}
	if b.zones[zk].Nodes[rk] == nil || base.Nodes[rk] != nil {
		t.Fatal("the route name is missing from the snapshot's zone, or was added to the loaded zone")
	}
}
