package testsvc

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
)

// BGPPeerConfig describes a BGP peer acting as a top-of-rack router: it
// accepts IPv4 unicast and IPv6 unicast (IPv4 routes with IPv6 next hops
// too, RFC 8950) from every neighbor, keeps everything it receives, and
// announces nothing.
type BGPPeerConfig struct {
	// RouterID defaults to LocalAddr when that is IPv4, else 10.255.255.254.
	RouterID string
	// LocalAddr is the address the peer listens on and connects from;
	// default 127.0.0.2. IPv6 works inside a namespace (see Netns).
	LocalAddr string
	// Port is the TCP port the peer listens on; 0 picks a free one.
	Port int
	// ASN is the peer's own AS number (required).
	ASN uint32
	// Neighbors are the sessions to configure.
	Neighbors []BGPNeighbor
	// Netns, when set, runs the daemon with `ip netns exec Netns` (root).
	Netns string
	// HoldTime in seconds; default 9 (keepalive a third of it).
	HoldTime int
	// ConnectRetry in seconds; default 1.
	ConnectRetry int
	// AddPaths lets neighbors send several paths per prefix (RFC 7911,
	// receive side) in both families.
	AddPaths bool
}

// BGPNeighbor is one session of a BGPPeer.
type BGPNeighbor struct {
	Addr     string // neighbor address, e.g. 127.0.0.3
	ASN      uint32 // neighbor AS (same as ASN: iBGP)
	Port     int    // neighbor's TCP port; 0 means 179
	Password string // TCP-MD5 key (RFC 2385); empty for none
	Passive  bool   // only accept the neighbor's connection, never connect
}

// Route is one path the peer received.
type Route struct {
	Prefix           netip.Prefix
	NextHop          netip.Addr // the BGP next hop as received (first of a global/link-local pair)
	From             netip.Addr // the neighbor that sent it
	ASPath           []uint32   // AS_SEQUENCE and AS_SET members in order
	MED              uint32
	HasMED           bool
	LocalPref        uint32
	Communities      []string // RFC 1997 as "65535:0"
	LargeCommunities []string // RFC 8092 as "65000:1:2"
}

// String renders r for test failure messages.
func (r Route) String() string {
	s := fmt.Sprintf("%s via %s from %s as-path %v", r.Prefix, r.NextHop, r.From, r.ASPath)
	if r.HasMED {
		s += fmt.Sprintf(" med %d", r.MED)
	}
	if len(r.Communities) > 0 {
		s += " communities " + strings.Join(r.Communities, " ")
	}
	if len(r.LargeCommunities) > 0 {
		s += " large " + strings.Join(r.LargeCommunities, " ")
	}
	return s
}

// BGPPeer is a running BIRD or gobgpd started by StartBIRD or StartGoBGPD.
type BGPPeer struct {
	t    testing.TB
	kind string // "bird" or "gobgpd"
	cfg  BGPPeerConfig
	dir  string
	argv []string
	env  []string

	// bird
	ctlSock string
	// gobgpd
	apiSock string
	conn    *grpc.ClientConn
	client  api.GobgpApiClient

	mu   sync.Mutex
	proc *proc
}

// Kind is "bird" or "gobgpd".
func (p *BGPPeer) Kind() string { return p.kind }

// LocalAddr is the address the peer listens on.
func (p *BGPPeer) LocalAddr() string { return p.cfg.LocalAddr }

// Port is the TCP port the peer listens on.
func (p *BGPPeer) Port() int { return p.cfg.Port }

// RouterID is the peer's BGP identifier.
func (p *BGPPeer) RouterID() string { return p.cfg.RouterID }

// ASN is the peer's AS number.
func (p *BGPPeer) ASN() uint32 { return p.cfg.ASN }

// API is the gRPC client of a gobgpd peer (nil for BIRD), for tests that
// need more than Routes, e.g. announcing a default route to the edge.
func (p *BGPPeer) API() api.GobgpApiClient { return p.client }

// LogTail returns the last n lines of the daemon's log.
func (p *BGPPeer) LogTail(n int) string { return tailFile(p.logPath(), n) }

func (p *BGPPeer) logPath() string { return filepath.Join(p.dir, p.kind+".log") }

// Routes returns every path the peer received in family "ipv4" or "ipv6"
// ("" for both), best paths and alternatives alike.
func (p *BGPPeer) Routes(family string) ([]Route, error) {
	var fams []string
	switch family {
	case "ipv4", "ipv4-unicast":
		fams = []string{"ipv4"}
	case "ipv6", "ipv6-unicast":
		fams = []string{"ipv6"}
	case "":
		fams = []string{"ipv4", "ipv6"}
	default:
		return nil, fmt.Errorf("testsvc: Routes(%q): family must be ipv4, ipv6 or empty", family)
	}
	var all []Route
	for _, f := range fams {
		var rs []Route
		var err error
		if p.kind == "bird" {
			rs, err = p.birdRoutes(f)
		} else {
			rs, err = p.gobgpRoutes(f)
		}
		if err != nil {
			return nil, err
		}
		all = append(all, rs...)
	}
	return all, nil
}

// NeighborState is the session state towards addr: "Idle", "Connect",
// "Active", "OpenSent", "OpenConfirm" or "Established" (BIRD may also say
// "Down" when the protocol is shut down).
func (p *BGPPeer) NeighborState(addr string) (string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", fmt.Errorf("testsvc: neighbor address %q: %w", addr, err)
	}
	if p.kind == "bird" {
		return p.birdState(a)
	}
	return p.gobgpState(a)
}

