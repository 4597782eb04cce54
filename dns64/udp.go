package dns64

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The UDP side is served by our own read loops rather than dns.Server:
// a cache hit is answered on the reading goroutine straight from the wire
// bytes, without unpacking the query or allocating. Everything else is
// handed, on its own goroutine, to the same path dns.Server would take
// (header check, unpack, ServeDNS).

type udpServer struct {
	s        *Server
	conn     *net.UDPConn
	stopping atomic.Bool
	// slowCount is the number of queries on the slow path (cache misses
	// waiting on upstreams, mostly), bounded by cfg.MaxConcurrent.
	slowCount atomic.Int64
	readers   sync.WaitGroup
	inflight  sync.WaitGroup
}

func (s *Server) newUDPServer(conn *net.UDPConn) *udpServer {
	return &udpServer{s: s, conn: conn}
}

// start runs one read loop per usable CPU (at most 4).
func (u *udpServer) start(errc chan<- error) {
	n := min(max(runtime.GOMAXPROCS(0), 1), 4)
	for range n {
		u.readers.Add(1)
		go func() {
			defer u.readers.Done()
			if err := u.read(); err != nil {
				errc <- err
			}
		}()
	}
}

// shutdown stops reading, lets queries in flight finish until deadline,
// then closes the socket.
func (u *udpServer) shutdown(deadline time.Time) {
	u.stopping.Store(true)
	u.conn.SetReadDeadline(time.Now())
	u.readers.Wait()
	done := make(chan struct{})
	go func() { u.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
	u.conn.Close()
}

// batchConn reads and writes several datagrams per system call.
type batchConn interface {
	readBatch(ms []udpMsg) (int, error)
	writeBatch(ms []udpMsg) (int, error)
}

// udpMsg is one datagram of a batch.
type udpMsg struct {
	buf  []byte
	n    int
	addr netip.AddrPort
}

const (
	udpBatch  = 32
	udpBufLen = 4096 // longer queries are cut, fail to unpack: FORMERR
)

func (u *udpServer) read() error {
	bc, err := newBatchConn(u.conn, udpBatch)
	if err != nil {
		return err
	}
	in := make([]udpMsg, udpBatch)
	out := make([]udpMsg, udpBatch)
	for i := range in {
		in[i].buf = make([]byte, udpBufLen)
		out[i].buf = make([]byte, 0, 1500)
	}
	var kb [maxKeyLen]byte
	for {
		n, err := bc.readBatch(in)
		if err != nil {
			if u.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			u.s.log.Warn("dns64: udp read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		k := 0
		for i := range n {
			pkt := in[i].buf[:in[i].n]
			from := in[i].addr
			if !from.IsValid() {
				continue
			}
			if u.s.cache != nil {
				if ans, ok := u.fast(pkt, out[k].buf[:0], kb[:0], from.Addr()); ok {
					out[k].buf = ans
					out[k].addr = from
					k++
					continue
				}
			}
			if u.slowCount.Load() >= int64(u.s.cfg.MaxConcurrent) {
				u.s.m.dropped.Inc() // overloaded: the client retries
				continue
			}
			cp := make([]byte, len(pkt))
			copy(cp, pkt)
			u.slowCount.Add(1)
			u.inflight.Add(1)
			go func() {
				defer u.inflight.Done()
				defer u.slowCount.Add(-1)
				defer func() {
					if p := recover(); p != nil {
						u.s.log.Error("dns64: panic serving query", "panic", p)
					}
				}()
				u.slow(cp, from)
			}()
		}
		for sent := 0; sent < k; {
			m, err := bc.writeBatch(out[sent:k])
			if err != nil {
				u.s.log.Debug("dns64: udp write", "err", err)
				m = max(m, 1) // skip the datagram that failed
			}
			sent += m
		}
	}
}

// wireQuery is what the fast path needs of a query.
type wireQuery struct {
	id      uint16
	rd      bool
	qtype   uint16
	qEnd    int // end of the question name
	edns    bool
	udpSize int
	cookie  []byte // the client cookie (RFC 7873), within the query
	key     []byte
}

// parseWireQuery accepts only plain queries: QUERY opcode, one question
// with an uncompressed name, no answer or authority records, at most an
// OPT record of version 0. Anything else takes the slow path.
func parseWireQuery(b []byte, kb []byte) (q wireQuery, ok bool) {
	if len(b) < 17 || b[2]&0xF8 != 0 || // QR and opcode
		binary.BigEndian.Uint32(b[4:]) != 1<<16 || b[8] != 0 || b[9] != 0 || b[10] != 0 || b[11] > 1 {
		return q, false
	}
	q.id = binary.BigEndian.Uint16(b)
	q.rd = b[2]&0x01 != 0
	cd := b[3]&0x10 != 0
	off := 12
	for {
		if off >= len(b) {
			return q, false
		}
		l := int(b[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(b) || off+1+l-12 > 254 {
			return q, false
		}
		off += 1 + l
	}
	q.qEnd = off
	if off+4 > len(b) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(b[off:])
	qclass := binary.BigEndian.Uint16(b[off+2:])
	switch q.qtype {
	case dns.TypeOPT, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB:
		return q, false
	}
	off += 4
	var flags uint8
	if cd {
		flags |= flagCD
	}
	q.udpSize = dns.MinMsgSize
	if b[11] == 1 {
		if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT || b[off+6] != 0 {
			return q, false // not OPT, or EDNS version other than 0
		}
		q.edns = true
		q.udpSize = max(int(binary.BigEndian.Uint16(b[off+3:])), dns.MinMsgSize)
		if b[off+7]&0x80 != 0 {
			flags |= flagDO
		}
		rdlen := int(binary.BigEndian.Uint16(b[off+9:]))
		if off+11+rdlen > len(b) {
			return q, false
		}
		if q.cookie, ok = findCookie(b[off+11 : off+11+rdlen]); !ok {
			return q, false // bad options: the slow path answers FORMERR
		}
		off += 11 + rdlen
	}
	if off != len(b) {
		return q, false
	}
	kb = append(kb, byte(q.qtype>>8), byte(q.qtype), byte(qclass>>8), byte(qclass), flags)
	q.key = appendLower(kb, b[12:q.qEnd])
	return q, true
}

// fast builds the answer to a cache hit in out; it reports false to send
// the query down the slow path.
func (u *udpServer) fast(b, out, kb []byte, from netip.Addr) ([]byte, bool) {
	s := u.s
	q, ok := parseWireQuery(b, kb)
	if !ok {
		return out, false
	}
	now := s.now()
	e := s.cache.get(q.key, now)
	if e == nil || e.qEnd != q.qEnd {
		return out, false
	}
	n := len(e.wire)
	if !q.edns && e.optOff >= 0 {
		n = e.optOff
	}
	maxSize := dns.MinMsgSize
	if q.edns {
		maxSize = min(q.udpSize, s.cfg.UDPSize)
	}
	cookie := q.edns && q.cookie != nil && e.optOff >= 0
	if n > maxSize || cookie && n+cookieOptLen > maxSize {
		return out, false // needs truncating: slow path
	}
	out = append(out[:0], e.wire[:n]...)
	binary.BigEndian.PutUint16(out, q.id)
	if q.rd {
		out[2] |= 0x01
	} else {
		out[2] &^= 0x01
	}
	if !q.edns && e.optOff >= 0 {
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])-1)
	}
	copy(out[12:q.qEnd], b[12:q.qEnd]) // the asker's letter case
	e.age(out, n, now)
	if cookie {
		out = s.cookies.withCookie(out, e.optOff, q.cookie, from, now)
	}
	s.m.queries[0][qtypeIndex(q.qtype)].Inc()
	s.m.cacheHits.Inc()
	s.m.response(int(out[3] & 0xF))
	return out, true
}

// age rewrites the TTLs in buf (a copy of the first n bytes of e.wire) by
// the time spent in the cache.
func (e *entry) age(buf []byte, n int, now time.Time) {
	age := uint32(max(now.Sub(e.stored), 0) / time.Second)
	for i, off := range e.ttlOffs {
		if int(off) >= n {
			break
		}
		t := e.ttls[i]
		if t > age {
			t -= age
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(buf[off:], t)
	}
}

// slow does what dns.Server does with a packet: drop it when the header is
// unreadable or it is a response, answer FORMERR or NOTIMP when the header
// or the body is unacceptable, else hand it to ServeDNS.
func (u *udpServer) slow(b []byte, from netip.AddrPort) {
	if len(b) < 12 {
		return
	}
	h := dns.Header{
		Id: binary.BigEndian.Uint16(b), Bits: binary.BigEndian.Uint16(b[2:]),
		Qdcount: binary.BigEndian.Uint16(b[4:]), Ancount: binary.BigEndian.Uint16(b[6:]),
		Nscount: binary.BigEndian.Uint16(b[8:]), Arcount: binary.BigEndian.Uint16(b[10:]),
	}
	w := &udpWriter{conn: u.conn, to: from}
	rcode := dns.RcodeFormatError
	switch acceptQuery(h) {
	case dns.MsgIgnore:
		return
	case dns.MsgRejectNotImplemented:
		rcode = dns.RcodeNotImplemented
	case dns.MsgAccept:
		req := new(dns.Msg)
		if err := req.Unpack(b); err == nil {
			u.s.ServeDNS(w, req)
			return
		}
	}
	m := new(dns.Msg)
	m.Id = h.Id
	m.Response = true
	m.Opcode = int(h.Bits>>11) & 0xF
	m.Rcode = rcode
	u.s.m.queries[0][3].Inc()
	u.s.m.response(rcode)
	w.WriteMsg(m)
}

// udpWriter is the dns.ResponseWriter of the slow path.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Write(b []byte) (int, error) { return w.conn.WriteToUDPAddrPort(b, w.to) }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}
