package nat64

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func udp6to4(p *Path, out []byte, src []byte, sport uint16, dst4 []byte, dport uint16) Result {
	d6 := a6("64:ff9b::" + netip.AddrFrom4([4]byte(dst4)).String())
	return p.Translate6to4(ip6(0, 17, 64, src, d6, udpSeg(src, d6, sport, dport, []byte("x"))), out)
}

func tcp6to4(p *Path, out []byte, src []byte, sport uint16, dst4 []byte, dport uint16, flags uint8) Result {
	d6 := a6("64:ff9b::" + netip.AddrFrom4([4]byte(dst4)).String())
	return p.Translate6to4(ip6(0, 6, 64, src, d6, tcpSeg(src, d6, sport, dport, flags, nil)), out)
}

func tcp4to6(p *Path, out []byte, src4 []byte, sport uint16, dst4 []byte, dport uint16, flags uint8) Result {
	return p.Translate4to6(ip4(0, 1, 0, 64, 6, src4, dst4, tcpSeg(src4, dst4, sport, dport, flags, nil)), out)
}

// mapped returns the IPv4 source address and port of a translated packet.
func mapped(out []byte) ([]byte, uint16) {
	return append([]byte{}, out[12:16]...), binary.BigEndian.Uint16(out[20:])
}

func TestTCPStateMachine(t *testing.T) {
	// RFC 6146 section 3.5.2.2, simplified as the README describes.
	tr, p, clk := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	sess := func() *session {
		k := makeKey(protoTCP, c6, 1234, [4]byte(s4), 80)
		return tr.tab.lookup6(&k)
	}
	if r := tcp6to4(p, out, c6, 1234, s4, 80, tcpSYN); r.Verdict != Forward {
		t.Fatalf("SYN: %+v", r)
	}
	if st := sess().state.Load(); st != tcpV6Init {
		t.Fatalf("after v6 SYN: state %d, want V6 INIT", st)
	}
	if r := tcp4to6(p, out, s4, 80, p4, 40000, tcpSYN|tcpACK); r.Verdict != Forward {
		t.Fatalf("SYN-ACK: %+v", r)
	}
	s := sess()
	if st := s.state.Load(); st != tcpEstablished {
		t.Fatalf("after v4 SYN: state %d, want ESTABLISHED", st)
	}
	if got := time.Duration(s.expires.Load() - clk.t.UnixNano()); got != MinTCPEstablished {
		t.Fatalf("established lifetime %s", got)
	}
	tcp6to4(p, out, c6, 1234, s4, 80, tcpFIN|tcpACK)
	if st := s.state.Load(); st != tcpV6FinRcv {
		t.Fatalf("after v6 FIN: state %d", st)
	}
	tcp4to6(p, out, s4, 80, p4, 40000, tcpFIN|tcpACK)
	if st := s.state.Load(); st != tcpBothFin {
		t.Fatalf("after both FINs: state %d", st)
	}
	if got := time.Duration(s.expires.Load() - clk.t.UnixNano()); got != MinTCPTransitory {
		t.Fatalf("transitory lifetime %s", got)
	}
	clk.t = clk.t.Add(MinTCPTransitory + time.Second)
	if n := tr.Expire(); n != 1 || sess() != nil {
		t.Fatalf("expired %d sessions", n)
	}
	// The static binding survives its last session.
	if r := tcp6to4(p, out, c6, 1234, s4, 80, tcpSYN); r.Verdict != Forward {
		t.Fatalf("new SYN: %+v", r)
	}
	if _, port := mapped(out); port != 40000 {
		t.Fatalf("static binding lost: port %d", port)
	}
	// RST: transitory; a later packet brings it back to established.
	tcp4to6(p, out, s4, 80, p4, 40000, tcpSYN|tcpACK)
	tcp6to4(p, out, c6, 1234, s4, 80, tcpRST)
	if st := sess().state.Load(); st != tcpTrans {
		t.Fatalf("after RST: state %d", st)
	}
	tcp6to4(p, out, c6, 1234, s4, 80, tcpACK)
	if st := sess().state.Load(); st != tcpEstablished {
		t.Fatalf("after RST then ACK: state %d", st)
	}
}

