package addr

import (
	"fmt"
	"net/netip"
)

// WellKnownPrefix is the NAT64 well-known prefix of RFC 6052 section 2.1.
var WellKnownPrefix = netip.MustParsePrefix("64:ff9b::/96")

// CheckPrefix reports whether p is usable for RFC 6052 embedding: IPv6, a
// length of 32, 40, 48, 56, 64 or 96, no host bits set, and bits 64-71 (the
// "u" octet, section 2.2) zero.
func CheckPrefix(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() && p.Bits() < 96 {
		return fmt.Errorf("prefix %s: not an IPv6 prefix", p)
	}
	switch p.Bits() {
	case 32, 40, 48, 56, 64, 96:
	default:
		return fmt.Errorf("prefix %s: length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 section 2.2)", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("prefix %s: has bits set beyond /%d", p, p.Bits())
	}
	if b := p.Addr().As16(); b[8] != 0 {
		return fmt.Errorf("prefix %s: bits 64-71 must be zero (RFC 6052 section 2.2)", p)
	}
	return nil
}

// Embed places v4 in prefix p as RFC 6052 section 2.2 lays it out, skipping
// the u octet (bits 64-71). p must pass CheckPrefix.
func Embed(p netip.Prefix, v4 netip.Addr) (netip.Addr, error) {
	if err := CheckPrefix(p); err != nil {
		return netip.Addr{}, err
	}
	v4 = v4.Unmap()
	if !v4.Is4() {
		return netip.Addr{}, fmt.Errorf("embed %s in %s: not an IPv4 address", v4, p)
	}
	return embed(p, v4.As4()), nil
}

func embed(p netip.Prefix, v4 [4]byte) netip.Addr {
	b := p.Addr().As16()
	pos := p.Bits() / 8
	for _, x := range v4 {
		if pos == 8 {
			pos++ // the u octet stays zero
		}
		b[pos] = x
		pos++
	}
	return netip.AddrFrom16(b)
}

// Extract returns the IPv4 address embedded in a, an address inside prefix
// p (RFC 6052 section 2.3). It fails when a is not in p or the u octet is
// not zero.
func Extract(p netip.Prefix, a netip.Addr) (netip.Addr, error) {
	if err := CheckPrefix(p); err != nil {
		return netip.Addr{}, err
	}
	if !p.Contains(a.WithZone("")) {
		return netip.Addr{}, fmt.Errorf("extract from %s: not inside %s", a, p)
	}
	b := a.As16()
	if p.Bits() < 96 && b[8] != 0 {
		return netip.Addr{}, fmt.Errorf("extract from %s: bits 64-71 are not zero (RFC 6052 section 2.2)", a)
	}
	var v4 [4]byte
	pos := p.Bits() / 8
	for i := range v4 {
		if pos == 8 {
			pos++
		}
		v4[i] = b[pos]
		pos++
	}
	return netip.AddrFrom4(v4), nil
}

// NAT64Prefix is a checked RFC 6052 prefix with allocation-free Embed and
// Extract on raw bytes, for translators' hot paths.
type NAT64Prefix struct {
	p    netip.Prefix
	base [16]byte
	n    int // prefix length in bytes
}

// NewNAT64Prefix checks p with CheckPrefix.
func NewNAT64Prefix(p netip.Prefix) (NAT64Prefix, error) {
	if err := CheckPrefix(p); err != nil {
		return NAT64Prefix{}, err
	}
	return NAT64Prefix{p: p, base: p.Addr().As16(), n: p.Bits() / 8}, nil
}

// Prefix returns the prefix.
func (n NAT64Prefix) Prefix() netip.Prefix { return n.p }

// Embed returns the IPv6 address for v4.
func (n NAT64Prefix) Embed(v4 [4]byte) [16]byte {
	b := n.base
	pos := n.n
	for _, x := range v4 {
		if pos == 8 {
			pos++
		}
		b[pos] = x
		pos++
	}
	return b
}

// Extract returns the IPv4 address inside a, and false when a is not inside
// the prefix or its u octet is set.
func (n NAT64Prefix) Extract(a [16]byte) ([4]byte, bool) {
	var v4 [4]byte
	for i := 0; i < n.n; i++ {
		if a[i] != n.base[i] {
			return v4, false
		}
	}
	if n.n < 12 && a[8] != 0 {
		return v4, false
	}
	pos := n.n
	for i := range v4 {
		if pos == 8 {
			pos++
		}
		v4[i] = a[pos]
		pos++
	}
	return v4, true
}
