// Package dns64 is a DNS64 server (RFC 6147): it forwards queries to
// upstream resolvers, caches their answers, and synthesizes AAAA records
// from A records for names that have no usable AAAA, embedding the IPv4
// address in a NAT64 prefix as RFC 6052 lays out.
package dns64

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Server is a DNS64 server. It is a dns.Handler, so it can also be served
// by a caller's own dns.Server or fed a recorder in tests.
type Server struct {
	cfg   Config
	cc    *compiled
	log   *slog.Logger
	reg   *prometheus.Registry
	m     *metrics
	up    Exchanger
	cache *cache
	now   func() time.Time

	bufs    sync.Pool
	cookies cookieSecret

	flightsMu sync.Mutex
	flights   map[string]*flight

	mu        sync.Mutex
	ready     chan struct{}
	addr      string // bound DNS address once ready
	metrAddr  string
	cancelRun context.CancelFunc
	closed    bool
	done      chan struct{}
}

// Option changes how New builds a Server.
type Option func(*Server)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithRegistry sets the Prometheus registry the metrics go to; the
// default is a registry of the server's own (see Registry).
func WithRegistry(r *prometheus.Registry) Option { return func(s *Server) { s.reg = r } }

// WithExchanger replaces the upstream pool, for tests.
func WithExchanger(e Exchanger) Option { return func(s *Server) { s.up = e } }

// WithClock sets the clock used for TTLs and backoff.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New validates cfg and builds a server. No socket is opened before Run.
func New(cfg Config, opts ...Option) (*Server, error) {
	cc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		cc:      cc,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:     time.Now,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		flights: map[string]*flight{},
		cookies: newCookieSecret(),
	}
	for _, o := range opts {
		o(s)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if !cfg.Cache.Disabled {
		s.cache = newCache(cfg.Cache.MaxEntries, cfg.Cache.MaxBytes)
	}
	s.m = newMetrics(s.reg, s.cache)
	if s.cache != nil {
		s.cache.onEvict = s.m.cacheEvicted.Inc
	}
	if s.up == nil {
		s.up = newPool(cc.upstreams, &s.cfg, s.m, s.now, s.log)
	}
	s.bufs.New = func() any { b := make([]byte, 0, 1500); return &b }
	return s, nil
}

// Registry returns the registry holding the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Ready is closed once Run has bound its sockets.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound DNS address (UDP and TCP) once Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// MetricsAddr returns the bound metrics address once Ready, or "".
func (s *Server) MetricsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metrAddr
}

// Run serves DNS over UDP and TCP on cfg.Listen, and metrics when
// configured, until ctx ends or Close is called; then it stops accepting,
// lets queries in flight finish (up to 5 seconds) and returns. A Server
// runs once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("dns64: server closed")
	}
	if s.cancelRun != nil {
		s.mu.Unlock()
		return errors.New("dns64: already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancelRun = cancel
	s.mu.Unlock()
	defer close(s.done)
	defer cancel()

	pc, ln, err := listenBoth(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("dns64: listen %s: %w", s.cfg.Listen, err)
	}
	var mln net.Listener
	if s.cfg.Metrics != "" {
		if mln, err = net.Listen("tcp", s.cfg.Metrics); err != nil {
			pc.Close()
			ln.Close()
			return fmt.Errorf("dns64: metrics listen %s: %w", s.cfg.Metrics, err)
		}
	}
	tcp := &dns.Server{Listener: netutil.LimitListener(ln, s.cfg.TCPMaxConns), Handler: s, MsgAcceptFunc: acceptQuery,
		IdleTimeout: func() time.Duration { return 10 * time.Second }}
	errc := make(chan error, 8)
	var started sync.WaitGroup
	started.Add(1)
	tcp.NotifyStartedFunc = started.Done
	go func() { errc <- tcp.ActivateAndServe() }()
	udp := s.newUDPServer(pc)
	udp.start(errc)
	var hs *http.Server
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	started.Wait()
	s.mu.Lock()
	s.addr = pc.LocalAddr().String()
	if mln != nil {
		s.metrAddr = mln.Addr().String()
	}
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("dns64 serving", "listen", s.addr, "upstreams", s.cc.upstreams,
		"prefix", s.cc.defPrefix.Prefix().String(), "metrics", s.metrAddr)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("dns64: serve: %w", runErr)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := tcp.ShutdownContext(sctx); err != nil && !strings.Contains(err.Error(), "not started") {
		s.log.Warn("dns64 shutdown", "err", err)
	}
	deadline, _ := sctx.Deadline()
	udp.shutdown(deadline)
	if hs != nil {
		hs.Shutdown(sctx)
	}
	s.log.Info("dns64 stopped")
	return runErr
}

// Close stops a running server and waits for Run to return. It is safe to
// call more than once, and without Run.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel := s.cancelRun
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-s.done
	}
	return nil
}