func TestInboundSYNToStaticBinding(t *testing.T) {
	// RFC 6146 3.5.2.2: a V4 SYN with a BIB entry makes a V4 INIT session
	// (6 s); the IPv6 SYN makes it established.
	tr, p, clk := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	if r := tcp4to6(p, out, s4, 5555, p4, 40000, tcpSYN); r.Verdict != Forward {
		t.Fatalf("inbound SYN: %+v", r)
	}
	k := makeKey(protoTCP, p4, 40000, [4]byte(s4), 5555)
	s := tr.tab.lookup4(&k)
	if s == nil || s.state.Load() != tcpV4Init || time.Duration(s.expires.Load()-clk.t.UnixNano()) != DefaultTCPIncomingSYN {
		t.Fatalf("session %+v", s)
	}
	tcp6to4(p, out, c6, 1234, s4, 5555, tcpSYN|tcpACK)
	if s.state.Load() != tcpEstablished {
		t.Fatalf("state %d", s.state.Load())
	}
	// Without a binding, an inbound SYN is dropped.
	if r := tcp4to6(p, out, s4, 5555, p4, 40001, tcpSYN); r.ReasonName() != "no_binding" {
		t.Fatalf("%+v", r)
	}
}

func TestUDPTimeout(t *testing.T) {
	tr, p, clk := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	udp6to4(p, out, a6("2001:db8::9"), 999, s4, 53)
	clk.t = clk.t.Add(DefaultUDPTimeout - time.Second)
	if tr.Expire() != 0 {
		t.Fatal("expired before 5 minutes")
	}
	clk.t = clk.t.Add(2 * time.Second)
	if tr.Expire() != 1 {
		t.Fatal("not expired after 5 minutes")
	}
	if bibs, _ := tr.tab.stats(); bibs[1] != 1 { // only the static UDP binding remains
		t.Fatalf("udp bindings %d", bibs[1])
	}
}

func TestEndpointIndependentMapping(t *testing.T) {
	// RFC 6146 3.5.1 / RFC 4787 REQ-1: same (X', x), same (T, t).
	_, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	cl := a6("2001:db8::77")
	udp6to4(p, out, cl, 5000, s4, 53)
	a1, t1 := mapped(out)
	udp6to4(p, out, cl, 5000, a4("192.0.2.200"), 123)
	a2, t2 := mapped(out)
	if string(a1) != string(a2) || t1 != t2 {
		t.Fatalf("mapping differs: %v:%d vs %v:%d", a1, t1, a2, t2)
	}
	// Endpoint-independent filtering: any IPv4 host may send to (T, t).
	in := ip4(0, 1, 0, 64, 17, a4("192.0.2.99"), a1, udpSeg(a4("192.0.2.99"), a1, 4444, t1, []byte("hi")))
	if r := p.Translate4to6(in, out); r.Verdict != Forward {
		t.Fatalf("EIF refused: %+v", r)
	}
}

func TestAddressDependentFiltering(t *testing.T) {
	cfg := testConfig()
	cfg.Filtering = "address-dependent"
	_, p, _ := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	cl := a6("2001:db8::78")
	udp6to4(p, out, cl, 5000, s4, 53)
	a1, t1 := mapped(out)
	// Another port of the same address: allowed.
	if r := p.Translate4to6(ip4(0, 1, 0, 64, 17, s4, a1, udpSeg(s4, a1, 9999, t1, []byte("hi"))), out); r.Verdict != Forward {
		t.Fatalf("same address refused: %+v", r)
	}
	// Another address: filtered.
	o := a4("192.0.2.99")
	if r := p.Translate4to6(ip4(0, 1, 0, 64, 17, o, a1, udpSeg(o, a1, 53, t1, []byte("hi"))), out); r.ReasonName() != "filtered" {
		t.Fatalf("other address: %+v", r)
	}
}

