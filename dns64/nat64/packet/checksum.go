// Package packet holds IPv4/IPv6/TCP/UDP/ICMP header offsets, byte-slice
// header views and the Internet checksum (RFC 1071) with incremental update
// (RFC 1624), for the NAT64 translator's hot path.
package packet

import (
	"encoding/binary"
	"math/bits"
)

// Sum returns the ones'-complement sum of b added to initial, folded to 16
// bits (not inverted). Odd trailing bytes are padded with zero as RFC 1071
// says.
func Sum(b []byte, initial uint16) uint16 {
	var acc uint64 = uint64(initial)
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), 0)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		acc += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), 0)
		acc += carry
		b = b[8:]
	}
	for len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += carry
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += carry
	}
	return fold64(acc)
}

func fold64(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// Combine adds two ones'-complement partial sums.
func Combine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Checksum returns the Internet checksum (the inverted sum) of b with an
// initial partial sum (a pseudo-header, say).
func Checksum(b []byte, initial uint16) uint16 { return ^Sum(b, initial) }

// Update returns checksum xsum (as stored in a header) after a 16-bit word
// of the covered data changed from old to new (RFC 1624 equation 3:
// HC' = ~(~HC + ~m + m')).
func Update(xsum, old, new uint16) uint16 {
	return ^Combine(Combine(^xsum, ^old), new)
}

// UpdateSum returns checksum xsum after the covered data's partial sum
// changed from oldSum to newSum (the sums of the words that changed,
// before and after).
func UpdateSum(xsum, oldSum, newSum uint16) uint16 {
	return ^Combine(Combine(^xsum, ^oldSum), newSum)
}

// PseudoHeader4 returns the partial sum of the IPv4 pseudo-header of RFC 768
// / RFC 793: source, destination, protocol and upper-layer length.
func PseudoHeader4(src, dst []byte, proto uint8, length uint16) uint16 {
	s := Sum(src[:4], 0)
	s = Sum(dst[:4], s)
	return Combine(s, Combine(uint16(proto), length))
}

// PseudoHeader6 returns the partial sum of the IPv6 pseudo-header of
// RFC 8200 section 8.1 (upper-layer lengths up to 65535).
func PseudoHeader6(src, dst []byte, proto uint8, length uint16) uint16 {
	s := Sum(src[:16], 0)
	s = Sum(dst[:16], s)
	return Combine(s, Combine(uint16(proto), length))
}
