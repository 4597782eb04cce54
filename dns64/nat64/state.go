package nat64

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// The state of RFC 6146 section 3: the binding information bases (BIB, one
// per protocol, kept in one map keyed by protocol) and the session table.
//
// Sessions are found by two keys, the IPv6 side (proto, X, x, Y4, y) and
// the IPv4 side (proto, T, t, Y4, y), in two sharded maps. The fast path
// (a packet of a known session) takes one shard's read lock; creating and
// expiring sessions and bindings take the BIB mutex, then shard locks, in
// that order. Mutable session fields (TCP state, expiry) are atomics.

// key is a packed session key: proto | addr (16; IPv4 in the first 4) |
// port | remote IPv4 | remote port.
type key [25]byte

func makeKey(proto uint8, a []byte, port uint16, remote [4]byte, rport uint16) (k key) {
	k[0] = proto
	copy(k[1:17], a)
	binary.BigEndian.PutUint16(k[17:], port)
	copy(k[19:23], remote[:])
	binary.BigEndian.PutUint16(k[23:], rport)
	return k
}

func (k *key) hash() uint64 {
	a := binary.LittleEndian.Uint64(k[0:])
	b := binary.LittleEndian.Uint64(k[8:])
	c := binary.LittleEndian.Uint64(k[16:])
	d := uint64(k[24])
	h := (a ^ b*0x9e3779b97f4a7c15 ^ c*0xc2b2ae3d27d4eb4f ^ d) * 0xff51afd7ed558ccd
	return h ^ h>>29
}

// bibKey6 is proto | X | x; bibKey4 is proto | T | t.
type bibKey6 [19]byte
type bibKey4 [7]byte

func makeBibKey6(proto uint8, a []byte, port uint16) (k bibKey6) {
	k[0] = proto
	copy(k[1:17], a)
	binary.BigEndian.PutUint16(k[17:], port)
	return k
}

func makeBibKey4(proto uint8, a [4]byte, port uint16) (k bibKey4) {
	k[0] = proto
	copy(k[1:5], a[:])
	binary.BigEndian.PutUint16(k[5:], port)
	return k
}

// bib is one binding (X', x) <-> (T, t).
type bib struct {
	v6       [16]byte
	v4       [4]byte
	port6    uint16
	port4    uint16
	proto    uint8
	static   bool
	sessions int32 // under table.mu
}

// session is one RFC 6146 session (a BIB entry and a remote endpoint).
type session struct {
	b       *bib
	remote  [4]byte
	rport   uint16
	state   atomic.Uint32 // TCP state (tcp* constants)
	expires atomic.Int64  // unix nanoseconds
	slot    atomic.Int64  // the expiry wheel slot it is filed in; -1 once removed
}

// TCP states of RFC 6146 section 3.5.2.2 (CLOSED is "no session").
const (
	tcpV6Init uint32 = iota
	tcpV4Init
	tcpEstablished
	tcpV6FinRcv
	tcpV4FinRcv
	tcpBothFin
	tcpTrans
)

const nShards = 64

type shard struct {
	mu sync.RWMutex
	m  map[key]*session
	_  [64 - 8 - 24]byte
}

type table struct {
	cfg *Config
	now func() time.Time
	log *bindingLog

	sess6 [nShards]shard
	sess4 [nShards]shard
	wheel wheel
	count [4]atomic.Int64 // sessions by protocol index (tcp, udp, icmp)

	mu         sync.Mutex // BIB, per-client counts, filtering index, rng
	bib6       map[bibKey6]*bib
	bib4       map[bibKey4]*bib
	perClient  map[[16]byte]int32
	adf        map[[11]byte]int32 // proto|T|t|Y4 -> sessions (address-dependent filtering)
	rng        *mrand.Rand
	secret     uint64
	bibCount   [4]int64
	portsInUse []int64    // per pool4 address, all protocols
	used       [3][]int32 // per protocol index, per pool4 address
}

func protoIndex(p uint8) int {
	switch p {
	case protoTCP:
		return 0
	case protoUDP:
		return 1
	default:
		return 2
	}
}

