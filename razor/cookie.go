package razor

import (
	"crypto/subtle"
	"encoding/binary"
	"net/netip"

	"github.com/v6pod/v6pod/internal/siphash"
)

// DNS cookies (RFC 7873) with server cookies in the interoperable format
// of RFC 9018: version 1, three reserved bytes, a 32-bit timestamp and
// SipHash-2-4(client cookie | version | reserved | timestamp | client IP)
// under the server secret. Razors that share the secret accept each
// other's cookies, which anycast needs.

type cookieKind int

const (
	cookieNone    cookieKind = iota
	cookieClient             // only a client cookie: a first contact
	cookieValid              // a server cookie razor made, recent enough
	cookieInvalid            // a server cookie that does not check out
)

// checkCookie classifies the COOKIE option data c (8 or 16-40 bytes).
func (s *Server) checkCookie(c []byte, ip netip.Addr) cookieKind {
	if len(c) == 8 {
		s.m.cookies[cookieClient].Inc()
		return cookieClient
	}
	if len(c) != 24 || c[8] != 1 {
		s.m.cookies[cookieInvalid].Inc()
		return cookieInvalid
	}
	ts := binary.BigEndian.Uint32(c[12:16])
	now := uint32(s.now().Unix())
	// RFC 9018 §4.3: valid for an hour, and at most 5 minutes ahead.
	if int32(now-ts) > 3600 || int32(ts-now) > 300 {
		s.m.cookies[cookieInvalid].Inc()
		return cookieInvalid
	}
	want := s.cookieHash(c[:8], c[8:16], ip)
	var got [8]byte
	binary.BigEndian.PutUint64(got[:], want)
	if subtle.ConstantTimeCompare(got[:], c[16:24]) != 1 {
		s.m.cookies[cookieInvalid].Inc()
		return cookieInvalid
	}
	s.m.cookies[cookieValid].Inc()
	return cookieValid
}

func (s *Server) cookieHash(client, verTS []byte, ip netip.Addr) uint64 {
	d := siphash.New(s.cookieKey)
	d.Write(client)
	d.Write(verTS)
	if ip = ip.Unmap(); ip.Is4() {
		a := ip.As4()
		d.Write(a[:])
	} else {
		a := ip.As16()
		d.Write(a[:])
	}
	return d.Sum64()
}

// serverCookie appends a fresh 16-byte server cookie for client and ip.
func (s *Server) serverCookie(b, client []byte, ip netip.Addr) []byte {
	var sc [16]byte
	sc[0] = 1
	binary.BigEndian.PutUint32(sc[4:8], uint32(s.now().Unix()))
	binary.BigEndian.PutUint64(sc[8:], s.cookieHash(client, sc[:8], ip))
	return append(b, sc[:]...)
}
