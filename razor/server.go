// Package razor is the authoritative DNS server that steers clients to
// edge addresses: it serves RFC 1035 zones and answers route names with
// A/AAAA records picked at random from the healthy pools of the store
// (file or Consul KV), weighted per pool, optionally shuffle-sharded per
// label, with EDNS0, DNS cookies and response rate limiting.
package razor

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/siphash"
	"github.com/v6pod/v6pod/internal/store"
	"github.com/v6pod/v6pod/razor/rrl"
	"github.com/v6pod/v6pod/razor/zone"
)

// Server is a running razor. Create it with New, serve with Run, stop with
// Close (or by ending Run's context).
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	m         *metrics
	snap      atomic.Pointer[snapshot]
	cookies   bool
	cookieKey siphash.Key
	rrl       *rrl.Limiter
	st        store.Store
	ownStore  bool
	consul    *api.Client

	mu        sync.Mutex // guards in, and serializes rebuilds
	in        inputs
	lastGood  atomic.Int64 // unix nanos of the last good store read
	storeBad  atomic.Bool  // the last store read failed
	ready     chan struct{}
	readyOnce sync.Once

	udp       []*net.UDPConn
	tcp       []*net.TCPListener
	metricsLn net.Listener

	scratch sync.Pool

	connMu   sync.Mutex
	conns    map[net.Conn]*tcpConn
	nconns   int                  // open connections that count against tcp_max_conns
	byPrefix map[netip.Prefix]int // open connections per client prefix

	runMu     sync.Mutex
	cancelRun context.CancelFunc
	closed    atomic.Bool
	noListen  bool // razor --check
	wg        sync.WaitGroup
}

// Option changes how New builds a Server.
type Option func(*Server)

// WithLogger sets the logger (by default logs are discarded).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithStore makes razor read pools and routes from st instead of opening
// Config.Store. Close does not close it.
func WithStore(st store.Store) Option { return func(s *Server) { s.st = st } }

// withoutListeners makes New bind nothing (razor --check).
func withoutListeners() Option { return func(s *Server) { s.noListen = true } }

// New checks cfg, loads the zones and the store's current data, and binds
// the listeners. Nothing is served until Run.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("razor: config: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      slog.New(slog.DiscardHandler),
		now:      time.Now,
		ready:    make(chan struct{}),
		conns:    map[net.Conn]*tcpConn{},
		byPrefix: map[netip.Prefix]int{},
	}
	for _, o := range opts {
		o(s)
	}
	s.scratch.New = func() any { return newScratch() }
	s.m = newMetrics(s.storeAge)
	s.cookies = !cfg.Cookies.Disabled
	var key [16]byte
	if cfg.Cookies.Secret != "" {
		b, _ := hex.DecodeString(cfg.Cookies.Secret)
		copy(key[:], b)
	} else {
		_, _ = crand.Read(key[:])
	}
	s.cookieKey = siphash.KeyFromBytes(key)
	if r := cfg.RRL; r.ResponsesPerSecond > 0 {
		s.rrl = rrl.New(rrl.Config{ResponsesPerSecond: r.ResponsesPerSecond, Slip: *r.Slip,
			IPv4Prefix: r.IPv4Prefix, IPv6Prefix: r.IPv6Prefix, TableSize: r.TableSize})
	}
	zones, err := loadZones(cfg.Zones)
	if err != nil {
		return nil, err
	}
	s.in.zones = zones
	if cfg.consulConfigured() {
		cc := api.DefaultNonPooledConfig()
		cc.Address = cfg.Consul.Address
		if cfg.Consul.Token != "" {
			cc.Token = cfg.Consul.Token
		}
		if s.consul, err = api.NewClient(cc); err != nil {
			return nil, fmt.Errorf("razor: consul client: %w", err)
		}
	}
	if s.st == nil && cfg.Store != "" {
		if s.st, err = store.Open(cfg.Store, store.Options{Logger: s.log, ConsulToken: cfg.Consul.Token}); err != nil {
			return nil, fmt.Errorf("razor: %w", err)
		}
		s.ownStore = true
	}
	snap, err := buildSnapshot(s.in, s.m, s.snap.Load())
	if err != nil {
		return nil, fmt.Errorf("razor: %w", err)
	}
	s.snap.Store(snap)
	if s.st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		doc, err := s.st.Load(ctx)
		cancel()
		switch {
		case err != nil && strings.HasPrefix(s.st.String(), "file://"):
			s.Close()
			return nil, fmt.Errorf("razor: %w", err)
		case err != nil:
			s.log.Warn("store unreachable at start; answering zones only until it answers", "store", s.st.String(), "err", err)
		default:
			if err := s.applyDoc(doc); err != nil {
				s.Close()
				return nil, fmt.Errorf("razor: store %s: %w", s.st.String(), err)
			}
		}
	} else {
		s.lastGood.Store(s.now().UnixNano())
		s.readyOnce.Do(func() { close(s.ready) })
	}
	if s.noListen {
		return s, nil
	}
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func loadZones(cfgs []ZoneConfig) (map[string]*zone.Zone, error) {
	zones := map[string]*zone.Zone{}
	for _, zc := range cfgs {
		z, err := zone.Load(zc.Origin, zc.File)
		if err != nil {
			return nil, fmt.Errorf("razor: %w", err)
		}
		zones[z.Key] = z
	}
	return zones, nil
}