func newTable(cfg *Config, now func() time.Time, log *bindingLog, tick time.Duration) *table {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	t := &table{
		cfg:        cfg,
		now:        now,
		log:        log,
		bib6:       make(map[bibKey6]*bib),
		bib4:       make(map[bibKey4]*bib),
		perClient:  make(map[[16]byte]int32),
		adf:        make(map[[11]byte]int32),
		rng:        mrand.New(mrand.NewChaCha8(seed)),
		secret:     binary.LittleEndian.Uint64(seed[:8]) ^ 0x5bd1e995,
		portsInUse: make([]int64, len(cfg.pool4)),
	}
	t.wheel.init(int64(max(tick, time.Millisecond)), now().UnixNano())
	for i := range t.used {
		t.used[i] = make([]int32, len(cfg.pool4))
	}
	for i := range t.sess6 {
		t.sess6[i].m = make(map[key]*session)
		t.sess4[i].m = make(map[key]*session)
	}
	for _, s := range cfg.static {
		b := &bib{v6: s.v6, port6: s.port6, v4: s.v4, port4: s.port4, proto: s.proto, static: true}
		t.bib6[makeBibKey6(b.proto, b.v6[:], b.port6)] = b
		t.bib4[makeBibKey4(b.proto, b.v4, b.port4)] = b
		t.bibCount[protoIndex(b.proto)]++
		if i := cfg.poolIndex(b.v4); i >= 0 {
			t.portsInUse[i]++
			t.used[protoIndex(b.proto)][i]++
		}
	}
	return t
}

func (t *table) lookup6(k *key) *session {
	s := &t.sess6[k.hash()%nShards]
	s.mu.RLock()
	v := s.m[*k]
	s.mu.RUnlock()
	return v
}

func (t *table) lookup4(k *key) *session {
	s := &t.sess4[k.hash()%nShards]
	s.mu.RLock()
	v := s.m[*k]
	s.mu.RUnlock()
	return v
}

// lifetime returns how long a session in state st lives after a packet.
func (t *table) lifetime(proto uint8, st uint32) time.Duration {
	switch proto {
	case protoUDP:
		return t.cfg.Timeouts.UDP
	case protoICMP:
		return t.cfg.Timeouts.ICMP
	}
	switch st {
	case tcpEstablished, tcpV6FinRcv, tcpV4FinRcv:
		return t.cfg.Timeouts.TCPEstablished
	case tcpV4Init:
		return t.cfg.Timeouts.TCPIncomingSYN
	default:
		return t.cfg.Timeouts.TCPTransitory
	}
}

// touch refreshes a UDP or ICMP session.
func (t *table) touch(s *session, now int64) {
	d := int64(t.lifetime(s.b.proto, 0))
	if s.expires.Load() < now+d-int64(time.Second) {
		s.expires.Store(now + d)
	}
}

// tcpPacket runs the RFC 6146 section 3.5.2.2 state machine for a packet
// with TCP flags fl of session s, seen from the IPv6 side (from6) or the
// IPv4 side. It returns false when the packet must be dropped (none of
// the states drops, so it always returns true today; kept for clarity).
func (t *table) tcpPacket(s *session, fl uint8, from6 bool, now int64) {
	for {
		old := s.state.Load()
		st := old
		refresh := true
		switch old {
		case tcpV6Init:
			// RFC 6146 3.5.2.2: only a V6 SYN (retransmission) refreshes
			// V6 INIT; other packets pass without touching the session.
			if !from6 && fl&tcpSYN != 0 {
				st = tcpEstablished
			}
			refresh = from6 && fl&tcpSYN != 0
		case tcpV4Init:
			if from6 && fl&tcpSYN != 0 {
				st = tcpEstablished
			}
			refresh = !from6 && fl&tcpSYN != 0
		case tcpEstablished:
			switch {
			case fl&tcpRST != 0:
				st = tcpTrans
			case fl&tcpFIN != 0 && from6:
				st = tcpV6FinRcv
			case fl&tcpFIN != 0:
				st = tcpV4FinRcv
			}
		case tcpV6FinRcv:
			if !from6 && fl&tcpFIN != 0 {
				st = tcpBothFin
			}
		case tcpV4FinRcv:
			if from6 && fl&tcpFIN != 0 {
				st = tcpBothFin
			}
		case tcpBothFin:
			refresh = false
		case tcpTrans:
			if fl&tcpRST == 0 {
				st = tcpEstablished
			} else {
				refresh = false
			}
		}
		if st == old {
			if refresh {
				d := int64(t.lifetime(protoTCP, st))
				if s.expires.Load() < now+d-int64(time.Second) {
					s.expires.Store(now + d)
				}
			}
			return
		}
		if s.state.CompareAndSwap(old, st) {
			exp := now + int64(t.lifetime(protoTCP, st))
			s.expires.Store(exp)
			// A shorter lifetime (RST, the second FIN) must be seen before
			// the slot the session is filed in comes round.
			t.wheel.refile(s, exp)
			return
		}
	}
}

