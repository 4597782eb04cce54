package edge

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/v6pod/v6pod/edge/announce"
	"github.com/v6pod/v6pod/internal/testsvc"
)

// bgpNet hands each BGP test its own 127.0.N.0/24.
var (
	bgpNetMu sync.Mutex
	bgpNetN  = 160 + os.Getpid()%40
)

func bgpNet() string {
	bgpNetMu.Lock()
	defer bgpNetMu.Unlock()
	bgpNetN++
	return fmt.Sprintf("127.0.%d.", bgpNetN%250)
}

// bgpEdge is an edge with two listeners on two VIPs (127.0.N.10 and .11),
// announced to a gobgpd ToR at 127.0.N.2 from 127.0.N.3.
type bgpEdge struct {
	srv      *Server
	ann      *Announcer
	tor      *testsvc.BGPPeer
	vips     []netip.Prefix
	edgeAddr string
	cancel   context.CancelFunc
	done     chan error
}

func startBGPEdge(t *testing.T, ctx context.Context, opts ...Option) *bgpEdge {
	t.Helper()
	n := bgpNet()
	torAddr, edgeAddr := n+"2", n+"3"
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: 65000, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: 65010, Passive: true}}})

	up := startUpstream(t, "a", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	// drain.delay gives the ToR time to apply the withdrawal (it is sent
	// when Shutdown returns, applied a moment later) before the listeners
	// close, as a deployment would.
	cfg := Config{Source: url, Node: "bgp-edge", Listen: []Listener{{Addr: n + "10:0"}, {Addr: n + "11:0"}},
		Drain: Drain{Delay: 500 * time.Millisecond}}
	bgp := announce.Config{
		LocalASN: 65010, RouterID: "192.0.2.10",
		Peers: []announce.PeerConfig{{Address: torAddr, ASN: 65000, Port: tor.Port(), LocalAddress: edgeAddr,
			HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second}},
		Announce: announce.AnnounceConfig{
			VIPs:        []announce.PrefixConfig{{Prefix: n + "10"}, {Prefix: n + "11"}},
			Communities: []string{"65010:1"},
			// gobgpd 3.10 drops routes with a 127/8 next hop.
			NextHopV4: "198.51.100.3",
		},
		GracefulShutdownWait: 1500 * time.Millisecond,
		HealthInterval:       100 * time.Millisecond,
		DeadmanIntervals:     10,
	}
	ann, err := NewAnnouncer(bgp, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, append([]Option{WithLogger(testLogger(t)), ann.Option()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &bgpEdge{srv: srv, ann: ann, tor: tor, edgeAddr: edgeAddr, cancel: cancel, done: make(chan error, 1),
		vips: []netip.Prefix{netip.MustParsePrefix(n + "10/32"), netip.MustParsePrefix(n + "11/32")}}
	go func() { e.done <- ann.Run(ctx, srv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	return e
}

// table returns the ToR's routes by prefix.
func (e *bgpEdge) table(t *testing.T) map[netip.Prefix][]string {
	t.Helper()
	rs, err := e.tor.Routes("ipv4")
	if err != nil {
		t.Fatalf("ToR routes: %v", err)
	}
	m := map[netip.Prefix][]string{}
	for _, r := range rs {
		m[r.Prefix] = r.Communities
	}
	return m
}

// waitTable polls the ToR until cond holds.
func (e *bgpEdge) waitTable(t *testing.T, d time.Duration, what string, cond func(map[netip.Prefix][]string) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := e.table(t)
		if cond(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; ToR holds %v", what, d, m)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func gshutOn(c []string) bool { return slices.Contains(c, "65535:0") }

// A proxy whose listener dies has its VIP withdrawn within 3 s; the VIP of
// the listener that still serves stays.
func TestBGPListenerDeathWithdrawsItsVIP(t *testing.T) {
	t.Parallel()
	e := startBGPEdge(t, context.Background())
	e.waitTable(t, 10*time.Second, "both VIPs announced", func(m map[netip.Prefix][]string) bool {
		_, a := m[e.vips[0]]
		_, b := m[e.vips[1]]
		return a && b && !gshutOn(m[e.vips[0]])
	})
	// The first listener dies (its server closes under it).
	e.srv.mu.Lock()
	hs := e.srv.servers[0]
	e.srv.mu.Unlock()
	t0 := time.Now()
	hs.Close()
	e.waitTable(t, 3*time.Second, "dead listener's VIP withdrawn within 3s", func(m map[netip.Prefix][]string) bool {
		_, a := m[e.vips[0]]
		_, b := m[e.vips[1]]
		return !a && b
	})
	t.Logf("dead listener's VIP gone from the ToR after %s (polled every 25ms)", time.Since(t0).Round(time.Millisecond))
	waitFor(t, 2*time.Second, "status says withdrawn, not ready", func() bool {
		st := e.ann.Speaker().Status()
		return st.Prefixes[0].State == "withdrawn" && st.Prefixes[0].Reason == "not ready" && st.Prefixes[1].State == "announced"
	})
}

// SIGTERM: the edge enters draining, re-announces its VIPs with 65535:0
// while still serving, withdraws them, and only then closes its
// listeners.
func TestBGPSIGTERMGracefulShutdownBeforeListenersClose(t *testing.T) {
	// Not parallel: the test sends SIGTERM to its own process (caught by
	// signal.NotifyContext, as cmd/edge does).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var mu sync.Mutex
	var atClose []map[netip.Prefix][]string
	var sentAtClose []string
	var e *bgpEdge
	e = startBGPEdge(t, ctx, WithListenerState(func(ap netip.AddrPort, up bool) {
		if !up && e != nil {
			// What the speaker has sent (deterministic) and what the ToR
			// holds (after drain.delay) when a listener closes.
			var states []string
			for _, p := range e.ann.Speaker().Status().Prefixes {
				states = append(states, p.State)
			}
			rs, _ := e.tor.Routes("ipv4")
			m := map[netip.Prefix][]string{}
			for _, r := range rs {
				m[r.Prefix] = r.Communities
			}
			mu.Lock()
			atClose = append(atClose, m)
			sentAtClose = append(sentAtClose, strings.Join(states, ","))
			mu.Unlock()
		}
	}))
	e.waitTable(t, 10*time.Second, "both VIPs announced", func(m map[netip.Prefix][]string) bool { return len(m) == 2 })
	addrs := e.srv.Addrs()

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.waitTable(t, 2*time.Second, "VIPs with 65535:0", func(m map[netip.Prefix][]string) bool {
		return len(m) == 2 && gshutOn(m[e.vips[0]]) && gshutOn(m[e.vips[1]])
	})
	// Still serving while the routers move traffic away.
	if !e.srv.Draining() {
		t.Error("edge not draining during the graceful shutdown")
	}
	if code, _ := get(t, newClient(), addrs[0], "h.test", "/"); code != 200 {
		t.Errorf("request during the graceful shutdown: %d", code)
	}
	e.waitTable(t, 5*time.Second, "VIPs withdrawn", func(m map[netip.Prefix][]string) bool { return len(m) == 0 })
	select {
	case err := <-e.done:
		e.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(atClose) != 2 {
		t.Fatalf("%d listener closes seen, want 2", len(atClose))
	}
	for i, m := range atClose {
		if sentAtClose[i] != "withdrawn,withdrawn" {
			t.Errorf("listener close %d: the speaker's routes were %s, want withdrawn", i, sentAtClose[i])
		}
		if len(m) != 0 {
			t.Errorf("listener close %d: the ToR still held %v", i, m)
		}
	}
	if c, err := net.DialTimeout("tcp", addrs[0].String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts after the drain")
	}
}

func TestCovers(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	cases := []struct {
		la   string
		vip  string
		want bool
	}{
		{"203.0.113.10", "203.0.113.10/32", true},
		{"203.0.113.11", "203.0.113.10/32", false},
		{"::ffff:203.0.113.10", "203.0.113.10/32", true},
		{"0.0.0.0", "203.0.113.10/32", true},
		{"0.0.0.0", "2001:db8::1/128", false},
		{"::", "203.0.113.10/32", true},
		{"::", "2001:db8::1/128", true},
		{"2001:db8:1::5", "2001:db8:1::/48", true},
		{"2001:db8:2::5", "2001:db8:1::/48", false},
	}
	for _, c := range cases {
		if got := covers(a(c.la), p(c.vip)); got != c.want {
			t.Errorf("covers(%s, %s) = %v", c.la, c.vip, got)
		}
	}
}

func TestNewAnnouncerChecksDrainTimeout(t *testing.T) {
	bgp := announce.Config{LocalASN: 65010, RouterID: "192.0.2.10",
		Peers:                []announce.PeerConfig{{Address: "127.0.0.2", ASN: 65000}},
		Announce:             announce.AnnounceConfig{VIPs: []announce.PrefixConfig{{Prefix: "203.0.113.10"}}},
		GracefulShutdownWait: 40 * time.Second}
	_, err := NewAnnouncer(bgp, Config{Node: "n1", Listen: []Listener{{Addr: "[::]:80"}}}, nil)
	if err == nil {
		t.Fatal("a graceful_shutdown_wait longer than drain.timeout was accepted")
	}
	// 28s + 2s to send + 1s delay do not fit in 30s either: the listeners
	// would close hard before the drain's deadline.
	bgp.GracefulShutdownWait = 28 * time.Second
	ec := Config{Node: "n1", Listen: []Listener{{Addr: "[::]:80"}}}
	ec.Drain.Delay = time.Second
	if _, err := NewAnnouncer(bgp, ec, nil); err == nil || !strings.Contains(err.Error(), "drain.delay") {
		t.Fatalf("wait + send + delay beyond drain.timeout: %v", err)
	}
	bgp.GracefulShutdownWait = 20 * time.Second
	if _, err := NewAnnouncer(bgp, ec, nil); err != nil {
		t.Fatalf("20s wait in a 30s drain: %v", err)
	}
}

// NewWithBGP is Main's wiring: without a bgp section it is New and Run;
// a bad section fails before any socket opens.
func TestNewWithBGP(t *testing.T) {
	_, url := filePath(t)
	cfg := Config{Source: url, Node: "n1", Listen: []Listener{{Addr: "[::1]:0"}}}
	srv, run, err := NewWithBGP(cfg, nil, nil)
	if err != nil || srv == nil || run == nil {
		t.Fatalf("NewWithBGP without bgp: %v", err)
	}
	bad := announce.Config{LocalASN: 65010, RouterID: "not-an-ip"}
	if _, _, err := NewWithBGP(cfg, &bad, nil); err == nil || !strings.Contains(err.Error(), "router_id") {
		t.Fatalf("bad bgp section: %v", err)
	}
	good := announce.Config{LocalASN: 65010, RouterID: "192.0.2.1",
		Peers:    []announce.PeerConfig{{Address: "127.0.0.2", ASN: 65000}},
		Announce: announce.AnnounceConfig{VIPs: []announce.PrefixConfig{{Prefix: "::1"}}}}
	srv, run, err = NewWithBGP(cfg, &good, nil)
	if err != nil || srv == nil || run == nil {
		t.Fatalf("NewWithBGP with bgp: %v", err)
	}
}

// The edge command with a bgp: section: --check validates it (an unknown
// key names its line), and a run announces the VIP, and on SIGTERM (ctx,
// as cmd/edge's signal.NotifyContext) goes 65535:0 → withdrawn → exit 0.
func TestMainWithBGPSection(t *testing.T) {
	t.Parallel()
	n := bgpNet()
	torAddr, edgeAddr := n+"2", n+"3"
	up := startUpstream(t, "a", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	conf := func(port int, extra string) string {
		return fmt.Sprintf(`node: main-bgp
listen:
  - addr: "%s10:0"
source: %s
bgp:
  local_asn: 65010
  router_id: 192.0.2.10
  peers:
    - address: %s
      asn: 65000
      port: %d
      local_address: %s
      hold_time: 3s
      connect_retry: 1s
  announce:
    vips: [%s10]
    next_hop_v4: 198.51.100.3
  graceful_shutdown_wait: 1s
  health_interval: 100ms
  deadman_intervals: 10
%s`, n, url, torAddr, port, edgeAddr, n, extra)
	}
	dir := t.TempDir()
	mainRun := func(ctx context.Context, args ...string) (int, string) {
		var out, errb strings.Builder
		code := Main(ctx, args, &out, &errb)
		return code, out.String() + errb.String()
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(conf(1179, "  bogus: 1\n")), 0o644)
	if code, out := mainRun(context.Background(), "--config", bad, "--check"); code != 2 || !(strings.Contains(out, "line 21") && strings.Contains(out, "bogus")) {
		t.Errorf("bad bgp key: exit %d: %s", code, out)
	}

	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: 65000, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: 65010, Passive: true}}})
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(conf(tor.Port(), "")), 0o644)
	if code, out := mainRun(context.Background(), "--config", good, "--check"); code != 0 {
		t.Fatalf("--check: exit %d: %s", code, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		code, out := mainRun(ctx, "--config", good)
		if code != 0 {
			t.Logf("edge output:\n%s", out)
		}
		done <- code
	}()
	e := &bgpEdge{tor: tor, vips: []netip.Prefix{netip.MustParsePrefix(n + "10/32")}}
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	e.waitTable(t, 10*time.Second, "VIP announced", func(m map[netip.Prefix][]string) bool { _, ok := m[e.vips[0]]; return ok })
	cancel() // SIGTERM
	e.waitTable(t, 2*time.Second, "VIP with 65535:0", func(m map[netip.Prefix][]string) bool { return gshutOn(m[e.vips[0]]) })
	e.waitTable(t, 3*time.Second, "VIP withdrawn", func(m map[netip.Prefix][]string) bool { return len(m) == 0 })
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("edge exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("edge did not exit")
	}
}