// listenBoth binds UDP and TCP on the same address; with port 0 it retries
// until the kernel's UDP port is free for TCP too.
func listenBoth(address string) (*net.UDPConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", address)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc.(*net.UDPConn), ln, nil
		}
		pc.Close()
		lastErr = err
		if !strings.HasSuffix(address, ":0") {
			break
		}
	}
	return nil, nil, lastErr
}

// acceptQuery is the dns.Server's first check, on the header alone:
// responses are dropped, opcodes other than QUERY get NOTIMP, and queries
// with more than one question or with records where a query has none get
// FORMERR.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeDNS answers one query. A panic is logged and answered with
// SERVFAIL rather than ending the process.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("dns64: panic serving query", "panic", p, "stack", string(debug.Stack()))
			s.writeError(w, r, dns.RcodeServerFailure, nil)
		}
	}()
	tcp := false
	if ra := w.RemoteAddr(); ra != nil {
		_, tcp = ra.(*net.TCPAddr)
	}
	if r.Response {
		return
	}
	ti := 0
	if tcp {
		ti = 1
	}
	if len(r.Question) == 1 {
		s.m.queries[ti][qtypeIndex(r.Question[0].Qtype)].Inc()
	} else {
		s.m.queries[ti][3].Inc()
	}

	// Header and EDNS checks (RFC 6891 section 6.1.1 and 6.1.3).
	if r.Opcode != dns.OpcodeQuery {
		s.writeError(w, r, dns.RcodeNotImplemented, nil)
		return
	}
	if len(r.Question) != 1 || len(r.Answer) != 0 || len(r.Ns) != 0 {
		s.writeError(w, r, dns.RcodeFormatError, nil)
		return
	}
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil || o.Hdr.Name != "." {
				s.writeError(w, r, dns.RcodeFormatError, nil)
				return
			}
			opt = o
		}
	}
	if opt != nil && opt.Version() != 0 {
		s.writeError(w, r, dns.RcodeBadVers, opt)
		return
	}
	cookie, ok := clientCookie(opt)
	if !ok {
		// RFC 7873 section 5.2.2: a COOKIE option of a bad length.
		s.writeError(w, r, dns.RcodeFormatError, opt)
		return
	}
	q := r.Question[0]
	switch q.Qtype {
	case dns.TypeOPT:
		s.writeError(w, r, dns.RcodeFormatError, opt)
		return
	case dns.TypeAXFR, dns.TypeIXFR:
		s.writeError(w, r, dns.RcodeRefused, opt)
		return
	case dns.TypeMAILA, dns.TypeMAILB:
		s.writeError(w, r, dns.RcodeNotImplemented, opt)
		return
	}
	do := opt != nil && opt.Do()
	cd := r.CheckingDisabled
	maxSize := dns.MaxMsgSize
	if !tcp {
		maxSize = dns.MinMsgSize
		if opt != nil {
			maxSize = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.UDPSize)
		}
	}

	var flags uint8
	if do {
		flags |= flagDO
	}
	if cd {
		flags |= flagCD
	}
	var kb [maxKeyLen]byte
	key, ok := appendKey(kb[:0], q.Name, q.Qtype, q.Qclass, flags)
	if !ok {
		s.writeError(w, r, dns.RcodeFormatError, nil)
		return
	}
	now := s.now()
	if s.cache != nil {
		if e := s.cache.get(key, now); e != nil {
			s.m.cacheHits.Inc()
			s.writeEntry(w, r, e, now, opt != nil, cookie, maxSize)
			return
		}
		s.m.cacheMisses.Inc()
	}

	// Identical questions arriving while one is being resolved wait for
	// its answer instead of asking the upstreams again.
	e, err := s.coalesce(string(key), func() (*entry, error) {
		a := s.resolve(q, do, cd)
		e, err := s.makeEntry(string(key), q, a, do, cd, now)
		if err != nil {
			return nil, err
		}
		if s.cache != nil && a.rcode == dns.RcodeServerFailure {
			// RFC 9520: a resolution failure is cached for a short
			// while, so that a broken domain's clients do not make
			// every upstream ask its servers again for each query.
			e.expires = now.Add(failureTTL)
		}
		if s.cache != nil && e.expires.After(now) &&
			(a.rcode == dns.RcodeSuccess || a.rcode == dns.RcodeNameError || a.rcode == dns.RcodeServerFailure) {
			s.cache.put(e)
		}
		return e, nil
	})
	if err != nil {
		s.log.Warn("dns64: cannot pack answer", "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "err", err)
		s.writeError(w, r, dns.RcodeServerFailure, opt)
		return
	}
	end := s.now()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("resolved", "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "do", do, "cd", cd,
			"rcode", dns.RcodeToString[int(e.wire[3]&0xF)], "client", w.RemoteAddr().String(), "took", end.Sub(now))
	}
	s.writeEntry(w, r, e, end, opt != nil, cookie, maxSize)
}

