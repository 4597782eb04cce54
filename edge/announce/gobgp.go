package announce

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// startMu orders GoBGP's StartBgp (write lock), which writes two package
// globals, against every other call into GoBGP (read lock) that may read
// them (best-path selection), across the speakers of a process (tests;
// a daemon runs one speaker).
var startMu sync.RWMutex

// startBGP starts the embedded GoBGP server and adds the peers.
func (s *Speaker) startBGP(ctx context.Context) error {
	s.bgp = server.NewBgpServer(server.LoggerOption(&bgpLogger{l: s.log.With("component", "gobgp")}))
	go s.bgp.Serve()
	// GoBGP's StartBgp writes two package globals (table.SelectionOptions,
	// table.UseMultiplePaths) that every BgpServer of the process reads:
	// startMu orders the writes of several speakers in one process (the
	// values are always the same defaults here, and a daemon runs one
	// speaker, but the race detector sees two unordered writes).
	startMu.Lock()
	defer startMu.Unlock()
	port := int32(-1) // never listen (and never on 179)
	if s.cfg.ListenPort != 0 {
		port = int32(s.cfg.ListenPort)
	}
	if err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        s.cfg.LocalASN,
		RouterId:   s.cfg.routerID.String(),
		ListenPort: port,
	}}); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	// The watch lives as long as the server; StopBgp ends its events.
	if err := s.bgp.WatchEvent(context.Background(), &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onPeerEvent); err != nil {
		s.bgp.Stop()
		return fmt.Errorf("watch peers: %w", err)
	}
	for _, p := range s.cfg.Peers {
		if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			s.bgp.Stop()
			return fmt.Errorf("add peer %s: %w", p.addr, err)
		}
		s.log.Info("bgp: peer configured", "peer", p.addr, "asn", p.ASN, "port", p.Port, "md5", p.Password != "")
	}
	return nil
}

// apiPeer builds a GoBGP neighbour: both unicast families on one session
// (GoBGP then advertises the extended next hop capability of RFC 8950 for
// IPv4 over IPv6 on its own), short connect retry.
func apiPeer(p PeerConfig) *api.Peer {
	secs := func(d time.Duration) uint64 { return uint64(d / time.Second) }
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.addr.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			Description:     "v6pod announce",
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           secs(p.ConnectRetry),
			HoldTime:               secs(p.HoldTime),
			KeepaliveInterval:      secs(p.Keepalive),
			IdleHoldTimeAfterReset: secs(p.ConnectRetry),
		}},
		Transport: &api.Transport{
			RemotePort:   uint32(p.Port),
			PassiveMode:  p.Passive,
			LocalAddress: p.LocalAddress,
		},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}},
		},
	}
	if p.Multihop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	return ap
}

// apiTimeout bounds every call into GoBGP: its API queues each call to
// its main loop and ignores the context, so a hung GoBGP would hang the
// caller for ever.
const apiTimeout = 5 * time.Second

// callBGP runs one GoBGP API call, giving up after the speaker's API
// timeout (the call's goroutine is left behind: GoBGP is hung then, and
// the watchdog deals with it). op names it in errors_total.
func (s *Speaker) callBGP(ctx context.Context, op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.apiTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		if h := s.testHookAPI; h != nil {
			h(op)
		}
		startMu.RLock()
		defer startMu.RUnlock()
		done <- f(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.m.errors.WithLabelValues("api_timeout").Inc()
		return fmt.Errorf("gobgp %s: no answer within %s: %w", op, s.apiTimeout, ctx.Err())
	}
}

