package dns64

import (
	"net"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// Each test names the RFC 6147 section that decides the answer. All run
// against a real dns64 server on loopback asking a real upstream server.

func TestRFC6147(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	addr := s.Addr()

	tests := []struct {
		section string
		name    string
		qtype   uint16
		opt     qopt
		rcode   int
		want    []string // AAAA addresses, in order
		wantTTL []uint32 // TTLs of the AAAA records, when checked
		check   func(t *testing.T, m *dns.Msg)
	}{
		{section: "5.1.1 usable AAAA returned, no synthesis", name: "dual.test.", qtype: dns.TypeAAAA,
			want: []string{"2001:db8::5"}},
		{section: "5.1.2 NODATA for AAAA: synthesize from A", name: "v4only.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:304"}},
		{section: "5.1.2 several A records: one AAAA each", name: "multi.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:30a", "64:ff9b::102:30b"}},
		{section: "5.1.2 Name Error passed through", name: "nx.test.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeNameError, check: wantSOA},
		{section: "5.1.2 NODATA for AAAA and A stays NODATA", name: "nodata.test.", qtype: dns.TypeAAAA,
			check: wantSOA},
		{section: "5.1.2 other rcode on AAAA treated as empty answer", name: "servfail-aaaa.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:30c"}, wantTTL: []uint32{300}},
		{section: "5.1.6 error of the A query passed through (SERVFAIL)", name: "servfail.test.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeServerFailure},
		{section: "5.1.6 error of the A query passed through (REFUSED)", name: "refused.test.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeRefused},
		{section: "5.1.4 only ::ffff:0:0/96 AAAA: treated as NODATA, synthesized", name: "mapped.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:306"}},
		{section: "5.1.4 excluded AAAA left out next to usable ones", name: "mixed.test.", qtype: dns.TypeAAAA,
			want: []string{"2001:db8::7"}},
		{section: "5.1.5 CNAME chain kept, AAAA synthesized for its end", name: "cname.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:304"}, check: func(t *testing.T, m *dns.Msg) {
				var got []string
				for _, rr := range m.Answer {
					got = append(got, rr.Header().Name+" "+dns.TypeToString[rr.Header().Rrtype])
				}
				want := []string{"cname.test. CNAME", "alias.test. CNAME", "v4only.test. AAAA"}
				if !slices.Equal(got, want) {
					t.Errorf("answer %v, want %v", got, want)
				}
			}},
		{section: "5.1.7 TTL is the A record's when below the SOA negative TTL", name: "v4only.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:304"}, wantTTL: []uint32{300}},
		{section: "5.1.7 TTL bounded by the SOA negative TTL (min(3600, 900))", name: "longttl.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:309"}, wantTTL: []uint32{900}},
		{section: "5.1.7 short A TTL kept", name: "short.test.", qtype: dns.TypeAAAA,
			want: []string{"64:ff9b::102:308"}, wantTTL: []uint32{1}},
		{section: "5.1.4/5.2 excluded IPv4 (127.0.0.0/8) not synthesized", name: "loop4.test.", qtype: dns.TypeAAAA,
			check: wantSOA},
		{section: "RFC 6052 3.1 well-known prefix never maps non-global 10.0.0.0/8", name: "private.test.", qtype: dns.TypeAAAA,
			check: wantSOA},
		{section: "queries other than AAAA are forwarded untouched (A)", name: "v4only.test.", qtype: dns.TypeA,
			check: func(t *testing.T, m *dns.Msg) {
				if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "1.2.3.4" {
					t.Errorf("answer %v", m.Answer)
				}
			}},
		{section: "5.3.1 PTR inside the prefix: CNAME to in-addr.arpa", name: "4.0.3.0.2.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.", qtype: dns.TypePTR,
			check: func(t *testing.T, m *dns.Msg) {
				if len(m.Answer) != 2 {
					t.Fatalf("answer %v", m.Answer)
				}
				c, ok := m.Answer[0].(*dns.CNAME)
				if !ok || c.Target != "4.3.2.1.in-addr.arpa." {
					t.Errorf("first record %v, want CNAME to 4.3.2.1.in-addr.arpa.", m.Answer[0])
				}
				if p, ok := m.Answer[1].(*dns.PTR); !ok || p.Ptr != "v4only.test." {
					t.Errorf("second record %v, want the PTR of the target", m.Answer[1])
				}
			}},
		{section: "5.3.1 PTR of an excluded address is forwarded", name: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeNameError},
		{section: "5.3.1 PTR outside the prefix is forwarded", name: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeNameError},
		{section: "5.5 DO without CD: synthesized, AD clear, no RRSIG over A", name: "v4only.test.", qtype: dns.TypeAAAA,
			opt: qopt{do: true}, want: []string{"64:ff9b::102:304"}, check: func(t *testing.T, m *dns.Msg) {
				if m.AuthenticatedData {
					t.Error("AD set on a synthesized answer")
				}
				for _, rr := range m.Answer {
					if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered == dns.TypeA {
						t.Errorf("RRSIG over A kept: %v", sig)
					}
				}
				if o := m.IsEdns0(); o == nil || !o.Do() {
					t.Error("DO not mirrored")
				}
			}},
		{section: "5.1.4 with DO: excluded AAAA kept so the RRset matches its RRSIG", name: "mixed.test.", qtype: dns.TypeAAAA,
			opt: qopt{do: true}, want: []string{"1.2.3.7", "2001:db8::7"}}, // net.IP prints ::ffff:1.2.3.7 so
		{section: "5.5 DO and CD: no synthesis, upstream answer as is", name: "v4only.test.", qtype: dns.TypeAAAA,
			opt: qopt{do: true, cd: true}, check: func(t *testing.T, m *dns.Msg) {
				wantSOA(t, m)
				if !m.CheckingDisabled {
					t.Error("CD not mirrored")
				}
			}},
		{section: "5.5 CD without DO: synthesized", name: "v4only.test.", qtype: dns.TypeAAAA,
			opt: qopt{cd: true}, want: []string{"64:ff9b::102:304"}},
		{section: "5.5 DO on real AAAA: AD and signatures passed through", name: "dual.test.", qtype: dns.TypeAAAA,
			opt: qopt{do: true}, want: []string{"2001:db8::5"}, check: func(t *testing.T, m *dns.Msg) {
				if !m.AuthenticatedData {
					t.Error("AD of the upstream's validated answer dropped")
				}
				if len(m.Answer) != 2 {
					t.Errorf("answer %v, want AAAA and its RRSIG", m.Answer)
				}
			}},
	}
	for _, tc := range tests {
		for _, tcp := range []bool{false, true} {
			o := tc.opt
			o.tcp = tcp
			proto := map[bool]string{false: "udp", true: "tcp"}[tcp]
			t.Run(tc.section+"/"+proto, func(t *testing.T) {
				m := ask(t, addr, tc.name, tc.qtype, o)
				if m.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !m.Response || !m.RecursionAvailable || !m.RecursionDesired {
					t.Errorf("header flags QR=%v RA=%v RD=%v", m.Response, m.RecursionAvailable, m.RecursionDesired)
				}
				if got := aaaas(m); tc.qtype == dns.TypeAAAA && !slices.Equal(got, tc.want) {
					t.Errorf("AAAA %v, want %v", got, tc.want)
				}
				if tc.wantTTL != nil {
					var ttls []uint32
					for _, rr := range m.Answer {
						if a, ok := rr.(*dns.AAAA); ok {
							ttls = append(ttls, a.Hdr.Ttl)
						}
					}
					// The cache may have aged them by a second.
					for i := range ttls {
						if i < len(tc.wantTTL) && ttls[i]+1 < tc.wantTTL[i] || ttls[i] > tc.wantTTL[i] {
							t.Errorf("TTLs %v, want %v", ttls, tc.wantTTL)
						}
					}
				}
				if tc.check != nil {
					tc.check(t, m)
				}
			})
		}
	}
}

