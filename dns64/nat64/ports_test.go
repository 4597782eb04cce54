package nat64

import (
	"testing"
)

// RFC 6146 section 3.5.1.1: the mapped port stays in the source port's
// range (0-1023 or 1024-65535) when the pool has such ports, and UDP keeps
// the port's parity (RFC 4787 section 4.2.2).
func TestPortRangeAndParity(t *testing.T) {
	cfg := testConfig()
	cfg.Pool4 = []string{"198.51.100.8 1-65535"}
	cfg.Static = nil
	_, p, _ := newTestTranslator(t, cfg)
	out := make([]byte, 2000)
	for i := 0; i < 200; i++ {
		src := a6("2001:db8::1:0")
		src[14], src[15] = byte(i>>8), byte(i)
		for _, sport := range []uint16{53, 54, 1023, 1024, 40001, 40002, 65535} {
			r := udp6to4(p, out, src, sport, s4, 53)
			if r.Verdict != Forward {
				t.Fatalf("udp from %d: %+v (%s)", sport, r, r.ReasonName())
			}
			_, port := mapped(out)
			if (sport < 1024) != (port < 1024) {
				t.Fatalf("udp port %d mapped to %d: outside its range (RFC 6146 3.5.1.1)", sport, port)
			}
			if sport&1 != port&1 {
				t.Fatalf("udp port %d mapped to %d: parity lost (RFC 4787 4.2.2)", sport, port)
			}
			if r := tcp6to4(p, out, src, sport, s4, 80, tcpSYN); r.Verdict != Forward {
				t.Fatalf("tcp from %d: %+v (%s)", sport, r, r.ReasonName())
			}
			if _, port := mapped(out); (sport < 1024) != (port < 1024) {
				t.Fatalf("tcp port %d mapped to %d: outside its range (RFC 6146 3.5.1.1)", sport, port)
			}
		}
	}
	// Only well-known ports: a port above 1023 still gets one (the range
	// has nothing else); only high ports: a well-known port gets a high one.
	for _, tc := range []struct {
		pool  string
		sport uint16
		lo    uint16
		hi    uint16
	}{{"198.51.100.8 100-199", 40000, 100, 199}, {"198.51.100.8 5000-5009", 53, 5000, 5009}} {
		cfg.Pool4 = []string{tc.pool}
		_, p, _ := newTestTranslator(t, cfg)
		if r := udp6to4(p, out, c6, tc.sport, s4, 53); r.Verdict != Forward {
			t.Fatalf("%s: %+v (%s)", tc.pool, r, r.ReasonName())
		}
		if _, port := mapped(out); port < tc.lo || port > tc.hi || port&1 != tc.sport&1 {
			t.Fatalf("%s: port %d mapped to %d", tc.pool, tc.sport, port)
		}
	}
}
