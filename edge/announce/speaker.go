// Package announce is an embedded BGP speaker (GoBGP as a library) that
// announces a node's anycast VIPs and its own prefix to its routers while
// they deserve traffic: health-gated, drained and shut down with the
// GRACEFUL_SHUTDOWN community of RFC 8326, guarded by a dead-man.
package announce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Option changes how New builds a Speaker.
type Option func(*Speaker)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *Speaker) {
		if l != nil {
			s.log = l
		}
	}
}

// WithRegisterer registers the speaker's metrics on r instead of a
// registry of its own (Registry).
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Speaker) { s.registerer = r } }

// WithConsulClient makes the speaker use this Consul client and KV prefix
// (e.g. "v6pod") for the drain key and the status it writes, instead of
// the config's consul URL.
func WithConsulClient(c *consulapi.Client, prefix string) Option {
	return func(s *Speaker) { s.consul, s.kvPrefix = c, prefix }
}

// WithInitialReady sets whether VIPs count as ready before anyone calls
// SetReady (default true). An embedder that gates VIPs on its own
// readiness (the edge proxy: a VIP only while it listens on it) passes
// false, so nothing is announced before it says so.
func WithInitialReady(ready bool) Option { return func(s *Speaker) { s.initialReady = ready } }

// WithReadyFunc makes the health loop ask f, every health interval, whether
// a VIP is ready; its answer is recorded as by SetReady. If f stops
// returning, the health loop stalls and the dead-man withdraws every
// route: f is how an embedder proves it is alive.
func WithReadyFunc(f func(vip netip.Prefix) bool) Option { return func(s *Speaker) { s.readyFunc = f } }

// WithWatchdogExit replaces what the watchdog does when GoBGP itself does
// not answer (default: log and os.Exit(70)). Ending the process is the
// only sure way to drop the sessions of a hung GoBGP: the kernel resets
// them and the peers remove the routes at once.
func WithWatchdogExit(f func()) Option { return func(s *Speaker) { s.watchdogExit = f } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(s *Speaker) { s.now = now } }

// Speaker announces a node's prefixes. Its methods are safe for
// concurrent use.
type Speaker struct {
	cfg          Config
	log          *slog.Logger
	registerer   prometheus.Registerer
	registry     *prometheus.Registry
	m            *metrics
	consul       *consulapi.Client
	kvPrefix     string
	initialReady bool
	readyFunc    func(netip.Prefix) bool
	now          func() time.Time

	bgp        *server.BgpServer
	evMu       sync.RWMutex // held (read) while a peer event is handled
	evStopped  bool         // under evMu: the server is stopped, events are ignored
	apiTimeout time.Duration
	// testHookAPI, when set, runs before every GoBGP API call (tests
	// make GoBGP "hang" with it).
	testHookAPI func(op string)

	mu              sync.Mutex
	prefixes        []*prefixState
	byPrefix        map[netip.Prefix]*prefixState
	drainSrc        map[string]bool
	drainSince      time.Time
	shutdownSince   time.Time
	deadman         bool
	watchdogTripped bool
	stopped         bool
	peers           map[netip.Addr]*PeerStatus
	progress        chan struct{} // closed and replaced after every reconcile pass
	addrsAdded      []netip.Prefix

	kick       chan struct{}
	statusKick chan struct{}
	lastBeat   atomic.Int64 // unix nanos of the last health round
	reconBeat  atomic.Int64 // unix nanos of the last clean reconcile pass
	lastProbe  time.Time    // reconciler only: last GoBGP liveness probe

	watchdogExit func()
	// testHookReconcile, when set, runs at the start of every reconcile
	// pass (tests make the reconciler hang with it).
	testHookReconcile func()

	startOnce sync.Once
	startErr  error
	started   atomic.Bool
	running   atomic.Bool
	cancelRun context.CancelFunc
	runDone   chan struct{}
	closeOnce sync.Once
}

// prefixState is one announced prefix and what decides it.
type prefixState struct {
	spec    prefixSpec
	ready   bool // the embedder's readiness (SetReady)
	checkOK bool // the local check, true without one
	check   *checker

	// Written by the reconciler only (under mu).
	state  routeState
	reason string
	since  time.Time
}

// routeState is what the peers hold for a prefix.
type routeState string

const (
	stateWithdrawn routeState = "withdrawn"
	stateAnnounced routeState = "announced"
	stateGShut     routeState = "graceful-shutdown"
)