// listen binds every listener: UDP (UDPWorkers sockets sharing the
// address through SO_REUSEPORT) and TCP.
func (s *Server) listen() error {
	workers := s.cfg.UDPWorkers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	for _, addr := range s.cfg.Listen {
		network := "udp"
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			network = map[bool]string{true: "udp4", false: "udp6"}[ap.Addr().Unmap().Is4()]
		}
		_, port, _ := net.SplitHostPort(addr)
		// With port 0 the kernel picks a UDP port, and TCP must get the
		// same one; when another socket holds it for TCP, try again.
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			if err = s.listenOne(lc, network, addr, workers); err == nil || port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	if s.cfg.Metrics != "" {
		l, err := net.Listen("tcp", s.cfg.Metrics)
		if err != nil {
			return fmt.Errorf("razor: listen metrics %s: %w", s.cfg.Metrics, err)
		}
		s.metricsLn = l
	}
	return nil
}

// listenOne binds one listen address: workers UDP sockets and a TCP
// listener on the same port. On failure it closes what it opened.
func (s *Server) listenOne(lc net.ListenConfig, network, addr string, workers int) error {
	var udp []*net.UDPConn
	fail := func(err error) error {
		for _, c := range udp {
			c.Close()
		}
		return err
	}
	first, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return fmt.Errorf("razor: listen udp %s: %w", addr, err)
	}
	udp = append(udp, first.(*net.UDPConn))
	bound := first.LocalAddr().String() // the port, when addr asked for :0
	for i := 1; i < workers; i++ {
		c, err := lc.ListenPacket(context.Background(), network, bound)
		if err != nil {
			return fail(fmt.Errorf("razor: listen udp %s: %w", bound, err))
		}
		udp = append(udp, c.(*net.UDPConn))
	}
	tl, err := net.Listen(strings.Replace(network, "udp", "tcp", 1), bound)
	if err != nil {
		return fail(fmt.Errorf("razor: listen tcp %s: %w", bound, err))
	}
	s.udp = append(s.udp, udp...)
	s.tcp = append(s.tcp, tl.(*net.TCPListener))
	s.log.Info("listening", "addr", bound, "udp_sockets", workers)
	return nil
}

// UDPAddrs returns the bound UDP addresses (one per listen address).
func (s *Server) UDPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, c := range s.udp {
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
	}
	return out
}

// TCPAddrs returns the bound TCP addresses.
func (s *Server) TCPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tcp {
		out = append(out, l.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// MetricsAddr returns the metrics listener's address, if any.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// Ready is closed once razor has data from its store (or has no store).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx ends or Close is called, then shuts down
// gracefully: listeners close, open TCP queries finish, razor leaves the
// Consul catalog.
func (s *Server) Run(ctx context.Context) error {
	if s.closed.Load() {
		return errors.New("razor: Run after Close")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.runMu.Lock()
	s.cancelRun = cancel
	s.runMu.Unlock()

	var bg sync.WaitGroup
	goBG := func(name string, f func(context.Context)) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			s.supervise(ctx, name, f)
		}()
	}
	for _, c := range s.udp {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveUDP(c) }()
	}
	for _, l := range s.tcp {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveTCP(l) }()
	}
	if s.st != nil {
		goBG("store watch", s.watchStore)
		goBG("staleness", s.warnStale)
	}
	if s.consul != nil && *s.cfg.Consul.Health {
		goBG("edge health", s.watchEdges)
	}
	if s.consul != nil && *s.cfg.Consul.Register {
		goBG("consul registration", s.register)
	}
	if s.cfg.Probe.Type != "" {
		goBG("probe", s.probeLoop)
	}
	var hs *http.Server
	if s.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-s.ready:
				_, _ = io.WriteString(w, "ready\n")
			default:
				http.Error(w, "waiting for the store", http.StatusServiceUnavailable)
			}
		})
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(s.metricsLn) }()
	}
	<-ctx.Done()
	s.log.Info("shutting down")
	s.closeListeners()
	if hs != nil {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		c()
	}
	bg.Wait()
	s.wg.Wait()
	s.Close()
	return nil
}

