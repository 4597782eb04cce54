package razor

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/internal/testsvc"
)

// Real clients (kdig and dig) over UDP and TCP against razor on loopback.
func TestRealClients(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	addr := s.UDPAddrs()[0]
	eligible := "203.0.113.1 203.0.113.2 203.0.113.3 203.0.113.4 203.0.113.5 203.0.113.6 203.0.113.7 " +
		"198.51.100.1 198.51.100.2 198.51.100.3 198.51.100.4 " +
		"2001:db8:1::1 2001:db8:1::2 2001:db8:1::3 2001:db8:1::4 2001:db8:1::5 2001:db8:1::6 2001:db8:1::7 " +
		"2001:db8:2::1 2001:db8:2::2 2001:db8:2::3 2001:db8:2::4"
	ok := map[string]bool{}
	for _, a := range strings.Fields(eligible) {
		ok[a] = true
	}
	type client struct {
		name string
		args func(tcp bool, qname, qtype string) []string
	}
	clients := []client{
		{"kdig", func(tcp bool, qname, qtype string) []string {
			a := []string{"-p", strconv.Itoa(int(addr.Port())), "@" + addr.Addr().String(), "+short", "+norec", "+cookie", qname, qtype}
			if tcp {
				a = append(a, "+tcp")
			}
			return a
		}},
		{"dig", func(tcp bool, qname, qtype string) []string {
			a := []string{"-p", strconv.Itoa(int(addr.Port())), "@" + addr.Addr().String(), "+short", "+norec", "+cookie", qname, qtype}
			if tcp {
				a = append(a, "+tcp")
			}
			return a
		}},
	}
	for _, c := range clients {
		bin := testsvc.Require(t, c.name)
		for _, tcp := range []bool{false, true} {
			for _, q := range []struct{ name, typ string }{
				{"route.v6pod.test", "A"}, {"route.v6pod.test", "AAAA"}, {"www.customer.test", "AAAA"},
			} {
				seenAll := map[string]bool{}
				for range 5 {
					out, err := exec.Command(bin, c.args(tcp, q.name, q.typ)...).CombinedOutput()
					if err != nil {
						t.Fatalf("%s: %v\n%s", c.name, err, out)
					}
					var addrs []string
					for _, l := range strings.Fields(string(out)) {
						if _, err := netip.ParseAddr(l); err == nil {
							addrs = append(addrs, l)
						}
					}
					seen := map[string]bool{}
					for _, a := range addrs {
						if !ok[a] || seen[a] {
							t.Fatalf("%s tcp=%v %s: %s duplicate or not eligible:\n%s", c.name, tcp, q.name, a, out)
						}
						seen[a], seenAll[a] = true, true
					}
					if len(addrs) != 4 {
						t.Fatalf("%s tcp=%v %s %s: %d addresses, want 4:\n%s", c.name, tcp, q.name, q.typ, len(addrs), out)
					}
				}
				if len(seenAll) < 5 {
					t.Errorf("%s %s: only %d addresses over 5 queries: not random", c.name, q.name, len(seenAll))
				}
			}
		}
	}
	// NXDOMAIN and REFUSED through a real client.
	bin := testsvc.Require(t, "kdig")
	out, _ := exec.Command(bin, "-p", strconv.Itoa(int(addr.Port())), "@"+addr.Addr().String(), "nope.v6pod.test", "A").CombinedOutput()
	if !strings.Contains(string(out), "NXDOMAIN") || !strings.Contains(string(out), "SOA") {
		t.Fatalf("kdig NXDOMAIN:\n%s", out)
	}
	out, _ = exec.Command(bin, "-p", strconv.Itoa(int(addr.Port())), "@"+addr.Addr().String(), "example.com", "A").CombinedOutput()
	if !strings.Contains(string(out), "REFUSED") {
		t.Fatalf("kdig REFUSED:\n%s", out)
	}
}

// IPv6 listener, when the machine has ::1.
func TestIPv6Listener(t *testing.T) {
	t.Parallel()
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	s, _ := testServer(t, "", func(c *Config) { c.Listen = []string{"[::1]:0", "127.0.0.1:0"} })
	bin := testsvc.Require(t, "kdig")
	for _, a := range s.UDPAddrs() {
		for _, proto := range []string{"+notcp", "+tcp"} {
			out, err := exec.Command(bin, "-p", strconv.Itoa(int(a.Port())), "@"+a.Addr().String(), "+short", proto, "route.v6pod.test", "AAAA").CombinedOutput()
			if err != nil || strings.Count(string(out), "2001:db8:") != 4 {
				t.Fatalf("%s %s: %v\n%s", a, proto, err, out)
			}
		}
	}
}

// On a wildcard address razor answers from the address the query went
// to (IP_PKTINFO): a client asking 127.0.0.2 accepts only an answer from
// 127.0.0.2.
func TestWildcardListenerSourceAddress(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "", func(c *Config) { c.Listen = []string{"0.0.0.0:0"} })
	bin := testsvc.Require(t, "kdig")
	port := strconv.Itoa(int(s.UDPAddrs()[0].Port()))
	for _, dst := range []string{"127.0.0.1", "127.0.0.2"} {
		out, err := exec.Command(bin, "-p", port, "@"+dst, "+short", "+notcp", "+timeout=2", "+retry=0", "ns1.v6pod.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "127.0.0.1" {
			t.Fatalf("@%s: %v\n%s", dst, err, out)
		}
	}
}

// A smaller real-socket check of the weighted shares: 500 queries over
// UDP from a real client (miekg/dns), each pool's share of the records
// within 10% of its weight's share (ams 300 : fra 100 in pods.yaml).
func TestRealClientPoolShares(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	addr := s.UDPAddrs()[0].String()
	ams, total := 0, 0
	for range 500 {
		r, _, err := c.Exchange(newQuery("route.v6pod.test", dns.TypeAAAA), addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrsOf(r.Answer) {
			total++
			if strings.HasPrefix(a.String(), "2001:db8:1::") {
				ams++
			}
		}
	}
	// Without replacement, 7 ams and 4 fra addresses, 4 records: the
	// exact expectation is a little under 0.75; allow 10% around 0.75.
	if share := float64(ams) / float64(total); share < 0.675 || share > 0.825 || total != 2000 {
		t.Fatalf("ams share %.3f of %d records, want 0.75 ±10%%", share, total)
	}
}
