package announce

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// checker runs the local check of one VIP with rise/fall counting.
type checker struct {
	cfg    CheckConfig
	target netip.Addr
	client *http.Client

	mu      sync.Mutex
	ok      bool
	streak  int // consecutive results that disagree with ok
	lastRun time.Time
}

func newChecker(cfg CheckConfig, target netip.Addr) *checker {
	c := &checker{cfg: cfg, target: target}
	if cfg.Kind == "http" {
		c.client = &http.Client{
			Timeout: cfg.Timeout,
			Transport: &http.Transport{
				Proxy:             nil,
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// due reports whether the check should run at now.
func (c *checker) due(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastRun.IsZero() || now.Sub(c.lastRun) >= c.cfg.Interval {
		c.lastRun = now
		return true
	}
	return false
}

// probe runs the check once.
func (c *checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hostport := net.JoinHostPort(c.target.String(), strconv.Itoa(c.cfg.Port))
	switch c.cfg.Kind {
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return err
		}
		return conn.Close()
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+c.cfg.Path, nil)
		if err != nil {
			return err
		}
		if c.cfg.Host != "" {
			req.Host = c.cfg.Host
		}
		req.Header.Set("User-Agent", "v6pod-announce-check")
		resp, err := c.client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	return fmt.Errorf("unknown check kind %q", c.cfg.Kind)
}

// record counts one result and returns the (possibly new) health and
// whether it changed: rise passes in a row make it healthy, fall failures
// in a row unhealthy.
func (c *checker) record(pass bool) (ok, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pass == c.ok {
		c.streak = 0
		return c.ok, false
	}
	c.streak++
	need := c.cfg.Rise
	if !pass {
		need = c.cfg.Fall
	}
	if c.streak >= need {
		c.ok, c.streak = pass, 0
		return c.ok, true
	}
	return c.ok, false
}

// healthLoop is the speaker's heartbeat: every interval it runs the due
// local checks, asks the embedder's ReadyFunc, and then beats. Anything
// in it that hangs stops the beat, and the dead-man withdraws.
func (s *Speaker) healthLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		s.healthRound(ctx)
		if ctx.Err() != nil {
			return
		}
		s.Heartbeat()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Speaker) healthRound(ctx context.Context) {
	s.mu.Lock()
	vips := make([]*prefixState, 0, len(s.prefixes))
	for _, p := range s.prefixes {
		if p.spec.kind == kindVIP {
			vips = append(vips, p)
		}
	}
	s.mu.Unlock()

	now := s.now()
	var wg sync.WaitGroup
	for _, p := range vips {
		if p.check == nil || !p.check.due(now) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.check.probe(ctx)
			if ctx.Err() != nil {
				return
			}
			s.m.checks.WithLabelValues(p.spec.prefix.String(), passFail(err == nil)).Inc()
			ok, changed := p.check.record(err == nil)
			if !changed {
				return
			}
			if ok {
				s.log.Info("bgp: VIP check passing", "vip", p.spec.prefix)
			} else {
				s.log.Warn("bgp: VIP check failing", "vip", p.spec.prefix, "err", err)
			}
			s.mu.Lock()
			p.checkOK = ok
			s.mu.Unlock()
			s.poke()
		}()
	}
	if s.readyFunc != nil {
		// A ReadyFunc that hangs stalls this round (so the dead-man trips)
		// but must not keep Run from returning.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, p := range vips {
				ready := s.readyFunc(p.spec.prefix)
				s.mu.Lock()
				changed := p.ready != ready
				p.ready = ready
				s.mu.Unlock()
				if changed {
					s.log.Info("bgp: VIP readiness", "vip", p.spec.prefix, "ready", ready)
					s.poke()
				}
			}
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
	wg.Wait()
	// The drain file is also polled here, in case its folder cannot be
	// watched.
	s.pollDrainFile()
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

// deadmanLoop withdraws every route when the health loop has not beaten
// for deadman_intervals intervals, and restores them when it beats again.
// It holds no lock while waiting and shares nothing with the health loop
// but the heartbeat, so a stuck health loop cannot stop it.
func (s *Speaker) deadmanLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HealthInterval / 2)
	defer t.Stop()
	limit := time.Duration(s.cfg.DeadmanIntervals) * s.cfg.HealthInterval
	var backSince time.Time // tripped, and beating again since
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		age := now.Sub(time.Unix(0, s.lastBeat.Load()))
		tripped := age > limit
		s.mu.Lock()
		was := s.deadman
		s.mu.Unlock()
		// Hysteresis: once tripped, the routes come back only after the
		// loop has beaten for a whole limit without stalling again, so a
		// loop that stalls on and off does not flap the routes (and get
		// them damped by the routers).
		if was && !tripped {
			if backSince.IsZero() {
				backSince = now
			}
			if now.Sub(backSince) < limit {
				tripped = true
			}
		} else {
			backSince = time.Time{}
		}
		s.mu.Lock()
		changed := s.deadman != tripped
		s.deadman = tripped
		s.mu.Unlock()
		if !changed {
			continue
		}
		s.m.deadman.Set(b2f(tripped))
		if tripped {
			s.m.deadmanTrips.Inc()
			s.log.Error("bgp: dead-man: health loop made no progress; withdrawing every route", "since", age.Round(time.Millisecond), "limit", limit)
		} else {
			s.log.Warn("bgp: dead-man: health loop is back; restoring routes")
		}
		s.poke()
		s.markStatus()
	}
}

