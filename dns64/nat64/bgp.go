package nat64

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/v6pod/v6pod/edge/announce"
)

// Announcer announces the NAT64 cluster's VIP (an IPv6 /128, DESIGN.md
// "VIP (NAT64 tier)") to the access tier (p4access) with the edge's
// announcer library, while this translator is healthy: its workers run.
// Before the translator stops, the VIP is withdrawn (the RFC 8326
// sequence of announce.Speaker.Shutdown), so p4access moves the flows
// before the device goes away; a failed worker withdraws it at once.
//
//	n, err := New(cfg)
//	a, err := NewAnnouncer(*cfg.BGP, n, logger)
//	err = a.Run(ctx) // instead of n.Run(ctx)
type Announcer struct {
	sp      *announce.Speaker
	n       *NAT
	vips    []netip.Prefix
	log     *slog.Logger
	running atomic.Bool // n.Run is serving (set once its workers started)
}

// ValidateBGP checks a `bgp:` section (filling its defaults): at least one
// VIP, each an IPv6 /128, as p4access expects.
func ValidateBGP(c *announce.Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("nat64: bgp: %w", err)
	}
	vips := c.Prefixes()
	if len(vips) == 0 {
		return fmt.Errorf("nat64: bgp: announce.vips: the cluster VIP (an IPv6 /128) is required")
	}
	for _, v := range vips {
		if !v.Addr().Is6() || v.Bits() != 128 {
			return fmt.Errorf("nat64: bgp: announce.vips: %s: the NAT64 tier's VIP is an IPv6 /128", v)
		}
	}
	return nil
}

// NewAnnouncer builds the speaker for n. Its metrics join the
// translator's /metrics.
func NewAnnouncer(cfg announce.Config, n *NAT, log *slog.Logger) (*Announcer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ValidateBGP(&cfg); err != nil {
		return nil, err
	}
	a := &Announcer{n: n, vips: cfg.Prefixes(), log: log}
	sp, err := announce.New(cfg,
		announce.WithLogger(log),
		announce.WithInitialReady(false),
		announce.WithReadyFunc(func(netip.Prefix) bool { return a.healthy() }),
	)
	if err != nil {
		return nil, fmt.Errorf("nat64: bgp: %w", err)
	}
	a.sp = sp
	n.t.cfg.collectors = append(n.t.cfg.collectors, sp.Collector())
	return a, nil
}

// Speaker is the BGP speaker (status, Drain).
func (a *Announcer) Speaker() *announce.Speaker { return a.sp }

// healthy: the translator's workers are running.
func (a *Announcer) healthy() bool {
	select {
	case <-a.n.ready:
	default:
		return false
	}
	return a.running.Load()
}

// push tells the speaker about a health change at once (the health loop
// would see it within health_interval).
func (a *Announcer) push() {
	h := a.healthy()
	for _, v := range a.vips {
		_ = a.sp.SetReady(v, h)
	}
}

// Run runs the translator and the speaker. The VIP is announced once the
// workers run. When ctx ends the VIP is withdrawn first (Shutdown: 65535:0
// for graceful_shutdown_wait, then the withdrawal, sent), and only then the
// translator stops. When the translator fails, the VIP is withdrawn at
// once and Run returns its error.
func (a *Announcer) Run(ctx context.Context) error {
	if err := a.sp.Start(ctx); err != nil {
		return fmt.Errorf("nat64: bgp: %w", err)
	}
	spCtx, spCancel := context.WithCancel(context.Background())
	defer spCancel()
	spDone := make(chan error, 1)
	go func() { spDone <- a.sp.Run(spCtx) }()

	natCtx, natCancel := context.WithCancel(context.Background())
	defer natCancel()
	natDone := make(chan error, 1)
	a.running.Store(true)
	go func() {
		err := a.n.Run(natCtx)
		a.running.Store(false)
		a.push()
		natDone <- err
	}()
	go func() {
		select {
		case <-a.n.ready:
			a.push()
		case <-natCtx.Done():
		}
	}()

	var err error
	select {
	case <-ctx.Done():
		wait := a.sp.Config().GracefulShutdownWait
		sctx, cancel := context.WithTimeout(context.Background(), wait+5*time.Second)
		if serr := a.sp.Shutdown(sctx); serr != nil {
			a.log.Warn("nat64: bgp: shutdown", "err", serr)
		}
		cancel()
		natCancel()
		err = <-natDone
	case err = <-natDone:
		if err == nil {
			err = fmt.Errorf("nat64: translator stopped")
		}
		a.log.Error("nat64: translator failed; VIP withdrawn", "err", err)
	}
	// End the speaker's Run (it stops the BGP server) before Close: a
	// Close racing with a Run that is just starting would stop GoBGP twice
	// at once.
	spCancel()
	if spErr := <-spDone; err == nil {
		err = spErr
	}
	a.sp.Close()
	return err
}
