package dns64

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The upstream zone every test resolves against. SOA MINIMUM is 900 and the
// SOA TTL 3600, so the negative TTL of a NODATA answer is 900 (RFC 2308).
const testZone = `
$ORIGIN test.
@        3600 IN SOA ns.test. admin.test. 1 3600 600 86400 900
v4only    300 IN A 1.2.3.4
dual      300 IN A 1.2.3.5
dual      300 IN AAAA 2001:db8::5
mapped    300 IN A 1.2.3.6
mapped    300 IN AAAA ::ffff:1.2.3.6
mixed     300 IN AAAA ::ffff:1.2.3.7
mixed     300 IN AAAA 2001:db8::7
mixed     300 IN A 1.2.3.7
cname     300 IN CNAME alias.test.
alias     300 IN CNAME v4only.test.
nodata    300 IN TXT "no addresses here"
short       1 IN A 1.2.3.8
longttl 86400 IN A 1.2.3.9
loop4     300 IN A 127.0.0.1
private   300 IN A 10.1.2.3
doc       300 IN A 192.0.2.33
multi     300 IN A 1.2.3.10
multi     300 IN A 1.2.3.11
servfail-aaaa 300 IN A 1.2.3.12
servfail  300 IN A 1.2.3.13
refused   300 IN A 1.2.3.14
big       300 IN A 1.2.3.15
4.3.2.1.in-addr.arpa. 300 IN PTR v4only.test.
33.2.0.192.in-addr.arpa. 300 IN PTR doc.test.
`

// testUpstream is a real DNS server on 127.0.0.1 (UDP and TCP, one port)
// serving testZone, with a few misbehaving names:
//   - servfail-aaaa.test answers SERVFAIL to AAAA queries only;
//   - servfail.test and refused.test answer SERVFAIL / REFUSED to all;
//   - bogus.test answers SERVFAIL with an Extended DNS Error;
//   - xrcode.test answers the extended rcode 24, badcookie.test BADCOOKIE;
//   - big.test has 60 AAAA records: over UDP it always answers truncated,
//     so the full answer needs TCP.
//
// With DO set it adds an RRSIG per answer RRset and sets AD, like a
// validating resolver would.
type testUpstream struct {
	addr    string
	udp     *dns.Server
	tcp     *dns.Server
	rrs     map[string][]dns.RR // lower-case owner name
	soa     dns.RR
	mode    atomic.Value // "" normal, "servfail", "refused", "silent"
	mu      sync.Mutex
	queries map[string]int // "name/TYPE/proto"
	total   atomic.Int64
	delay   atomic.Int64 // nanoseconds before each answer
	options atomic.Int64 // queries that carried EDNS options
}

func startUpstream(t testing.TB) *testUpstream {
	t.Helper()
	u := newTestZone(t)
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 10 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	u.udp = &dns.Server{PacketConn: pc, Handler: u, NotifyStartedFunc: wg.Done}
	u.tcp = &dns.Server{Listener: ln, Handler: u, NotifyStartedFunc: wg.Done}
	go u.udp.ActivateAndServe()
	go u.tcp.ActivateAndServe()
	wg.Wait()
	t.Cleanup(u.stop)
	return u
}

// newTestZone builds the zone without serving it (see zoneExchanger).
func newTestZone(t testing.TB) *testUpstream {
	t.Helper()
	u := &testUpstream{rrs: map[string][]dns.RR{}, queries: map[string]int{}}
	u.mode.Store("")
	zp := dns.NewZoneParser(strings.NewReader(testZone), "test.", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		u.rrs[name] = append(u.rrs[name], rr)
		if rr.Header().Rrtype == dns.TypeSOA {
			u.soa = rr
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		rr, _ := dns.NewRR(fmt.Sprintf("big.test. 300 IN AAAA 2001:db8::b:%x", i+1))
		u.rrs["big.test."] = append(u.rrs["big.test."], rr)
	}
	return u
}

func (u *testUpstream) stop() {
	u.udp.Shutdown()
	u.tcp.Shutdown()
}

func (u *testUpstream) count(name string, qtype uint16) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, v := range u.queries {
		if strings.HasPrefix(k, strings.ToLower(name)+"/"+dns.TypeToString[qtype]+"/") {
			n += v
		}
	}
	return n
}

