package dns64

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// needBinary skips without the binary, unless V6POD_REQUIRE_SERVICES=1.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("V6POD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s not installed (V6POD_REQUIRE_SERVICES=1)", name)
		}
		t.Skipf("%s not installed (Debian knot-dnsutils / bind9-dnsutils)", name)
	}
	return p
}

func runLines(t *testing.T, bin string, args ...string) []string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			lines = append(lines, l)
		}
	}
	return lines
}

// Real clients, kdig (Knot) and dig (BIND), over UDP and TCP.
func TestRealClients(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	host, port, _ := net.SplitHostPort(s.Addr())

	for _, c := range []struct{ bin, server, portFlag string }{
		{"kdig", "@" + host, "-p"},
		{"dig", "@" + host, "-p"},
	} {
		t.Run(c.bin, func(t *testing.T) {
			bin := needBinary(t, c.bin)
			for _, tr := range []string{"+notcp", "+tcp"} {
				got := runLines(t, bin, c.server, c.portFlag, port, tr, "+short", "+timeout=5", "AAAA", "v4only.test.")
				if !slices.Equal(got, []string{"64:ff9b::102:304"}) {
					t.Errorf("%s AAAA v4only.test: %q", tr, got)
				}
				got = runLines(t, bin, c.server, c.portFlag, port, tr, "+short", "+timeout=5", "AAAA", "cname.test.")
				if !slices.Equal(got, []string{"alias.test.", "v4only.test.", "64:ff9b::102:304"}) {
					t.Errorf("%s AAAA cname.test: %q", tr, got)
				}
				got = runLines(t, bin, c.server, c.portFlag, port, tr, "+short", "+timeout=5", "-x", "64:ff9b::102:304")
				if !slices.Equal(got, []string{"4.3.2.1.in-addr.arpa.", "v4only.test."}) {
					t.Errorf("%s -x 64:ff9b::102:304: %q", tr, got)
				}
				got = runLines(t, bin, c.server, c.portFlag, port, tr, "+short", "+timeout=5", "AAAA", "dual.test.")
				if !slices.Equal(got, []string{"2001:db8::5"}) {
					t.Errorf("%s AAAA dual.test: %q", tr, got)
				}
			}
			// Without EDNS the 60-record answer does not fit in 512 bytes:
			// the client sees TC and retries over TCP by itself.
			got := runLines(t, bin, c.server, c.portFlag, port, "+noedns", "+short", "+timeout=5", "AAAA", "big.test.")
			if len(got) != 60 {
				t.Errorf("big.test over UDP then TCP: %d lines", len(got))
			}
			out, _ := exec.Command(bin, c.server, c.portFlag, port, "+timeout=5", "AAAA", "nx.test.").CombinedOutput()
			if !strings.Contains(string(out), "NXDOMAIN") {
				t.Errorf("nx.test: %s", out)
			}
		})
	}
}

