package dns64

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock is a settable clock for TTL tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCacheServesWithAgedTTLs(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := startServer(t, testConfig(up.addr), WithClock(clk.Now))

	m := ask(t, s.Addr(), "cname.test.", dns.TypeAAAA, qopt{})
	if got := aaaas(m); len(got) != 1 {
		t.Fatalf("AAAA %v", got)
	}
	first := up.count("cname.test.", dns.TypeA)
	clk.Add(100 * time.Second)
	// Different case: the cache is case-insensitive, the answer keeps
	// the asker's case (0x20).
	m = ask(t, s.Addr(), "CName.TEST.", dns.TypeAAAA, qopt{tcp: true})
	if up.count("cname.test.", dns.TypeA) != first {
		t.Error("second query reached the upstream")
	}
	if m.Question[0].Name != "CName.TEST." {
		t.Errorf("question %q", m.Question[0].Name)
	}
	for _, rr := range m.Answer {
		if rr.Header().Ttl != 200 {
			t.Errorf("TTL %d, want 300-100: %v", rr.Header().Ttl, rr)
		}
	}
	if hits := testCounter(t, s, "dns64_cache_hits_total"); hits != 1 {
		t.Errorf("cache hits %v", hits)
	}
}

func TestCacheExpiresWithShortestTTL(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := startServer(t, testConfig(up.addr), WithClock(clk.Now))
	for i := range 3 {
		ask(t, s.Addr(), "short.test.", dns.TypeAAAA, qopt{})
		if got := up.count("short.test.", dns.TypeA); got != i+1 {
			t.Fatalf("query %d: upstream saw %d A queries", i, got)
		}
		clk.Add(1 * time.Second) // the A TTL is 1 s
	}
}

func TestCacheKeysDOAndCD(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); len(got) != 1 {
		t.Fatalf("AAAA %v", got)
	}
	// DO+CD must not be served the synthesized answer (RFC 6147 5.5).
	if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{do: true, cd: true})); len(got) != 0 {
		t.Fatalf("DO+CD got cached synthesized AAAA %v", got)
	}
}

func TestCacheNegativeAnswers(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	for range 3 {
		if m := ask(t, s.Addr(), "nx.test.", dns.TypeAAAA, qopt{}); m.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %d", m.Rcode)
		}
	}
	if n := up.count("nx.test.", dns.TypeAAAA); n != 1 {
		t.Errorf("NXDOMAIN asked upstream %d times, want 1 (cached for the SOA TTL)", n)
	}
	// SERVFAIL is cached only briefly: TestSERVFAILCachedBriefly.
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c := newCache(32, 1<<20)
	evicted := 0
	c.onEvict = func() { evicted++ }
	now := time.Now()
	for i := range 1000 {
		c.put(&entry{key: testKey(fmt.Sprintf("n%d.test.", i)), expires: now.Add(time.Hour), cost: 100})
	}
	if n, _ := c.size(); n > 32 {
		t.Errorf("%d entries, limit 32", n)
	}
	if evicted < 1000-32 {
		t.Errorf("evicted %d", evicted)
	}

	c = newCache(1000, 16*1000) // 1000 bytes per shard
	for i := range 1000 {
		c.put(&entry{key: testKey(fmt.Sprintf("n%d.test.", i)), expires: now.Add(time.Hour), cost: 300})
	}
	if _, b := c.size(); b > 16*1000 {
		t.Errorf("%d bytes, limit %d", b, 16*1000)
	}
	// LRU: a recently read entry survives newer insertions in its shard.
	c = newCache(cacheShards*2, 1<<20)
	k := testKey("keep.test.")
	c.put(&entry{key: k, expires: now.Add(time.Hour), cost: 1})
	for i := range 200 {
		if c.get([]byte(k), now) == nil {
			t.Fatalf("recently used entry evicted after %d insertions", i)
		}
		c.put(&entry{key: testKey(fmt.Sprintf("x%d.test.", i)), expires: now.Add(time.Hour), cost: 1})
	}
}