// stopBGP closes every session (CEASE, peer de-configured: the peers drop
// the routes at once) and stops the server.
//
// The peers are deleted first, and StopBgp waits until their sessions'
// goroutines have ended (GoBGP reports the established ones idle then):
// StopBgp resets the global configuration that a still-running session
// reader reads for every UPDATE it receives, a data race inside GoBGP
// when the two overlap.
func (s *Speaker) stopBGP() {
	if s.bgp == nil {
		return
	}
	ctx := context.Background()
	for _, p := range s.cfg.Peers {
		addr := p.addr.String()
		if err := s.callBGP(ctx, "delete_peer", func(ctx context.Context) error {
			return s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr})
		}); err != nil {
			s.log.Warn("bgp: delete peer at stop", "peer", addr, "err", err)
		}
	}
	for deadline := time.Now().Add(sendWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		up := 0
		for _, p := range s.peers {
			if p.State == "established" {
				up++
			}
		}
		s.mu.Unlock()
		if up == 0 {
			break
		}
	}
	if err := s.callBGP(ctx, "stop", func(context.Context) error { s.bgp.Stop(); return nil }); err != nil {
		s.log.Error("bgp: stop", "err", err)
	}
	// GoBGP may still deliver peer events after Stop; once a callback in
	// flight has finished, none is handled (nor logged: the embedder's
	// log writer may be gone once Close returned).
	s.evMu.Lock()
	s.evStopped = true
	s.evMu.Unlock()
	s.mu.Lock()
	now := s.now()
	for _, p := range s.peers {
		if p.State != "idle" {
			p.State, p.Since = "idle", now
		}
	}
	for _, p := range s.prefixes {
		if p.state != stateWithdrawn {
			p.state, p.reason, p.since = stateWithdrawn, "stopped", now
			s.m.setPrefix(p.spec, stateWithdrawn)
		}
	}
	s.mu.Unlock()
	for _, p := range s.cfg.Peers {
		s.m.peerUp.WithLabelValues(p.addr.String()).Set(0)
	}
}

// buildPath makes the GoBGP path of a prefix. IPv4 routes carry
// next_hop_v4, or no next hop (0.0.0.0), which GoBGP replaces per session
// with the session's own address: an IPv6 one on an IPv6 session, sent in
// MP_REACH_NLRI (RFC 8950). IPv6 routes likewise with next_hop_v6 or ::.
func (s *Speaker) buildPath(spec prefixSpec, gshut bool) (*api.Path, error) {
	pfx := spec.prefix
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: pfx.Addr().String(), PrefixLen: uint32(pfx.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	fam := familyV4
	if pfx.Addr().Is4() {
		nh := "0.0.0.0"
		if s.cfg.nextHopV4.IsValid() {
			nh = s.cfg.nextHopV4.String()
		}
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nh})
	} else {
		fam = familyV6
		nh := "::"
		if s.cfg.nextHopV6.IsValid() {
			nh = s.cfg.nextHopV6.String()
		}
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: familyV6, NextHops: []string{nh}, Nlris: []*anypb.Any{nlri}})
	}
	comms := append([]uint32(nil), spec.communities...)
	if gshut {
		comms = append(comms, communityGracefulShutdown)
	}
	if len(comms) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: comms})
	}
	if spec.med != nil {
		attrs = append(attrs, &api.MultiExitDiscAttribute{Med: *spec.med})
	}
	if gshut {
		// RFC 8326 section 4: towards iBGP peers the speaker lowers
		// LOCAL_PREF itself (their policy may not match 65535:0). GoBGP
		// strips LOCAL_PREF towards eBGP peers, which get the community
		// only.
		attrs = append(attrs, &api.LocalPrefAttribute{LocalPref: 0})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, err
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}

// announce adds (or replaces) the route of a prefix.
func (s *Speaker) announce(ctx context.Context, spec prefixSpec, gshut bool) error {
	path, err := s.buildPath(spec, gshut)
	if err != nil {
		return err
	}
	return s.callBGP(ctx, "add_path", func(ctx context.Context) error {
		_, err := s.bgp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
		return err
	})
}

// withdraw removes the route of a prefix.
func (s *Speaker) withdraw(ctx context.Context, spec prefixSpec) error {
	path, err := s.buildPath(spec, false)
	if err != nil {
		return err
	}
	return s.callBGP(ctx, "delete_path", func(ctx context.Context) error {
		return s.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
	})
}

// sentUpdates returns the UPDATE messages sent so far to each established
// peer.
func (s *Speaker) sentUpdates(ctx context.Context) map[string]uint64 {
	var mu sync.Mutex // the call may outlive a timeout
	out := map[string]uint64{}
	_ = s.callBGP(ctx, "list_peer", func(ctx context.Context) error {
		return s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
				return
			}
			mu.Lock()
			out[p.GetState().GetNeighborAddress()] = p.GetState().GetMessages().GetSent().GetUpdate()
			mu.Unlock()
		})
	})
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(out)
}

// sendWait bounds how long a withdrawal may take to reach the wire.
const sendWait = 2 * time.Second