// WaitEstablished waits until the session towards addr is Established and
// fails the test (with the daemon's log) when timeout passes first.
func (p *BGPPeer) WaitEstablished(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var st string
	var err error
	for {
		st, err = p.NeighborState(addr)
		if err == nil && st == "Established" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("testsvc: %s session to %s not Established after %s (state %q, err %v)\n--- last lines of %s ---\n%s",
		p.kind, addr, timeout, st, err, p.logPath(), p.LogTail(25))
}

// WaitRoute polls Routes until one satisfies match, and fails the test
// after timeout with the routes it saw.
func (p *BGPPeer) WaitRoute(t testing.TB, family string, timeout time.Duration, match func(Route) bool) Route {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var rs []Route
	var err error
	for {
		rs, err = p.Routes(family)
		if err == nil {
			for _, r := range rs {
				if match(r) {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("testsvc: %s: no matching %s route after %s (err %v); routes:\n%s", p.kind, family, timeout, err, routeList(rs))
	return Route{}
}

func routeList(rs []Route) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + r.String() + "\n")
	}
	if len(rs) == 0 {
		b.WriteString("  (none)\n")
	}
	return b.String()
}

// Stop stops the daemon and waits for it to exit. Stopping twice is
// harmless.
func (p *BGPPeer) Stop() {
	p.mu.Lock()
	pr := p.proc
	p.proc = nil
	p.mu.Unlock()
	if pr != nil {
		pr.stop(5 * time.Second)
	}
}

// Restart stops the daemon and starts it again with the same config and
// port: neighbors see the sessions drop and come back, and the peer has
// forgotten every route. Call it from the test goroutine.
func (p *BGPPeer) Restart() {
	p.t.Helper()
	p.Stop()
	var err error
	for i := 0; i < 50; i++ {
		if err = p.start(); err == nil || !isAddrInUse(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("testsvc: restart %s: %v", p.kind, err)
	}
}

func (p *BGPPeer) start() error {
	pr, err := startProc(fmt.Sprintf("%s on %s port %d", p.kind, p.cfg.LocalAddr, p.cfg.Port),
		p.logPath(), p.env, p.argv...)
	if err != nil {
		return err
	}
	ready := p.gobgpReady
	if p.kind == "bird" {
		ready = p.birdReady
	}
	if err := pr.waitReady(20*time.Second, ready); err != nil {
		pr.stop(time.Second)
		return err
	}
	p.mu.Lock()
	p.proc = pr
	p.mu.Unlock()
	return nil
}

// newBGPPeer checks cfg, fills defaults and prepares the peer; the caller
// writes the config and sets argv.
func newBGPPeer(t testing.TB, kind string, cfg BGPPeerConfig) *BGPPeer {
	t.Helper()
	if cfg.ASN == 0 {
		t.Fatalf("testsvc: %s: BGPPeerConfig.ASN is required", kind)
	}
	if cfg.LocalAddr == "" {
		cfg.LocalAddr = "127.0.0.2"
	}
	la, err := netip.ParseAddr(cfg.LocalAddr)
	if err != nil {
		t.Fatalf("testsvc: %s: LocalAddr %q: %v", kind, cfg.LocalAddr, err)
	}
	cfg.LocalAddr = la.String()
	if cfg.RouterID == "" {
		if la.Is4() {
			cfg.RouterID = la.String()
		} else {
			cfg.RouterID = "10.255.255.254"
		}
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime = 9
	}
	if cfg.HoldTime < 3 {
		t.Fatalf("testsvc: %s: HoldTime %d is below 3 seconds", kind, cfg.HoldTime)
	}
	if cfg.ConnectRetry == 0 {
		cfg.ConnectRetry = 1
	}
	seen := map[netip.Addr]bool{}
	nbs := make([]BGPNeighbor, len(cfg.Neighbors))
	for i, n := range cfg.Neighbors {
		a, err := netip.ParseAddr(n.Addr)
		if err != nil {
			t.Fatalf("testsvc: %s: neighbor address %q: %v", kind, n.Addr, err)
		}
		if seen[a] {
			t.Fatalf("testsvc: %s: neighbor %s listed twice", kind, a)
		}
		seen[a] = true
		if n.ASN == 0 {
			t.Fatalf("testsvc: %s: neighbor %s has no ASN", kind, a)
		}
		if n.Port == 0 {
			n.Port = 179
		}
		n.Addr = a.String()
		nbs[i] = n
	}
	cfg.Neighbors = nbs
	if cfg.Netns != "" {
		RequireRoot(t)
		Require(t, "ip")
	}
	if cfg.Port == 0 {
		host := cfg.LocalAddr
		if cfg.Netns != "" {
			host = "127.0.0.1" // any port is free in a fresh namespace
		}
		if cfg.Port, err = freePort(host); err != nil {
			t.Fatal(err)
		}
	}
	return &BGPPeer{t: t, kind: kind, cfg: cfg, dir: t.TempDir()}
}

// wrapNetns prefixes argv with `ip netns exec NAME` when cfg.Netns is set.
func (p *BGPPeer) wrapNetns(argv []string) []string {
	if p.cfg.Netns == "" {
		return argv
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		ip = "/usr/sbin/ip"
	}
	return append([]string{ip, "netns", "exec", p.cfg.Netns}, argv...)
}

// launch starts the peer, retrying on a taken port when the port was
// picked here, and registers the cleanup.
func (p *BGPPeer) launch(t testing.TB, pickedPort bool, build func() error) {
	t.Helper()
	t.Cleanup(p.Stop)
	var err error
	for range startAttempts {
		if err = build(); err != nil {
			break
		}
		if err = p.start(); err == nil {
			return
		}
		if !pickedPort || !isAddrInUse(err) {
			break
		}
		host := p.cfg.LocalAddr
		if p.cfg.Netns != "" {
			host = "127.0.0.1"
		}
		if p.cfg.Port, err = freePort(host); err != nil {
			break
		}
	}
	t.Fatal(err)
}