func wantSOA(t *testing.T, m *dns.Msg) {
	t.Helper()
	if len(aaaas(m)) != 0 {
		t.Errorf("unexpected AAAA %v", aaaas(m))
	}
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return
		}
	}
	t.Errorf("no SOA in authority: %v", m.Ns)
}

// 5.1.4: the exclusion list is configurable; excluding 2001:db8::/32 makes
// a dual-stack name look IPv4-only.
func TestRFC6147_5_1_4_ConfiguredAAAAExclusion(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := testConfig(up.addr)
	cfg.ExcludeAAAA = []string{"::ffff:0:0/96", "2001:db8::/32"}
	s := startServer(t, cfg)
	if got := aaaas(ask(t, s.Addr(), "dual.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"64:ff9b::102:305"}) {
		t.Errorf("AAAA %v", got)
	}
}

// 5.1.4 / RFC 6052 3.1: the excluded IPv4 ranges are configurable, and a
// network-specific prefix may map non-global addresses.
func TestRFC6147_ExcludedIPv4AndPrefixes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)

	cfg := testConfig(up.addr)
	cfg.Prefix = "2001:db8:64::/96"
	s := startServer(t, cfg)
	if got := aaaas(ask(t, s.Addr(), "private.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"2001:db8:64::a01:203"}) {
		t.Errorf("NSP, 10.1.2.3: AAAA %v", got)
	}
	if got := aaaas(ask(t, s.Addr(), "loop4.test.", dns.TypeAAAA, qopt{})); len(got) != 0 {
		t.Errorf("NSP, 127.0.0.1 (default exclusion): AAAA %v", got)
	}

	cfg = testConfig(up.addr)
	cfg.SetExcludeIPv4([]string{"1.2.3.4/32"})
	s = startServer(t, cfg)
	if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); len(got) != 0 {
		t.Errorf("configured exclusion 1.2.3.4/32: AAAA %v", got)
	}
	if got := aaaas(ask(t, s.Addr(), "multi.test.", dns.TypeAAAA, qopt{})); len(got) != 2 {
		t.Errorf("multi: AAAA %v", got)
	}

	// Per-range prefixes: 10.0.0.0/8 gets its own /48, the rest the WKP.
	cfg = testConfig(up.addr)
	cfg.Prefixes = []RangePrefix{{IPv4: "10.0.0.0/8", Prefix: "2001:db8:a::/48"}, {IPv4: "1.2.3.0/24", Prefix: "2001:db8:1::/64"}}
	s = startServer(t, cfg)
	if got := aaaas(ask(t, s.Addr(), "private.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"2001:db8:a:a01:2:300::"}) {
		t.Errorf("range prefix /48: AAAA %v", got)
	}
	if got := aaaas(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); !slices.Equal(got, []string{"2001:db8:1:0:1:203:400:0"}) {
		t.Errorf("range prefix /64: AAAA %v", got)
	}
	// PTR for an address under the range prefix maps back.
	m := ask(t, s.Addr(), mustReverse(t, "2001:db8:1:0:1:203:400:0"), dns.TypePTR, qopt{})
	if len(m.Answer) == 0 || m.Answer[0].(*dns.CNAME).Target != "4.3.2.1.in-addr.arpa." {
		t.Errorf("PTR under range prefix: %v", m.Answer)
	}
	// ... but not the same IPv4 address under the default prefix.
	m = ask(t, s.Addr(), mustReverse(t, "64:ff9b::102:304"), dns.TypePTR, qopt{})
	if m.Rcode != dns.RcodeNameError {
		t.Errorf("PTR under the wrong prefix: %v", m)
	}
}

func mustReverse(t testing.TB, a string) string {
	r, err := dns.ReverseAddr(net.ParseIP(a).String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// 5.3.1 can be turned off: the PTR query is then forwarded.
func TestRFC6147_5_3_1_Disabled(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := testConfig(up.addr)
	cfg.DisablePTR = true
	s := startServer(t, cfg)
	m := ask(t, s.Addr(), mustReverse(t, "64:ff9b::102:304"), dns.TypePTR, qopt{})
	if m.Rcode != dns.RcodeNameError || len(m.Answer) != 0 {
		t.Errorf("got %v", m)
	}
}
