package announce

import (
	"context"
	"encoding/json"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Status is the JSON the speaker writes to Consul at
// <prefix>/edges/<node>/bgp on every change (and what `ops edge status`
// reads). It holds no secrets.
type Status struct {
	Node       string     `json:"node"`
	LocalASN   uint32     `json:"local_asn"`
	RouterID   string     `json:"router_id"`
	Draining   bool       `json:"draining"`
	DrainedBy  []string   `json:"drained_by,omitempty"`
	DrainSince *time.Time `json:"drain_since,omitempty"`
	Shutdown   bool       `json:"shutting_down"`
	Deadman    bool       `json:"deadman"`
	// Watchdog: the sessions are shut because the reconciler or GoBGP
	// made no progress.
	Watchdog bool           `json:"watchdog,omitempty"`
	Peers    []PeerStatus   `json:"peers"`
	Prefixes []PrefixStatus `json:"prefixes"`
	Updated  time.Time      `json:"updated"`
}

// PeerStatus is one BGP session.
type PeerStatus struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	Port    int    `json:"port"`
	// State is idle, connect, active, opensent, openconfirm or established.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Established counts how often the session came up.
	Established int `json:"established"`
}

// PrefixStatus is one prefix and what the peers hold for it.
type PrefixStatus struct {
	Prefix string `json:"prefix"`
	// Kind is vip or node.
	Kind string `json:"kind"`
	// State is announced, graceful-shutdown (announced with 65535:0) or
	// withdrawn.
	State string `json:"state"`
	// Reason says why a prefix is withdrawn or in graceful shutdown: not
	// ready, check failing, drained, shutdown, dead-man, stopped.
	Reason      string    `json:"reason,omitempty"`
	Since       time.Time `json:"since"`
	Ready       bool      `json:"ready"`
	CheckOK     bool      `json:"check_ok"`
	Communities []string  `json:"communities,omitempty"`
	MED         *uint32   `json:"med,omitempty"`
}

// Status returns the current state.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Node:     s.cfg.Node,
		LocalASN: s.cfg.LocalASN,
		RouterID: s.cfg.routerID.String(),
		Draining: s.anyDrainLocked(),
		Shutdown: !s.shutdownSince.IsZero(),
		Deadman:  s.deadman,
		Watchdog: s.watchdogTripped,
		Updated:  s.now().UTC(),
	}
	for k, v := range s.drainSrc {
		if v {
			st.DrainedBy = append(st.DrainedBy, k)
		}
	}
	sortStrings(st.DrainedBy)
	if !s.drainSince.IsZero() {
		t := s.drainSince.UTC()
		st.DrainSince = &t
	}
	for _, p := range s.cfg.Peers {
		ps := *s.peers[p.addr]
		ps.Since = ps.Since.UTC()
		st.Peers = append(st.Peers, ps)
	}
	for _, p := range s.prefixes {
		ps := PrefixStatus{
			Prefix:  p.spec.prefix.String(),
			Kind:    string(p.spec.kind),
			State:   string(p.state),
			Reason:  p.reason,
			Since:   p.since.UTC(),
			Ready:   p.ready,
			CheckOK: p.checkOK,
			MED:     p.spec.med,
		}
		for _, c := range p.spec.communities {
			ps.Communities = append(ps.Communities, FormatCommunity(c))
		}
		if p.state == stateGShut {
			ps.Communities = append(ps.Communities, FormatCommunity(communityGracefulShutdown))
		}
		st.Prefixes = append(st.Prefixes, ps)
	}
	return st
}

// markStatus asks the status loop to write the status.
func (s *Speaker) markStatus() {
	select {
	case s.statusKick <- struct{}{}:
	default:
	}
}

// Status writes are coalesced: a change is written 100ms after it, and
// never sooner than statusMinInterval after the previous write, so a
// flapping VIP or session costs Consul (a Raft write each) at most one
// write a second per node.
const (
	statusSettle      = 100 * time.Millisecond
	statusMinInterval = time.Second
)

// statusLoop writes the status to Consul after every change (coalescing
// changes, see statusMinInterval) and once a minute; a failed write is
// retried.
func (s *Speaker) statusLoop(ctx context.Context) {
	if s.consul == nil {
		return
	}
	kv := s.consul.KV()
	var last []byte
	var lastWrite time.Time
	retry := time.Duration(0)
	refresh := time.NewTicker(time.Minute)
	defer refresh.Stop()
	write := func(force bool) {
		b, err := json.Marshal(s.Status())
		if err != nil {
			return
		}
		if !force && last != nil && sameIgnoringUpdated(last, b) {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = kv.Put(&consulapi.KVPair{Key: s.statusKey(), Value: b}, (&consulapi.WriteOptions{}).WithContext(wctx))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.m.statusWrites.WithLabelValues("error").Inc()
				s.log.Warn("bgp: write status to consul", "key", s.statusKey(), "err", err)
				retry = 2 * time.Second
			}
			return
		}
		retry = 0
		last = b
		lastWrite = time.Now()
		s.m.statusWrites.WithLabelValues("ok").Inc()
	}
	write(true)
	for {
		var retryC <-chan time.Time
		if retry > 0 {
			retryC = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.statusKick:
			wait := max(statusSettle, time.Until(lastWrite.Add(statusMinInterval)))
			select {
			case <-ctx.Done():
				continue
			case <-time.After(wait):
			}
			write(false)
		case <-retryC:
			write(true)
		case <-refresh.C:
			write(true)
		}
	}
}

// sameIgnoringUpdated compares two statuses but for their updated field.
func sameIgnoringUpdated(a, b []byte) bool {
	var x, y Status
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	x.Updated, y.Updated = time.Time{}, time.Time{}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// writeFinalStatus writes the status once more after the speaker stopped,
// so the key shows the sessions down and nothing announced.
func (s *Speaker) writeFinalStatus() {
	if s.consul == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := json.Marshal(s.Status())
	if err != nil {
		return
	}
	if _, err := s.consul.KV().Put(&consulapi.KVPair{Key: s.statusKey(), Value: b}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		s.log.Warn("bgp: write final status to consul", "key", s.statusKey(), "err", err)
	}
}
