package addr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"2001:db8::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1%eth0", "2001:db8::1"},
		{"[fe80::1%eth0]", "fe80::1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"::FFFF:C000:0201", "192.0.2.1"},
		{"2001:DB8::ABCD", "2001:db8::abcd"},
		{"  192.0.2.1\t", "192.0.2.1"},
		{" [2001:db8:0:0:0:0:0:1] ", "2001:db8::1"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseKeep(t *testing.T) {
	a, err := ParseWith("::ffff:192.0.2.1", Options{KeepMapped: true})
	if err != nil || a.String() != "::ffff:192.0.2.1" {
		t.Errorf("KeepMapped: got %v, %v", a, err)
	}
	a, err = ParseWith("fe80::1%eth0", Options{KeepZone: true})
	if err != nil || a.Zone() != "eth0" {
		t.Errorf("KeepZone: got %v, %v", a, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"not-an-ip", "not an IPv4 or IPv6 address"},
		{"[::1", "unclosed"},
		{"[192.0.2.1]", "brackets are for IPv6"},
		{"192.0.2.1:80", "has a port"},
		{"[2001:db8::1]:8080", "has a port"},
		{"2001:db8::g", "not an IPv4 or IPv6 address"},
		{"256.0.0.1", "not an IPv4 or IPv6 address"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q): no error", tt.in)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
			t.Errorf("Parse(%q) error %q: want it to quote the input and say %q", tt.in, err, tt.want)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct{ in, want string }{
		{"[2001:db8::1]:8080", "[2001:db8::1]:8080"},
		{"192.0.2.1:80", "192.0.2.1:80"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
		{" [2001:DB8::1%eth0]:443 ", "[2001:db8::1]:443"},
		{"[2001:db8::1]:65535", "[2001:db8::1]:65535"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if err != nil {
			t.Errorf("ParseEndpoint(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("ParseEndpoint(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseEndpointErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"[::1", "unclosed"},
		{"[2001:db8::1]:99999", "out of range"},
		{"[2001:db8::1]:0", "out of range"},
		{"[2001:db8::1]", "missing port"},
		{"[2001:db8::1]x80", "junk"},
		{"[2001:db8::1]:http", "not a number"},
		{"2001:db8::1:80", "needs brackets"},
		{"192.0.2.1", "missing port"},
		{"not-an-ip:80", "not an IPv4 or IPv6"},
	}
	for _, tt := range tests {
		_, err := ParseEndpoint(tt.in)
		if err == nil {
			t.Errorf("ParseEndpoint(%q): no error", tt.in)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
			t.Errorf("ParseEndpoint(%q) error %q: want it to quote the input and say %q", tt.in, err, tt.want)
		}
	}
}

// RFC 6052 section 2.4: 192.0.2.33 embedded in each allowed prefix length.
var rfc6052Examples = []struct{ prefix, v6 string }{
	{"2001:db8::/32", "2001:db8:c000:221::"},
	{"2001:db8:100::/40", "2001:db8:1c0:2:21::"},
	{"2001:db8:122::/48", "2001:db8:122:c000:2:2100::"},
	{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"},
	{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"},
	{"2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"},
	{"64:ff9b::/96", "64:ff9b::192.0.2.33"},
}

func TestRFC6052Section24(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.33")
	for _, tt := range rfc6052Examples {
		p := netip.MustParsePrefix(tt.prefix)
		want := netip.MustParseAddr(tt.v6)
		got, err := Embed(p, v4)
		if err != nil || got != want {
			t.Errorf("Embed(%s, %s) = %s, %v; want %s", p, v4, got, err, want)
		}
		back, err := Extract(p, want)
		if err != nil || back != v4 {
			t.Errorf("Extract(%s, %s) = %s, %v; want %s", p, want, back, err, v4)
		}
		n, err := NewNAT64Prefix(p)
		if err != nil {
			t.Fatal(err)
		}
		if b := n.Embed(v4.As4()); netip.AddrFrom16(b) != want {
			t.Errorf("NAT64Prefix(%s).Embed = %s, want %s", p, netip.AddrFrom16(b), want)
		}
		if b, ok := n.Extract(want.As16()); !ok || netip.AddrFrom4(b) != v4 {
			t.Errorf("NAT64Prefix(%s).Extract = %v %v", p, b, ok)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	bad := map[string]string{
		"2001:db8::/33":         "length must be",
		"2001:db8::1/96":        "bits set beyond",
		"192.0.2.0/24":          "not an IPv6",
		"2001:db8:0:0:100::/96": "bits 64-71 must be zero",
	}
	for s, want := range bad {
		err := CheckPrefix(netip.MustParsePrefix(s))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPrefix(%s) = %v, want %q", s, err, want)
		}
	}
}

func TestExtractRejects(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8:122::/48")
	if _, err := Extract(p, netip.MustParseAddr("2001:db9::1")); err == nil {
		t.Error("address outside the prefix: no error")
	}
	if _, err := Extract(p, netip.MustParseAddr("2001:db8:122:c000:2:2100:ff00::")); err != nil {
		t.Errorf("suffix bits are ignored on extraction (RFC 6052 section 2.2): %v", err)
	}
	if _, err := Extract(p, netip.MustParseAddr("2001:db8:122:c000:ff02:2100::")); err == nil {
		t.Error("u octet set: no error")
	}
}

func TestNAT64PrefixZeroAlloc(t *testing.T) {
	n, _ := NewNAT64Prefix(netip.MustParsePrefix("2001:db8:122::/48"))
	v4 := [4]byte{192, 0, 2, 33}
	allocs := testing.AllocsPerRun(100, func() {
		b := n.Embed(v4)
		n.Extract(b)
	})
	if allocs != 0 {
		t.Errorf("Embed+Extract allocate %v times, want 0", allocs)
	}
}
