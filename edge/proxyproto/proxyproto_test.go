package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

func TestAppendParseTCP6(t *testing.T) {
	src := netip.MustParseAddrPort("[2001:db8::1]:51234")
	dst := netip.MustParseAddrPort("[2001:db8:1::1]:443")
	b, err := Append(nil, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 16+36 {
		t.Fatalf("len %d, want 52", len(b))
	}
	h, n, err := Parse(append(b, "GET / HTTP/1.1\r\n"...))
	if err != nil || n != 52 || h.Source != src || h.Dst != dst || h.Local {
		t.Fatalf("Parse = %+v, %d, %v", h, n, err)
	}
}

// The spec's section 2.2 layout for TCP over IPv4, checked byte for byte.
func TestAppendTCP4Bytes(t *testing.T) {
	b, err := Append(nil, netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("[::ffff:198.51.100.2]:80"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("0d0a0d0a000d0a515549540a" + "2111000c" + "c0000201" + "c6336402" + "03e8" + "0050")
	if !bytes.Equal(b, want) {
		t.Fatalf("got  %x\nwant %x", b, want)
	}
}

func TestParseShortAndBad(t *testing.T) {
	b, _ := Append(nil, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::1]:2"))
	for i := 0; i < len(b); i++ {
		if _, _, err := Parse(b[:i]); !errors.Is(err, ErrShort) {
			t.Fatalf("Parse(%d bytes) = %v, want ErrShort", i, err)
		}
	}
	if _, _, err := Parse([]byte("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrSignature) {
		t.Fatalf("HTTP request: %v", err)
	}
	local := append(Signature[:], 0x20, 0x00, 0, 0)
	h, n, err := Parse(local)
	if err != nil || !h.Local || n != 16 {
		t.Fatalf("LOCAL: %+v %d %v", h, n, err)
	}
}

func FuzzParse(f *testing.F) {
	b6, _ := Append(nil, netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2"))
	b4, _ := Append(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	f.Add(b6)
	f.Add(b4)
	f.Add(append(Signature[:], 0x20, 0x00, 0, 0))
	f.Add([]byte("PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			return
		}
		if n < 16 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if h.Local || !h.Source.IsValid() {
			return
		}
		// What parses re-encodes to an equivalent header.
		re, err := Append(nil, h.Source, h.Dst)
		if err != nil {
			t.Fatal(err)
		}
		h2, _, err := Parse(re)
		if err != nil || h2.Source.Addr().Unmap() != h.Source.Addr().Unmap() || h2.Dst.Port() != h.Dst.Port() {
			t.Fatalf("round trip %+v -> %+v (%v)", h, h2, err)
		}
	})
}