// New checks cfg and builds a speaker; it opens no socket and touches no
// interface (Start and Run do).
func New(cfg Config, opts ...Option) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Speaker{
		cfg:          cfg,
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		initialReady: true,
		now:          time.Now,
		byPrefix:     map[netip.Prefix]*prefixState{},
		drainSrc:     map[string]bool{},
		peers:        map[netip.Addr]*PeerStatus{},
		progress:     make(chan struct{}),
		kick:         make(chan struct{}, 1),
		statusKick:   make(chan struct{}, 1),
		runDone:      make(chan struct{}),
		apiTimeout:   apiTimeout,
		watchdogExit: func() { os.Exit(70) },
	}
	for _, o := range opts {
		o(s)
	}
	if s.registerer == nil {
		s.registry = prometheus.NewRegistry()
		s.registerer = s.registry
	}
	m, err := newMetrics(s.registerer)
	if err != nil {
		return nil, fmt.Errorf("announce: metrics: %w", err)
	}
	s.m = m
	if s.consul == nil && cfg.consulURL != nil {
		cc := consulapi.DefaultConfig()
		cc.Address = cfg.consulURL.Host
		c, err := consulapi.NewClient(cc)
		if err != nil {
			return nil, fmt.Errorf("announce: consul %s: %w", cfg.Consul, err)
		}
		s.consul = c
		s.kvPrefix = trimSlashes(cfg.consulURL.Path)
		if s.kvPrefix == "" {
			s.kvPrefix = "v6pod"
		}
	}
	t0 := s.now()
	add := func(spec prefixSpec) {
		p := &prefixState{spec: spec, ready: true, checkOK: true, state: stateWithdrawn, reason: "starting", since: t0}
		if spec.kind == kindVIP {
			p.ready = s.initialReady
			if cfg.Check != nil {
				p.check = newChecker(*cfg.Check, spec.prefix.Addr())
				p.checkOK = false
			}
		}
		s.prefixes = append(s.prefixes, p)
		s.byPrefix[spec.prefix] = p
	}
	for _, v := range cfg.vips {
		add(v)
	}
	if cfg.node != nil {
		add(*cfg.node)
	}
	for _, p := range cfg.Peers {
		s.peers[p.addr] = &PeerStatus{Address: p.addr.String(), ASN: p.ASN, Port: p.Port, State: "idle", Since: t0}
	}
	s.lastBeat.Store(t0.UnixNano())
	s.reconBeat.Store(t0.UnixNano())
	for _, p := range s.prefixes {
		s.m.setPrefix(p.spec, stateWithdrawn)
	}
	for _, p := range cfg.Peers {
		s.m.peerUp.WithLabelValues(p.addr.String()).Set(0)
	}
	return s, nil
}

func trimSlashes(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// Registry returns the speaker's own metrics registry, or nil when
// WithRegisterer was given.
func (s *Speaker) Registry() *prometheus.Registry { return s.registry }

// Collector returns the speaker's metrics, to register on an embedder's
// registry (they stay on the speaker's own registry too).
func (s *Speaker) Collector() prometheus.Collector { return s.m }

// Config returns the validated configuration.
func (s *Speaker) Config() Config { return s.cfg }

// Start puts the managed VIP addresses on their interface, starts the
// embedded BGP server and configures the peers. Run calls it; call it
// yourself first when something (a proxy binding the VIPs) needs the
// addresses in place before Run.
func (s *Speaker) Start(ctx context.Context) error {
	s.startOnce.Do(func() {
		s.startErr = s.start(ctx)
		if s.startErr == nil {
			s.started.Store(true)
		}
	})
	return s.startErr
}

func (s *Speaker) start(ctx context.Context) error {
	if s.cfg.ManageAddresses {
		added, err := addAddresses(s.cfg.Interface, s.cfg.Prefixes())
		s.mu.Lock()
		s.addrsAdded = added
		s.mu.Unlock()
		if err != nil {
			s.removeAddresses()
			return fmt.Errorf("announce: %w", err)
		}
		if len(added) > 0 {
			s.log.Info("bgp: VIP addresses added", "interface", s.cfg.Interface, "count", len(added))
		}
	}
	if err := s.startBGP(ctx); err != nil {
		s.removeAddresses()
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// Run runs the speaker until ctx ends: the health loop, the dead-man, the
// drain sources, the announcements and the status in Consul. When ctx ends
// it stops the BGP server, which closes the sessions (the peers drop the
// routes at once); call Shutdown first for a graceful exit.
func (s *Speaker) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("announce: Run called twice")
	}
	defer close(s.runDone)
	if err := s.Start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancelRun = cancel
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		cancel()
	}
	s.Heartbeat() // the dead-man counts from here, not from New
	s.reconBeat.Store(s.now().UnixNano())
	var wg sync.WaitGroup
	loops := []struct {
		name string
		f    func(context.Context)
	}{
		{"reconcile", s.reconcileLoop},
		{"health", s.healthLoop},
		{"deadman", s.deadmanLoop},
		{"watchdog", s.watchdogLoop},
		{"peers", s.peerLoop},
		{"drain-file", s.drainFileLoop},
		{"drain-consul", s.drainConsulLoop},
		{"status", s.statusLoop},
	}
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.guard(ctx, l.name, l.f)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	s.stopBGP()
	s.removeAddresses()
	s.writeFinalStatus()
	return nil
}

