package dns64

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testCounter sums the samples of a metric family, optionally only those
// whose labels contain every "name=value" given.
func testCounter(t testing.TB, s *Server, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, want := range labels {
				k, v, _ := strings.Cut(want, "=")
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						ok = true
					}
				}
				if !ok {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func noCache(cfg Config) Config {
	cfg.Cache.Disabled = true
	return cfg
}

// The first upstream never answers: queries time out on it, go to the
// second, and once it has failed fail_threshold times it is left alone
// while it backs off.
func TestFailoverTimeoutThenBackoff(t *testing.T) {
	t.Parallel()
	dead := startBlackhole(t)
	good := startUpstream(t)
	cfg := noCache(testConfig(dead.addr, good.addr))
	cfg.UpstreamTimeout = 500 * time.Millisecond
	s := startServer(t, cfg)

	for i := range 6 {
		if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"64:ff9b::102:304"}) {
			t.Fatalf("query %d: AAAA %v", i, got)
		}
	}
	// Each AAAA answer takes an AAAA and an A query: the first two go to
	// the dead one first (threshold 2), then it backs off for a minute.
	if n := dead.got.Load(); n != 2 {
		t.Errorf("dead upstream got %d queries, want 2 (then backoff)", n)
	}
	if v := testCounter(t, s, "dns64_upstream_requests_total", "upstream="+dead.addr, "outcome=timeout"); v != 2 {
		t.Errorf("timeouts counted %v", v)
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+dead.addr); v != 0 {
		t.Errorf("dead upstream healthy=%v", v)
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+good.addr); v != 1 {
		t.Errorf("good upstream healthy=%v", v)
	}
}

// An upstream that dies while serving: the next queries fail over.
func TestFailoverUpstreamDies(t *testing.T) {
	t.Parallel()
	first := startUpstream(t)
	second := startUpstream(t)
	cfg := noCache(testConfig(first.addr, second.addr))
	cfg.UpstreamTimeout = time.Second
	s := startServer(t, cfg)

	ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})
	if first.total.Load() == 0 || second.total.Load() != 0 {
		t.Fatalf("before: first %d, second %d queries", first.total.Load(), second.total.Load())
	}
	first.stop()
	for i := range 4 {
		if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"64:ff9b::102:304"}) {
			t.Fatalf("after death, query %d: AAAA %v", i, got)
		}
	}
	if second.total.Load() == 0 {
		t.Error("second upstream never asked")
	}
	if v := testCounter(t, s, "dns64_upstream_requests_total", "upstream="+first.addr, "outcome=ok"); v != 2 {
		t.Errorf("first upstream ok=%v, want 2", v)
	}
	failed := testCounter(t, s, "dns64_upstream_requests_total", "upstream="+first.addr, "outcome=error") +
		testCounter(t, s, "dns64_upstream_requests_total", "upstream="+first.addr, "outcome=timeout")
	if failed == 0 {
		t.Error("no failure counted for the dead upstream")
	}
}

// SERVFAIL from an upstream is a failed query: the next upstream is tried.
func TestFailoverOnSERVFAIL(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t)
	bad.mode.Store("servfail")
	good := startUpstream(t)
	s := startServer(t, noCache(testConfig(bad.addr, good.addr)))
	m := ask(t, s.Addr(), "dual.test.", dns.TypeAAAA, qopt{})
	if m.Rcode != dns.RcodeSuccess || !slices.Equal(aaaas(m), []string{"2001:db8::5"}) {
		t.Fatalf("got %v", m)
	}
	if v := testCounter(t, s, "dns64_upstream_requests_total", "upstream="+bad.addr, "outcome=servfail"); v != 1 {
		t.Errorf("servfail counted %v", v)
	}
}

// When every upstream fails with an rcode, the client gets that rcode;
// when none answers at all, SERVFAIL.
func TestAllUpstreamsFail(t *testing.T) {
	t.Parallel()
	a := startUpstream(t)
	a.mode.Store("refused")
	b := startUpstream(t)
	b.mode.Store("refused")
	s := startServer(t, noCache(testConfig(a.addr, b.addr)))
	if m := ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{}); m.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}

	dead := startBlackhole(t)
	cfg := noCache(testConfig(dead.addr))
	cfg.UpstreamTimeout = 100 * time.Millisecond
	cfg.UpstreamRetries = -1
	s = startServer(t, cfg)
	if m := ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{}); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
}