// Malformed and unusual queries get the right error, or silence, and the
// server keeps answering.
func TestMalformedQueries(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(b []byte, wait time.Duration) *dns.Msg {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("unparsable answer: %v", err)
		}
		return m
	}
	good := new(dns.Msg)
	good.SetQuestion("v4only.test.", dns.TypeAAAA)
	wire, _ := good.Pack()

	noQuestion := slices.Clone(wire[:12])
	noQuestion[5] = 0
	twoQuestions := slices.Clone(wire)
	twoQuestions[5] = 2
	update := slices.Clone(wire)
	update[2] |= dns.OpcodeUpdate << 3
	cut := slices.Clone(wire[:len(wire)-3])
	badLabel := slices.Clone(wire)
	badLabel[12] = 0x50 // label length with reserved bits
	response := slices.Clone(wire)
	response[2] |= 0x80
	v1 := good.Copy()
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	v1wire, _ := v1.Pack()
	axfr := good.Copy()
	axfr.Question[0].Qtype = dns.TypeAXFR
	axfrWire, _ := axfr.Pack()

	for _, tc := range []struct {
		name  string
		b     []byte
		rcode int // -1: no answer
	}{
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"UPDATE opcode", update, dns.RcodeNotImplemented},
		{"cut short", cut, dns.RcodeFormatError},
		{"bad label", badLabel, dns.RcodeFormatError},
		{"a response", response, -1},
		{"5 bytes", []byte{1, 2, 3, 4, 5}, -1},
		{"EDNS version 1 (RFC 6891 6.1.3)", v1wire, dns.RcodeBadVers},
		{"AXFR over UDP", axfrWire, dns.RcodeRefused},
	} {
		wait := 5 * time.Second
		if tc.rcode < 0 {
			wait = 300 * time.Millisecond
		}
		m := exchange(tc.b, wait)
		switch {
		case tc.rcode < 0 && m != nil:
			t.Errorf("%s: answered %v", tc.name, m)
		case tc.rcode >= 0 && m == nil:
			t.Errorf("%s: no answer", tc.name)
		case tc.rcode >= 0 && m.Rcode != tc.rcode:
			t.Errorf("%s: rcode %s, want %s", tc.name, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
	if m := exchange(wire, 5*time.Second); m == nil || len(aaaas(m)) != 1 {
		t.Fatalf("server not answering after malformed queries: %v", m)
	}
}

// Client EDNS options are not forwarded: answers are cached and shared by
// every client, so a client's subnet (ECS, RFC 7871) must not shape them,
// nor reach the upstream; and options the upstream sends (ECS, NSID) are
// for our hop and never reach the client.
func TestEDNSOptionsNotForwarded(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: net.ParseIP("2001:db8:1:2::")}
	for _, tcp := range []bool{false, true} {
		for _, qt := range []uint16{dns.TypeAAAA, dns.TypeA, dns.TypeTXT} {
			m := ask(t, s.Addr(), "v4only.test.", qt, qopt{tcp: tcp, opts: []dns.EDNS0{ecs, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}}})
			if m.Rcode != dns.RcodeSuccess {
				t.Fatalf("%s: %v", dns.TypeToString[qt], m)
			}
			if opt := m.IsEdns0(); opt == nil || len(opt.Option) != 0 {
				t.Errorf("%s tcp=%v: OPT %v, want one without options", dns.TypeToString[qt], tcp, opt)
			}
		}
	}
	if n := up.options.Load(); n != 0 {
		t.Errorf("upstream got %d queries with EDNS options", n)
	}
}

// Extended DNS Errors (RFC 8914) of the upstream's answer reach EDNS
// clients with it, from the cache too; other upstream options do not.
func TestExtendedDNSErrorsPassed(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, testConfig(up.addr))
	for _, o := range []qopt{{}, {}, {tcp: true}, {do: true}} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeTXT} {
			m := ask(t, s.Addr(), "bogus.test.", qt, o)
			opt := m.IsEdns0()
			if m.Rcode != dns.RcodeServerFailure || opt == nil || len(opt.Option) != 1 {
				t.Fatalf("%s %+v: %v", dns.TypeToString[qt], o, m)
			}
			if e, ok := opt.Option[0].(*dns.EDNS0_EDE); !ok || e.InfoCode != dns.ExtendedErrorCodeDNSBogus || e.ExtraText != "signature expired" {
				t.Errorf("%s %+v: option %v", dns.TypeToString[qt], o, opt.Option[0])
			}
		}
	}
	if m := ask(t, s.Addr(), "bogus.test.", dns.TypeA, qopt{noEDNS: true}); m.Rcode != dns.RcodeServerFailure || m.IsEdns0() != nil {
		t.Errorf("no EDNS: %v", m)
	}
}

// tcp_max_connections bounds the open TCP connections: beyond it a new
// connection is not served until another one closes.
func TestTCPMaxConnections(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := testConfig(up.addr)
	cfg.TCPMaxConns = 1
	s := startServer(t, cfg)
	q := new(dns.Msg)
	q.SetQuestion("v4only.test.", dns.TypeAAAA)
	c1, err := dns.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := c1.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	c2, err := dns.Dial("tcp", s.Addr()) // accepted by the kernel, not by us
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, err := c2.ReadMsg(); err == nil {
		t.Fatalf("second connection served beyond the limit: %v", m)
	}
	c1.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if m, err := c2.ReadMsg(); err != nil || len(aaaas(m)) != 1 {
		t.Fatalf("second connection after the first closed: %v %v", m, err)
	}
}