// watchdogLimit is how long the reconciler may go without a clean pass:
// the dead-man's limit plus the time a withdrawal may take to be sent.
func (s *Speaker) watchdogLimit() time.Duration {
	return time.Duration(s.cfg.DeadmanIntervals)*s.cfg.HealthInterval + sendWait
}

// watchdogLoop guards what the dead-man relies on: the reconciler (it
// does the withdrawing) and GoBGP (it sends them). When the reconciler
// has not completed a clean pass for watchdogLimit — it hangs, or GoBGP
// does not answer or fails every change — routes may be stale while
// GoBGP's keepalives keep the sessions up. Then every peer is shut
// (DisablePeer: CEASE, the peers drop the routes at once); if GoBGP does
// not answer that either, the process ends (WithWatchdogExit). The peers
// are enabled again when the reconciler is back.
func (s *Speaker) watchdogLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HealthInterval / 2)
	defer t.Stop()
	limit := s.watchdogLimit()
	tripped := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		age := s.now().Sub(time.Unix(0, s.reconBeat.Load()))
		stalled := age > limit
		if stalled == tripped {
			continue
		}
		tripped = stalled
		s.mu.Lock()
		s.watchdogTripped = stalled
		s.mu.Unlock()
		s.m.watchdog.Set(b2f(stalled))
		if stalled {
			s.m.watchdogTrips.Inc()
			s.log.Error("bgp: watchdog: the reconciler or GoBGP made no progress; shutting the sessions", "since", age.Round(time.Millisecond), "limit", limit)
		} else {
			s.log.Warn("bgp: watchdog: the reconciler is back; enabling the sessions")
		}
		for _, p := range s.cfg.Peers {
			addr := p.addr.String()
			var err error
			if stalled {
				err = s.callBGP(ctx, "disable_peer", func(ctx context.Context) error {
					return s.bgp.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: "v6pod announce watchdog: routes may be stale"})
				})
			} else {
				err = s.callBGP(ctx, "enable_peer", func(ctx context.Context) error {
					return s.bgp.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr})
				})
			}
			if err == nil || ctx.Err() != nil {
				continue
			}
			s.m.errors.WithLabelValues("watchdog").Inc()
			if stalled {
				s.log.Error("bgp: watchdog: GoBGP does not shut the session; ending the process so the kernel resets it", "peer", addr, "err", err)
				s.watchdogExit()
				return
			}
			s.log.Error("bgp: watchdog: enable peer", "peer", addr, "err", err)
		}
		s.markStatus()
	}
}
