// Package proxyproto encodes and parses PROXY protocol version 2 headers
// (haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2) for TCP
// over IPv4 and IPv6, so upstreams learn the client's address.
package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Signature is the 12-byte magic that starts every v2 header.
var Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Header layout offsets and values.
const (
	offVerCmd  = 12
	offFamily  = 13
	offLen     = 14
	fixedLen   = 16
	verCmdProx = 0x21 // version 2, PROXY
	verCmdLoc  = 0x20 // version 2, LOCAL
	famTCP4    = 0x11
	famTCP6    = 0x21
	addrLen4   = 12
	addrLen6   = 36
	// MaxLen bounds what Parse accepts (address block plus TLVs).
	MaxLen = fixedLen + 65535
)

// Header is a parsed v2 header.
type Header struct {
	// Local is true for the LOCAL command (health checks from the proxy
	// itself): the addresses are then meaningless.
	Local       bool
	Source, Dst netip.AddrPort
}

// Append encodes a PROXY TCP header for src → dst. Both addresses must be
// of the same family after unmapping; mixed families are sent as IPv6
// (IPv4 mapped), as the specification allows.
func Append(b []byte, src, dst netip.AddrPort) ([]byte, error) {
	if !src.IsValid() || !dst.IsValid() {
		return b, errors.New("proxyproto: invalid address")
	}
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	b = append(b, Signature[:]...)
	if sa.Is4() && da.Is4() {
		b = append(b, verCmdProx, famTCP4, 0, addrLen4)
		s4, d4 := sa.As4(), da.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, verCmdProx, famTCP6, 0, addrLen6)
		s6, d6 := sa.As16(), da.As16()
		b = append(b, s6[:]...)
		b = append(b, d6[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return b, nil
}

// Errors of Parse.
var (
	ErrShort     = errors.New("proxyproto: header incomplete")
	ErrSignature = errors.New("proxyproto: not a PROXY v2 header")
)

// Parse decodes a header at the start of b and returns it with its length.
// ErrShort means more bytes are needed. TLVs are skipped; unsupported
// families (UDP, UNIX, UNSPEC) parse with zero addresses.
func Parse(b []byte) (Header, int, error) {
	if len(b) < fixedLen {
		if len(b) > 0 && !prefixOfSignature(b) {
			return Header{}, 0, ErrSignature
		}
		return Header{}, 0, ErrShort
	}
	if [12]byte(b[:12]) != Signature {
		return Header{}, 0, ErrSignature
	}
	var h Header
	switch b[offVerCmd] {
	case verCmdProx:
	case verCmdLoc:
		h.Local = true
	default:
		return Header{}, 0, fmt.Errorf("proxyproto: version/command 0x%02x not supported", b[offVerCmd])
	}
	n := int(binary.BigEndian.Uint16(b[offLen:]))
	if len(b) < fixedLen+n {
		return Header{}, 0, ErrShort
	}
	body := b[fixedLen : fixedLen+n]
	if h.Local {
		return h, fixedLen + n, nil
	}
	switch b[offFamily] {
	case famTCP4:
		if n < addrLen4 {
			return Header{}, 0, fmt.Errorf("proxyproto: TCP4 address block of %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case famTCP6:
		if n < addrLen6 {
			return Header{}, 0, fmt.Errorf("proxyproto: TCP6 address block of %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
	}
	return h, fixedLen + n, nil
}

func prefixOfSignature(b []byte) bool {
	for i := 0; i < len(b) && i < len(Signature); i++ {
		if b[i] != Signature[i] {
			return false
		}
	}
	return true
}