// One domain whose servers are broken gets SERVFAIL from every resolver:
// that must not take the upstream out for every other name. Each such
// query still tries the next upstream, once, and stops when all answered
// SERVFAIL.
func TestOneBrokenNameKeepsUpstream(t *testing.T) {
	t.Parallel()
	first := startUpstream(t)
	second := startUpstream(t)
	s := startServer(t, noCache(testConfig(first.addr, second.addr)))
	for i := range 3 * rcodeMinSamples {
		if m := ask(t, s.Addr(), "servfail.test.", dns.TypeA, qopt{}); m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("query %d: rcode %s", i, dns.RcodeToString[m.Rcode])
		}
		ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{})
	}
	if n := first.count("servfail.test.", dns.TypeA); n != 3*rcodeMinSamples {
		t.Errorf("first upstream asked %d times for the broken name, want once per query", n)
	}
	if n := second.count("servfail.test.", dns.TypeA); n != 3*rcodeMinSamples {
		t.Errorf("second upstream asked %d times for the broken name, want once per query", n)
	}
	if n := second.count("v4only.test.", dns.TypeA); n != 0 {
		t.Errorf("healthy name went to the second upstream %d times: the first was taken out", n)
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+first.addr); v != 1 {
		t.Errorf("first healthy=%v", v)
	}
}

// An upstream that answers SERVFAIL to most names (its own upstream is
// gone) backs off once enough answers say so.
func TestWidespreadSERVFAILBacksOff(t *testing.T) {
	t.Parallel()
	bad := startUpstream(t)
	bad.mode.Store("servfail")
	good := startUpstream(t)
	s := startServer(t, noCache(testConfig(bad.addr, good.addr)))
	for i := range 2 * rcodeMinSamples {
		if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); len(got) != 1 {
			t.Fatalf("query %d: AAAA %v", i, got)
		}
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+bad.addr); v != 0 {
		t.Errorf("bad healthy=%v", v)
	}
	if n := bad.total.Load(); n != rcodeMinSamples {
		t.Errorf("bad upstream asked %d times, want %d (then backoff)", n, rcodeMinSamples)
	}
}

// A recovered upstream is used again once its backoff ends, and one
// success clears its failures.
func TestUpstreamRecovers(t *testing.T) {
	t.Parallel()
	first := startUpstream(t)
	second := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	cfg := noCache(testConfig(first.addr, second.addr))
	cfg.UpstreamBackoff = 10 * time.Second
	s := startServer(t, cfg, WithClock(clk.Now))

	first.mode.Store("servfail")
	for range rcodeMinSamples {
		ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{})
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+first.addr); v != 0 {
		t.Fatalf("first healthy=%v after SERVFAILs", v)
	}
	first.mode.Store("")
	before := first.total.Load()
	ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{})
	if first.total.Load() != before {
		t.Fatal("first asked during its backoff")
	}
	clk.Add(11 * time.Second)
	ask(t, s.Addr(), "v4only.test.", dns.TypeA, qopt{})
	if first.total.Load() != before+1 {
		t.Fatal("first not asked after its backoff")
	}
	if v := testCounter(t, s, "dns64_upstream_healthy", "upstream="+first.addr); v != 1 {
		t.Errorf("first healthy=%v after a success", v)
	}
}

// Truncated upstream answers are retried over TCP; the client gets the
// whole answer over TCP or with a large enough EDNS0 size, and a truncated
// one (TC) over plain UDP (RFC 1035 4.2.1, RFC 6891 7).
func TestTruncationAndEDNSSizes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := testConfig(up.addr)
	cfg.UDPSize = 4096
	s := startServer(t, cfg)
	full := ask(t, s.Addr(), "big.test.", dns.TypeAAAA, qopt{tcp: true})
	if len(aaaas(full)) != 60 || full.Truncated {
		t.Fatalf("TCP: %d AAAA, TC=%v", len(aaaas(full)), full.Truncated)
	}
	if up.count("big.test.", dns.TypeAAAA) != 2 {
		t.Errorf("upstream saw %d big.test AAAA queries, want UDP then TCP", up.count("big.test.", dns.TypeAAAA))
	}
	if m := ask(t, s.Addr(), "big.test.", dns.TypeAAAA, qopt{size: 4096}); len(aaaas(m)) != 60 || m.Truncated {
		t.Errorf("EDNS 4096: %d AAAA, TC=%v", len(aaaas(m)), m.Truncated)
	}
	m := ask(t, s.Addr(), "big.test.", dns.TypeAAAA, qopt{noEDNS: true})
	m.Compress = true
	if !m.Truncated || m.Len() > 512 || m.IsEdns0() != nil {
		t.Errorf("no EDNS: TC=%v len=%d opt=%v", m.Truncated, m.Len(), m.IsEdns0())
	}
	m = ask(t, s.Addr(), "big.test.", dns.TypeAAAA, qopt{size: 1232})
	m.Compress = true
	if !m.Truncated || m.Len() > 1232 || m.IsEdns0() == nil {
		t.Errorf("EDNS 1232: TC=%v len=%d", m.Truncated, m.Len())
	}
	// Small answers to clients without EDNS carry no OPT record.
	m = ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{noEDNS: true})
	if m.IsEdns0() != nil || len(aaaas(m)) != 1 {
		t.Errorf("no EDNS small answer: %v", m)
	}
}

