package dns64

import (
	"testing"

	"github.com/miekg/dns"
)

// The examples of RFC 6052 section 2.4 (192.0.2.33 under every prefix
// length), asked through a running server: AAAA for a name whose A is
// 192.0.2.33, and the PTR of the synthesized address back (RFC 6147 5.3.1).
func TestRFC6052_2_4_ExamplesThroughServer(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	tests := []struct {
		prefix    string
		allowWKP  bool
		want      string // "" = no synthesis
		rfcSource string
	}{
		{"64:ff9b::/96", true, "64:ff9b::c000:221", "Table 1 (WKP; allow_non_global_wkp for a documentation address)"},
		{"64:ff9b::/96", false, "", "section 3.1: the WKP must not map non-global 192.0.2.0/24"},
		{"2001:db8::/32", false, "2001:db8:c000:221::", "Table 2, /32"},
		{"2001:db8:100::/40", false, "2001:db8:1c0:2:21::", "Table 2, /40"},
		{"2001:db8:122::/48", false, "2001:db8:122:c000:2:2100::", "Table 2, /48"},
		{"2001:db8:122:300::/56", false, "2001:db8:122:3c0:0:221::", "Table 2, /56"},
		{"2001:db8:122:344::/64", false, "2001:db8:122:344:c0:2:2100:0", "Table 2, /64"},
		{"2001:db8:122:344::/96", false, "2001:db8:122:344::c000:221", "Table 2, /96 (2001:db8:122:344::192.0.2.33)"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix+" "+tc.rfcSource, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(up.addr)
			cfg.Prefix = tc.prefix
			cfg.AllowNonGlobalWKP = tc.allowWKP
			s := startServer(t, cfg)
			m := ask(t, s.Addr(), "doc.test.", dns.TypeAAAA, qopt{})
			got := aaaas(m)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("AAAA %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("AAAA %v, want %s", got, tc.want)
			}
			m = ask(t, s.Addr(), mustReverse(t, tc.want), dns.TypePTR, qopt{tcp: true})
			if len(m.Answer) != 2 {
				t.Fatalf("PTR answer %v", m.Answer)
			}
			if c, ok := m.Answer[0].(*dns.CNAME); !ok || c.Target != "33.2.0.192.in-addr.arpa." {
				t.Errorf("PTR: %v, want CNAME to 33.2.0.192.in-addr.arpa.", m.Answer[0])
			}
			if p, ok := m.Answer[1].(*dns.PTR); !ok || p.Ptr != "doc.test." {
				t.Errorf("PTR: %v, want doc.test.", m.Answer[1])
			}
		})
	}
}