// supervise runs a background loop, logging and restarting it after a
// panic, until ctx ends.
func (s *Server) supervise(ctx context.Context, name string, f func(context.Context)) {
	for ctx.Err() == nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("background loop panicked; restarting", "loop", name, "panic", r)
				}
			}()
			f(ctx)
		}()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
	// Let open TCP connections finish the query in hand.
	s.connMu.Lock()
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.connMu.Unlock()
}

// Close stops serving and releases everything. It is safe to call more
// than once and from any goroutine.
func (s *Server) Close() error {
	s.runMu.Lock()
	cancel := s.cancelRun
	s.runMu.Unlock()
	if cancel != nil {
		cancel()
	}
	if s.closed.Swap(true) {
		return nil
	}
	s.closeListeners()
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	if s.ownStore && s.st != nil {
		s.st.Close()
	}
	return nil
}

// respondSafe is respond with a recover: a query never takes razor down.
func (s *Server) respondSafe(sc *scratch, p []byte, client netip.AddrPort, tcp bool) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("query panicked", "panic", r, "client", client, "query", hex.EncodeToString(p))
			out = nil
		}
	}()
	return s.respond(sc, p, client, tcp)
}

func (s *Server) serveUDP(c *net.UDPConn) {
	if s.serveUDPBatch(c) {
		return
	}
	sc := newScratch()
	in := make([]byte, maxMsg)
	for {
		n, src, err := c.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if out := s.respondSafe(sc, in[:n], src, false); out != nil {
			_, _ = c.WriteToUDPAddrPort(out, src)
		}
	}
}

// tcpConn is the state of one open TCP connection.
type tcpConn struct {
	prefix netip.Prefix
	// since is when the connection last went idle (unix nanos); 0 while a
	// query is in hand.
	since   atomic.Int64
	evicted bool // closed to make room; no longer counted (connMu)
}

// clientPrefix is the prefix whose connections count together: a /24 of
// IPv4, a /56 of IPv6 (the RRL defaults).
func clientPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 56
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// admit counts a new connection from src, or says no: when its prefix
// holds tcp_max_conns_per_prefix connections already, or when razor holds
// tcp_max_conns and none is idle to close (the longest idle one is closed
// to make room, so idle connections cannot lock clients out).
func (s *Server) admit(c net.Conn, src netip.Addr) (*tcpConn, bool) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed.Load() {
		return nil, false
	}
	pfx := clientPrefix(src)
	if s.byPrefix[pfx] >= s.cfg.TCPMaxConnsPerPrefix {
		s.m.tcpRefused[0].Inc()
		return nil, false
	}
	if s.nconns >= s.cfg.TCPMaxConns {
		var victim net.Conn
		var vc *tcpConn
		for oc, st := range s.conns {
			if t := st.since.Load(); t != 0 && !st.evicted && (vc == nil || t < vc.since.Load()) {
				victim, vc = oc, st
			}
		}
		if vc == nil {
			s.m.tcpRefused[1].Inc()
			return nil, false
		}
		vc.evicted = true
		s.nconns--
		s.byPrefix[vc.prefix]--
		victim.Close()
		s.m.tcpEvicted.Inc()
	}
	tc := &tcpConn{prefix: pfx}
	tc.since.Store(time.Now().UnixNano())
	s.conns[c] = tc
	s.nconns++
	s.byPrefix[pfx]++
	return tc, true
}

