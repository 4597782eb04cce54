package nat64

import (
	"sync"
	"sync/atomic"

	"github.com/v6pod/v6pod/dns64/nat64/packet"
)

const (
	protoICMP   = packet.ProtoICMP
	protoTCP    = packet.ProtoTCP
	protoUDP    = packet.ProtoUDP
	protoICMPv6 = packet.ProtoICMPv6

	tcpFIN = packet.TCPFlagFIN
	tcpSYN = packet.TCPFlagSYN
	tcpRST = packet.TCPFlagRST
	tcpACK = packet.TCPFlagACK
)

// dropReason says why a packet was not translated. The names are the
// values of the reason label of nat64_drops_total.
type dropReason uint8

const (
	dropNone               dropReason = iota
	dropMalformed                     // too short, bad version or lengths
	dropNotPool6                      // IPv6 destination outside pool6
	dropNotPool4                      // IPv4 destination outside pool4
	dropBadAddress                    // special-purpose or hairpinned address
	dropHopLimit                      // hop limit/TTL expired, no error sent (error or fragment)
	dropUnknownProto                  // not TCP, UDP or ICMP
	dropTCPNoSession                  // TCP packet other than a SYN without a session
	dropNoBinding                     // inbound packet without a binding
	dropFiltered                      // address-dependent filtering refused it
	dropSYNRate                       // over the per-destination SYN rate
	dropClientLimit                   // the IPv6 client's session limit
	dropTableFull                     // max_sessions reached
	dropPoolExhausted                 // no free pool4 port
	dropFragUnknown                   // non-first fragment without a first one seen
	dropFragTooSmall                  // first fragment without the whole transport header
	dropICMPFragment                  // fragmented ICMP (cannot fix the checksum)
	dropICMPUntranslatable            // ICMP type/code without a mapping
	dropUDPZeroChecksum               // zero UDP checksum that cannot be computed
	dropBadChecksum                   // ICMP error with a wrong checksum
	dropNoSession                     // ICMP echo reply or error without a session
	dropSourceRoute                   // IPv4 source route option
	dropTooBig                        // output buffer too small
	dropOffload                       // a super-packet we cannot translate whole
	dropICMPRate                      // over the ICMP error rate (RFC 4443 2.4 (f))
	numDrops
)

var dropNames = [numDrops]string{
	"none", "malformed", "not_pool6", "not_pool4", "bad_address", "hop_limit",
	"unknown_protocol", "tcp_no_session", "no_binding", "filtered", "syn_rate",
	"client_limit", "table_full", "pool_exhausted", "fragment_unknown",
	"fragment_too_small", "icmp_fragment", "icmp_untranslatable",
	"udp_zero_checksum", "bad_checksum", "no_session", "source_route", "too_big",
	"offload", "icmp_rate",
}

func (d dropReason) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// Verdict is what to do with a translated packet.
type Verdict uint8

const (
	// Drop: nothing to send (Result.Reason says why).
	Drop Verdict = iota
	// Forward: out[:Len] holds Parts translated packets (several when an
	// IPv4 packet without DF was fragmented for IPv6), back to back.
	Forward
	// Reply: out[:Len] holds an ICMP error for the sender, in the
	// sender's family (time exceeded, parameter problem).
	Reply
)

// Result is the outcome of one translation.
type Result struct {
	Verdict Verdict
	Len     int
	Parts   int
	Reason  dropReason
}

// ReasonName returns the drop reason's name ("none" unless dropped).
func (r Result) ReasonName() string { return r.Reason.String() }

// pathStats are one worker's counters, read by the metrics collector.
type pathStats struct {
	out4     atomic.Uint64 // IPv6 packets translated to IPv4
	out6     atomic.Uint64 // IPv4 packets translated to IPv6
	replies  atomic.Uint64 // ICMP errors generated
	hairpins atomic.Uint64 // packets from an IPv6 client to another one (RFC 6146 3.8)
	drops    [numDrops]atomic.Uint64
	_        [64]byte
}

// fragCache remembers, for a fragmented packet's first fragment, where the
// others go: (IPv6 source, IPv4 destination, ID) -> pool4 address, and
// (IPv4 source, pool4 address, ID) -> IPv6 client. It is a bounded,
// direct-mapped table; a collision forgets the older packet.
type fragCache struct {
	stripes [32]struct {
		mu sync.Mutex
		e  [128]fragEntry
	}
}

type fragKey [26]byte

type fragEntry struct {
	key fragKey
	val [16]byte
	exp int64
}

const fragLifetime = 2e9 // nanoseconds, RFC 7915 section 4 / RFC 6146 section 3.4

func (k *fragKey) hash() uint64 {
	var h uint64 = 14695981039346656037
	for _, b := range k {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

func (c *fragCache) put(k *fragKey, v []byte, now int64) {
	h := k.hash()
	s := &c.stripes[h%32]
	s.mu.Lock()
	e := &s.e[(h>>5)%128]
	e.key = *k
	copy(e.val[:], v)
	e.exp = now + fragLifetime
	s.mu.Unlock()
}

func (c *fragCache) get(k *fragKey, now int64) (v [16]byte, ok bool) {
	h := k.hash()
	s := &c.stripes[h%32]
	s.mu.Lock()
	e := &s.e[(h>>5)%128]
	if e.key == *k && e.exp > now {
		v, ok = e.val, true
	}
	s.mu.Unlock()
	return v, ok
}
