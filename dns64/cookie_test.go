package dns64

import (
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/internal/siphash"
)

// RFC 9018 appendix A.1: the server cookie of the example.
func TestServerCookieRFC9018Vectors(t *testing.T) {
	key, _ := hex.DecodeString("e5e973e5a6b2a43f48e7dc849e37bfcf")
	var sec cookieSecret
	for i := range 8 {
		sec.k0 |= uint64(key[i]) << (8 * i)
		sec.k1 |= uint64(key[8+i]) << (8 * i)
	}
	for _, tc := range []struct {
		client, ip string
		ts         int64
		want       string
	}{
		{"2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"},
	} {
		client, _ := hex.DecodeString(tc.client)
		opt := sec.appendCookieOpt(nil, client, netip.MustParseAddr(tc.ip), time.Unix(tc.ts, 0))
		if got := hex.EncodeToString(opt[4+8:]); got != tc.want {
			t.Errorf("%s %s: server cookie %s, want %s", tc.client, tc.ip, got, tc.want)
		}
	}
}

func cookieOf(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

// A client that sends a DNS cookie gets it back with a server cookie, on
// every path (cache miss, UDP cache hit, TCP, truncated, errors); a stale
// server cookie is replaced; a COOKIE of a bad length is FORMERR (RFC 7873
// section 5.2); cookies never reach the upstream.
func TestDNSCookies(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	const client = "0102030405060708"
	check := func(what string, m *dns.Msg) {
		t.Helper()
		c := cookieOf(m)
		if len(c) != 2*(8+16) || !strings.HasPrefix(c, client+"01000000") {
			t.Errorf("%s: cookie %q, want %s + a 16-byte version-1 server cookie (rcode %s)", what, c, client, dns.RcodeToString[m.Rcode])
		}
	}
	ck := func(hexs string) qopt {
		return qopt{opts: []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hexs}}}
	}
	check("miss", ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, ck(client)))
	m := ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, ck(client))
	check("hit", m)
	if len(aaaas(m)) != 1 {
		t.Errorf("hit: %v", m)
	}
	check("stale server cookie", ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, ck(client+"01000000aabbccdd0011223344556677")))
	o := ck(client)
	o.tcp = true
	check("tcp", ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, o))
	o = ck(client)
	o.size = 512
	m = ask(t, s.Addr(), "big.test.", dns.TypeAAAA, o)
	check("truncated", m)
	if !m.Truncated {
		t.Error("big answer not truncated at 512")
	}
	check("NXDOMAIN", ask(t, s.Addr(), "nxdomain.test.", dns.TypeAAAA, ck(client)))
	check("REFUSED", ask(t, s.Addr(), "test.", dns.TypeAXFR, ck(client)))
	if n := up.options.Load(); n != 0 {
		t.Errorf("upstream got %d queries with EDNS options", n)
	}
	for _, bad := range []string{"01020304", client + "0102", client + strings.Repeat("00", 33)} {
		m := ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, ck(bad))
		if m.Rcode != dns.RcodeFormatError || m.IsEdns0() == nil {
			t.Errorf("COOKIE %s: rcode %s, want FORMERR with OPT", bad, dns.RcodeToString[m.Rcode])
		}
	}
	// Without a COOKIE option, none in the answer.
	if c := cookieOf(ask(t, s.Addr(), "v4only.test.", dns.TypeAAAA, qopt{})); c != "" {
		t.Errorf("unasked cookie %s", c)
	}

	// Real clients: kdig and dig send cookies and check the echo.
	for _, tool := range [][]string{{"kdig", "+cookie"}, {"dig", "+cookie"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			continue
		}
		host, port, _ := strings.Cut(s.Addr(), ":")
		out, err := exec.Command(tool[0], "@"+host, "-p", port, tool[1], "v4only.test.", "AAAA").CombinedOutput()
		if err != nil || !strings.Contains(strings.ToLower(string(out)), "cookie") || strings.Contains(strings.ToLower(string(out)), "bad") {
			t.Errorf("%s: %v\n%s", tool[0], err, out)
		}
	}
}

// The SipHash-2-4 paper's test vectors (64-bit output, key 00..0f,
// messages 00, 00 01, ...).
func TestSipHash24(t *testing.T) {
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	msg := make([]byte, 16)
	for i := range msg {
		msg[i] = byte(i)
	}
	for n, want := range map[int]uint64{0: 0x726fdb47dd0e0e31, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5} {
		if got := siphash.Sum64(siphash.Key{K0: k0, K1: k1}, msg[:n]); got != want {
			t.Errorf("%d bytes: %016x, want %016x", n, got, want)
		}
	}
}
