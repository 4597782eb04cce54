package dns64

import (
	"container/list"
	"encoding/binary"
	"errors"
	"github.com/miekg/dns"
	"hash/maphash"
	"sync"
	"time"
)

// A cache key names one answer: query type, class, the request bits that
// change the answer (DO and CD, RFC 6147 section 5.5), then the name in
// lower-case wire form. Built from wire bytes it needs no allocation.
const (
	flagDO = 1 << iota
	flagCD
)

// maxKeyLen is the largest key: 5 bytes of type, class, flags, and a
// 255-byte name.
const maxKeyLen = 5 + 255

// appendKey appends the key for a question given as text.
func appendKey(dst []byte, name string, qtype, qclass uint16, flags uint8) ([]byte, bool) {
	var nb [256]byte
	n, err := dns.PackDomainName(name, nb[:], 0, nil, false)
	if err != nil {
		return dst, false
	}
	dst = append(dst, byte(qtype>>8), byte(qtype), byte(qclass>>8), byte(qclass), flags)
	return appendLower(dst, nb[:n]), true
}

// appendLower appends a wire name in lower case. Label lengths are at most
// 63, below 'A', so they pass unchanged.
func appendLower(dst, name []byte) []byte {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// entry is one answer as packed wire bytes, ready to send once its ID,
// question case and TTLs are patched.
type entry struct {
	key     string
	wire    []byte   // always with an OPT record, last (optOff)
	optOff  int      // start of the OPT record; -1 when none
	xrcode  bool     // the rcode has bits in the OPT record (> 15)
	qEnd    int      // end of the question name (offset 12 + its length)
	ttlOffs []uint16 // offsets of every TTL field (OPT excluded)
	ttls    []uint32 // the TTLs when stored
	stored  time.Time
	expires time.Time
	cost    int64
}

// walkWire checks a packed message and returns the offsets the cache needs:
// the end of the first question name, the TTL field of every record but
// OPT, and the start of the OPT record, which must be the last record.
func walkWire(b []byte) (qEnd int, ttlOffs []uint16, optOff int, err error) {
	optOff = -1
	if len(b) < 12 || len(b) > 65535 {
		return 0, nil, -1, errBadWire
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rr := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	for i := 0; i < qd; i++ {
		if off, err = skipName(b, off); err != nil {
			return 0, nil, -1, err
		}
		if i == 0 {
			qEnd = off
		}
		off += 4
		if off > len(b) {
			return 0, nil, -1, errBadWire
		}
	}
	for i := 0; i < rr; i++ {
		start := off
		if off, err = skipName(b, off); err != nil {
			return 0, nil, -1, err
		}
		if off+10 > len(b) {
			return 0, nil, -1, errBadWire
		}
		typ := binary.BigEndian.Uint16(b[off:])
		if typ == 41 { // OPT
			if optOff >= 0 {
				return 0, nil, -1, errBadWire
			}
			optOff = start
		} else {
			if optOff >= 0 {
				return 0, nil, -1, errBadWire // OPT must come last
			}
			ttlOffs = append(ttlOffs, uint16(off+4))
		}
		rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
		off += 10 + rdlen
		if off > len(b) {
			return 0, nil, -1, errBadWire
		}
	}
	if off != len(b) {
		return 0, nil, -1, errBadWire
	}
	return qEnd, ttlOffs, optOff, nil
}

var errBadWire = errors.New("dns64: malformed message")

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(b []byte, off int) (int, error) {
	for n := 0; n < 128; n++ {
		if off >= len(b) {
			return 0, errBadWire
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(b) {
				return 0, errBadWire
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errBadWire
		}
		off += 1 + l
	}
	return 0, errBadWire
}

// cache is a bounded, TTL-respecting LRU of answers, split in shards to
// keep lock hold times short. Limits are per shard: the configured totals
// divided by the shard count.
type cache struct {
	seed    maphash.Seed
	shards  [cacheShards]cacheShard
	onEvict func()
}

const cacheShards = 16

type cacheShard struct {
	mu         sync.Mutex
	m          map[string]*list.Element
	lru        list.List // front: most recently used
	bytes      int64
	maxEntries int
	maxBytes   int64
}

func newCache(maxEntries int, maxBytes int64) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	perE := max(1, maxEntries/cacheShards)
	perB := max(1, maxBytes/cacheShards)
	for i := range c.shards {
		c.shards[i].m = make(map[string]*list.Element)
		c.shards[i].maxEntries = perE
		c.shards[i].maxBytes = perB
	}
	return c
}

// get returns the live entry for key, dropping it when expired. The key
// is not retained, so a reused buffer is fine.
func (c *cache) get(key []byte, now time.Time) *entry {
	s := &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
	s.mu.Lock()
	el, ok := s.m[string(key)] // no allocation: the compiler looks up in place
	if !ok {
		s.mu.Unlock()
		return nil
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		s.remove(el)
		s.mu.Unlock()
		return nil
	}
	s.lru.MoveToFront(el)
	s.mu.Unlock()
	return e
}

// put stores e, replacing an older answer and evicting the least recently
// used answers beyond the limits.
func (c *cache) put(e *entry) {
	s := &c.shards[maphash.String(c.seed, e.key)%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.cost > s.maxBytes {
		return
	}
	if el, ok := s.m[e.key]; ok {
		s.remove(el)
	}
	s.m[e.key] = s.lru.PushFront(e)
	s.bytes += e.cost
	for len(s.m) > s.maxEntries || s.bytes > s.maxBytes {
		s.remove(s.lru.Back())
		if c.onEvict != nil {
			c.onEvict()
		}
	}
}

func (s *cacheShard) remove(el *list.Element) {
	e := s.lru.Remove(el).(*entry)
	delete(s.m, e.key)
	s.bytes -= e.cost
}

// size returns the number of entries and their cost.
func (c *cache) size() (n int, bytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		bytes += s.bytes
		s.mu.Unlock()
	}
	return n, bytes
}
