package razor

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func withEDNS(m *dns.Msg, size uint16, cookie string) *dns.Msg {
	m.SetEdns0(size, false)
	if cookie != "" {
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	}
	return m
}

func TestEDNSAndTruncation(t *testing.T) {
	t.Parallel()
	pods := podsDoc(1, "route.v6pod.test.", 64, "none", "edge-a 100 active 64")
	s, _ := testServer(t, pods)
	// Without EDNS, 512 bytes: 64 AAAA records do not fit (RFC 1035 §4.2.1).
	r := ask(t, s, newQuery("route.v6pod.test", dns.TypeAAAA), false)
	if !r.Truncated || len(r.Answer) != 0 || r.IsEdns0() != nil {
		t.Fatalf("no EDNS: want TC, no records, no OPT:\n%s", r)
	}
	// EDNS 4096: razor caps at its 1232 (RFC 6891 §6.2.5); 64 AAAA ≈ 1.8 kB.
	r = ask(t, s, withEDNS(newQuery("route.v6pod.test", dns.TypeAAAA), 4096, ""), false)
	if !r.Truncated || r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 1232 {
		t.Fatalf("EDNS 4096: want TC and OPT advertising 1232:\n%s", r)
	}
	// 64 A records ≈ 1 kB fit in 1232 but not in 512.
	r = ask(t, s, withEDNS(newQuery("route.v6pod.test", dns.TypeA), 1232, ""), false)
	if r.Truncated || len(r.Answer) != 64 {
		t.Fatalf("EDNS 1232, 64 A: want all:\n%s", r)
	}
	r = ask(t, s, withEDNS(newQuery("route.v6pod.test", dns.TypeA), 512, ""), false)
	if !r.Truncated {
		t.Fatalf("EDNS 512, 64 A: want TC")
	}
	// TCP carries it all (RFC 7766).
	r = ask(t, s, newQuery("route.v6pod.test", dns.TypeAAAA), true)
	if r.Truncated || len(r.Answer) != 64 {
		t.Fatalf("TCP: want 64 records:\n%s", r)
	}
	// EDNS version 1: BADVERS (RFC 6891 §6.1.3).
	m := withEDNS(newQuery("route.v6pod.test", dns.TypeA), 1232, "")
	m.IsEdns0().SetVersion(1)
	if r = ask(t, s, m, false); r.Rcode != dns.RcodeBadVers {
		t.Fatalf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	// DO is copied (RFC 3225 §3).
	m = newQuery("ns1.v6pod.test", dns.TypeA)
	m.SetEdns0(1232, true)
	if r = ask(t, s, m, false); !r.IsEdns0().Do() {
		t.Fatal("DO not copied")
	}
}

func TestCookies(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "", func(c *Config) { c.Cookies.Secret = "000102030405060708090a0b0c0d0e0f" })
	client := "0123456789abcdef"
	// RFC 7873 §5.2.3: a client cookie alone gets a server cookie back.
	r := ask(t, s, withEDNS(newQuery("ns1.v6pod.test", dns.TypeA), 1232, client), false)
	c := cookieOf(r)
	if len(c) != 48 || c[:16] != client {
		t.Fatalf("cookie %q, want the client cookie and a 16-byte server cookie", c)
	}
	if c[16:18] != "01" {
		t.Fatalf("server cookie %s: want RFC 9018 version 1", c[16:])
	}
	// The server cookie razor made is valid (and a valid cookie is exempt
	// from RRL); a forged one is answered with a fresh cookie (§5.2.4).
	b, _ := hex.DecodeString(c[16:])
	if k := s.checkCookie(append(mustHex(client), b...), testClient.Addr()); k != cookieValid {
		t.Fatalf("own cookie: %v, want valid", k)
	}
	if k := s.checkCookie(append(mustHex(client), b...), netip.MustParseAddr("192.0.2.99")); k != cookieInvalid {
		t.Fatalf("cookie from another address: %v, want invalid", k)
	}
	forged := client + "01000000" + "00000000" + "0000000000000000"
	r = ask(t, s, withEDNS(newQuery("ns1.v6pod.test", dns.TypeA), 1232, forged), false)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || cookieOf(r)[16:] == forged[16:] {
		t.Fatalf("forged cookie: want a normal answer with a new cookie:\n%s", r)
	}
	// Malformed lengths are FORMERR (§5.2.2).
	r = ask(t, s, withEDNS(newQuery("ns1.v6pod.test", dns.TypeA), 1232, "0123456789abcdef00"), false)
	if r.Rcode != dns.RcodeFormatError {
		t.Fatalf("9-byte cookie: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	// A cookie-only query (no question) gets NOERROR and a cookie (§5.4).
	m := new(dns.Msg)
	m.Id = 7
	withEDNS(m, 1232, client)
	r = ask(t, s, m, false)
	if r.Rcode != dns.RcodeSuccess || len(cookieOf(r)) != 48 {
		t.Fatalf("cookie-only query:\n%s", r)
	}
	// With an EDNS version razor does not implement, BADVERS comes first
	// (RFC 6891 §6.1.3), also for a cookie-only query.
	m.IsEdns0().SetVersion(1)
	r = ask(t, s, m, false)
	if r.Rcode != dns.RcodeBadVers {
		t.Fatalf("cookie-only query with EDNS version 1: rcode %s, want BADVERS:\n%s", dns.RcodeToString[r.Rcode], r)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func cookieOf(r *dns.Msg) string {
	if o := r.IsEdns0(); o != nil {
		for _, op := range o.Option {
			if c, ok := op.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

func TestMalformedAndOddQueries(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	valid, _ := newQuery("ns1.v6pod.test", dns.TypeA).Pack()
	for _, tc := range []struct {
		name  string
		pkt   []byte
		rcode int // -1: no answer at all
	}{
		{"empty", nil, -1},
		{"short header", valid[:11], -1},
		{"a response is never answered", func() []byte { p := clone(valid); p[2] |= 0x80; return p }(), -1},
		{"truncated question", valid[:len(valid)-2], dns.RcodeFormatError},
		{"two questions", func() []byte { p := clone(valid); p[5] = 2; return p }(), dns.RcodeFormatError},
		{"no question, no cookie", func() []byte { p := clone(valid[:12]); p[5] = 0; return p }(), dns.RcodeFormatError},
		{"label too long for the packet", func() []byte { p := clone(valid); p[12] = 60; return p }(), dns.RcodeFormatError},
		{"compression pointer in the question", func() []byte {
			return append(clone(valid[:12]), 0xC0, 0x0C, 0, 1, 0, 1)
		}(), dns.RcodeFormatError},
		{"additional count past the end", func() []byte { p := clone(valid); p[11] = 3; return p }(), dns.RcodeFormatError},
		{"opcode NOTIFY", func() []byte { p := clone(valid); p[2] |= 4 << 3; return p }(), dns.RcodeNotImplemented},
		{"class CH", func() []byte { p := clone(valid); p[len(p)-1] = 3; return p }(), dns.RcodeRefused},
		{"AXFR over UDP", func() []byte { p := clone(valid); p[len(p)-3] = 252; return p }(), dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := s.Handle(tc.pkt, testClient, false)
			if tc.rcode < 0 {
				if out != nil {
					t.Fatalf("answered %x", out)
				}
				return
			}
			r := new(dns.Msg)
			if err := r.Unpack(out); err != nil {
				t.Fatalf("answer does not unpack: %v", err)
			}
			if r.Rcode != tc.rcode || r.Id != dns.Id() && r.Id != uint16(tc.pkt[0])<<8|uint16(tc.pkt[1]) {
				t.Fatalf("rcode %s id %d, want %s:\n%s", dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[tc.rcode], r)
			}
		})
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestRRL(t *testing.T) {
	t.Parallel()
	zero := 0
	fixed := time.Now()
	s, _ := testServer(t, "", func(c *Config) {
		c.RRL.ResponsesPerSecond = 5
		c.RRL.Slip = &zero
	}, WithClock(func() time.Time { return fixed }))
	sent := 0
	for range 20 {
		if ask(t, s, newQuery("ns1.v6pod.test", dns.TypeA), false) != nil {
			sent++
		}
	}
	if sent != 5 {
		t.Fatalf("%d of 20 answered at 5/s with slip 0, want 5", sent)
	}
	if r := ask(t, s, newQuery("ns1.v6pod.test", dns.TypeA), true); r == nil {
		t.Fatal("TCP is limited")
	}
	if v := counterValue(t, s, "razor_rrl_total"); v != 15 {
		t.Fatalf("razor_rrl_total %v, want 15", v)
	}
}
