package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

var (
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
)

// startMu serialises GoBGP's StartBgp, which sets package-level route
// selection options: two speakers starting at once in one process (tests)
// race on them.
var startMu sync.Mutex

// startBGP starts the embedded speaker the NAT64 servers peer with.
func (c *Controller) startBGP(ctx context.Context) error {
	host, port, _ := net.SplitHostPort(c.cfg.BGP.Listen)
	pn, _ := strconv.Atoi(port)
	s := server.NewBgpServer(server.LoggerOption(slogAdapter{c.log.With("component", "bgp")}))
	go s.Serve()
	startMu.Lock()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: c.cfg.BGP.ASN, RouterId: c.cfg.BGP.RouterID,
		ListenPort: int32(pn), ListenAddresses: []string{host},
	}})
	startMu.Unlock()
	if err != nil {
		s.Stop()
		return fmt.Errorf("p4access: bgp: start on %s: %w", c.cfg.BGP.Listen, err)
	}
	c.bgp = s
	hold := uint64(c.cfg.BGP.HoldTime.Seconds())
	if hold < 3 {
		hold = 3
	}
	timers := func() *api.Timers {
		return &api.Timers{Config: &api.TimersConfig{
			ConnectRetry: 1, HoldTime: hold, KeepaliveInterval: hold / 3, IdleHoldTimeAfterReset: 1,
		}}
	}
	afis := func() []*api.AfiSafi {
		return []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}},
		}
	}
	for _, p := range c.cfg.BGP.Peers {
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:         &api.PeerConf{NeighborAddress: p.Address, PeerAsn: p.ASN, AuthPassword: p.Password},
			Transport:    &api.Transport{PassiveMode: true},
			Timers:       timers(),
			EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 255},
			AfiSafis:     afis(),
		}}); err != nil {
			s.Stop()
			return fmt.Errorf("p4access: bgp: peer %s: %w", p.Address, err)
		}
	}
	for i, d := range c.cfg.BGP.DynamicPeers {
		group := fmt.Sprintf("nat64-%d", i)
		if err := s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: &api.PeerGroup{
			Conf:         &api.PeerGroupConf{PeerGroupName: group, PeerAsn: d.ASN},
			Timers:       timers(),
			EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 255},
			AfiSafis:     afis(),
		}}); err != nil {
			s.Stop()
			return fmt.Errorf("p4access: bgp: peer group %s: %w", d.Prefix, err)
		}
		if err := s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
			Prefix: d.Prefix, PeerGroup: group,
		}}); err != nil {
			s.Stop()
			return fmt.Errorf("p4access: bgp: dynamic neighbors %s: %w", d.Prefix, err)
		}
	}
	return nil
}

// watchBGP re-reads the routes on every peer or table event.
func (c *Controller) watchBGP(ctx context.Context) error {
	return c.bgp.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_ADJIN, Init: true},
		}},
	}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer().GetPeer(); p != nil && p.GetConf().GetNeighborAddress() != "" {
			c.log.Info("bgp peer", "peer", p.GetConf().GetNeighborAddress(), "state", p.GetState().GetSessionState().String())
		}
		select {
		case c.bgpKick <- struct{}{}:
		default:
		}
	})
}

// readRoutes lists the IPv6 /128 paths of the configured VIPs and returns
// each VIP's next hops.
func (c *Controller) readRoutes(ctx context.Context) (map[netip.Addr][]netip.Addr, error) {
	vips := map[netip.Addr]bool{}
	for _, v := range c.cfg.VIPs {
		vips[v.addr] = true
	}
	out := map[netip.Addr][]netip.Addr{}
	err := c.bgp.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyV6}, func(d *api.Destination) {
		pf, err := netip.ParsePrefix(d.Prefix)
		if err != nil || pf.Bits() != 128 || !vips[pf.Addr()] {
			return
		}
		for _, p := range d.Paths {
			if p.IsWithdraw || p.Filtered {
				continue
			}
			nh, ok := nextHop(p)
			if !ok {
				continue
			}
			out[pf.Addr()] = append(out[pf.Addr()], nh)
		}
	})
	return out, err
}

// nextHop returns the (first, global) next hop of an IPv6 path.
func nextHop(p *api.Path) (netip.Addr, bool) {
	for _, a := range p.Pattrs {
		m, err := anypb.UnmarshalNew(a, protoUnmarshalOptions)
		if err != nil {
			continue
		}
		switch x := m.(type) {
		case *api.MpReachNLRIAttribute:
			if len(x.NextHops) > 0 {
				if nh, err := netip.ParseAddr(x.NextHops[0]); err == nil {
					return nh.Unmap(), true
				}
			}
		case *api.NextHopAttribute:
			if nh, err := netip.ParseAddr(x.NextHop); err == nil {
				return nh.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// slogAdapter feeds GoBGP's log lines into slog (GoBGP's Info is chatty:
// it goes to Debug).
type slogAdapter struct{ l *slog.Logger }

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) { a.l.Error(msg, attrs(f)...) }
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.l.Error(msg, attrs(f)...) }
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(msg, attrs(f)...) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Warn(msg, attrs(f)...) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.l.Debug(msg, attrs(f)...) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.l.Debug(msg, attrs(f)...) }
func (a slogAdapter) SetLevel(gobgplog.LogLevel)          {}
func (a slogAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.DebugLevel }

// waitConverged returns once every configured peer has been Established
// for a second (their routes are in), or ConvergeTime after start,
// whichever comes first. Dynamic peers cannot be waited for by name:
// with them, the full ConvergeTime applies.
func (c *Controller) waitConverged(ctx context.Context) {
	deadline := c.started.Add(c.cfg.BGP.ConvergeTime)
	want := len(c.cfg.BGP.Peers)
	for time.Now().Before(deadline) {
		if want > 0 && len(c.cfg.BGP.DynamicPeers) == 0 {
			up := 0
			c.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
				st := p.GetState()
				if st.GetSessionState() == api.PeerState_ESTABLISHED {
					if ts := p.GetTimers().GetState().GetUptime(); ts != nil && time.Since(ts.AsTime()) >= time.Second {
						up++
					}
				}
			})
			if up >= want {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
