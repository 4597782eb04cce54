package dns64

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/internal/siphash"
)

// DNS Cookies (RFC 7873) between clients and dns64. A client that sends a
// COOKIE option gets its client cookie back with a server cookie in the
// layout of RFC 9018 (version 1, timestamp, SipHash-2-4 of the client
// cookie, version, timestamp and client address under a secret made at
// start). dns64 never requires a valid server cookie (it grants nothing
// on one), so a stale or foreign server cookie is simply replaced by a
// fresh one (RFC 7873 section 5.2.3). A COOKIE option of an impossible
// length is answered with FORMERR (section 5.2.2). Cookies are not sent to
// the upstreams.

const (
	cookieCode      = 10 // EDNS0 option code
	clientCookieLen = 8
	serverCookieLen = 16 // RFC 9018
	// cookieOptLen is the whole option in a response: code, length,
	// client cookie, server cookie.
	cookieOptLen = 4 + clientCookieLen + serverCookieLen
)

// cookieSecret is the SipHash key.
type cookieSecret struct{ k0, k1 uint64 }

func newCookieSecret() cookieSecret {
	var b [16]byte
	rand.Read(b[:])
	return cookieSecret{binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])}
}

// findCookie looks for a COOKIE option in OPT RDATA. It returns the client
// cookie (nil when there is no COOKIE option) and false when the options
// are malformed or the COOKIE option has an impossible length: 8 bytes of
// client cookie and, when present, 8 to 32 bytes of server cookie.
func findCookie(rdata []byte) (client []byte, ok bool) {
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return nil, false
		}
		code := binary.BigEndian.Uint16(rdata)
		n := int(binary.BigEndian.Uint16(rdata[2:]))
		if 4+n > len(rdata) {
			return nil, false
		}
		if code == cookieCode {
			if client != nil || !(n == clientCookieLen || n >= clientCookieLen+8 && n <= clientCookieLen+32) {
				return nil, false
			}
			client = rdata[4 : 4+clientCookieLen]
		}
		rdata = rdata[4+n:]
	}
	return client, true
}

// appendCookieOpt appends the COOKIE option of a response to dst: the
// client cookie and a fresh server cookie for this client.
func (c cookieSecret) appendCookieOpt(dst, client []byte, from netip.Addr, now time.Time) []byte {
	dst = append(dst, 0, cookieCode, 0, clientCookieLen+serverCookieLen)
	dst = append(dst, client[:clientCookieLen]...)
	// RFC 9018 section 4.4: the hash input is client cookie | version |
	// reserved | timestamp | client IP.
	var in [8 + 8 + 16]byte
	copy(in[:], client[:clientCookieLen])
	in[8] = 1
	binary.BigEndian.PutUint32(in[12:], uint32(now.Unix()))
	n := 16
	if from.Is4() || from.Is4In6() {
		a := from.Unmap().As4()
		n += copy(in[16:], a[:])
	} else {
		a := from.As16()
		n += copy(in[16:], a[:])
	}
	dst = append(dst, in[8:16]...)
	return binary.LittleEndian.AppendUint64(dst, siphash.Sum64(siphash.Key{K0: c.k0, K1: c.k1}, in[:n])) // the reference code's byte order
}

// clientCookie is findCookie for a parsed OPT record.
func clientCookie(opt *dns.OPT) (client []byte, ok bool) {
	if opt == nil {
		return nil, true
	}
	for _, o := range opt.Option {
		c, isCookie := o.(*dns.EDNS0_COOKIE)
		if !isCookie {
			continue
		}
		b, err := hex.DecodeString(c.Cookie)
		n := len(b)
		if err != nil || client != nil || !(n == clientCookieLen || n >= clientCookieLen+8 && n <= clientCookieLen+32) {
			return nil, false
		}
		client = b[:clientCookieLen]
	}
	return client, true
}

// remoteIP is the client's address as a ResponseWriter knows it.
func remoteIP(w dns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr()
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	}
	return netip.Addr{}
}

// withCookie appends a COOKIE option to the OPT record that ends msg (a
// packed response whose last record, at optOff, is the OPT).
func (c cookieSecret) withCookie(msg []byte, optOff int, client []byte, from netip.Addr, now time.Time) []byte {
	msg = c.appendCookieOpt(msg, client, from, now)
	rdlen := optOff + 9 // root name, type, class, TTL
	binary.BigEndian.PutUint16(msg[rdlen:], binary.BigEndian.Uint16(msg[rdlen:])+cookieOptLen)
	return msg
}
