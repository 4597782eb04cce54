package testsvc

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// quietLogger discards GoBGP's log lines.
type quietLogger struct{}

func (quietLogger) Panic(msg string, f gobgplog.Fields) {}
func (quietLogger) Fatal(msg string, f gobgplog.Fields) {}
func (quietLogger) Error(msg string, f gobgplog.Fields) {}
func (quietLogger) Warn(msg string, f gobgplog.Fields)  {}
func (quietLogger) Info(msg string, f gobgplog.Fields)  {}
func (quietLogger) Debug(msg string, f gobgplog.Fields) {}
func (quietLogger) SetLevel(gobgplog.LogLevel)          {}
func (quietLogger) GetLevel() gobgplog.LogLevel         { return gobgplog.PanicLevel }

var (
	v4u = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	v6u = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// speaker is an in-process GoBGP (the library, as the edge will use it).
type speaker struct {
	s    *server.BgpServer
	addr string
	port int
	asn  uint32
}

// startSpeaker runs a GoBGP library speaker on addr (a free port there).
func startSpeaker(t *testing.T, addr string, asn uint32) *speaker {
	t.Helper()
	rid := addr
	if netip.MustParseAddr(addr).Is6() {
		rid = "192.0.2.1"
	}
	var err error
	for range startAttempts { // a picked port may be taken meanwhile
		var port int
		if port, err = freePort(addr); err != nil {
			break
		}
		s := server.NewBgpServer(server.LoggerOption(quietLogger{}))
		go s.Serve()
		err = s.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
			Asn: asn, RouterId: rid, ListenPort: int32(port), ListenAddresses: []string{addr},
		}})
		if err == nil {
			t.Cleanup(s.Stop)
			return &speaker{s: s, addr: addr, port: port, asn: asn}
		}
		s.Stop()
	}
	t.Fatalf("speaker StartBgp: %v", err)
	return nil
}

func (sp *speaker) addPeer(t *testing.T, peer *BGPPeer, password string) {
	t.Helper()
	sp.addPeerPassword(t, peer.LocalAddr(), peer.Port(), peer.ASN(), password)
}

func (sp *speaker) addPeerPassword(t *testing.T, addr string, port int, asn uint32, password string) {
	t.Helper()
	err := sp.s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr, PeerAsn: asn, AuthPassword: password},
		Transport: &api.Transport{LocalAddress: sp.addr, RemotePort: uint32(port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3, IdleHoldTimeAfterReset: 1,
		}},
		EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 8},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: v4u, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: v6u, Enabled: true}},
		},
	}})
	if err != nil {
		t.Fatalf("speaker AddPeer: %v", err)
	}
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// announcePath builds an API path for prefix with next hop nh, MED and
// communities (RFC 1997, as uint32). IPv6 prefixes and IPv6 next hops of
// IPv4 prefixes (RFC 8950) travel in MP_REACH_NLRI.
func announcePath(t testing.TB, prefix, nh string, med uint32, communities ...uint32) *api.Path {
	t.Helper()
	pf := netip.MustParsePrefix(prefix)
	nha := netip.MustParseAddr(nh)
	fam := v4u
	if pf.Addr().Is6() {
		fam = v6u
	}
	nlri := mustAny(t, &api.IPAddressPrefix{Prefix: pf.Addr().String(), PrefixLen: uint32(pf.Bits())})
	attrs := []*anypb.Any{mustAny(t, &api.OriginAttribute{Origin: 0})}
	if pf.Addr().Is4() && nha.Is4() {
		attrs = append(attrs, mustAny(t, &api.NextHopAttribute{NextHop: nh}))
	} else {
		attrs = append(attrs, mustAny(t, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh}, Nlris: []*anypb.Any{nlri}}))
	}
	attrs = append(attrs, mustAny(t, &api.MultiExitDiscAttribute{Med: med}))
	if len(communities) > 0 {
		attrs = append(attrs, mustAny(t, &api.CommunitiesAttribute{Communities: communities}))
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: attrs}
}

func (sp *speaker) announce(t *testing.T, p *api.Path) {
	t.Helper()
	if _, err := sp.s.AddPath(context.Background(), &api.AddPathRequest{Path: p}); err != nil {
		t.Fatalf("speaker AddPath: %v", err)
	}
}

const gracefulShutdown = 65535<<16 | 0 // RFC 8326 GRACEFUL_SHUTDOWN, 65535:0

