package addr

import (
	"net/netip"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{"2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:8080", "2001:db8::1%eth0",
		"::ffff:192.0.2.1", "192.0.2.1:80", "[::1", "[2001:db8::1]:99999", "not-an-ip", " 2001:DB8::1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := Parse(s); err == nil {
			b, err := Parse(a.String())
			if err != nil || b != a {
				t.Fatalf("Parse(%q) = %s does not round-trip: %s, %v", s, a, b, err)
			}
		}
		if ap, err := ParseEndpoint(s); err == nil {
			b, err := ParseEndpoint(ap.String())
			if err != nil || b != ap {
				t.Fatalf("ParseEndpoint(%q) = %s does not round-trip: %s, %v", s, ap, b, err)
			}
		}
	})
}

func FuzzRFC6052(f *testing.F) {
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(32), []byte{192, 0, 2, 33})
	f.Fuzz(func(t *testing.T, pb []byte, bits uint8, v4b []byte) {
		if len(pb) != 16 || len(v4b) != 4 {
			return
		}
		p, err := netip.AddrFrom16([16]byte(pb)).Prefix(int(bits))
		if err != nil || CheckPrefix(p) != nil {
			return
		}
		v4 := netip.AddrFrom4([4]byte(v4b))
		a, err := Embed(p, v4)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Extract(p, a)
		if err != nil || back != v4 {
			t.Fatalf("Extract(Embed(%s, %s) = %s) = %s, %v", p, v4, a, back, err)
		}
	})
}
