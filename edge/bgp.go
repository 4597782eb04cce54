package edge

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/edge/announce"
)

// Announcer ties the edge to its BGP speaker (edge/announce): a VIP is
// announced only while a serving listener covers it and the edge is ready
// (or draining: draining goes through the graceful shutdown, never a
// sudden withdrawal), and the edge's drain sequence runs the RFC 8326
// sequence — 65535:0, wait, withdraw — before the listeners close.
//
// Wiring, for a `bgp:` section of the edge configuration:
//
//	a, err := NewAnnouncer(bgpCfg, cfg, logger)
//	srv, err := New(cfg, WithLogger(logger), a.Option())
//	err = a.Run(ctx, srv) // instead of srv.Run(ctx)
type Announcer struct {
	sp   *announce.Speaker
	vips []netip.Prefix
	log  *slog.Logger
	srv  atomic.Pointer[Server]
	mu   sync.Mutex // serializes pushes of readiness
}

// withdrawSendWait is how long the speaker's Shutdown may wait for its
// withdrawals to be written to the sessions.
const withdrawSendWait = 2 * time.Second

// NewAnnouncer builds the speaker of a `bgp:` section. What the section
// leaves out comes from the edge configuration: the node name, and the
// Consul agent and token (the drain key and the status are under the
// prefix of a consul:// source, v6pod otherwise). It checks that the
// graceful-shutdown wait fits in the edge's drain timeout.
func NewAnnouncer(bgp announce.Config, edge Config, log *slog.Logger) (*Announcer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ec := edge
	ec.Apps = nil // SetDefaults writes into the map; this copy needs none of it
	ec.SetDefaults()
	if bgp.Node == "" {
		bgp.Node = ec.Node
	}
	var opts []announce.Option
	if bgp.Consul == "" && ec.Consul.Address != "" {
		cc := consulapi.DefaultConfig()
		cc.Address = ec.Consul.Address
		if ec.Consul.Token != "" {
			cc.Token = ec.Consul.Token
		}
		client, err := consulapi.NewClient(cc)
		if err != nil {
			return nil, fmt.Errorf("edge: bgp: consul %s: %w", ec.Consul.Address, err)
		}
		prefix := "v6pod"
		if rest, ok := strings.CutPrefix(ec.Source, "consul://"); ok {
			if _, p, ok := strings.Cut(rest, "/"); ok && strings.Trim(p, "/") != "" {
				prefix = strings.Trim(p, "/")
			}
		}
		opts = append(opts, announce.WithConsulClient(client, prefix))
	}
	if err := bgp.Validate(); err != nil {
		return nil, fmt.Errorf("edge: bgp: %w", err)
	}
	// The drain's one deadline covers the 65535:0 wait, the withdrawal
	// being sent (up to withdrawSendWait), drain.delay and the in-flight
	// requests: when the first three do not fit, the listeners would be
	// closed hard while the routes still point here.
	if w, d := bgp.GracefulShutdownWait, ec.Drain.Delay; w+withdrawSendWait+d >= ec.Drain.Timeout {
		return nil, fmt.Errorf("edge: bgp.graceful_shutdown_wait %s + %s to send the withdrawal + drain.delay %s must be shorter than drain.timeout %s (the withdrawal has to happen before the listeners close)", w, withdrawSendWait, d, ec.Drain.Timeout)
	}
	a := &Announcer{vips: bgp.Prefixes(), log: log}
	for _, v := range a.vips {
		if !coveredByConfig(v, ec.Listen) {
			log.Warn("edge: bgp: no listen address covers this VIP; it will never be announced", "vip", v)
		}
	}
	opts = append(opts,
		announce.WithLogger(log),
		announce.WithInitialReady(false),
		announce.WithReadyFunc(a.ready),
	)
	sp, err := announce.New(bgp, opts...)
	if err != nil {
		return nil, fmt.Errorf("edge: bgp: %w", err)
	}
	a.sp = sp
	return a, nil
}