func TestWalkWire(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("v4only.test.", dns.TypeAAAA)
	m.Response = true
	rr1, _ := dns.NewRR("cname.test. 300 IN CNAME v4only.test.")
	rr2, _ := dns.NewRR("v4only.test. 120 IN AAAA 64:ff9b::102:304")
	soa, _ := dns.NewRR("test. 900 IN SOA ns.test. admin.test. 1 2 3 4 5")
	m.Answer = []dns.RR{rr1, rr2}
	m.Ns = []dns.RR{soa}
	m.SetEdns0(1232, true)
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	qEnd, offs, optOff, err := walkWire(b)
	if err != nil {
		t.Fatal(err)
	}
	if qEnd != 12+len("v4only.test.")+1 {
		t.Errorf("qEnd %d", qEnd)
	}
	if len(offs) != 3 || optOff != len(b)-11 {
		t.Fatalf("offsets %v opt %d (len %d)", offs, optOff, len(b))
	}
	for i, want := range []uint32{300, 120, 900} {
		if got := uint32(b[offs[i]])<<24 | uint32(b[offs[i]+1])<<16 | uint32(b[offs[i]+2])<<8 | uint32(b[offs[i]+3]); got != want {
			t.Errorf("TTL %d = %d, want %d", i, got, want)
		}
	}
	for _, bad := range [][]byte{nil, b[:11], b[:len(b)-1], append(append([]byte{}, b...), 0)} {
		if _, _, _, err := walkWire(bad); err == nil {
			t.Errorf("walkWire accepted %d bytes", len(bad))
		}
	}
}

func testKey(name string) string {
	k, _ := appendKey(nil, name, dns.TypeAAAA, dns.ClassINET, 0)
	return string(k)
}

func TestCacheKeyCaseAndEscapes(t *testing.T) {
	a, _ := appendKey(nil, "WwW.Example.", dns.TypeAAAA, dns.ClassINET, flagDO)
	b, _ := appendKey(nil, "www.example.", dns.TypeAAAA, dns.ClassINET, flagDO)
	c, _ := appendKey(nil, "\\087ww.example.", dns.TypeAAAA, dns.ClassINET, flagDO)
	if string(a) != string(b) || string(b) != string(c) {
		t.Errorf("keys differ: %q %q %q", a, b, c)
	}
	d, _ := appendKey(nil, "www.example.", dns.TypeAAAA, dns.ClassINET, 0)
	if string(d) == string(b) {
		t.Error("DO not part of the key")
	}
}

// A negative answer lives as long as min(SOA TTL, SOA MINIMUM) (RFC 2308
// section 5), in our cache and the client's, even when the upstream (an
// authoritative server) sends the SOA with the zone's TTL: the test zone's
// SOA has TTL 3600 and MINIMUM 900.
func TestNegativeTTLFromSOAMinimum(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := startServer(t, testConfig(up.addr), WithClock(clk.Now))
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"nodata.test.", dns.TypeA, dns.RcodeSuccess},
		{"nodata.test.", dns.TypeAAAA, dns.RcodeSuccess},
		{"nxdomain.test.", dns.TypeAAAA, dns.RcodeNameError},
		{"nxdomain.test.", dns.TypeMX, dns.RcodeNameError},
	} {
		m := ask(t, s.Addr(), tc.name, tc.qtype, qopt{})
		if m.Rcode != tc.rcode || len(m.Ns) != 1 {
			t.Fatalf("%s %s: %v", tc.name, dns.TypeToString[tc.qtype], m)
		}
		if ttl := m.Ns[0].Header().Ttl; ttl != 900 {
			t.Errorf("%s %s: SOA TTL %d, want 900", tc.name, dns.TypeToString[tc.qtype], ttl)
		}
	}
	before := up.count("nodata.test.", dns.TypeA)
	clk.Add(899 * time.Second)
	ask(t, s.Addr(), "nodata.test.", dns.TypeA, qopt{})
	if up.count("nodata.test.", dns.TypeA) != before {
		t.Fatal("asked upstream again within the negative TTL")
	}
	clk.Add(2 * time.Second)
	ask(t, s.Addr(), "nodata.test.", dns.TypeA, qopt{})
	if up.count("nodata.test.", dns.TypeA) != before+1 {
		t.Error("negative answer cached beyond min(SOA TTL, MINIMUM)")
	}
}

// A SERVFAIL answer is cached for failureTTL (RFC 9520): clients of a
// broken domain do not make the upstreams ask it again for every query;
// after that it is asked again.
func TestSERVFAILCachedBriefly(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := startServer(t, testConfig(up.addr), WithClock(clk.Now))
	for range 5 {
		if m := ask(t, s.Addr(), "servfail.test.", dns.TypeAAAA, qopt{}); m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	}
	if n := up.count("servfail.test.", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times within the failure TTL, want 1", n)
	}
	clk.Add(failureTTL)
	ask(t, s.Addr(), "servfail.test.", dns.TypeAAAA, qopt{})
	if n := up.count("servfail.test.", dns.TypeA); n != 2 {
		t.Errorf("upstream asked %d times after the failure TTL, want 2", n)
	}
}
