// Package edge is the edge proxy every edge node runs: it serves HTTP/1.1
// and HTTP/2 (TLS by SNI from a folder of certificates) on any number of
// listeners, maps each request's Host to an app and forwards it to one of
// the app's upstreams, whose lists come live from a file, Redis or Consul.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/v6pod/v6pod/edge/balance"
	"github.com/v6pod/v6pod/edge/route"
	"github.com/v6pod/v6pod/edge/source"
)

// Server states.
const (
	stateStarting int32 = iota
	stateReady
	stateDraining
	stateClosed
)

// Option changes a Server.
type Option func(*Server)

// WithLogger sets the logger (discarded by default).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithAccessLogger sets the access log's logger (default: the logger).
func WithAccessLogger(l *slog.Logger) Option { return func(s *Server) { s.accessLog = l } }

// WithListenerState registers fn, called when a serving listener comes up
// (bound, up=true) and when it goes away (closed or failed, up=false). The
// BGP announcer uses it to announce only addresses that are served. fn
// must not block for long.
func WithListenerState(fn func(addr netip.AddrPort, up bool)) Option {
	return func(s *Server) { s.listenerHooks = append(s.listenerHooks, fn) }
}

// WithBeforeClose registers fn in the drain sequence: it runs after the
// edge has entered draining (Draining() is true, /readyz fails) and before
// the listeners close, with a context bounded by drain.timeout. Hooks run
// in registration order; an error is logged and the sequence goes on. The
// BGP announcer moves traffic away and withdraws here.
func WithBeforeClose(fn func(ctx context.Context) error) Option {
	return func(s *Server) { s.beforeClose = append(s.beforeClose, fn) }
}

// WithSource replaces the source named by the configuration (tests).
func WithSource(src source.Source) Option { return func(s *Server) { s.src = src } }

// Server is an edge proxy.
type Server struct {
	cfg       Config
	log       *slog.Logger
	accessLog *slog.Logger
	metrics   *metrics
	table     *route.Table
	src       source.Source
	certs     *certStore
	transport *transport
	proxy     *httputil.ReverseProxy
	bufs      bufPool
	sampler   sampler
	policies  map[string]*App

	unknownPage []byte

	listenerHooks []func(netip.AddrPort, bool)
	beforeClose   []func(context.Context) error

	state     atomic.Int32
	listeners sync.Map // netip.AddrPort → bool (up)
	nUp       atomic.Int32

	mu          sync.Mutex
	servers     []*http.Server
	metricsAddr netip.AddrPort
	addrs       []netip.AddrPort

	stop     chan struct{}
	stopOnce sync.Once
	running  atomic.Bool
	runDone  chan struct{}
}

// New checks cfg (after filling its defaults) and returns a server; no
// socket opens before Run.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge: config: %w", err)
	}
	s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler), metrics: newMetrics(),
		stop: make(chan struct{}), runDone: make(chan struct{}), policies: map[string]*App{}}
	for _, o := range opts {
		o(s)
	}
	if s.accessLog == nil {
		s.accessLog = s.log
	}
	for name := range s.cfg.Apps {
		a := s.cfg.Apps[name]
		s.policies[name] = &a
	}
	s.sampler.rate, s.sampler.sample = int64(cfg.AccessLog.Rate), int64(cfg.AccessLog.Sample)
	if cfg.UnknownHost.Page != "" {
		b, err := os.ReadFile(cfg.UnknownHost.Page)
		if err != nil {
			return nil, fmt.Errorf("edge: unknown_host.page: %w", err)
		}
		s.unknownPage = b
	}
	if s.src == nil {
		src, err := source.Open(cfg.Source, source.Options{Logger: s.log, Resync: cfg.Resync, ConsulToken: cfg.Consul.Token})
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		s.src = src
	}
	s.table = route.New(s.newPool)
	s.metrics.registerState(s, s.src, s.table)
	if cfg.TLS.CertDir != "" {
		s.certs = newCertStore(cfg.TLS.CertDir, cfg.TLS.Default, s.log, s.metrics)
	}
	s.transport = s.newTransport()
	s.proxy = s.newReverseProxy()
	return s, nil
}

func (s *Server) newPool(app string) *balance.Pool {
	pol := s.policyFor(app)
	p := balance.NewPool(app, balance.Policy(pol.Balance), pol.health())
	return p
}

// Table is the live routing table (for status and tests).
func (s *Server) Table() *route.Table { return s.table }

// Source is the upstream source.
func (s *Server) Source() source.Source { return s.src }

// Ready reports whether the edge serves: its lists are loaded (with at
// least one app), a listener is up and it is not draining.
func (s *Server) Ready() bool {
	return s.state.Load() == stateReady && s.nUp.Load() > 0 && s.src.Stats().Synced.Load() && s.table.Apps() > 0
}

// Draining reports whether the drain sequence has begun.
func (s *Server) Draining() bool { return s.state.Load() >= stateDraining }

// Addrs returns the bound serving addresses (with the real port when the
// configuration asked for port 0).
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// MetricsAddr is the bound metrics address (invalid when none).
func (s *Server) MetricsAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// Close starts the drain sequence and waits until Run returns.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.running.Load() {
		<-s.runDone
	}
	return nil
}