// create6 creates (or finds) the session for an outbound packet from
// (src6, sport) to (dst4, dport), creating the binding if there is none.
func (t *table) create6(proto uint8, src6 []byte, sport uint16, dst4 [4]byte, dport uint16, now int64) (*session, dropReason) {
	k6 := makeKey(proto, src6, sport, dst4, dport)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.lookup6(&k6); s != nil {
		return s, dropNone
	}
	var c [16]byte
	copy(c[:], src6)
	if t.cfg.MaxSessionsPerClient > 0 && t.perClient[c] >= int32(t.cfg.MaxSessionsPerClient) {
		return nil, dropClientLimit
	}
	if t.cfg.MaxSessions > 0 && t.total() >= int64(t.cfg.MaxSessions) {
		return nil, dropTableFull
	}
	bk := makeBibKey6(proto, src6, sport)
	b := t.bib6[bk]
	if b == nil {
		var ok bool
		b, ok = t.allocate(proto, c, sport)
		if !ok {
			return nil, dropPoolExhausted
		}
	}
	st := tcpV6Init
	return t.insert(b, dst4, dport, st, now), dropNone
}

// createInbound creates the session for an inbound packet to (T, t) from
// (src4, sport), if a binding exists and filtering lets it in.
func (t *table) createInbound(proto uint8, dst4 [4]byte, dport uint16, src4 [4]byte, sport uint16, now int64) (*session, dropReason) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k4 := makeKey(proto, dst4[:], dport, src4, sport)
	if s := t.lookup4(&k4); s != nil {
		return s, dropNone
	}
	b := t.bib4[makeBibKey4(proto, dst4, dport)]
	if b == nil {
		return nil, dropNoBinding
	}
	if t.cfg.addressDependent && !b.static {
		if t.adf[adfKey(b, src4)] == 0 {
			return nil, dropFiltered
		}
	}
	if t.cfg.MaxSessionsPerClient > 0 && t.perClient[b.v6] >= int32(t.cfg.MaxSessionsPerClient) {
		return nil, dropClientLimit
	}
	if t.cfg.MaxSessions > 0 && t.total() >= int64(t.cfg.MaxSessions) {
		return nil, dropTableFull
	}
	return t.insert(b, src4, sport, tcpV4Init, now), dropNone
}

func (t *table) total() int64 {
	return t.count[0].Load() + t.count[1].Load() + t.count[2].Load()
}

func adfKey(b *bib, remote [4]byte) (k [11]byte) {
	k[0] = b.proto
	copy(k[1:5], b.v4[:])
	binary.BigEndian.PutUint16(k[5:], b.port4)
	copy(k[7:], remote[:])
	return k
}

// insert adds a session of b; t.mu held.
func (t *table) insert(b *bib, remote [4]byte, rport uint16, st uint32, now int64) *session {
	s := &session{b: b, remote: remote, rport: rport}
	s.state.Store(st)
	s.expires.Store(now + int64(t.lifetime(b.proto, st)))
	s.slot.Store(-1)
	t.wheel.refile(s, s.expires.Load())
	k6 := makeKey(b.proto, b.v6[:], b.port6, remote, rport)
	k4 := makeKey(b.proto, b.v4[:], b.port4, remote, rport)
	sh := &t.sess6[k6.hash()%nShards]
	sh.mu.Lock()
	sh.m[k6] = s
	sh.mu.Unlock()
	sh = &t.sess4[k4.hash()%nShards]
	sh.mu.Lock()
	sh.m[k4] = s
	sh.mu.Unlock()
	b.sessions++
	t.perClient[b.v6]++
	if t.cfg.addressDependent {
		t.adf[adfKey(b, remote)]++
	}
	t.count[protoIndex(b.proto)].Add(1)
	return s
}