// failureTTL is how long a SERVFAIL answer is cached (RFC 9520 section
// 3.2: at least 1 second, at most 5 minutes).
const failureTTL = 2 * time.Second

// resolve finds the canonical answer to one question.
func (s *Server) resolve(q dns.Question, do, cd bool) *answer {
	ctx, cancel := context.WithTimeout(context.Background(),
		time.Duration(2*(s.cfg.UpstreamRetries+1))*s.cfg.UpstreamTimeout+time.Second)
	defer cancel()
	switch {
	case q.Qclass == dns.ClassINET && q.Qtype == dns.TypeAAAA:
		return s.resolveAAAA(ctx, q, do, cd)
	case q.Qclass == dns.ClassINET && q.Qtype == dns.TypePTR && !s.cfg.DisablePTR:
		if v4, ok := s.reverseV4(q.Name); ok {
			return s.resolvePTR(ctx, q, v4, do, cd)
		}
	}
	return s.forward(ctx, q, do, cd)
}

// flight is one resolution in progress.
type flight struct {
	done chan struct{}
	e    *entry
	err  error
}

// coalesce runs fn once for concurrent callers with the same key.
func (s *Server) coalesce(key string, fn func() (*entry, error)) (*entry, error) {
	s.flightsMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightsMu.Unlock()
		s.m.coalesced.Inc()
		<-f.done
		return f.e, f.err
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.flightsMu.Unlock()
	defer func() {
		s.flightsMu.Lock()
		delete(s.flights, key)
		s.flightsMu.Unlock()
		close(f.done)
	}()
	f.e, f.err = fn()
	return f.e, f.err
}

// makeEntry packs the canonical answer: response header with RA, the
// question, the sections, and an OPT record (payload size, DO) last.
func (s *Server) makeEntry(key string, q dns.Question, a *answer, do, cd bool, now time.Time) (*entry, error) {
	ns := a.ns
	if a.rcode == dns.RcodeSuccess || a.rcode == dns.RcodeNameError {
		ns = negativeSOA(ns)
	}
	m := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Response: true, Opcode: dns.OpcodeQuery, RecursionAvailable: true,
			AuthenticatedData: a.ad, CheckingDisabled: cd, Rcode: a.rcode,
		},
		Compress: true,
		Question: []dns.Question{q},
		Answer:   a.an,
		Ns:       ns,
		Extra:    append(a.extra[:len(a.extra):len(a.extra)], newOPT(s.cfg.UDPSize, do)),
	}
	if len(a.ede) > 0 {
		m.Extra[len(m.Extra)-1].(*dns.OPT).Option = a.ede
	}
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	qEnd, offs, optOff, err := walkWire(wire)
	if err != nil {
		return nil, err
	}
	// Upstream records can pack into bytes that do not unpack again (an
	// empty RDATA, for one): never send, nor cache, what a client cannot
	// read. This costs one unpack per cache miss.
	if err := new(dns.Msg).Unpack(wire); err != nil {
		return nil, err
	}
	e := &entry{key: key, wire: wire, optOff: optOff, qEnd: qEnd, ttlOffs: offs, stored: now,
		xrcode: a.rcode > 0xF}
	minTTL := uint32(s.cfg.Cache.MaxTTL / time.Second)
	e.ttls = make([]uint32, len(offs))
	for i, off := range offs {
		e.ttls[i] = binary.BigEndian.Uint32(wire[off:])
		minTTL = min(minTTL, e.ttls[i])
	}
	if len(offs) == 0 {
		minTTL = 0 // nothing says how long this holds
	}
	e.expires = now.Add(time.Duration(minTTL) * time.Second)
	e.cost = int64(len(wire)+len(key)+6*len(offs)) + 160
	return e, nil
}