// waitSent waits until every peer established at base has been sent at
// least n more UPDATE messages (GoBGP sends one per withdrawn path, in
// order), or has left Established, or sendWait passes. Then the
// withdrawals are on the wire, and managed addresses may go.
func (s *Speaker) waitSent(ctx context.Context, base map[string]uint64, n int) {
	if len(base) == 0 {
		return
	}
	deadline := time.Now().Add(sendWait)
	for {
		now := s.sentUpdates(ctx)
		pending := 0
		for addr, b := range base {
			if c, ok := now[addr]; ok && c < b+uint64(n) {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.log.Warn("bgp: withdrawal not confirmed sent in time", "peers", pending, "wait", sendWait)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onPeerEvent records session state changes.
func (s *Speaker) onPeerEvent(r *api.WatchEventResponse) {
	s.evMu.RLock()
	defer s.evMu.RUnlock()
	if s.evStopped {
		return
	}
	ev := r.GetPeer()
	// GoBGP sends the idle of a deleted peer (its session goroutines have
	// ended) without a type: UNKNOWN.
	if ev == nil || ev.GetType() != api.WatchEventResponse_PeerEvent_STATE && ev.GetType() != api.WatchEventResponse_PeerEvent_UNKNOWN {
		return
	}
	st := ev.GetPeer().GetState()
	a, err := netip.ParseAddr(st.GetNeighborAddress())
	if err != nil {
		return
	}
	a = a.Unmap()
	state := sessionStateName(st.GetSessionState())
	s.mu.Lock()
	p, ok := s.peers[a]
	if !ok || p.State == state {
		s.mu.Unlock()
		return
	}
	old := p.State
	p.State, p.Since = state, s.now()
	if state == "established" {
		p.Established++
	}
	s.mu.Unlock()
	s.m.peerState(p.Address, state)
	if state == "established" || old == "established" {
		s.log.Info("bgp: session "+state, "peer", p.Address, "asn", p.ASN, "from", old)
	} else {
		s.log.Debug("bgp: session "+state, "peer", p.Address, "from", old)
	}
	s.markStatus()
}

// peerLoop is a placeholder owner for peer events (they arrive through
// the watch registered at start); it refreshes session states from
// ListPeer each health interval in case an event was missed.
func (s *Speaker) peerLoop(ctx context.Context) {
	t := time.NewTicker(5 * s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = s.callBGP(ctx, "list_peer", func(ctx context.Context) error {
			return s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
				s.onPeerEvent(&api.WatchEventResponse{Event: &api.WatchEventResponse_Peer{Peer: &api.WatchEventResponse_PeerEvent{
					Type: api.WatchEventResponse_PeerEvent_STATE, Peer: p,
				}}})
			})
		})
	}
}

func sessionStateName(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// bgpLogger adapts GoBGP's logger to slog. GoBGP's Info is chatty (every
// FSM step), so it lands at Debug; warnings and errors stay.
type bgpLogger struct{ l *slog.Logger }

func (b *bgpLogger) log(level slog.Level, msg string, f gobgplog.Fields) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		if strings.Contains(strings.ToLower(k), "password") {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, fmt.Sprint(f[k]))
	}
	b.l.Log(context.Background(), level, msg, args...)
}

func (b *bgpLogger) Panic(msg string, f gobgplog.Fields) {
	b.log(slog.LevelError, msg, f)
	panic(msg)
}
func (b *bgpLogger) Fatal(msg string, f gobgplog.Fields) { b.log(slog.LevelError, "fatal: "+msg, f) }
func (b *bgpLogger) Error(msg string, f gobgplog.Fields) { b.log(slog.LevelError, msg, f) }
func (b *bgpLogger) Warn(msg string, f gobgplog.Fields)  { b.log(slog.LevelWarn, msg, f) }
func (b *bgpLogger) Info(msg string, f gobgplog.Fields)  { b.log(slog.LevelDebug, msg, f) }
func (b *bgpLogger) Debug(msg string, f gobgplog.Fields) { b.log(slog.LevelDebug-4, msg, f) }
func (b *bgpLogger) SetLevel(gobgplog.LogLevel)          {}
func (b *bgpLogger) GetLevel() gobgplog.LogLevel {
	if b.l.Enabled(context.Background(), slog.LevelDebug-4) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}

func sortStrings(s []string) { sort.Strings(s) }