// Identical queries arriving together are resolved once.
func TestConcurrentIdenticalQueriesCoalesce(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.delay.Store(int64(300 * time.Millisecond))
	cfg := testConfig(up.addr)
	cfg.UpstreamTimeout = 2 * time.Second
	s := startServer(t, cfg)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); len(got) != 1 {
				t.Errorf("AAAA %v", got)
			}
		}()
	}
	wg.Wait()
	if n := up.count("v4only.test.", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times for the A record, want 1", n)
	}
	if v := testCounter(t, s, "dns64_coalesced_total"); v == 0 {
		t.Error("no query counted as coalesced")
	}
}

// upstream_retries: 0 in YAML means a single attempt.
func TestConfigRetriesZero(t *testing.T) {
	c, err := ParseConfig([]byte("upstreams: [127.0.0.1]\nupstream_retries: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.UpstreamRetries != 0 {
		t.Errorf("retries %d", c.UpstreamRetries)
	}
	c, _ = ParseConfig([]byte("upstreams: [127.0.0.1]\n"))
	c.Validate()
	if c.UpstreamRetries != 2 {
		t.Errorf("default retries %d", c.UpstreamRetries)
	}
}

// pick prefers configured order, skips upstreams backing off and those
// already tried for the query, and when all back off takes the one whose
// backoff ends first.
func TestPoolPick(t *testing.T) {
	cfg := testConfig("192.0.2.1", "192.0.2.2", "192.0.2.3")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := s.up.(*pool)
	now := time.Unix(1_800_000_000, 0)
	if i, _ := p.pick(0, now); i != 0 {
		t.Errorf("fresh pool picked %d", i)
	}
	if i, _ := p.pick(1, now); i != 1 {
		t.Errorf("after trying 0 picked %d", i)
	}
	p.ups[0].until = now.Add(time.Minute)
	p.ups[1].until = now.Add(time.Second)
	if i, _ := p.pick(0, now); i != 2 {
		t.Errorf("with 0 and 1 backing off picked %d", i)
	}
	p.ups[2].until = now.Add(time.Hour)
	if i, _ := p.pick(0, now); i != 1 {
		t.Errorf("all backing off: picked %d, want the one ending first (1)", i)
	}
	if i, _ := p.pick(0b111, now); i != 1 {
		t.Errorf("all tried: picked %d, want to start over", i)
	}
}

// Extended rcodes about the question reach EDNS clients as they are (and
// SERVFAIL for clients without EDNS, who cannot be told them); those about
// the hop to the upstream (BADCOOKIE, BADVERS, TSIG) become SERVFAIL.
func TestExtendedRcodes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	for _, tc := range []struct {
		name  string
		qtype uint16
		o     qopt
		rcode int
	}{
		{"xrcode.test.", dns.TypeA, qopt{}, 24},
		{"xrcode.test.", dns.TypeTXT, qopt{tcp: true}, 24},
		{"xrcode.test.", dns.TypeAAAA, qopt{}, 24}, // 5.1.6: the A query's rcode
		{"xrcode.test.", dns.TypeA, qopt{noEDNS: true}, dns.RcodeServerFailure},
		{"badcookie.test.", dns.TypeA, qopt{}, dns.RcodeServerFailure},
		{"badcookie.test.", dns.TypeAAAA, qopt{}, dns.RcodeServerFailure},
	} {
		m := ask(t, s.Addr(), tc.name, tc.qtype, tc.o)
		if m.Rcode != tc.rcode {
			t.Errorf("%s %s %+v: rcode %d (%s), want %d", tc.name, dns.TypeToString[tc.qtype], tc.o,
				m.Rcode, dns.RcodeToString[m.Rcode], tc.rcode)
		}
	}
	if v := testCounter(t, s, "dns64_responses_total", "rcode=other"); v != 3 {
		t.Errorf("responses counted with rcode 24: %v", v)
	}
}