// allocate makes a dynamic binding for (X', x): the IPv4 address is chosen
// by a keyed hash of X' (paired pooling, RFC 7857 section 3 / RFC 6888
// REQ-2), falling over to the next addresses when its ports are used up;
// the port is chosen at random within the address's configured range
// (RFC 6056 algorithms 2, then 1). t.mu held.
func (t *table) allocate(proto uint8, v6 [16]byte, port6 uint16) (*bib, bool) {
	pool := t.cfg.pool4
	h := t.secret
	for i := 0; i < 16; i += 8 {
		h = (h ^ binary.LittleEndian.Uint64(v6[i:])) * 0x9e3779b97f4a7c15
		h ^= h >> 31
	}
	first := int(h % uint64(len(pool)))
	for n := 0; n < len(pool); n++ {
		i := (first + n) % len(pool)
		p := &pool[i]
		span := int(p.hi) - int(p.lo) + 1
		if int(t.used[protoIndex(proto)][i]) >= span {
			continue // full: do not probe it
		}
		try := func(port uint16) *bib {
			k4 := makeBibKey4(proto, p.addr, port)
			if _, used := t.bib4[k4]; used {
				return nil
			}
			b := &bib{v6: v6, port6: port6, v4: p.addr, port4: port, proto: proto}
			t.bib6[makeBibKey6(proto, v6[:], port6)] = b
			t.bib4[k4] = b
			t.bibCount[protoIndex(proto)]++
			t.portsInUse[i]++
			t.used[protoIndex(proto)][i]++
			t.log.binding(true, t.now(), b)
			return b
		}
		// RFC 6146 section 3.5.1.1: a port in 0-1023 gets one in 0-1023
		// when the range has such ports free, else any; a port in
		// 1024-65535 gets one in 1024-65535 (never a well-known one,
		// unless the range has nothing else). UDP keeps the port's parity
		// (RFC 4787 4.2.2). ICMP identifiers take any.
		par := -1
		lo, hi := int(p.lo), int(p.hi)
		if proto != protoICMP {
			if port6 < 1024 {
				hi = min(hi, 1023)
			} else {
				lo = max(lo, 1024)
			}
			if proto == protoUDP {
				par = int(port6 & 1)
			}
		}
		if lo <= hi {
			if b := t.pick(lo, hi, par, try); b != nil {
				return b, true
			}
			if port6 >= 1024 || proto == protoICMP || lo == int(p.lo) && hi == int(p.hi) {
				continue
			}
		}
		if b := t.pick(int(p.lo), int(p.hi), par, try); b != nil {
			return b, true
		}
	}
	return nil, false
}

// pick finds a free port in lo-hi with try: RFC 6056 algorithm 2 (a
// fresh random port per try, of parity par unless par < 0) for a few
// tries, which stays fast when the range is crowded; then algorithm 1's
// sequential probing from a random start, which finds the last free
// ports, those of parity par first. t.mu held.
func (t *table) pick(lo, hi, par int, try func(uint16) *bib) *bib {
	span := hi - lo + 1
	if span < 2 {
		par = -1
	}
	for j := 0; j < 32; j++ {
		port := lo + t.rng.IntN(span)
		if par >= 0 && port&1 != par {
			if port < hi {
				port++
			} else {
				port--
			}
		}
		if b := try(uint16(port)); b != nil {
			return b
		}
	}
	start := t.rng.IntN(span)
	for pass := 0; pass < 2; pass++ {
		for j := 0; j < span; j++ {
			port := lo + (start+j)%span
			if (pass == 0) != (par < 0 || port&1 == par) {
				continue
			}
			if b := try(uint16(port)); b != nil {
				return b
			}
		}
	}
	return nil
}

// expire removes sessions whose lifetime has passed, and bindings left
// without sessions (static ones stay). It returns how many sessions went.
// It visits only the wheel slots that came due since the last call, not
// every session.
func (t *table) expire(now int64) int {
	due := t.wheel.due(now)
	if len(due) == 0 {
		return 0
	}
	var dead []*session
	for _, s := range due {
		if exp := s.expires.Load(); exp > now {
			t.wheel.refile(s, exp) // refreshed since it was filed
			continue
		}
		b := s.b
		k6 := makeKey(b.proto, b.v6[:], b.port6, s.remote, s.rport)
		sh := &t.sess6[k6.hash()%nShards]
		sh.mu.Lock()
		if sh.m[k6] != s {
			sh.mu.Unlock()
			continue // already removed (a duplicate entry)
		}
		// Checked again under the lock: a packet may have refreshed it.
		if exp := s.expires.Load(); exp > now {
			sh.mu.Unlock()
			t.wheel.refile(s, exp)
			continue
		}
		delete(sh.m, k6)
		sh.mu.Unlock()
		k4 := makeKey(b.proto, b.v4[:], b.port4, s.remote, s.rport)
		sh4 := &t.sess4[k4.hash()%nShards]
		sh4.mu.Lock()
		if sh4.m[k4] == s {
			delete(sh4.m, k4)
		}
		sh4.mu.Unlock()
		s.slot.Store(-1)
		dead = append(dead, s)
	}
	if len(dead) > 0 {
		t.mu.Lock()
		for _, s := range dead {
			t.removed(s)
		}
		t.mu.Unlock()
	}
	t.wheel.recycle(due)
	return len(dead)
}