// guard runs a loop, logging and restarting it after a panic.
func (s *Speaker) guard(ctx context.Context, name string, f func(context.Context)) {
	for ctx.Err() == nil {
		panicked := func() (p bool) {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("bgp: loop panicked; restarting", "loop", name, "panic", r)
					s.m.errors.WithLabelValues("panic").Inc()
					p = true
				}
			}()
			f(ctx)
			return false
		}()
		if !panicked {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Close stops the speaker: it ends Run (without the graceful sequence;
// call Shutdown first for that), stops the BGP server and removes the
// addresses it added. It is safe to call more than once.
func (s *Speaker) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		cancel := s.cancelRun
		s.mu.Unlock()
		s.poke()
		if s.running.Load() {
			if cancel != nil {
				cancel()
			}
			<-s.runDone
			return
		}
		if s.started.Load() {
			s.stopBGP()
			s.removeAddresses()
		}
	})
	return nil
}

// poke wakes the reconciler.
func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SetReady records whether the embedder wants a VIP announced (it is
// listening on it and ready). A VIP that is not ready is withdrawn at
// once, without the graceful-shutdown sequence. vip may be the VIP's
// prefix or, for a single-address VIP, its address as a host prefix.
func (s *Speaker) SetReady(vip netip.Prefix, ready bool) error {
	s.mu.Lock()
	p, ok := s.byPrefix[vip]
	if !ok || p.spec.kind != kindVIP {
		s.mu.Unlock()
		return fmt.Errorf("announce: %s is not a configured VIP", vip)
	}
	changed := p.ready != ready
	p.ready = ready
	s.mu.Unlock()
	if changed {
		s.log.Info("bgp: VIP readiness", "vip", vip, "ready", ready)
		s.poke()
	}
	return nil
}

// SetHealthy is SetReady.
func (s *Speaker) SetHealthy(vip netip.Prefix, healthy bool) error { return s.SetReady(vip, healthy) }

// Drain withdraws (on) or restores (off) the VIPs without stopping: with
// on, they are first re-announced with GRACEFUL_SHUTDOWN (65535:0), and
// withdrawn after graceful_shutdown_wait. The node prefix stays. Drain
// through this call adds to the drain file and the Consul key: the node
// is drained while any of them says so.
func (s *Speaker) Drain(on bool) { s.setDrain(drainAPI, on) }

// Draining reports whether the node is drained, and by which sources.
func (s *Speaker) Draining() (bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var src []string
	for k, v := range s.drainSrc {
		if v {
			src = append(src, k)
		}
	}
	sortStrings(src)
	return len(src) > 0, src
}

func (s *Speaker) setDrain(source string, on bool) {
	s.mu.Lock()
	was := s.anyDrainLocked()
	if s.drainSrc[source] == on {
		s.mu.Unlock()
		return
	}
	s.drainSrc[source] = on
	now := s.anyDrainLocked()
	if now && !was {
		s.drainSince = s.now()
	} else if !now {
		s.drainSince = time.Time{}
	}
	s.mu.Unlock()
	s.log.Info("bgp: drain", "source", source, "on", on, "draining", now)
	if now != was {
		s.m.draining.Set(b2f(now))
		s.m.drainTransitions.WithLabelValues(onOff(now)).Inc()
	}
	s.poke()
	s.markStatus()
}

func (s *Speaker) anyDrainLocked() bool {
	for _, v := range s.drainSrc {
		if v {
			return true
		}
	}
	return false
}

// Shutdown is the graceful exit of RFC 8326: every announced route is
// re-announced with GRACEFUL_SHUTDOWN (65535:0), left for
// graceful_shutdown_wait so the routers move traffic away, then withdrawn;
// Shutdown returns when the withdrawals have been sent to the established
// peers (or ctx ends). Then the caller closes its listeners, and Close.
// Nothing is announced again after Shutdown.
func (s *Speaker) Shutdown(ctx context.Context) error {
	if !s.started.Load() || !s.running.Load() {
		return nil
	}
	s.mu.Lock()
	if s.shutdownSince.IsZero() {
		s.shutdownSince = s.now()
		s.log.Info("bgp: graceful shutdown", "wait", s.cfg.GracefulShutdownWait)
		s.m.shuttingDown.Set(1)
	}
	s.mu.Unlock()
	s.poke()
	s.markStatus()
	for {
		s.mu.Lock()
		done := true
		for _, p := range s.prefixes {
			if p.state != stateWithdrawn {
				done = false
			}
		}
		progress := s.progress
		s.mu.Unlock()
		if done {
			s.removeAddresses()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("announce: shutdown: %w", ctx.Err())
		case <-progress:
		case <-s.runDone:
			return nil
		}
	}
}

// Heartbeat tells the dead-man that the health loop made progress. The
// speaker's own health loop calls it every round; embedders need not.
func (s *Speaker) Heartbeat() { s.lastBeat.Store(s.now().UnixNano()) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