func TestPortAllocation(t *testing.T) {
	// RFC 6056: ports within the range, not sequential; paired pooling:
	// one IPv4 address per client.
	cfg := testConfig()
	cfg.Pool4 = []string{"198.51.100.0/30 20000-29999"}
	cfg.Static = nil
	_, p, _ := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	cl := a6("2001:db8::79")
	var prev uint16
	seq, seen := 0, map[uint16]bool{}
	var addr0 []byte
	for i := 0; i < 200; i++ {
		if r := udp6to4(p, out, cl, uint16(1000+i), s4, 53); r.Verdict != Forward {
			t.Fatal(r.ReasonName())
		}
		a, port := mapped(out)
		if port < 20000 || port > 29999 || seen[port] {
			t.Fatalf("port %d out of range or reused", port)
		}
		seen[port] = true
		if addr0 == nil {
			addr0 = a
		} else if string(a) != string(addr0) {
			t.Fatalf("client moved from %v to %v (paired pooling)", addr0, a)
		}
		if port == prev+1 {
			seq++
		}
		prev = port
	}
	if seq > 20 {
		t.Fatalf("%d of 200 ports were the previous one plus one: predictable", seq)
	}
}

func TestPoolExhaustedAndClientLimit(t *testing.T) {
	cfg := testConfig()
	cfg.Pool4 = []string{"198.51.100.1 2000-2003"}
	cfg.Static = nil
	_, p, _ := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	for i := 0; i < 4; i++ {
		udp6to4(p, out, a6("2001:db8::80"), uint16(100+i), s4, 53)
	}
	if r := udp6to4(p, out, a6("2001:db8::81"), 100, s4, 53); r.ReasonName() != "pool_exhausted" {
		t.Fatalf("%+v", r)
	}

	cfg = testConfig()
	cfg.MaxSessionsPerClient = 3
	_, p, _ = newTestTranslator(t, cfg)
	for i := 0; i < 3; i++ {
		if r := udp6to4(p, out, a6("2001:db8::82"), uint16(100+i), s4, 53); r.Verdict != Forward {
			t.Fatal(r.ReasonName())
		}
	}
	if r := udp6to4(p, out, a6("2001:db8::82"), 200, s4, 53); r.ReasonName() != "client_limit" {
		t.Fatalf("%+v", r)
	}
	if r := udp6to4(p, out, a6("2001:db8::83"), 200, s4, 53); r.Verdict != Forward {
		t.Fatalf("another client: %+v", r)
	}
}

func TestSYNRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.SYNRate = 5
	_, p, clk := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	for i := 0; i < 5; i++ {
		if r := tcp6to4(p, out, a6("2001:db8::84"), uint16(100+i), s4, 80, tcpSYN); r.Verdict != Forward {
			t.Fatal(r.ReasonName())
		}
	}
	if r := tcp6to4(p, out, a6("2001:db8::84"), 200, s4, 80, tcpSYN); r.ReasonName() != "syn_rate" {
		t.Fatalf("6th SYN: %+v", r)
	}
	// Another destination has its own bucket.
	if r := tcp6to4(p, out, a6("2001:db8::84"), 200, a4("192.0.2.8"), 80, tcpSYN); r.Verdict != Forward {
		t.Fatalf("other destination: %+v", r)
	}
	clk.t = clk.t.Add(time.Second)
	if r := tcp6to4(p, out, a6("2001:db8::84"), 200, s4, 80, tcpSYN); r.Verdict != Forward {
		t.Fatalf("after a second: %+v", r)
	}
}

func TestBindingLogLines(t *testing.T) {
	buf := &syncBuf{}
	tr, p, clk := newTestTranslator(t, testConfig(), WithBindingLog(buf))
	out := make([]byte, 2000)
	udp6to4(p, out, a6("2001:db8::85"), 4321, s4, 53)
	a, port := mapped(out)
	clk.t = clk.t.Add(10 * time.Minute)
	tr.Expire()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	for i, l := range lines {
		e, err := ParseBindingLine(l)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.AddrPortFrom(netip.AddrFrom4([4]byte(a)), port)
		if e.Add != (i == 0) || e.Proto != "udp" || e.V6.String() != "[2001:db8::85]:4321" || e.V4 != want {
			t.Fatalf("line %q parsed as %+v", l, e)
		}
	}
	if !strings.HasPrefix(lines[0], "2026-11-22T03:00:00.000000Z nat64-binding add proto=udp") {
		t.Fatalf("line %q", lines[0])
	}
}