// Run serves until ctx ends or Close is called, then drains: it enters
// draining, runs the before-close hooks, closes the listeners and lets
// in-flight requests finish up to drain.timeout. It returns an error when
// the metrics listener cannot be opened or the certificates cannot load.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("edge: Run called twice")
	}
	defer close(s.runDone)
	bg, cancelBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancelBG()
		wg.Wait()
		s.state.Store(stateClosed)
	}()
	goBG := func(name string, fn func(ctx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("edge: background task panicked", "task", name, "panic", r)
				}
			}()
			fn(bg)
		}()
	}

	if s.certs != nil {
		errs := s.certs.loadAll()
		if s.certs.count() == 0 {
			return fmt.Errorf("edge: no usable certificate in %s: %w", s.cfg.TLS.CertDir, errors.Join(errs...))
		}
		goBG("certificates", func(ctx context.Context) {
			if err := s.certs.watch(ctx); err != nil {
				s.log.Error("edge tls: watching the certificate folder failed", "err", err)
			}
		})
	}
	var metricsSrv *http.Server
	if s.cfg.Metrics != "" {
		l, err := net.Listen("tcp", s.cfg.Metrics)
		if err != nil {
			return fmt.Errorf("edge: metrics: %w", err)
		}
		s.mu.Lock()
		s.metricsAddr = addrPortOf(l.Addr())
		s.mu.Unlock()
		metricsSrv = &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slogErrorLog(s.log)}
		go metricsSrv.Serve(l)
		defer metricsSrv.Close()
	}
	goBG("source", func(ctx context.Context) {
		if err := s.src.Run(ctx, s.table); err != nil {
			s.log.Error("edge: source stopped", "source", s.src.String(), "err", err)
		}
	})
	goBG("checks", s.runChecks)
	if s.transport.fast != nil {
		goBG("h1-sweep", func(ctx context.Context) {
			tick := time.NewTicker(30 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					s.transport.fast.Sweep()
				}
			}
		})
	}

	srvCtx, cancelSrv := context.WithCancel(context.Background())
	defer cancelSrv()
	var lwg sync.WaitGroup
	for _, lc := range s.cfg.Listen {
		hs := s.newHTTPServer(lc)
		s.mu.Lock()
		s.servers = append(s.servers, hs)
		s.mu.Unlock()
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			s.serveListener(srvCtx, lc, hs)
		}()
	}
	s.state.CompareAndSwap(stateStarting, stateReady)
	if *s.cfg.Consul.Register {
		goBG("consul", s.registerConsul)
	}
	s.log.Info("edge: serving", "listeners", len(s.cfg.Listen), "source", s.src.String(), "node", s.cfg.Node)

	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	s.drain(cancelSrv)
	lwg.Wait()
	return nil
}

// drain is the shutdown sequence of README.md.
func (s *Server) drain(cancelSrv context.CancelFunc) {
	s.state.Store(stateDraining)
	s.log.Info("edge: draining")
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.Drain.Timeout)
	defer cancel()
	for i, fn := range s.beforeClose {
		if err := fn(dctx); err != nil {
			s.log.Warn("edge: before-close hook failed", "hook", i, "err", err)
		}
	}
	if d := s.cfg.Drain.Delay; d > 0 {
		select {
		case <-time.After(d):
		case <-dctx.Done():
		}
	}
	cancelSrv() // stops listeners that are still trying to bind
	s.mu.Lock()
	servers := append([]*http.Server(nil), s.servers...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(dctx); err != nil {
				hs.Close()
			}
		}()
	}
	wg.Wait()
	s.transport.pooled.CloseIdleConnections()
	if s.transport.fast != nil {
		s.transport.fast.CloseIdleConnections()
	}
	s.log.Info("edge: drained")
}

func (s *Server) newHTTPServer(lc Listener) *http.Server {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: on(s.cfg.Client.HeaderTimeout),
		IdleTimeout:       on(s.cfg.Client.IdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slogErrorLog(s.log),
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.metrics.activeConns.Inc()
			case http.StateClosed, http.StateHijacked:
				s.metrics.activeConns.Dec()
			}
		},
	}
	var p http.Protocols
	p.SetHTTP1(true)
	if lc.TLS {
		hs.TLSConfig = s.certs.tlsConfig()
		p.SetHTTP2(true)
	} else if lc.H2C {
		p.SetUnencryptedHTTP2(true)
	}
	hs.Protocols = &p
	return hs
}