// wheel files sessions by expiry time in slots of tick nanoseconds (a
// lazy timing wheel): a refresh only moves the expiry, and the session is
// re-filed when its old slot comes due; a shortened lifetime (TCP RST,
// second FIN) re-files it at once. A session is in the slot its slot
// field names; entries left behind in other slots are skipped.
type wheel struct {
	mu     sync.Mutex
	tick   int64
	cursor int64 // the first slot number not yet emptied for good
	slots  [wheelSlots][]*session
	spare  []*session
	seen   uint64 // sessions handed out by due (tests)
}

const wheelSlots = 1024

func (w *wheel) init(tick, now int64) {
	w.tick = tick
	w.cursor = now / tick
}

// refile files s in the slot of exp (at most wheelSlots-1 slots ahead of
// the cursor; it is re-filed from there) unless it is already in an
// earlier slot that still lies ahead.
func (w *wheel) refile(s *session, exp int64) {
	w.mu.Lock()
	n := max(exp/w.tick, w.cursor)
	n = min(n, w.cursor+wheelSlots-1)
	if cur := s.slot.Load(); cur >= w.cursor && cur <= n {
		w.mu.Unlock()
		return
	}
	s.slot.Store(n)
	w.slots[n%wheelSlots] = append(w.slots[n%wheelSlots], s)
	w.mu.Unlock()
}

// due empties the slots up to now's and returns the sessions filed there.
// now's own slot is emptied too but stays current (what is filed there
// later is looked at by the next call).
func (w *wheel) due(now int64) []*session {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := now / w.tick
	out := w.spare[:0]
	w.spare = nil
	for n := w.cursor; n <= end && n < w.cursor+wheelSlots; n++ {
		sl := &w.slots[n%wheelSlots]
		for _, s := range *sl {
			if s.slot.Load() == n {
				s.slot.Store(-2) // being looked at: refile files it anew
				out = append(out, s)
				w.seen++
			}
		}
		clear(*sl)
		if cap(*sl) > 4096 {
			*sl = nil
		} else {
			*sl = (*sl)[:0]
		}
	}
	w.cursor = max(w.cursor, end)
	return out
}

// recycle keeps the buffer due returned for the next call.
func (w *wheel) recycle(b []*session) {
	clear(b)
	w.mu.Lock()
	if cap(b) <= 1<<16 {
		w.spare = b[:0]
	}
	w.mu.Unlock()
}

// removed accounts for a session gone from the maps; t.mu held.
func (t *table) removed(s *session) {
	b := s.b
	t.count[protoIndex(b.proto)].Add(-1)
	b.sessions--
	if c := t.perClient[b.v6] - 1; c <= 0 {
		delete(t.perClient, b.v6)
	} else {
		t.perClient[b.v6] = c
	}
	if t.cfg.addressDependent {
		k := adfKey(b, s.remote)
		if c := t.adf[k] - 1; c <= 0 {
			delete(t.adf, k)
		} else {
			t.adf[k] = c
		}
	}
	if b.sessions <= 0 && !b.static {
		k6 := makeBibKey6(b.proto, b.v6[:], b.port6)
		if t.bib6[k6] == b {
			delete(t.bib6, k6)
			delete(t.bib4, makeBibKey4(b.proto, b.v4, b.port4))
			t.bibCount[protoIndex(b.proto)]--
			if i := t.cfg.poolIndex(b.v4); i >= 0 {
				t.portsInUse[i]--
				t.used[protoIndex(b.proto)][i]--
			}
			t.log.binding(false, t.now(), b)
		}
	}
}

// stats returns bindings by protocol index and ports in use per pool4
// address.
func (t *table) stats() (bibs [4]int64, ports []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bibCount, append([]int64(nil), t.portsInUse...)
}

// synLimiter is a token bucket per destination IPv4 address.
type synLimiter struct {
	rate   float64
	burst  float64
	shards [16]struct {
		mu sync.Mutex
		m  map[[4]byte]*bucket
	}
}

type bucket struct {
	tokens float64
	last   int64
}

func newSynLimiter(rate int) *synLimiter {
	l := &synLimiter{rate: float64(rate), burst: float64(rate)}
	for i := range l.shards {
		l.shards[i].m = make(map[[4]byte]*bucket)
	}
	return l
}

// allow takes one token for dst at time now (unix nanoseconds).
func (l *synLimiter) allow(dst [4]byte, now int64) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	sh := &l.shards[(dst[0]^dst[1]^dst[2]^dst[3])%16]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[dst]
	if b == nil {
		if len(sh.m) > 1<<16 { // bound memory: forget idle buckets
			for k, v := range sh.m {
				if now-v.last > int64(time.Second) {
					delete(sh.m, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.m[dst] = b
	}
	b.tokens += float64(now-b.last) / 1e9 * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