// release forgets a connection admit counted.
func (s *Server) release(c net.Conn, tc *tcpConn) {
	s.connMu.Lock()
	delete(s.conns, c)
	if !tc.evicted {
		s.nconns--
		if s.byPrefix[tc.prefix]--; s.byPrefix[tc.prefix] <= 0 {
			delete(s.byPrefix, tc.prefix)
		}
	} else if s.byPrefix[tc.prefix] <= 0 {
		delete(s.byPrefix, tc.prefix)
	}
	s.connMu.Unlock()
}

func (s *Server) serveTCP(l *net.TCPListener) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		tc, ok := s.admit(c, src.Addr())
		if !ok {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c, src, tc)
			s.release(c, tc)
			c.Close()
		}()
	}
}

// serveConn answers the queries of one TCP connection in order (RFC 7766).
func (s *Server) serveConn(c *net.TCPConn, src netip.AddrPort, tc *tcpConn) {
	in := make([]byte, 512) // grows to the largest query seen
	var lb [2]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		tc.since.Store(time.Now().UnixNano())
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		tc.since.Store(0)
		n := int(lb[0])<<8 | int(lb[1])
		if n > len(in) {
			in = make([]byte, n)
		}
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		// Scratch memory is held only while a query is in hand, so idle
		// connections cost their read buffer and nothing more.
		sc := s.scratch.Get().(*scratch)
		out := s.respondSafe(sc, in[:n], src, true)
		if out == nil {
			s.scratch.Put(sc)
			return
		}
		msg := sc.buf[:2+len(out)]
		if len(out) > 0 && &out[0] != &sc.buf[2] {
			msg = append([]byte{0, 0}, out...)
		}
		msg[0], msg[1] = byte(len(out)>>8), byte(len(out))
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		_, err := c.Write(msg)
		s.scratch.Put(sc)
		if err != nil {
			return
		}
	}
}

// ServeDNS implements dns.Handler, so razor's query path can be driven by
// a recorder in tests or mounted in a miekg/dns server.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	p, err := r.Pack()
	if err != nil {
		m := new(dns.Msg)
		m.SetRcodeFormatError(r)
		_ = w.WriteMsg(m)
		return
	}
	var src netip.AddrPort
	tcp := false
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		src = a.AddrPort()
	case *net.TCPAddr:
		src, tcp = a.AddrPort(), true
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	if out := s.respondSafe(sc, p, src, tcp); out != nil {
		_, _ = w.Write(out)
	}
}

// Handle answers one DNS message in wire form, as the listeners do, and
// returns a copy of the response (nil: nothing is sent).
func (s *Server) Handle(p []byte, client netip.AddrPort, tcp bool) []byte {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	out := s.respondSafe(sc, p, client, tcp)
	if out == nil {
		return nil
	}
	return append([]byte(nil), out...)
}

// --- data: the store, health, zones ---------------------------------------

func (s *Server) storeAge() float64 {
	if !s.storeBad.Load() {
		return 0
	}
	return float64(s.now().UnixNano()-s.lastGood.Load()) / 1e9
}

// applyDoc checks doc against the zones and swaps in a snapshot with it.
func (s *Server) applyDoc(doc *model.Document) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.in
	in.doc = doc
	snap, err := buildSnapshot(in, s.m, s.snap.Load())
	if err != nil {
		return err
	}
	s.in = in
	s.publish(snap)
	s.lastGood.Store(s.now().UnixNano())
	s.storeBad.Store(false)
	s.m.storeUpdates.Inc()
	s.m.storeVersion.Set(float64(doc.Version))
	s.readyOnce.Do(func() { close(s.ready) })
	return nil
}

// publish swaps in a snapshot and logs pools whose health changed; call
// with s.mu held.
func (s *Server) publish(snap *snapshot) {
	old := s.snap.Swap(snap)
	was := map[string]bool{}
	if old != nil {
		for _, p := range old.pools {
			was[p.name] = p.healthy
		}
	}
	for key, rt := range snap.routes {
		for fi, fam := range rt.fam {
			wasOpen := false
			if old != nil && old.routes[key] != nil {
				wasOpen = old.routes[key].fam[fi].failOpen
			}
			if fam.failOpen != wasOpen {
				s.log.Warn("route fail-open changed: no active pool is healthy", "route", rt.name,
					"family", []string{"A", "AAAA"}[fi], "fail_open", fam.failOpen)
			}
		}
	}
	if old != nil {
		// Forget the series of pools and routes that are gone.
		now := map[string]bool{}
		for _, p := range snap.pools {
			now[p.name] = true
		}
		for _, p := range old.pools {
			if !now[p.name] {
				s.m.poolAnswers.DeleteLabelValues(p.name)
			}
		}
		for key, rt := range old.routes {
			if snap.routes[key] == nil {
				s.m.failOpen.DeleteLabelValues(routeLabel(rt.name))
			}
		}
	}
	s.m.poolHealthy.Reset()
	for _, p := range snap.pools {
		if h, ok := was[p.name]; ok && h != p.healthy {
			s.log.Info("pool health changed", "pool", p.name, "healthy", p.healthy)
		}
		v := 0.0
		if p.healthy {
			v = 1
		}
		s.m.poolHealthy.WithLabelValues(p.name).Set(v)
	}
}