// serveListener binds (retrying while the address is missing), serves,
// and reports the listener's state to the hooks.
func (s *Server) serveListener(ctx context.Context, lc Listener, hs *http.Server) {
	lcfg := net.ListenConfig{}
	if lc.Freebind {
		lcfg.Control = freebind
	}
	var l net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		l, err = lcfg.Listen(ctx, "tcp", lc.Addr)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if attempt == 0 || attempt%30 == 0 {
			s.log.Error("edge: cannot listen, retrying", "addr", lc.Addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	ap := addrPortOf(l.Addr())
	s.mu.Lock()
	s.addrs = append(s.addrs, ap)
	s.mu.Unlock()
	s.setListener(ap, true)
	defer s.setListener(ap, false)
	var err error
	if lc.TLS {
		err = hs.ServeTLS(l, "", "")
	} else {
		err = hs.Serve(l)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("edge: listener failed", "addr", ap, "err", err)
	}
}

func (s *Server) setListener(ap netip.AddrPort, up bool) {
	if up {
		s.nUp.Add(1)
		s.metrics.listenerUp.WithLabelValues(ap.String()).Set(1)
	} else {
		s.nUp.Add(-1)
		s.metrics.listenerUp.WithLabelValues(ap.String()).Set(0)
	}
	s.listeners.Store(ap, up)
	for _, fn := range s.listenerHooks {
		fn(ap, up)
	}
}

func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1); serr != nil {
			return
		}
		// IPV6_FREEBIND (Linux 4.15+); IP_FREEBIND also covers v6 sockets
		// on older kernels, so its failure is not fatal.
		_ = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// opsHandler serves /metrics, /healthz and /readyz.
func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.Draining():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !s.src.Stats().Synced.Load():
			http.Error(w, "lists not loaded yet from "+s.src.String(), http.StatusServiceUnavailable)
		case s.table.Apps() == 0:
			http.Error(w, "no app loaded from "+s.src.String(), http.StatusServiceUnavailable)
		case s.nUp.Load() == 0:
			http.Error(w, "no listener up", http.StatusServiceUnavailable)
		case !s.Ready():
			http.Error(w, "starting", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ready\n"))
		}
	})
	return mux
}

// registerConsul registers the edge as v6pod-edge (ID = node name) with an
// HTTP check on /readyz, again every 30 s (an agent restart forgets it),
// and deregisters it on the way out.
func (s *Server) registerConsul(ctx context.Context) {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = s.cfg.Consul.Address
	if s.cfg.Consul.Token != "" {
		cfg.Token = s.cfg.Consul.Token
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		s.log.Error("edge: consul client", "err", err)
		return
	}
	ma := s.MetricsAddr()
	host := ma.Addr()
	if host.IsUnspecified() {
		if host.Is4() {
			host = netip.MustParseAddr("127.0.0.1")
		} else {
			host = netip.IPv6Loopback()
		}
	}
	reg := &api.AgentServiceRegistration{
		ID: s.cfg.Node, Name: "v6pod-edge",
		Meta: map[string]string{"node": s.cfg.Node},
		Check: &api.AgentServiceCheck{
			CheckID:  "v6pod-edge:" + s.cfg.Node + ":readyz",
			Name:     "edge readiness",
			HTTP:     "http://" + netip.AddrPortFrom(host, ma.Port()).String() + "/readyz",
			Interval: s.cfg.Consul.CheckInterval.String(),
			Timeout:  "1s",
		},
	}
	registered := false
	defer func() {
		if registered {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.Agent().ServiceDeregisterOpts(s.cfg.Node, (&api.QueryOptions{}).WithContext(dctx)); err != nil {
				s.log.Warn("edge: consul deregistration failed", "err", err)
			}
		}
	}()
	for attempt := 0; ; attempt++ {
		err := c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
		wait := 30 * time.Second
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("edge: consul registration failed, retrying", "err", err)
			wait = min(time.Duration(attempt+1)*time.Second, 10*time.Second)
		} else {
			if !registered {
				s.log.Info("edge: registered in consul", "service", "v6pod-edge", "id", s.cfg.Node)
			}
			registered, attempt = true, 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// runChecks runs the active health checks of the apps that have one.
func (s *Server) runChecks(ctx context.Context) {
	anyCheck := s.cfg.Defaults.Check != nil
	for _, a := range s.cfg.Apps {
		anyCheck = anyCheck || a.Check != nil
	}
	if !anyCheck {
		return
	}
	last := map[string]time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.table.RangePools(func(app string, p *balance.Pool) bool {
				pol := s.policyFor(app)
				if pol.Check == nil || now.Sub(last[app]) < pol.Check.Interval {
					return true
				}
				last[app] = now
				for _, u := range p.Upstreams() {
					select {
					case sem <- struct{}{}:
					case <-ctx.Done():
						return false
					}
					go func() {
						defer func() { <-sem }()
						u.SetActiveDown(!probe(ctx, client, pol.Check, u))
					}()
				}
				return true
			})
			pruneChecked(last, s.table)
		}
	}
}

// pruneChecked forgets the check times of apps that left the table.
func pruneChecked(last map[string]time.Time, t *route.Table) {
	for app := range last {
		if t.Pool(app) == nil {
			delete(last, app)
		}
	}
}

func probe(ctx context.Context, client *http.Client, c *Check, u *balance.Upstream) bool {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if c.Type == "tcp" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.HostPort)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+u.HostPort+c.Path, nil)
	if err != nil {
		return false
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400 // 2xx/3xx; a 101 is no health answer
}

// slogErrorLog adapts net/http's error log to slog (debug level: client
// errors such as TLS handshake failures are noise).
func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}

var _ http.Handler = (*Server)(nil)
