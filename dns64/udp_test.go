package dns64

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Cache hits over UDP take the wire fast path: ID, RD, letter case, aged
// TTLs and the OPT record must come out as the slow path makes them.
func TestUDPFastPathHits(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := startServer(t, testConfig(up.addr), WithClock(clk.Now))
	ask(t, s.Addr(), "cname.test.", dns.TypeAAAA, qopt{})
	ask(t, s.Addr(), "cname.test.", dns.TypeAAAA, qopt{noEDNS: true})
	clk.Add(30 * time.Second)
	before := testCounter(t, s, "dns64_cache_hits_total")

	m := ask(t, s.Addr(), "CNAME.test.", dns.TypeAAAA, qopt{})
	if m.Question[0].Name != "CNAME.test." || m.IsEdns0() == nil || len(m.Answer) != 3 {
		t.Errorf("EDNS hit: %v", m)
	}
	for _, rr := range m.Answer {
		if rr.Header().Ttl != 270 {
			t.Errorf("TTL %d, want 270", rr.Header().Ttl)
		}
	}
	m = ask(t, s.Addr(), "cname.TEST.", dns.TypeAAAA, qopt{noEDNS: true})
	if m.Question[0].Name != "cname.TEST." || m.IsEdns0() != nil || len(m.Answer) != 3 {
		t.Errorf("plain hit: %v", m)
	}
	if got := testCounter(t, s, "dns64_cache_hits_total") - before; got != 2 {
		t.Errorf("%v hits, want 2", got)
	}
	if n := up.count("cname.test.", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times", n)
	}
}

// The fast path reads only what the slow path would read the same way.
func FuzzWireQuery(f *testing.F) {
	seedQueries(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		q, ok := parseWireQuery(b, nil)
		if !ok {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("fast path accepted what unpack refuses: %v", err)
		}
		if len(m.Question) != 1 || m.Question[0].Qtype != q.qtype || m.Id != q.id || m.RecursionDesired != q.rd {
			t.Fatalf("fast %+v, unpack %v", q, m)
		}
		var flags uint8
		if o := m.IsEdns0(); o != nil {
			if !q.edns || o.Version() != 0 {
				t.Fatalf("EDNS: fast %v, unpack %v", q.edns, o)
			}
			if o.Do() {
				flags |= flagDO
			}
		} else if q.edns {
			t.Fatal("fast path saw EDNS that unpack did not")
		}
		if m.CheckingDisabled {
			flags |= flagCD
		}
		k, ok := appendKey(nil, m.Question[0].Name, m.Question[0].Qtype, m.Question[0].Qclass, flags)
		if !ok || string(k) != string(q.key) {
			t.Fatalf("keys differ: fast %q, text %q", q.key, k)
		}
	})
}

