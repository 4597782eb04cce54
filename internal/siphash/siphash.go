// Package siphash is SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed
// 64-bit hash that is stable across processes and machines, unlike Go's
// map and maphash seeds, used for rendezvous hashing and DNS cookies.
package siphash

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// Key is a 128-bit SipHash key as its two little-endian halves.
type Key struct{ K0, K1 uint64 }

// KeyFromBytes reads a key from 16 bytes.
func KeyFromBytes(b [16]byte) Key {
	return Key{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

// Digest is an incremental SipHash-2-4 state; the zero value is unusable,
// start with New. It does not allocate.
type Digest struct {
	v0, v1, v2, v3 uint64
	buf            [8]byte
	n              int // bytes in buf
	length         uint64
}

// New starts a hash with key k.
func New(k Key) Digest {
	return Digest{
		v0: k.K0 ^ 0x736f6d6570736575,
		v1: k.K1 ^ 0x646f72616e646f6d,
		v2: k.K0 ^ 0x6c7967656e657261,
		v3: k.K1 ^ 0x7465646279746573,
	}
}

func (d *Digest) round(m uint64) {
	d.v3 ^= m
	d.v0, d.v1, d.v2, d.v3 = sipRound(d.v0, d.v1, d.v2, d.v3)
	d.v0, d.v1, d.v2, d.v3 = sipRound(d.v0, d.v1, d.v2, d.v3)
	d.v0 ^= m
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// Write adds p to the hash.
func (d *Digest) Write(p []byte) {
	d.length += uint64(len(p))
	if d.n > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n < 8 {
			return
		}
		d.round(binary.LittleEndian.Uint64(d.buf[:]))
		d.n = 0
	}
	for len(p) >= 8 {
		d.round(binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	d.n = copy(d.buf[:], p)
}

// WriteString adds the bytes of s.
func (d *Digest) WriteString(s string) {
	d.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// Sum64 finishes the hash. The digest must not be used afterwards.
func (d *Digest) Sum64() uint64 {
	var last [8]byte
	copy(last[:], d.buf[:d.n])
	last[7] = byte(d.length)
	m := binary.LittleEndian.Uint64(last[:])
	d.round(m)
	v0, v1, v2, v3 := d.v0, d.v1, d.v2^0xff, d.v3
	for range 4 {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// Sum64 hashes p with key k.
func Sum64(k Key, p []byte) uint64 {
	d := New(k)
	d.Write(p)
	return d.Sum64()
}
