// Package rrl is response rate limiting in the BIND/Knot design: token
// buckets per client prefix and kind of response, in a fixed table, with
// "slip" answering some limited queries truncated so that real clients
// behind a spoofed flood can retry over TCP.
package rrl

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/v6pod/v6pod/internal/siphash"
)

// Action is what to do with a response.
type Action int

const (
	Send Action = iota // within the rate
	Drop               // over the rate: send nothing
	Slip               // over the rate: send a truncated (TC) empty answer
)

// Kind classifies responses the way BIND does, so that one name's
// answers, a zone's NXDOMAINs and errors each have their own bucket.
type Kind byte

const (
	Answer   Kind = iota + 1 // positive answers: keyed by name and type
	Negative                 // NXDOMAIN and NODATA: keyed by zone
	Referral                 // keyed by the delegation
	Error                    // REFUSED, FORMERR, ...: keyed by nothing
)

// Config of a limiter.
type Config struct {
	ResponsesPerSecond int
	Slip               int // every Slip-th limited response slips; 0 never
	IPv4Prefix         int
	IPv6Prefix         int
	TableSize          int
}

// Limiter is safe for concurrent use and does not allocate per query.
type Limiter struct {
	rate    int64 // tokens per second
	slip    uint32
	v4, v6  int
	buckets []bucket
	locks   [256]sync.Mutex
	key     siphash.Key
}

type bucket struct {
	hash   uint64
	tokens int64 // in nanotokens: 1e9 is one response
	last   int64 // unix nanos of the last refill
	limits uint32
}

const nano = 1_000_000_000

// New returns a limiter; ResponsesPerSecond must be positive.
func New(c Config) *Limiter {
	l := &Limiter{
		rate: int64(c.ResponsesPerSecond), slip: uint32(c.Slip),
		v4: c.IPv4Prefix, v6: c.IPv6Prefix,
		buckets: make([]bucket, max(c.TableSize, 1)),
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	l.key = siphash.KeyFromBytes(b)
	return l
}

// Check accounts one response of kind k to client and says what to do with
// it. name is the wire-form name the kind is keyed by (query name, zone or
// delegation; empty for errors); now is in unix nanoseconds.
func (l *Limiter) Check(client netip.Addr, k Kind, name string, qtype uint16, now int64) Action {
	client = client.Unmap()
	bits := l.v6
	if client.Is4() {
		bits = l.v4
	}
	pfx, err := client.Prefix(bits)
	if err != nil {
		return Send
	}
	d := siphash.New(l.key)
	a := pfx.Addr().As16()
	d.Write(a[:])
	var hdr [3]byte
	hdr[0] = byte(k)
	if k == Answer {
		binary.BigEndian.PutUint16(hdr[1:], qtype)
	}
	d.Write(hdr[:])
	if k != Error {
		d.WriteString(name)
	}
	h := d.Sum64()
	i := h % uint64(len(l.buckets))
	mu := &l.locks[i%uint64(len(l.locks))]
	mu.Lock()
	defer mu.Unlock()
	b := &l.buckets[i]
	full := l.rate * nano // a burst of one second's worth
	if b.hash != h {
		*b = bucket{hash: h, tokens: full, last: now}
	} else if el := now - b.last; el > 0 {
		// Refill, capped; el*rate cannot overflow for el <= a second.
		if el >= nano {
			b.tokens = full
		} else {
			b.tokens = min(full, b.tokens+el*l.rate)
		}
		b.last = now
	}
	if b.tokens >= nano {
		b.tokens -= nano
		return Send
	}
	b.limits++
	if l.slip > 0 && b.limits%l.slip == 0 {
		return Slip
	}
	return Drop
}