// A cache hit on the fast path allocates nothing.
func TestUDPFastPathAllocs(t *testing.T) {
	s, conn, pkt := fastPathSetup(t)
	u := s.newUDPServer(conn)
	out := make([]byte, 0, 4096)
	var kb [maxKeyLen]byte
	allocs := testing.AllocsPerRun(200, func() {
		var ok bool
		if out, ok = u.fast(pkt, out, kb[:0], netip.IPv6Loopback()); !ok {
			t.Fatal("not a hit")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per hit", allocs)
	}
	cpkt := cookieQuery(t, pkt)
	allocs = testing.AllocsPerRun(200, func() {
		var ok bool
		if out, ok = u.fast(cpkt, out, kb[:0], netip.IPv6Loopback()); !ok {
			t.Fatal("not a hit with a cookie")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per hit with a cookie", allocs)
	}
}

// cookieQuery is pkt with a client COOKIE option.
func cookieQuery(tb testing.TB, pkt []byte) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil {
		tb.Fatal(err)
	}
	m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func BenchmarkUDPFastPathHitCookie(b *testing.B) {
	s, conn, pkt := fastPathSetup(b)
	u := s.newUDPServer(conn)
	pkt = cookieQuery(b, pkt)
	out := make([]byte, 0, 4096)
	var kb [maxKeyLen]byte
	b.ReportAllocs()
	for b.Loop() {
		out, _ = u.fast(pkt, out, kb[:0], netip.IPv6Loopback())
	}
}

func BenchmarkUDPFastPathHit(b *testing.B) {
	s, conn, pkt := fastPathSetup(b)
	u := s.newUDPServer(conn)
	out := make([]byte, 0, 4096)
	var kb [maxKeyLen]byte
	b.ReportAllocs()
	for b.Loop() {
		out, _ = u.fast(pkt, out, kb[:0], netip.IPv6Loopback())
	}
}

// fastPathSetup fills the cache of an unstarted server through ServeDNS
// and returns a UDP socket and a query packet.
func fastPathSetup(tb testing.TB) (*Server, *net.UDPConn, []byte) {
	s, err := New(testConfig("127.0.0.1:53"), WithExchanger(zoneExchanger{newTestZone(tb)}))
	if err != nil {
		tb.Fatal(err)
	}
	req := new(dns.Msg)
	req.SetQuestion("cname.test.", dns.TypeAAAA)
	req.SetEdns0(1232, false)
	s.ServeDNS(&recorder{}, req)
	pkt, _ := req.Pack()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return s, conn, pkt
}

// The default listen address is IPv6 loopback: the batch reader then
// works on an IPv6 socket.
func TestIPv6Listener(t *testing.T) {
	t.Parallel()
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		ln.Close()
	}
	up := startUpstream(t)
	cfg := testConfig(up.addr)
	cfg.Listen = "[::1]:0"
	s := startServer(t, cfg)
	for _, o := range []qopt{{}, {}, {tcp: true}, {noEDNS: true}} { // the second is a cache hit
		if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, o)); len(got) != 1 || got[0] != "64:ff9b::102:304" {
			t.Errorf("%+v: AAAA %v", o, got)
		}
	}
	if v := testCounter(t, s, "dns64_cache_hits_total"); v < 2 {
		t.Errorf("cache hits %v", v)
	}
}

// ServeDNS is a dns.Handler: a caller can feed it a recorder (or serve it
// with its own dns.Server) without Run.
func TestServeDNSWithRecorder(t *testing.T) {
	t.Parallel()
	s, err := New(testConfig("192.0.2.53"), WithExchanger(zoneExchanger{newTestZone(t)}))
	if err != nil {
		t.Fatal(err)
	}
	req := new(dns.Msg)
	req.SetQuestion("cname.test.", dns.TypeAAAA)
	rec := &recorder{}
	s.ServeDNS(rec, req)
	if rec.msg == nil || len(aaaas(rec.msg)) != 1 || aaaas(rec.msg)[0] != "64:ff9b::102:304" {
		t.Fatalf("answer %v", rec.msg)
	}
}

// On shutdown, a query waiting on a slow upstream is still answered.
func TestGracefulShutdownFinishesInflight(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.delay.Store(int64(400 * time.Millisecond))
	cfg := testConfig(up.addr)
	cfg.UpstreamTimeout = 2 * time.Second
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context()) }()
	<-s.Ready()
	got := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("v4only.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, s.Addr())
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	for up.total.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close() // waits for Run
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := <-got; r == nil || len(r.Answer) != 1 {
		t.Errorf("in-flight query: %v", r)
	}
}

// rawRecorder keeps the bytes ServeDNS writes.
type rawRecorder struct {
	recorder
	raw []byte
}

func (r *rawRecorder) Write(b []byte) (int, error) {
	r.raw = append([]byte(nil), b...)
	return len(b), nil
}

func (r *rawRecorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}

// The wire fast path and ServeDNS give byte-identical answers to the same
// cached question, whatever the letter case, EDNS, DO, CD and RD.
func TestFastPathMatchesServeDNS(t *testing.T) {
	s, conn, _ := fastPathSetup(t)
	u := s.newUDPServer(conn)
	for _, name := range []string{"cname.test.", "CNAME.Test.", "dual.test.", "nx.test.", "v4only.TEST."} {
		cookie := []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		for _, o := range []qopt{{}, {noEDNS: true}, {do: true}, {cd: true}, {do: true, cd: true}, {size: 4096}, {opts: cookie}, {do: true, opts: cookie}} {
			for _, rd := range []bool{true, false} {
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeAAAA)
				m.RecursionDesired = rd
				m.CheckingDisabled = o.cd
				if !o.noEDNS {
					m.SetEdns0(max(o.size, 1232), o.do)
					m.IsEdns0().Option = o.opts
				}
				s.ServeDNS(&recorder{}, m) // fill the cache
				slow := &rawRecorder{}
				s.ServeDNS(slow, m)
				pkt, _ := m.Pack()
				fast, ok := u.fast(pkt, nil, nil, netip.IPv6Loopback())
				if !ok {
					t.Fatalf("%s %+v rd=%v: fast path missed", name, o, rd)
				}
				if string(fast) != string(slow.raw) {
					t.Errorf("%s %+v rd=%v:\nfast %x\nslow %x", name, o, rd, fast, slow.raw)
				}
			}
		}
	}
}