// NewWithBGP builds the server and, when bgp is not nil, its announcer,
// and returns the function that runs them (Announcer.Run, or Server.Run
// without BGP). It is the whole of Main's BGP wiring:
//
//	srv, run, err := NewWithBGP(cfg, cfg.BGP, logger, opts...)
//	...
//	err = run(ctx)
func NewWithBGP(cfg Config, bgp *announce.Config, log *slog.Logger, opts ...Option) (*Server, func(context.Context) error, error) {
	if bgp == nil {
		srv, err := New(cfg, opts...)
		if err != nil {
			return nil, nil, err
		}
		return srv, srv.Run, nil
	}
	a, err := NewAnnouncer(*bgp, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	srv, err := New(cfg, append(append([]Option(nil), opts...), a.Option())...)
	if err != nil {
		a.sp.Close()
		return nil, nil, err
	}
	return srv, func(ctx context.Context) error { return a.Run(ctx, srv) }, nil
}

// Speaker is the BGP speaker (status, Drain).
func (a *Announcer) Speaker() *announce.Speaker { return a.sp }

// Option hooks the announcer into a Server: listener changes are pushed to
// the speaker at once, the drain sequence runs the graceful shutdown, and
// the speaker's metrics join the edge's /metrics.
func (a *Announcer) Option() Option {
	return func(s *Server) {
		a.srv.Store(s)
		s.listenerHooks = append(s.listenerHooks, func(netip.AddrPort, bool) { a.push() })
		s.beforeClose = append(s.beforeClose, a.beforeClose)
		if err := s.metrics.reg.Register(a.sp.Collector()); err != nil {
			a.log.Warn("edge: bgp: metrics not registered", "err", err)
		}
	}
}

// Run runs the speaker and the server together. The speaker starts first
// (managed VIP addresses in place for the listeners to bind), the server
// serves; when ctx ends the server drains — its before-close hook does the
// graceful shutdown and withdrawal — and only then the speaker stops.
func (a *Announcer) Run(ctx context.Context, srv *Server) error {
	if a.srv.Load() != srv {
		return fmt.Errorf("edge: bgp: the server was not built with this announcer's Option")
	}
	if err := a.sp.Start(ctx); err != nil {
		return err
	}
	spCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spDone := make(chan error, 1)
	go func() { spDone <- a.sp.Run(spCtx) }()
	err := srv.Run(ctx)
	a.sp.Close()
	cancel()
	if spErr := <-spDone; err == nil {
		err = spErr
	}
	return err
}

// beforeClose is the edge's drain step: announce with 65535:0, wait,
// withdraw (announce.Speaker.Shutdown), then the listeners may close.
func (a *Announcer) beforeClose(ctx context.Context) error {
	a.log.Info("edge: bgp: graceful shutdown before the listeners close")
	return a.sp.Shutdown(ctx)
}

// push re-evaluates every VIP after a listener change.
func (a *Announcer) push() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.vips {
		_ = a.sp.SetReady(v, a.ready(v))
	}
}

// ready reports whether a VIP may be announced: the edge serves (its lists
// loaded; ready or already draining) and an up listener covers the VIP.
func (a *Announcer) ready(vip netip.Prefix) bool {
	s := a.srv.Load()
	if s == nil {
		return false
	}
	st := s.state.Load()
	if st != stateReady && st != stateDraining {
		return false
	}
	if !s.src.Stats().Synced.Load() {
		return false
	}
	covered := false
	s.listeners.Range(func(k, v any) bool {
		if up, _ := v.(bool); up && covers(k.(netip.AddrPort).Addr(), vip) {
			covered = true
			return false
		}
		return true
	})
	return covered
}

// covers reports whether a listener bound to la receives traffic for vip:
// the same address, an address inside a VIP prefix, or a wildcard ([::]
// takes both families, 0.0.0.0 IPv4).
func covers(la netip.Addr, vip netip.Prefix) bool {
	la = la.Unmap()
	if la.IsUnspecified() {
		return la.Is6() || vip.Addr().Is4()
	}
	return vip.Contains(la)
}

// coveredByConfig tells whether some configured listen address can cover
// vip (a warning when none can).
func coveredByConfig(vip netip.Prefix, ls []Listener) bool {
	for _, l := range ls {
		ap, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			return true // a form only the listener understands: do not guess
		}
		if covers(ap.Addr(), vip) {
			return true
		}
	}
	return false
}