// checkPeerLearnsFromSpeaker: the peer reaches Established with the
// speaker and shows what the speaker announces, attributes included.
func checkPeerLearnsFromSpeaker(t *testing.T, start func(testing.TB, BGPPeerConfig) *BGPPeer, peerAddr, speakerAddr string) {
	sp := startSpeaker(t, speakerAddr, 65001)
	peer := start(t, BGPPeerConfig{LocalAddr: peerAddr, ASN: 65000, Neighbors: []BGPNeighbor{
		{Addr: speakerAddr, ASN: 65001, Port: sp.port},
	}})
	sp.addPeer(t, peer, "")
	peer.WaitEstablished(t, speakerAddr, 20*time.Second)

	// gobgpd 3.10 (Debian) treats a 127/8 next hop as a withdrawal, so the
	// routes name a documentation address.
	sp.announce(t, announcePath(t, "192.0.2.10/32", "198.51.100.7", 50, gracefulShutdown, 65000<<16|100))
	sp.announce(t, announcePath(t, "2001:db8:100::/48", "2001:db8::3", 0))
	r := peer.WaitRoute(t, "ipv4", 10*time.Second, func(r Route) bool { return r.Prefix.String() == "192.0.2.10/32" })
	t.Logf("%s got %s", peer.Kind(), r)
	if r.NextHop.String() != "198.51.100.7" || r.From.String() != speakerAddr {
		t.Errorf("next hop %s from %s, want 198.51.100.7 from %s", r.NextHop, r.From, speakerAddr)
	}
	if !slices.Contains(r.Communities, "65535:0") || !slices.Contains(r.Communities, "65000:100") {
		t.Errorf("communities %q, want 65535:0 and 65000:100", r.Communities)
	}
	if !r.HasMED || r.MED != 50 {
		t.Errorf("MED %d (set %v), want 50", r.MED, r.HasMED)
	}
	if !slices.Equal(r.ASPath, []uint32{65001}) {
		t.Errorf("AS path %v, want [65001]", r.ASPath)
	}
	r6 := peer.WaitRoute(t, "ipv6", 10*time.Second, func(r Route) bool { return r.Prefix.String() == "2001:db8:100::/48" })
	t.Logf("%s got %s", peer.Kind(), r6)
	if r6.NextHop.String() != "2001:db8::3" {
		t.Errorf("IPv6 route next hop %s, want 2001:db8::3", r6.NextHop)
	}
	all, err := peer.Routes("")
	if err != nil || len(all) != 2 {
		t.Errorf("Routes(\"\") = %v, %v; want the 2 routes", all, err)
	}

	// A withdrawal disappears from the peer.
	if err := sp.s.DeletePath(context.Background(), &api.DeletePathRequest{
		Family: v4u, Path: announcePath(t, "192.0.2.10/32", "198.51.100.7", 50),
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err := peer.Routes("ipv4")
		if err == nil && len(rs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("withdrawn route still there: %v %v", rs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBIRDLearnsRoutesFromGoBGPSpeaker(t *testing.T) {
	t.Parallel()
	checkPeerLearnsFromSpeaker(t, StartBIRD, "127.0.0.2", "127.0.0.3")
}

func TestGoBGPDLearnsRoutesFromGoBGPSpeaker(t *testing.T) {
	t.Parallel()
	checkPeerLearnsFromSpeaker(t, StartGoBGPD, "127.0.0.4", "127.0.0.5")
}

// TCP-MD5 on a passive BIRD, and a BIRD restart: the session comes back on
// the same port and the route is learned again.
func TestBIRDPasswordPassiveRestart(t *testing.T) {
	t.Parallel()
	sp := startSpeaker(t, "127.0.0.7", 65001)
	peer := StartBIRD(t, BGPPeerConfig{LocalAddr: "127.0.0.8", ASN: 65000, Neighbors: []BGPNeighbor{
		{Addr: "127.0.0.7", ASN: 65001, Password: "md5-s3cret", Passive: true},
	}})
	sp.addPeer(t, peer, "md5-s3cret")
	peer.WaitEstablished(t, "127.0.0.7", 20*time.Second)
	sp.announce(t, announcePath(t, "203.0.113.1/32", "127.0.0.7", 0, gracefulShutdown))
	isVIP := func(r Route) bool { return r.Prefix.String() == "203.0.113.1/32" }
	peer.WaitRoute(t, "ipv4", 10*time.Second, isVIP)

	port := peer.Port()
	t0 := time.Now()
	peer.Restart()
	t.Logf("restart took %s", time.Since(t0))
	if peer.Port() != port {
		t.Fatalf("port changed over restart: %d -> %d", port, peer.Port())
	}
	peer.WaitEstablished(t, "127.0.0.7", 30*time.Second)
	t.Logf("established again after %s", time.Since(t0))
	r := peer.WaitRoute(t, "ipv4", 10*time.Second, isVIP)
	if !slices.Contains(r.Communities, "65535:0") {
		t.Errorf("communities %q after restart", r.Communities)
	}
}

// A wrong password never reaches Established (the peer really checks MD5).
func TestGoBGPDWrongPasswordStaysDown(t *testing.T) {
	t.Parallel()
	sp := startSpeaker(t, "127.0.0.9", 65001)
	peer := StartGoBGPD(t, BGPPeerConfig{LocalAddr: "127.0.0.10", ASN: 65000, Neighbors: []BGPNeighbor{
		{Addr: "127.0.0.9", ASN: 65001, Port: sp.port, Password: "right"},
	}})
	sp.addPeer(t, peer, "wrong")
	time.Sleep(2500 * time.Millisecond) // both ends try to connect every 1-2 s
	if st, err := peer.NeighborState("127.0.0.9"); err != nil || st == "Established" {
		t.Fatalf("state %q, %v; want not Established with a wrong password", st, err)
	}
}

// The edge's one-IPv6-session case: IPv4 VIPs with an IPv6 next hop
// (RFC 8950) over an IPv6 session. The GoBGP library speaker (the edge)
// stays in the test's namespace; BIRD and gobgpd run in a namespace of the
// test's own, joined to it by a veth pair.
func TestIPv6SessionExtendedNextHop(t *testing.T) {
	t.Parallel()
	ns := NewNetns(t)
	hostAddr, nsAddrs := NetnsLink(t, ns, 2)
	sp := startSpeaker(t, hostAddr, 65001)
	bird := StartBIRD(t, BGPPeerConfig{Netns: ns, LocalAddr: nsAddrs[0], ASN: 65000,
		Neighbors: []BGPNeighbor{{Addr: hostAddr, ASN: 65001, Port: sp.port}}})
	tor := StartGoBGPD(t, BGPPeerConfig{Netns: ns, LocalAddr: nsAddrs[1], ASN: 65000,
		Neighbors: []BGPNeighbor{{Addr: hostAddr, ASN: 65001, Port: sp.port, Passive: true}}})
	if bird.RouterID() != "10.255.255.254" {
		t.Errorf("default router ID for an IPv6 LocalAddr = %s", bird.RouterID())
	}
	sp.addPeer(t, bird, "")
	sp.addPeer(t, tor, "")
	t0 := time.Now()
	bird.WaitEstablished(t, hostAddr, 20*time.Second)
	tor.WaitEstablished(t, hostAddr, 20*time.Second)
	t.Logf("both sessions established after %s", time.Since(t0))
	sp.announce(t, announcePath(t, "198.51.100.10/32", hostAddr, 0, gracefulShutdown))
	sp.announce(t, announcePath(t, "2001:db8:1::10/128", hostAddr, 0))
	for _, p := range []*BGPPeer{bird, tor} {
		r := p.WaitRoute(t, "ipv4", 10*time.Second, func(r Route) bool { return r.Prefix.String() == "198.51.100.10/32" })
		t.Logf("%s got %s", p.Kind(), r)
		if r.NextHop.String() != hostAddr || !slices.Contains(r.Communities, "65535:0") {
			t.Errorf("%s: got %s, want next hop %s and 65535:0", p.Kind(), r, hostAddr)
		}
		r6 := p.WaitRoute(t, "ipv6", 10*time.Second, func(r Route) bool { return r.Prefix.String() == "2001:db8:1::10/128" })
		t.Logf("%s got %s", p.Kind(), r6)
	}
}

// gobgpd can announce too (through its API): a peer inside a namespace
// with only IPv6 on lo plays the edge towards BIRD there.
func TestGoBGPDAnnouncesInNamespace(t *testing.T) {
	t.Parallel()
	ns := NewNetns(t, "2001:db8::2", "2001:db8::3")
	const torPort, edgePort = 1790, 1791 // any port is free in a fresh namespace
	bird := StartBIRD(t, BGPPeerConfig{Netns: ns, LocalAddr: "2001:db8::2", Port: torPort, ASN: 65000,
		Neighbors: []BGPNeighbor{{Addr: "2001:db8::3", ASN: 65001, Port: edgePort}}})
	edge := StartGoBGPD(t, BGPPeerConfig{Netns: ns, LocalAddr: "2001:db8::3", Port: edgePort, RouterID: "192.0.2.3", ASN: 65001,
		Neighbors: []BGPNeighbor{{Addr: "2001:db8::2", ASN: 65000, Port: torPort, Passive: true}}})
	ctx := context.Background()
	if _, err := edge.API().SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, DefaultAction: api.RouteAction_ACCEPT,
	}}); err != nil {
		t.Fatal(err)
	}
	bird.WaitEstablished(t, "2001:db8::3", 20*time.Second)
	edge.WaitEstablished(t, "2001:db8::2", 20*time.Second)
	if _, err := edge.API().AddPath(ctx, &api.AddPathRequest{Path: announcePath(t, "198.51.100.11/32", "2001:db8::3", 7)}); err != nil {
		t.Fatal(err)
	}
	r := bird.WaitRoute(t, "ipv4", 10*time.Second, func(r Route) bool { return r.Prefix.String() == "198.51.100.11/32" })
	if r.NextHop.String() != "2001:db8::3" || r.MED != 7 || r.From.String() != "2001:db8::3" {
		t.Errorf("got %s, want next hop 2001:db8::3, MED 7", r)
	}
}