// negativeSOA caps the TTL of an SOA in the authority section of a negative
// answer (NXDOMAIN or NODATA) by its MINIMUM field, as RFC 2308
// section 3 and 5 say: that is how long the negative answer lives, here
// and in the client's cache. An authoritative upstream sends the SOA with
// its zone TTL. The records are copied, never changed in place.
func negativeSOA(ns []dns.RR) []dns.RR {
	for i, rr := range ns {
		soa, ok := rr.(*dns.SOA)
		if !ok || soa.Hdr.Ttl <= soa.Minttl {
			continue
		}
		out := make([]dns.RR, len(ns))
		copy(out, ns)
		c := *soa
		c.Hdr.Ttl = soa.Minttl
		out[i] = &c
		ns = out
	}
	return ns
}

func newOPT(size int, do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(uint16(size))
	if do {
		o.SetDo()
	}
	return o
}

// writeEntry sends a cached or fresh answer: ID, RD and question case from
// the request, TTLs aged, OPT removed for clients without EDNS, and
// truncated when it does not fit the client's UDP size.
func (s *Server) writeEntry(w dns.ResponseWriter, r *dns.Msg, e *entry, now time.Time, edns bool, cookie []byte, maxSize int) {
	if e.xrcode && !edns {
		// An extended rcode cannot be told without OPT.
		s.writeError(w, r, dns.RcodeServerFailure, nil)
		return
	}
	n := len(e.wire)
	if !edns && e.optOff >= 0 {
		n = e.optOff
	}
	bp := s.bufs.Get().(*[]byte)
	buf := append((*bp)[:0], e.wire[:n]...)
	binary.BigEndian.PutUint16(buf, r.Id)
	if r.RecursionDesired {
		buf[2] |= 0x01
	} else {
		buf[2] &^= 0x01
	}
	if !edns && e.optOff >= 0 {
		binary.BigEndian.PutUint16(buf[10:], binary.BigEndian.Uint16(buf[10:])-1)
	}
	if edns && cookie != nil && e.optOff >= 0 {
		buf = s.cookies.withCookie(buf, e.optOff, cookie, remoteIP(w), now)
	}
	rcode := int(buf[3] & 0xF)
	if e.xrcode {
		rcode |= int(e.wire[e.optOff+5]) << 4 // OPT: root name, type, class, TTL = extended rcode
	}
	slow := len(buf) > maxSize
	if end, err := dns.PackDomainName(r.Question[0].Name, buf, 12, nil, false); err != nil || end != e.qEnd {
		// Cannot happen for names equal but for case; restore and let
		// the slow path copy the question.
		copy(buf[12:e.qEnd], e.wire[12:e.qEnd])
		slow = true
	}
	e.age(buf, n, now)
	if slow {
		// Slow path: truncate (RFC 1035 section 4.2.1, RFC 6891 section 7).
		m := new(dns.Msg)
		if err := m.Unpack(buf); err != nil {
			s.putBuf(bp, buf)
			s.writeError(w, r, dns.RcodeServerFailure, nil)
			return
		}
		m.Id = r.Id
		m.RecursionDesired = r.RecursionDesired
		m.Question = r.Question[:1]
		m.Truncate(maxSize)
		s.putBuf(bp, buf)
		s.m.response(m.Rcode)
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("dns64: write", "err", err)
		}
		return
	}
	if _, err := w.Write(buf); err != nil {
		s.log.Debug("dns64: write", "err", err)
	}
	s.putBuf(bp, buf)
	s.m.response(rcode)
}

func (s *Server) putBuf(bp *[]byte, buf []byte) {
	if cap(buf) <= 65536 {
		*bp = buf[:0]
		s.bufs.Put(bp)
	}
}

// writeError answers r with rcode and no records; opt, when given, is
// mirrored as an OPT record (needed for extended rcodes such as BADVERS).
func (s *Server) writeError(w dns.ResponseWriter, r *dns.Msg, rcode int, opt *dns.OPT) {
	m := new(dns.Msg)
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = r.CheckingDisabled
	m.Rcode = rcode
	if len(r.Question) == 1 && rcode != dns.RcodeFormatError {
		m.Question = r.Question
	}
	if opt != nil || rcode > 0xF {
		o := newOPT(s.cfg.UDPSize, opt != nil && opt.Do())
		if client, ok := clientCookie(opt); ok && client != nil {
			b := s.cookies.appendCookieOpt(nil, client, remoteIP(w), s.now())
			o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(b[4:])}}
		}
		m.Extra = []dns.RR{o}
	}
	s.m.response(rcode)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns64: write", "err", err)
	}
}
