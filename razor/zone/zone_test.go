package zone

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const testZone = `$ORIGIN example.test.
$TTL 600
@        IN SOA ns.example.test. h.example.test. 1 2 3 4 60
@        IN NS  ns.example.test.
ns       IN A   192.0.2.1
a.b.c    IN TXT "deep"
*.w      IN A   192.0.2.9
cut      IN NS  ns.cut.example.test.
ns.cut   IN A   192.0.2.53
x        IN CNAME y.example.test.
dup      IN A   192.0.2.2
dup      IN A   192.0.2.2
ttl      100 IN A 192.0.2.3
ttl      200 IN A 192.0.2.4
`

func mustKey(t *testing.T, n string) string {
	t.Helper()
	k, err := Key(n)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeys(t *testing.T) {
	k := mustKey(t, "WWW.Example.TEST")
	if k != "\x03www\x07example\x04test\x00" {
		t.Fatalf("key %q", k)
	}
	if Parent(k) != mustKey(t, "example.test.") || Parent("\x00") != "\x00" {
		t.Fatal("Parent")
	}
	if !IsBelow(k, mustKey(t, "test.")) || IsBelow(mustKey(t, "test."), k) || !IsBelow(k, "\x00") {
		t.Fatal("IsBelow")
	}
	if Name(k) != "www.example.test." {
		t.Fatalf("Name %q", Name(k))
	}
}

func TestLookupKinds(t *testing.T) {
	z, err := Parse("example.test.", strings.NewReader(testZone), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		kind  Kind
		wild  bool
	}{
		{"ns.example.test.", dns.TypeA, Answer, false},
		{"ns.example.test.", dns.TypeMX, NoData, false},
		{"b.c.example.test.", dns.TypeA, NoData, false}, // empty non-terminal
		{"nope.example.test.", dns.TypeA, NXDomain, false},
		{"q.w.example.test.", dns.TypeA, Answer, true},
		{"q.r.w.example.test.", dns.TypeA, Answer, true},
		{"w.example.test.", dns.TypeA, NoData, false},
		{"cut.example.test.", dns.TypeA, Delegation, false},
		{"cut.example.test.", dns.TypeDS, NoData, false},
		{"deep.ns.cut.example.test.", dns.TypeA, Delegation, false},
		{"x.example.test.", dns.TypeA, CNAME, false},
		{"x.example.test.", dns.TypeCNAME, Answer, false},
	} {
		res := z.Lookup(mustKey(t, tc.name), tc.qtype)
		if res.Kind != tc.kind || res.Wildcard != tc.wild {
			t.Errorf("%s %s: kind %d wild %v, want %d %v", tc.name, dns.TypeToString[tc.qtype], res.Kind, res.Wildcard, tc.kind, tc.wild)
		}
	}
	if s := z.Nodes[mustKey(t, "dup.example.test.")].Set(dns.TypeA); len(s.Tails) != 1 {
		t.Errorf("duplicate records kept: %d", len(s.Tails))
	}
	if s := z.Nodes[mustKey(t, "ttl.example.test.")].Set(dns.TypeA); s.TTL != 100 {
		t.Errorf("RRset TTL %d, want the smallest, 100 (RFC 2181 §5.2)", s.TTL)
	}
	if r := z.Nodes[mustKey(t, "cut.example.test.")].Referral; r.NSCount != 1 || r.GlueCount != 1 {
		t.Errorf("referral %+v", r)
	}
	// The negative SOA's TTL is min(SOA TTL 600, MINIMUM 60) (RFC 2308 §3).
	var m dns.Msg
	rr, _, err := dns.UnpackRR(z.NegSOA, 0)
	if err != nil || rr.Header().Ttl != 60 {
		t.Fatalf("negative SOA %v %v", rr, err)
	}
	_ = m
}
