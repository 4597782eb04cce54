package announce

import (
	"context"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// decision is what one prefix should look like to the peers, and why.
type decision struct {
	p      *prefixState
	want   routeState
	reason string
}

// inputs is the state that decides every prefix, copied under mu.
type inputs struct {
	now           time.Time
	wait          time.Duration
	drainSince    time.Time
	shutdownSince time.Time
	deadman       bool
	stopped       bool
}

// desired decides one prefix. Unhealthy (not ready, check failing) is
// withdrawn at once; draining and shutting down go through
// GRACEFUL_SHUTDOWN first, but only for a route that is announced (a route
// is never first announced with 65535:0).
func desired(in inputs, p *prefixState) (routeState, string) {
	if in.stopped {
		return stateWithdrawn, "stopped"
	}
	if in.deadman {
		return stateWithdrawn, "dead-man"
	}
	gshutOr := func(since time.Time, why string) (routeState, string) {
		if p.state != stateWithdrawn && in.now.Before(since.Add(in.wait)) {
			return stateGShut, why
		}
		return stateWithdrawn, why
	}
	if !in.shutdownSince.IsZero() {
		return gshutOr(in.shutdownSince, "shutdown")
	}
	if p.spec.kind == kindVIP {
		if !p.ready {
			return stateWithdrawn, "not ready"
		}
		if !p.checkOK {
			return stateWithdrawn, "check failing"
		}
		if !in.drainSince.IsZero() {
			return gshutOr(in.drainSince, "drained")
		}
	}
	return stateAnnounced, ""
}

// nextDeadline is when the graceful-shutdown wait that is running ends.
func nextDeadline(in inputs) (time.Time, bool) {
	var t time.Time
	for _, since := range []time.Time{in.drainSince, in.shutdownSince} {
		if since.IsZero() {
			continue
		}
		end := since.Add(in.wait)
		if end.After(in.now) && (t.IsZero() || end.Before(t)) {
			t = end
		}
	}
	return t, !t.IsZero()
}

// plan returns the changes to make, and the inputs they came from.
func (s *Speaker) plan() ([]decision, inputs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := inputs{
		now:           s.now(),
		wait:          s.cfg.GracefulShutdownWait,
		drainSince:    s.drainSince,
		shutdownSince: s.shutdownSince,
		deadman:       s.deadman,
		stopped:       s.stopped,
	}
	var out []decision
	for _, p := range s.prefixes {
		want, why := desired(in, p)
		if want != p.state {
			out = append(out, decision{p: p, want: want, reason: why})
		}
	}
	return out, in
}

// reconcileLoop makes the peers hold what desired says, on every change
// of its inputs and at the end of each graceful-shutdown wait.
func (s *Speaker) reconcileLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.reconcileOnce(ctx)
		_, in := s.plan()
		wake := s.cfg.HealthInterval
		if d, ok := nextDeadline(in); ok && d.Sub(in.now) < wake {
			wake = d.Sub(in.now) + time.Millisecond
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// reconcileOnce applies one plan: announcements first, then withdrawals,
// whose sending it waits for, then records the new states.
//
// A pass that completes without a GoBGP error beats the watchdog. A pass
// with nothing to do probes GoBGP instead (at most once per health
// interval), so a hung GoBGP is noticed before a change is needed.
func (s *Speaker) reconcileOnce(ctx context.Context) {
	if h := s.testHookReconcile; h != nil {
		h()
	}
	plan, in := s.plan()
	if len(plan) == 0 {
		clean := true
		if in.now.Sub(s.lastProbe) >= s.cfg.HealthInterval {
			s.lastProbe = in.now
			if err := s.callBGP(ctx, "get_bgp", func(ctx context.Context) error {
				_, err := s.bgp.GetBgp(ctx, &api.GetBgpRequest{})
				return err
			}); err != nil && ctx.Err() == nil {
				s.log.Warn("bgp: GoBGP does not answer", "err", err)
				clean = false
			}
		}
		if clean {
			s.reconBeat.Store(s.now().UnixNano())
		}
		s.signalProgress()
		return
	}
	failed := false
	var withdrawn []decision
	var applied []decision
	for _, d := range plan {
		if d.want == stateWithdrawn {
			withdrawn = append(withdrawn, d)
			continue
		}
		if err := s.announce(ctx, d.p.spec, d.want == stateGShut); err != nil {
			s.log.Error("bgp: announce failed", "prefix", d.p.spec.prefix, "err", err)
			s.m.errors.WithLabelValues("announce").Inc()
			failed = true
			continue
		}
		applied = append(applied, d)
	}
	if len(withdrawn) > 0 {
		base := s.sentUpdates(ctx)
		n := 0
		for _, d := range withdrawn {
			if err := s.withdraw(ctx, d.p.spec); err != nil {
				s.log.Error("bgp: withdraw failed", "prefix", d.p.spec.prefix, "err", err)
				s.m.errors.WithLabelValues("withdraw").Inc()
				failed = true
				continue
			}
			n++
			applied = append(applied, d)
		}
		if n > 0 {
			s.waitSent(ctx, base, n)
		}
	}
	s.mu.Lock()
	for _, d := range applied {
		old := d.p.state
		d.p.state, d.p.reason, d.p.since = d.want, d.reason, in.now
		s.m.setPrefix(d.p.spec, d.want)
		s.m.transitions.WithLabelValues(string(d.p.spec.kind), string(d.want)).Inc()
		lvl := "info"
		if d.want == stateWithdrawn && (d.reason == "dead-man" || d.reason == "check failing" || d.reason == "not ready") {
			lvl = "warn"
		}
		msg := "bgp: route " + string(d.want)
		args := []any{"prefix", d.p.spec.prefix, "kind", d.p.spec.kind, "from", old, "reason", d.reason}
		if lvl == "warn" {
			s.log.Warn(msg, args...)
		} else {
			s.log.Info(msg, args...)
		}
	}
	s.mu.Unlock()
	if !failed {
		s.reconBeat.Store(s.now().UnixNano())
	}
	s.signalProgress()
	s.markStatus()
}

// signalProgress wakes everyone waiting for a reconcile pass.
func (s *Speaker) signalProgress() {
	s.mu.Lock()
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
}