// rebuild rebuilds the snapshot after a health change; call with s.mu held.
func (s *Server) rebuild() {
	snap, err := buildSnapshot(s.in, s.m, s.snap.Load())
	if err != nil {
		s.log.Error("rebuild failed; keeping the current answers", "err", err)
		return
	}
	s.publish(snap)
}

func (s *Server) watchStore(ctx context.Context) {
	err := s.st.Watch(ctx, func(doc *model.Document, err error) {
		if err == nil {
			err = s.applyDoc(doc)
			if err == nil {
				s.log.Info("store data applied", "store", s.st.String(), "version", doc.Version,
					"pools", len(doc.Pools), "routes", len(doc.Routes))
				return
			}
			err = fmt.Errorf("data rejected: %w", err)
		}
		s.m.storeErrors.Inc()
		s.storeBad.Store(true)
		s.log.Warn("store read failed; keeping the last good data", "store", s.st.String(), "err", err,
			"age", time.Duration(s.storeAge()*1e9).Round(time.Millisecond))
	})
	if err != nil && ctx.Err() == nil {
		s.m.storeErrors.Inc()
		s.storeBad.Store(true)
		s.log.Warn("store watch ended; restarting", "store", s.st.String(), "err", err)
	}
}

// warnStale logs, every MaxStaleness, while the store has been failing
// for longer than MaxStaleness (razor keeps answering from the last data).
func (s *Server) warnStale(ctx context.Context) {
	t := time.NewTicker(s.cfg.MaxStaleness)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if age := s.storeAge(); age > s.cfg.MaxStaleness.Seconds() {
				s.log.Warn("store data is stale; still answering from it", "store", s.st.String(),
					"age", time.Duration(age*float64(time.Second)).Round(time.Second))
			}
		}
	}
}

// Reload reads the zone files again (SIGHUP) and re-checks the store's
// data against them. On any error the running zones stay.
func (s *Server) Reload(ctx context.Context) error {
	zones, err := loadZones(s.cfg.Zones)
	if err != nil {
		s.m.zoneReloads.WithLabelValues("error").Inc()
		return err
	}
	s.mu.Lock()
	in := s.in
	in.zones = zones
	snap, err := buildSnapshot(in, s.m, s.snap.Load())
	if err != nil {
		s.mu.Unlock()
		s.m.zoneReloads.WithLabelValues("error").Inc()
		return fmt.Errorf("razor: reload: %w", err)
	}
	s.in = in
	s.publish(snap)
	s.mu.Unlock()
	s.m.zoneReloads.WithLabelValues("ok").Inc()
	s.log.Info("zones reloaded", "zones", len(zones))
	return nil
}

// setEdgeUp applies the Consul catalog's view of the edges.
func (s *Server) setEdgeUp(up map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mapsEqual(s.in.edgeUp, up) && s.in.edgeUp != nil {
		return
	}
	s.in.edgeUp = up
	s.rebuild()
}

// setProbeDown marks a pool down (or up again) for razor's own probe.
func (s *Server) setProbeDown(pool string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.in.probeDown[pool] == down {
		return
	}
	m := make(map[string]bool, len(s.in.probeDown)+1)
	for k, v := range s.in.probeDown {
		m[k] = v
	}
	if down {
		m[pool] = true
	} else {
		delete(m, pool)
	}
	s.in.probeDown = m
	s.rebuild()
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// PoolHealthy reports razor's current view of a pool's health.
func (s *Server) PoolHealthy(pool string) (healthy, known bool) {
	for _, p := range s.snap.Load().pools {
		if p.name == pool {
			return p.healthy, true
		}
	}
	return false, false
}