// TestMemoryPerSession measures the heap per UDP session (binding and
// session, both index maps) and reports it; the bound is loose, it
// catches only a gross regression.
func TestMemoryPerSession(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("short mode or race detector (it changes the heap)")
	}
	cfg := testConfig()
	cfg.Pool4 = []string{"198.51.100.0/24"}
	cfg.Static = nil
	cfg.MaxSessionsPerClient = -1
	tr, p, _ := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	const n = 100000
	pkts := make([][]byte, n)
	for i := range pkts {
		src := a6("2001:db8::")
		binary.BigEndian.PutUint32(src[12:], uint32(i/50000))
		d6 := a6("64:ff9b::c000:201")
		pkts[i] = ip6(0, 17, 64, src, d6, udpSeg(src, d6, uint16(1024+i%50000), 53, nil))
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for _, b := range pkts {
		if r := p.Translate6to4(b, out); r.Verdict != Forward {
			t.Fatal(r.ReasonName())
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	_, udp, _ := tr.Sessions()
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(udp)
	t.Logf("memory per session: %.0f bytes (%d sessions)", per, udp)
	if per > 2048 {
		t.Fatalf("%.0f bytes per session", per)
	}
	runtime.KeepAlive(pkts)
}

// Workers on several Paths and the sweeper share the table: run them
// together under the race detector.
func TestConcurrentPaths(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionsPerClient = -1
	tr, _, clk := newTestTranslator(t, cfg)
	_ = clk
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		p := tr.NewPath()
		go func() {
			defer func() { done <- struct{}{} }()
			out := make([]byte, 2000)
			for i := 0; i < 2000; i++ {
				cl := a6("2001:db8::100")
				cl[15] = byte(i % 7)
				udp6to4(p, out, cl, uint16(1000+i%300), s4, 53)
				a, port := mapped(out)
				p.Translate4to6(ip4(0, 1, 0, 64, 17, s4, a, udpSeg(s4, a, 53, port, []byte("r"))), out)
				tcp6to4(p, out, cl, uint16(2000+i%50), s4, 80, tcpSYN)
			}
		}()
	}
	go func() {
		for i := 0; i < 50; i++ {
			tr.Expire()
			tr.Registry().Gather()
		}
		done <- struct{}{}
	}()
	for i := 0; i < 5; i++ {
		<-done
	}
}

func TestMetricsNames(t *testing.T) {
	tr, p, _ := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	udp6to4(p, out, c6, 1234, s4, 53)
	p.Translate6to4(ip6(0, 47, 64, c6, s6, nil), out)
	mfs, err := tr.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			if m.Gauge != nil {
				got[name] = m.Gauge.GetValue()
			} else {
				got[name] = m.Counter.GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"nat64_sessions,proto=udp":                    1,
		"nat64_bindings,proto=tcp":                    1,
		"nat64_translations_total,direction=6to4":     1,
		"nat64_drops_total,reason=unknown_protocol":   1,
		"nat64_pool4_ports_used,address=198.51.100.1": 3,
		"nat64_pool4_ports,address=198.51.100.1":      64512,
		"nat64_icmp_errors_sent_total":                0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// RFC 4443 2.4 (f): the translator's own ICMP errors are rate limited.
func TestICMPErrorRate(t *testing.T) {
	cfg := testConfig()
	cfg.ICMPErrorRate = 20 // burst 2
	_, p, clk := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	in := ip6(0, 17, 1, c6, s6, udpSeg(c6, s6, 1234, 53, []byte("x")))
	var sent, limited int
	for i := 0; i < 10; i++ {
		switch r := p.Translate6to4(in, out); {
		case r.Verdict == Reply:
			sent++
		case r.ReasonName() == "icmp_rate":
			limited++
		}
	}
	if sent != 2 || limited != 8 {
		t.Fatalf("sent %d, limited %d; want 2 and 8", sent, limited)
	}
	clk.t = clk.t.Add(100 * time.Millisecond) // two more tokens
	if r := p.Translate6to4(in, out); r.Verdict != Reply {
		t.Fatalf("after refill: %+v", r)
	}
}

// The expiry sweep visits only sessions whose wheel slot came due, not
// every session each second; a refreshed session is re-filed when its
// slot comes round, a shortened lifetime (RFC 6146 3.5.2.2: RST moves an
// established session to TRANS, 4 minutes) is honoured on time, and a
// removed session is not visited again.
func TestExpiryWheel(t *testing.T) {
	cfg := testConfig()
	cfg.Static = nil
	cfg.MaxSessionsPerClient = -1
	tr, p, clk := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	for i := 0; i < 1000; i++ {
		udp6to4(p, out, c6, uint16(2000+i), s4, 53)
	}
	tcp6to4(p, out, c6, 1000, s4, 80, tcpSYN)
	a, port := mapped(out)
	tcp4to6(p, out, s4, 80, a, port, tcpSYN|tcpACK) // ESTABLISHED, 2 h 4 min
	step := func(d time.Duration) int {
		clk.t = clk.t.Add(d)
		return tr.Expire()
	}
	seen := func() uint64 {
		tr.tab.wheel.mu.Lock()
		defer tr.tab.wheel.mu.Unlock()
		return tr.tab.wheel.seen
	}
	for i := 0; i < 60; i++ {
		if n := step(time.Second); n != 0 {
			t.Fatalf("second %d: %d sessions expired early", i, n)
		}
	}
	if n := seen(); n != 0 {
		t.Fatalf("the sweep looked at %d sessions in the first minute, want 0", n)
	}
	// Half the UDP sessions are refreshed at 4 minutes.
	step(3 * time.Minute)
	for i := 0; i < 500; i++ {
		udp6to4(p, out, c6, uint16(2000+i), s4, 53)
	}
	if n := step(time.Minute + time.Second); n != 500 {
		t.Fatalf("at 5 min 1 s: %d expired, want the 500 idle UDP sessions", n)
	}
	// RST: TRANS, 4 minutes from now (9 min 1 s), although it was filed
	// for 2 h 4 min.
	tcp6to4(p, out, c6, 1000, s4, 80, tcpRST)
	if n := step(4*time.Minute - 500*time.Millisecond); n != 500 {
		t.Fatalf("at 9 min 0.5 s: %d expired, want the 500 refreshed UDP sessions", n)
	}
	if tcp, _, _ := tr.Sessions(); tcp != 1 {
		t.Fatalf("TCP sessions %d before TRANS expiry", tcp)
	}
	if n := step(time.Second); n != 1 {
		t.Fatalf("at 9 min 1.5 s: %d expired, want the TRANS session", n)
	}
	if tcp, udp, _ := tr.Sessions(); tcp != 0 || udp != 0 {
		t.Fatalf("left: tcp %d udp %d", tcp, udp)
	}
	before := seen()
	for i := 0; i < 2000; i++ {
		step(time.Second)
	}
	if n := seen() - before; n != 0 {
		t.Fatalf("%d removed sessions visited again", n)
	}
}

// RFC 6146 3.5.2.2: in V6 INIT only a V6 SYN refreshes the session; other
// packets (an IPv4 ACK, an IPv6 ACK) are forwarded without keeping it
// alive, so packets from outside cannot hold a half-open session.
func TestTCPInitRefresh(t *testing.T) {
	tr, p, clk := newTestTranslator(t, testConfig())
	out := make([]byte, 2000)
	if r := tcp6to4(p, out, c6, 1234, s4, 80, tcpSYN); r.Verdict != Forward {
		t.Fatal(r.ReasonName())
	}
	k := makeKey(protoTCP, c6, 1234, [4]byte(s4), 80)
	s := tr.tab.lookup6(&k)
	exp := s.expires.Load()
	clk.t = clk.t.Add(time.Minute)
	if r := tcp4to6(p, out, s4, 80, p4, 40000, tcpACK); r.Verdict != Forward {
		t.Fatal(r.ReasonName())
	}
	tcp6to4(p, out, c6, 1234, s4, 80, tcpACK)
	if s.expires.Load() != exp || s.state.Load() != tcpV6Init {
		t.Fatalf("V6 INIT refreshed by a non-SYN: expiry moved by %s", time.Duration(s.expires.Load()-exp))
	}
	tcp6to4(p, out, c6, 1234, s4, 80, tcpSYN)
	if got := time.Duration(s.expires.Load() - clk.t.UnixNano()); got != MinTCPTransitory {
		t.Fatalf("V6 SYN retransmission: lifetime %s, want %s", got, MinTCPTransitory)
	}
}