func (u *testUpstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if len(r.Question) != 1 {
		return
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	proto := "udp"
	if tcp {
		proto = "tcp"
	}
	u.mu.Lock()
	u.queries[name+"/"+dns.TypeToString[q.Qtype]+"/"+proto]++
	u.mu.Unlock()
	u.total.Add(1)
	if d := u.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	opt := r.IsEdns0()
	do := opt != nil && opt.Do()
	if opt != nil {
		m.SetEdns0(1232, do)
		if len(opt.Option) > 0 {
			u.options.Add(1)
		}
		if name == "v4only.test." {
			// A misbehaving upstream: ECS (RFC 7871) in an answer to a
			// query without it, and an NSID.
			m.IsEdns0().Option = []dns.EDNS0{
				&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 24, Address: net.IPv4(198, 51, 100, 0)},
				&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "7570"},
			}
		}
	}
	switch u.mode.Load().(string) {
	case "servfail":
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	case "refused":
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	case "silent":
		return
	}
	switch {
	case name == "servfail.test." || name == "servfail-aaaa.test." && q.Qtype == dns.TypeAAAA:
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	case name == "refused.test.":
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	case name == "xrcode.test." && opt != nil:
		m.Rcode = 24 // an extended rcode not about the hop (none is assigned yet)
		w.WriteMsg(m)
		return
	case name == "bogus.test." && opt != nil:
		// A validating upstream: SERVFAIL with an Extended DNS Error, and
		// an ECS that must not reach the client.
		m.Rcode = dns.RcodeServerFailure
		m.IsEdns0().Option = []dns.EDNS0{
			&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "signature expired"},
			&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 24, Address: net.IPv4(198, 51, 100, 0)},
		}
		w.WriteMsg(m)
		return
	case name == "badcookie.test." && opt != nil:
		m.Rcode = dns.RcodeBadCookie
		w.WriteMsg(m)
		return
	case name == "big.test." && !tcp:
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	cur := name
	found := false
	for range 8 {
		rrs, ok := u.rrs[cur]
		if !ok {
			break
		}
		found = true
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
				m.Answer = append(m.Answer, c)
				next = strings.ToLower(c.Target)
			}
		}
		if next != "" {
			cur = next
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		break
	}
	if !found && len(m.Answer) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	hasType := false
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == q.Qtype {
			hasType = true
		}
	}
	if !hasType {
		m.Ns = []dns.RR{u.soa}
	}
	if do {
		var sigs []dns.RR
		seen := map[string]bool{}
		for _, rr := range m.Answer {
			k := rr.Header().Name + "/" + dns.TypeToString[rr.Header().Rrtype]
			if seen[k] {
				continue
			}
			seen[k] = true
			sigs = append(sigs, &dns.RRSIG{
				Hdr:         dns.RR_Header{Name: rr.Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: rr.Header().Ttl},
				TypeCovered: rr.Header().Rrtype, Algorithm: dns.ECDSAP256SHA256, Labels: 2,
				OrigTtl: rr.Header().Ttl, Expiration: 2000000000, Inception: 1700000000,
				KeyTag: 12345, SignerName: "test.", Signature: "dGVzdHNpZ25hdHVyZQ==",
			})
		}
		m.Answer = append(m.Answer, sigs...)
		m.AuthenticatedData = true
	}
	w.WriteMsg(m)
}

// blackhole is a UDP socket that reads queries and never answers, and a
// TCP port that accepts and never answers: an upstream that times out.
type blackhole struct {
	addr string
	got  atomic.Int64
}

func startBlackhole(t testing.TB) *blackhole {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{addr: pc.LocalAddr().String()}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			b.got.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return b
}

// testConfig is a config for servers under test: loopback, port 0, short
// timers.
func testConfig(upstreams ...string) Config {
	return Config{
		Listen:          "127.0.0.1:0",
		Upstreams:       upstreams,
		UpstreamTimeout: 2 * time.Second,
		UpstreamBackoff: time.Minute,
	}
}

// startServer runs a dns64 server until the test ends.
func startServer(t testing.TB, cfg Config, opts ...Option) *Server {
	t.Helper()
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("dns64 did not start")
	}
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

type qopt struct {
	tcp    bool
	noEDNS bool
	do, cd bool
	size   uint16
	opts   []dns.EDNS0 // EDNS options to send
}

// ask sends one query to addr with a real client.
func ask(t testing.TB, addr, name string, qtype uint16, o qopt) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.CheckingDisabled = o.cd
	if !o.noEDNS {
		size := o.size
		if size == 0 {
			size = 1232
		}
		m.SetEdns0(size, o.do)
		m.IsEdns0().Option = o.opts
	}
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, UDPSize: 65535}
	if o.tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	if resp.Id != m.Id {
		t.Fatalf("id mismatch")
	}
	return resp
}

// aaaas returns the AAAA addresses of the answer as strings.
func aaaas(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.AAAA); ok {
			out = append(out, a.AAAA.String())
		}
	}
	return out
}

// recorder is a dns.ResponseWriter that keeps what was written.
type recorder struct {
	msg    *dns.Msg
	remote net.Addr
	writes int
	err    error // unpacking what was written
}

func (r *recorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv6loopback, Port: 53} }
func (r *recorder) RemoteAddr() net.Addr {
	if r.remote != nil {
		return r.remote
	}
	return &net.UDPAddr{IP: net.IPv6loopback, Port: 40000}
}
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	r.writes++
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		r.err = fmt.Errorf("unpack %x: %w", b, err)
		return 0, r.err
	}
	r.msg = m
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}
