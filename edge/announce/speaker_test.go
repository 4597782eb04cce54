package announce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/testsvc"
	"github.com/v6pod/v6pod/ops"
)

// Test addresses: every test gets its own 127.0.N.0/24 on lo, so tests
// run in parallel without sharing a BGP session.
var loopbackNet atomic.Uint32

func init() { loopbackNet.Store(uint32(os.Getpid()%200) + 20) }

// loopPair returns the ToR's and the speaker's address for one test.
func loopPair() (tor, edge string) {
	n := loopbackNet.Add(1)%230 + 20
	return fmt.Sprintf("127.0.%d.2", n), fmt.Sprintf("127.0.%d.3", n)
}

const (
	torASN  = 65000
	edgeASN = 65010
)

// testLogger writes to the test log when -v.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// baseConfig is a speaker towards one ToR at tor:port, from local.
func baseConfig(tor string, port int, local string) Config {
	return Config{
		LocalASN: edgeASN,
		RouterID: "192.0.2.10",
		Node:     "edge-test",
		Peers: []PeerConfig{{
			Address: tor, ASN: torASN, Port: port, LocalAddress: local,
			HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second,
		}},
		Announce: AnnounceConfig{
			VIPs:        []PrefixConfig{{Prefix: "203.0.113.10"}, {Prefix: "2001:db8:100::10"}},
			NodePrefix:  &PrefixConfig{Prefix: "2001:db8:c0::/64"},
			Communities: []string{"65010:100"},
			// On 127.0.0.x sessions the session address is no usable next
			// hop (gobgpd 3.10 takes a 127/8 next hop as a withdrawal, and
			// an IPv6 route over an IPv4 session needs an IPv6 one), so
			// they are configured; the IPv6-session test clears them.
			NextHopV4: "198.51.100.3",
			NextHopV6: "2001:db8:ff::3",
		},
		GracefulShutdownWait: 2 * time.Second,
		HealthInterval:       100 * time.Millisecond,
		// 1s: a busy test machine must not trip the dead-man by accident.
		DeadmanIntervals: 10,
	}
}

// run starts a speaker's Run in the background; Close ends it at cleanup.
func run(t *testing.T, cfg Config, opts ...Option) *Speaker {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger(t))}, opts...)
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// torFor starts a ToR of the given kind with the speaker as neighbor.
func torFor(t *testing.T, kind string, cfg testsvc.BGPPeerConfig) *testsvc.BGPPeer {
	t.Helper()
	if kind == "bird" {
		return testsvc.StartBIRD(t, cfg)
	}
	return testsvc.StartGoBGPD(t, cfg)
}

// routes returns the ToR's routes by prefix.
func routes(t *testing.T, tor *testsvc.BGPPeer) map[netip.Prefix]testsvc.Route {
	t.Helper()
	rs, err := tor.Routes("")
	if err != nil {
		t.Fatalf("routes: %v", err)
	}
	m := map[netip.Prefix]testsvc.Route{}
	for _, r := range rs {
		m[r.Prefix] = r
	}
	return m
}

// waitFor polls cond until it holds or timeout passes, then fails with the
// ToR's table.
func waitFor(t *testing.T, tor *testsvc.BGPPeer, timeout time.Duration, what string, cond func(map[netip.Prefix]testsvc.Route) bool) map[netip.Prefix]testsvc.Route {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var m map[netip.Prefix]testsvc.Route
	for {
		m = routes(t, tor)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	var b strings.Builder
	for _, r := range m {
		b.WriteString("  " + r.String() + "\n")
	}
	t.Fatalf("%s: not within %s; %s holds:\n%s", what, timeout, tor.Kind(), b.String())
	return nil
}

func has(m map[netip.Prefix]testsvc.Route, p string) bool {
	_, ok := m[netip.MustParsePrefix(p)]
	return ok
}

func gshut(r testsvc.Route) bool { return slices.Contains(r.Communities, "65535:0") }

var (
	vip4 = "203.0.113.10/32"
	vip6 = "2001:db8:100::10/128"
	node = "2001:db8:c0::/64"
)

func allThere(m map[netip.Prefix]testsvc.Route) bool {
	return has(m, vip4) && has(m, vip6) && has(m, node)
}

// IPv4 sessions on 127.0.0.x against both ToRs: the routes arrive with
// the session's address as IPv4 next hop, the configured IPv6 next hop,
// the communities and the MED, over TCP-MD5.
func TestPeerReceivesRoutesIPv4Session(t *testing.T) {
	for _, kind := range []string{"bird", "gobgpd"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			torAddr, edgeAddr := loopPair()
			tor := torFor(t, kind, testsvc.BGPPeerConfig{
				LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
				Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true, Password: "md5-" + kind}},
			})
			cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
			cfg.Peers[0].Password = "md5-" + kind
			med := uint32(77)
			cfg.Announce.VIPs[1].MED = &med
			cfg.Announce.VIPs[1].Communities = []string{"65010:6", "no-export"}
			s := run(t, cfg)
			tor.WaitEstablished(t, edgeAddr, 15*time.Second)
			m := waitFor(t, tor, 10*time.Second, "all routes", allThere)

			r4 := m[netip.MustParsePrefix(vip4)]
			if r4.NextHop != netip.MustParseAddr("198.51.100.3") || r4.From != netip.MustParseAddr(edgeAddr) || !slices.Equal(r4.Communities, []string{"65010:100"}) || r4.HasMED {
				t.Errorf("IPv4 VIP: %s", r4)
			}
			if len(r4.ASPath) != 1 || r4.ASPath[0] != edgeASN {
				t.Errorf("IPv4 VIP AS path %v", r4.ASPath)
			}
			r6 := m[netip.MustParsePrefix(vip6)]
			if r6.NextHop != netip.MustParseAddr("2001:db8:ff::3") || !r6.HasMED || r6.MED != 77 ||
				!slices.Equal(r6.Communities, []string{"65010:6", "65535:65281"}) {
				t.Errorf("IPv6 VIP: %s", r6)
			}
			if st := s.Status(); st.Peers[0].State != "established" || st.Prefixes[0].State != "announced" {
				t.Errorf("status: %+v", st)
			}
		})
	}
}

// vethNetns makes a namespace with a veth pair into it: the speaker stays
// in the test's namespace and dials the ToR inside through the pair. It
// returns the namespace and the two ends' IPv6 addresses (a random ULA
// /64, no DAD).
func vethNetns(t *testing.T) (ns string, host, inside netip.Addr) {
	t.Helper()
	ns = testsvc.NewNetns(t)
	ip := testsvc.Require(t, "ip")
	var r [6]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:3])
	hostIf, nsIf := "v6a"+id, "v6b"+id
	pfx := fmt.Sprintf("fd%02x:%02x%02x:%02x%02x::", r[0], r[1], r[2], r[3], r[4])
	host, inside = netip.MustParseAddr(pfx+"1"), netip.MustParseAddr(pfx+"2")
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "link", "del", hostIf).Run() })
	sh("addr", "add", host.String()+"/64", "dev", hostIf, "nodad")
	sh("link", "set", hostIf, "up")
	sh("-n", ns, "addr", "add", inside.String()+"/64", "dev", nsIf, "nodad")
	sh("-n", ns, "link", "set", nsIf, "up")
	// Wait for the link to be usable (carrier on both ends).
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("udp", net.JoinHostPort(inside.String(), "9"), time.Second)
		if err == nil {
			c.Close()
			out, _ := exec.Command(ip, "-6", "route", "get", inside.String()).CombinedOutput()
			if strings.Contains(string(out), hostIf) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("veth %s not routable", hostIf)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ns, host, inside
}

// One IPv6 session carries the IPv4 and the IPv6 routes: the IPv4 VIP
// arrives with the speaker's IPv6 address as next hop (RFC 8950 extended
// next hop), the IPv6 routes with it too. The ToR runs in a namespace the
// test makes; the speaker dials it through a veth pair.
func TestOneIPv6SessionCarriesBothFamilies(t *testing.T) {
	testsvc.RequireRoot(t)
	for _, kind := range []string{"bird", "gobgpd"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ns, host, inside := vethNetns(t)
			tor := torFor(t, kind, testsvc.BGPPeerConfig{
				LocalAddr: inside.String(), RouterID: "10.0.0.1", ASN: torASN, Netns: ns, HoldTime: 3,
				Neighbors: []testsvc.BGPNeighbor{{Addr: host.String(), ASN: edgeASN, Passive: true}},
			})
			cfg := baseConfig(inside.String(), tor.Port(), host.String())
			cfg.Announce.NextHopV4, cfg.Announce.NextHopV6 = "", ""
			run(t, cfg)
			tor.WaitEstablished(t, host.String(), 15*time.Second)
			m := waitFor(t, tor, 10*time.Second, "all routes over one IPv6 session", allThere)
			for _, p := range []string{vip4, vip6, node} {
				r := m[netip.MustParsePrefix(p)]
				if r.NextHop != host || r.From != host || !slices.Equal(r.Communities, []string{"65010:100"}) {
					t.Errorf("%s: %s; want next hop and source %s, community 65010:100", p, r, host)
				}
			}
		})
	}
}

// A VIP that stops being ready is withdrawn at once (well within 3 s),
// the others stay, and it comes back when ready again.
func TestUnreadyVIPWithdrawn(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	s := run(t, baseConfig(torAddr, tor.Port(), edgeAddr), WithInitialReady(false))
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	// Not ready yet: only the node prefix.
	waitFor(t, tor, 10*time.Second, "node prefix alone", func(m map[netip.Prefix]testsvc.Route) bool {
		return has(m, node) && !has(m, vip4) && !has(m, vip6)
	})
	s.SetReady(netip.MustParsePrefix(vip4), true)
	s.SetReady(netip.MustParsePrefix(vip6), true)
	waitFor(t, tor, 5*time.Second, "VIPs once ready", allThere)
	t0 := time.Now()
	s.SetReady(netip.MustParsePrefix(vip4), false)
	waitFor(t, tor, 3*time.Second, "IPv4 VIP withdrawn within 3s", func(m map[netip.Prefix]testsvc.Route) bool {
		return !has(m, vip4) && has(m, vip6) && has(m, node)
	})
	t.Logf("unready VIP gone from the ToR's table after %s (polled every 25ms)", time.Since(t0).Round(time.Millisecond))
	s.SetReady(netip.MustParsePrefix(vip4), true)
	waitFor(t, tor, 3*time.Second, "IPv4 VIP back", allThere)
	if err := s.SetReady(netip.MustParsePrefix("192.0.2.99/32"), true); err == nil {
		t.Error("SetReady of an unknown VIP accepted")
	}
}

// RFC 8326: Shutdown re-announces every route with 65535:0, waits, then
// withdraws, and returns only after the withdrawal went out.
func TestShutdownGracefulShutdownThenWithdraw(t *testing.T) {
	for _, kind := range []string{"bird", "gobgpd"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			torAddr, edgeAddr := loopPair()
			tor := torFor(t, kind, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
				Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
			s := run(t, baseConfig(torAddr, tor.Port(), edgeAddr))
			tor.WaitEstablished(t, edgeAddr, 15*time.Second)
			waitFor(t, tor, 10*time.Second, "all routes", allThere)

			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- s.Shutdown(context.Background()) }()
			waitFor(t, tor, 2*time.Second, "every route with 65535:0", func(m map[netip.Prefix]testsvc.Route) bool {
				return allThere(m) && gshut(m[netip.MustParsePrefix(vip4)]) && gshut(m[netip.MustParsePrefix(vip6)]) && gshut(m[netip.MustParsePrefix(node)])
			})
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el < 2*time.Second {
				t.Errorf("Shutdown returned after %s, before graceful_shutdown_wait", el)
			}
			waitFor(t, tor, 2*time.Second, "everything withdrawn", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
			// The session is still up: the withdrawal was a withdrawal,
			// not a session drop.
			if st, _ := tor.NeighborState(edgeAddr); st != "Established" {
				t.Errorf("session %s after Shutdown, want Established", st)
			}
		})
	}
}

// Drain by flag file (`ops edge drain --drain-file`): the VIPs go through
// 65535:0 and are withdrawn, the node prefix stays; `ops edge undrain`
// restores them without 65535:0.
func TestDrainFlagFile(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartBIRD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.DrainFile = filepath.Join(t.TempDir(), "drain")
	cfg.GracefulShutdownWait = time.Second
	s := run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes", allThere)

	opsRun(t, "edge", "drain", "edge-test", "--drain-file", cfg.DrainFile)
	waitFor(t, tor, 2*time.Second, "VIPs with 65535:0", func(m map[netip.Prefix]testsvc.Route) bool {
		return allThere(m) && gshut(m[netip.MustParsePrefix(vip4)]) && !gshut(m[netip.MustParsePrefix(node)])
	})
	waitFor(t, tor, 3*time.Second, "VIPs withdrawn, node prefix kept", func(m map[netip.Prefix]testsvc.Route) bool {
		return !has(m, vip4) && !has(m, vip6) && has(m, node)
	})
	if on, src := s.Draining(); !on || !slices.Equal(src, []string{"file"}) {
		t.Errorf("Draining = %v %v", on, src)
	}
	opsRun(t, "edge", "undrain", "edge-test", "--drain-file", cfg.DrainFile)
	waitFor(t, tor, 3*time.Second, "VIPs back without 65535:0", func(m map[netip.Prefix]testsvc.Route) bool {
		return allThere(m) && !gshut(m[netip.MustParsePrefix(vip4)]) && !gshut(m[netip.MustParsePrefix(vip6)])
	})
}

// Drain by the Consul key v6pod/edges/<node>/drain that `ops edge drain`
// writes, and the status JSON the speaker keeps at v6pod/edges/<node>/bgp
// that `ops edge status` shows.
func TestDrainConsulKeyAndStatus(t *testing.T) {
	t.Parallel()
	consul := testsvc.StartConsul(t)
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Consul = consul.URL("v6pod")
	cfg.Node = "ams-01"
	cfg.GracefulShutdownWait = time.Second
	run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes", allThere)

	kv := consul.Client().KV()
	readStatus := func() Status {
		var st Status
		pair, _, err := kv.Get("v6pod/edges/ams-01/bgp", nil)
		if err != nil || pair == nil {
			return st
		}
		if err := json.Unmarshal(pair.Value, &st); err != nil {
			t.Fatalf("status JSON: %v: %s", err, pair.Value)
		}
		return st
	}
	waitStatus := func(what string, ok func(Status) bool) Status {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := readStatus()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("status: %s: got %+v", what, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := waitStatus("established, 3 announced", func(st Status) bool {
		n := 0
		for _, p := range st.Prefixes {
			if p.State == "announced" {
				n++
			}
		}
		return len(st.Peers) == 1 && st.Peers[0].State == "established" && n == 3
	})
	if st.Node != "ams-01" || st.Peers[0].Address != torAddr || st.LocalASN != edgeASN {
		t.Errorf("status: %+v", st)
	}

	store := "--store=" + consul.URL("v6pod")
	if out := opsRun(t, store, "edge", "status", "ams-01", "-o", "json"); !strings.Contains(out, `"established"`) {
		t.Errorf("ops edge status does not show the session: %s", out)
	}
	opsRun(t, store, "edge", "drain", "ams-01")
	waitFor(t, tor, 3*time.Second, "VIPs with 65535:0", func(m map[netip.Prefix]testsvc.Route) bool {
		return has(m, vip4) && gshut(m[netip.MustParsePrefix(vip4)])
	})
	waitFor(t, tor, 3*time.Second, "VIPs withdrawn", func(m map[netip.Prefix]testsvc.Route) bool {
		return !has(m, vip4) && !has(m, vip6) && has(m, node)
	})
	waitStatus("draining by consul", func(st Status) bool {
		return st.Draining && slices.Equal(st.DrainedBy, []string{"consul"}) && st.Prefixes[0].State == "withdrawn" && st.Prefixes[0].Reason == "drained"
	})
	opsRun(t, store, "edge", "undrain", "ams-01")
	waitFor(t, tor, 3*time.Second, "VIPs back", allThere)
}

// Dead-man: when the health loop stops making progress (here the
// embedder's ReadyFunc hangs), every route is withdrawn; when it resumes,
// they come back.
func TestDeadmanWithdraws(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	var mu sync.Mutex // held: the embedder is stuck
	s := run(t, baseConfig(torAddr, tor.Port(), edgeAddr), WithReadyFunc(func(netip.Prefix) bool {
		mu.Lock()
		defer mu.Unlock()
		return true
	}))
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes", allThere)
	mu.Lock()
	waitFor(t, tor, 3*time.Second, "everything withdrawn by the dead-man", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
	if !s.Status().Deadman {
		t.Error("status does not say dead-man")
	}
	mu.Unlock()
	// Hysteresis: not back before the loop has beaten for a whole limit
	// (1s here) — a loop that stalls on and off must not flap the routes.
	released := time.Now()
	for time.Since(released) < 500*time.Millisecond {
		if m := routes(t, tor); len(m) != 0 {
			t.Fatalf("routes back %s after the loop resumed, before the dead-man's hold (1s)", time.Since(released).Round(time.Millisecond))
		}
		time.Sleep(25 * time.Millisecond)
	}
	waitFor(t, tor, 5*time.Second, "routes back", allThere)
}

// The optional local check: a VIP is announced after rise passes of a TCP
// connect to it, and withdrawn after fall failures.
func TestLocalTCPCheck(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	// The VIP is a loopback address, so the check can reach it here.
	vipAddr := strings.TrimSuffix(edgeAddr, ".3") + ".10"
	ln, err := net.Listen("tcp", vipAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Announce.VIPs = []PrefixConfig{{Prefix: vipAddr}}
	cfg.Announce.NodePrefix = nil
	cfg.Check = &CheckConfig{Kind: "tcp", Port: port, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 2}
	run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	vip := vipAddr + "/32"
	waitFor(t, tor, 10*time.Second, "VIP after the check passes", func(m map[netip.Prefix]testsvc.Route) bool { return has(m, vip) })
	ln.Close()
	waitFor(t, tor, 3*time.Second, "VIP withdrawn after the check fails", func(m map[netip.Prefix]testsvc.Route) bool { return !has(m, vip) })
}

// manage_addresses: the VIP addresses appear on lo, and go only after
// Shutdown's withdrawal went out. (lo rather than a dummy interface: not
// every kernel here has the dummy module.)
func TestManagedAddresses(t *testing.T) {
	testsvc.RequireRoot(t)
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	var r [3]byte
	rand.Read(r[:])
	ifname := "lo"
	v4 := fmt.Sprintf("198.18.%d.%d", r[0], r[1]|1)
	v6 := fmt.Sprintf("2001:db8:%x::%x", r[0], int(r[1])<<8|int(r[2])|1)
	t.Cleanup(func() {
		_ = exec.Command("ip", "addr", "del", v4+"/32", "dev", ifname).Run()
		_ = exec.Command("ip", "addr", "del", v6+"/128", "dev", ifname).Run()
	})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Announce.VIPs = []PrefixConfig{{Prefix: v4}, {Prefix: v6}}
	cfg.Announce.NodePrefix = nil
	cfg.ManageAddresses = true
	cfg.Interface = ifname
	cfg.GracefulShutdownWait = 500 * time.Millisecond
	s := run(t, cfg)
	present := func() (bool, bool) {
		out, _ := exec.Command("ip", "addr", "show", "dev", ifname).CombinedOutput()
		return strings.Contains(string(out), " "+v4+"/32"), strings.Contains(string(out), " "+netip.MustParseAddr(v6).String()+"/128")
	}
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "VIPs announced", func(m map[netip.Prefix]testsvc.Route) bool {
		return has(m, v4+"/32") && has(m, netip.MustParseAddr(v6).String()+"/128")
	})
	if a, b := present(); !a || !b {
		out, _ := exec.Command("ip", "addr", "show", "dev", ifname).CombinedOutput()
		t.Fatalf("addresses not on %s: %s", ifname, out)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, b := present(); a || b {
		t.Errorf("addresses still on %s after Shutdown", ifname)
	}
	waitFor(t, tor, 2*time.Second, "VIPs withdrawn", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
}

// IPv4 routes over the IPv6 session with a configured IPv4 next hop.
func TestIPv6SessionConfiguredIPv4NextHop(t *testing.T) {
	testsvc.RequireRoot(t)
	t.Parallel()
	ns, host, inside := vethNetns(t)
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{
		LocalAddr: inside.String(), RouterID: "10.0.0.1", ASN: torASN, Netns: ns, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: host.String(), ASN: edgeASN, Passive: true}},
	})
	cfg := baseConfig(inside.String(), tor.Port(), host.String())
	cfg.Announce.NextHopV6 = ""
	run(t, cfg)
	tor.WaitEstablished(t, host.String(), 15*time.Second)
	m := waitFor(t, tor, 10*time.Second, "all routes", allThere)
	if r := m[netip.MustParsePrefix(vip4)]; r.NextHop != netip.MustParseAddr("198.51.100.3") || r.From != host {
		t.Errorf("IPv4 VIP: %s, want next hop 198.51.100.3 from %s", r, host)
	}
	if r := m[netip.MustParsePrefix(vip6)]; r.NextHop != host {
		t.Errorf("IPv6 VIP: %s, want next hop %s", r, host)
	}
}

// opsRun runs the ops command and returns its output.
func opsRun(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb strings.Builder
	if code := ops.Main(context.Background(), args, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("ops %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

// Two ToRs (BIRD and gobgpd) at once: both hold the routes; one restarts
// and learns them again when its session comes back; Shutdown's 65535:0
// and withdrawal reach both.
func TestTwoPeersAndPeerRestart(t *testing.T) {
	t.Parallel()
	birdAddr, edgeAddr := loopPair()
	gobgpAddr := strings.TrimSuffix(birdAddr, ".2") + ".4"
	bird := testsvc.StartBIRD(t, testsvc.BGPPeerConfig{LocalAddr: birdAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	gobgp := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: gobgpAddr, ASN: torASN + 1, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(birdAddr, bird.Port(), edgeAddr)
	p2 := cfg.Peers[0]
	p2.Address, p2.ASN, p2.Port = gobgpAddr, torASN+1, gobgp.Port()
	cfg.Peers = append(cfg.Peers, p2)
	s := run(t, cfg)
	for _, tor := range []*testsvc.BGPPeer{bird, gobgp} {
		tor.WaitEstablished(t, edgeAddr, 15*time.Second)
		waitFor(t, tor, 10*time.Second, "all routes", allThere)
	}
	t0 := time.Now()
	gobgp.Restart()
	t.Logf("gobgpd restarted in %s", time.Since(t0).Round(time.Millisecond))
	gobgp.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, gobgp, 10*time.Second, "all routes after the restart", allThere)
	t.Logf("routes back %s after the restart began", time.Since(t0).Round(time.Millisecond))

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	for _, tor := range []*testsvc.BGPPeer{bird, gobgp} {
		waitFor(t, tor, 2*time.Second, "65535:0", func(m map[netip.Prefix]testsvc.Route) bool {
			return allThere(m) && gshut(m[netip.MustParsePrefix(vip4)])
		})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tor := range []*testsvc.BGPPeer{bird, gobgp} {
		waitFor(t, tor, 2*time.Second, "withdrawn", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
	}
	st := s.Status()
	if len(st.Peers) != 2 || st.Peers[1].Established < 2 {
		t.Errorf("status peers: %+v", st.Peers)
	}
}

// The HTTP check: 2xx passes, 503 fails; the VIP follows after rise/fall.
func TestLocalHTTPCheck(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	vipAddr := strings.TrimSuffix(edgeAddr, ".3") + ".11"
	ln, err := net.Listen("tcp", vipAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	var sawHost atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawHost.Store(r.Host + r.URL.Path)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Announce.VIPs = []PrefixConfig{{Prefix: vipAddr}}
	cfg.Announce.NodePrefix = nil
	cfg.Check = &CheckConfig{Kind: "http", Port: ln.Addr().(*net.TCPAddr).Port, Path: "/healthz", Host: "edge.check",
		Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 2}
	s := run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	vip := vipAddr + "/32"
	waitFor(t, tor, 10*time.Second, "VIP after the check passes", func(m map[netip.Prefix]testsvc.Route) bool { return has(m, vip) })
	if got, _ := sawHost.Load().(string); got != "edge.check/healthz" {
		t.Errorf("check request: host+path %q", got)
	}
	healthy.Store(false)
	waitFor(t, tor, 3*time.Second, "VIP withdrawn on 503", func(m map[netip.Prefix]testsvc.Route) bool { return !has(m, vip) })
	// The status records a withdrawal once it has been sent, a moment
	// after the ToR may have applied it.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := s.Status()
		if !st.Prefixes[0].CheckOK && st.Prefixes[0].State == "withdrawn" && st.Prefixes[0].Reason == "check failing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v", st.Prefixes[0])
		}
	}
	healthy.Store(true)
	waitFor(t, tor, 3*time.Second, "VIP back", func(m map[netip.Prefix]testsvc.Route) bool { return has(m, vip) })
	// The metrics say so too.
	if v := gauge(t, s, "v6pod_bgp_prefix_announced", vip); v != 1 {
		t.Errorf("v6pod_bgp_prefix_announced{%s} = %v", vip, v)
	}
	if v := gauge(t, s, "v6pod_bgp_session_established", torAddr); v != 1 {
		t.Errorf("v6pod_bgp_session_established{%s} = %v", torAddr, v)
	}
}

// gauge reads a gauge (or, without labels, a counter) from the speaker's
// registry by one label value; label "" is the metric without labels.
func gauge(t *testing.T, s *Speaker, name, label string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// RFC 8326 section 4: towards an iBGP peer the graceful-shutdown routes
// also carry LOCAL_PREF 0 (the ToR's policy may ignore 65535:0); before,
// they carry the default 100.
func TestIBGPGracefulShutdownLowersLocalPref(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: edgeASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Peers[0].ASN = edgeASN
	cfg.GracefulShutdownWait = time.Second
	s := run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	m := waitFor(t, tor, 10*time.Second, "all routes", allThere)
	if r := m[netip.MustParsePrefix(vip4)]; r.LocalPref != 100 || gshut(r) {
		t.Errorf("before shutdown: %s local-pref %d, want 100 without 65535:0", r, r.LocalPref)
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	waitFor(t, tor, 2*time.Second, "65535:0 with LOCAL_PREF 0", func(m map[netip.Prefix]testsvc.Route) bool {
		for _, p := range []string{vip4, vip6, node} {
			if r, ok := m[netip.MustParsePrefix(p)]; !ok || !gshut(r) || r.LocalPref != 0 {
				return false
			}
		}
		return true
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, tor, 2*time.Second, "withdrawn", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
}

// The watchdog: when the reconciler (which does the withdrawing) hangs
// while GoBGP's keepalives keep the session up, the sessions are shut so
// the ToR drops the routes; when it is back, they come up again.
func TestWatchdogReconcilerStallShutsSessions(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	s, err := New(cfg, WithLogger(testLogger(t)), WithWatchdogExit(func() { t.Error("watchdog ended the process; GoBGP answers here") }))
	if err != nil {
		t.Fatal(err)
	}
	var stuck sync.RWMutex
	s.testHookReconcile = func() { stuck.RLock(); stuck.RUnlock() }
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes", allThere)

	stuck.Lock()
	// limit 1s + 2s; the session keeps its keepalives meanwhile.
	waitFor(t, tor, 8*time.Second, "routes gone with the shut session", func(m map[netip.Prefix]testsvc.Route) bool { return len(m) == 0 })
	if st, _ := tor.NeighborState(edgeAddr); st == "Established" {
		t.Errorf("session %s while the watchdog holds it shut", st)
	}
	if v := gauge(t, s, "v6pod_bgp_watchdog_tripped", ""); v != 1 || !s.Status().Watchdog {
		t.Errorf("v6pod_bgp_watchdog_tripped = %v, status watchdog %v", v, s.Status().Watchdog)
	}
	stuck.Unlock()
	tor.WaitEstablished(t, edgeAddr, 20*time.Second)
	waitFor(t, tor, 10*time.Second, "routes back", allThere)
}

// The watchdog when GoBGP itself hangs (no API call answers): the
// reconciler's probes time out, the watchdog cannot shut the sessions
// through GoBGP, so it ends the process (here: the exit hook is called).
func TestWatchdogGoBGPHangEndsProcess(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	exited := make(chan struct{})
	var once sync.Once
	s, err := New(cfg, WithLogger(testLogger(t)), WithWatchdogExit(func() { once.Do(func() { close(exited) }) }))
	if err != nil {
		t.Fatal(err)
	}
	s.apiTimeout = 300 * time.Millisecond
	var hung sync.RWMutex
	s.testHookAPI = func(string) { hung.RLock(); hung.RUnlock() }
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes", allThere)
	hung.Lock()
	t.Cleanup(func() { s.Close(); <-done })
	t.Cleanup(hung.Unlock) // runs first: GoBGP answers again so Close can stop it
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the watchdog did not end the process while GoBGP hung")
	}
	if v := gauge(t, s, "v6pod_bgp_watchdog_trips_total", ""); v != 1 {
		t.Errorf("v6pod_bgp_watchdog_trips_total = %v", v)
	}
}

// The drain file: removed and recreated, replaced by a symlink whose
// target is gone, its folder removed and recreated — the drain follows
// the path's existence each time (the health loop polls it when inotify
// loses the folder). No ToR here: the peer is unreachable, which must not
// matter.
func TestDrainFileRecreatedAndSymlink(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	cfg := baseConfig(torAddr, 1, edgeAddr)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.DrainFile = filepath.Join(dir, "drain")
	s := run(t, cfg)
	want := func(what string, on bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if got, _ := s.Draining(); got == on {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: draining = %v, want %v", what, !on, on)
			}
		}
	}
	write := func() {
		if err := os.WriteFile(cfg.DrainFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want("no file", false)
	write()
	want("file created", true)
	os.Remove(cfg.DrainFile)
	want("file removed", false)
	write()
	want("file recreated", true)
	os.Remove(cfg.DrainFile)
	want("removed again", false)
	if err := os.Symlink(filepath.Join(dir, "gone"), cfg.DrainFile); err != nil {
		t.Fatal(err)
	}
	want("dangling symlink", true)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	want("folder removed", false)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write()
	want("folder and file recreated", true)
}

// A ToR that is unreachable when the speaker starts: no error, no crash,
// the session shows down in the status and the metrics, the speaker keeps
// retrying, and the routes arrive once the ToR is up.
func TestToRUnreachableAtStart(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	ln, err := net.Listen("tcp", torAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	s := run(t, baseConfig(torAddr, port, edgeAddr))
	time.Sleep(1500 * time.Millisecond) // a connect retry or two (1s)
	if st := s.Status(); st.Peers[0].State == "established" {
		t.Fatalf("status: %+v", st.Peers[0])
	}
	if v := gauge(t, s, "v6pod_bgp_session_established", torAddr); v != 0 {
		t.Errorf("v6pod_bgp_session_established = %v, want 0", v)
	}
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, Port: port, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	tor.WaitEstablished(t, edgeAddr, 20*time.Second)
	waitFor(t, tor, 10*time.Second, "all routes once the ToR is up", allThere)
	for deadline := time.Now().Add(5 * time.Second); gauge(t, s, "v6pod_bgp_session_established", torAddr) != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("v6pod_bgp_session_established not 1 after the session came up")
		}
	}
}

// TCP-MD5 on the IPv6 session (the ToR inside a namespace): the session
// comes up with the right key and carries the routes; with a wrong key it
// never does.
func TestIPv6SessionMD5(t *testing.T) {
	testsvc.RequireRoot(t)
	for _, kind := range []string{"bird", "gobgpd"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ns, host, inside := vethNetns(t)
			tor := torFor(t, kind, testsvc.BGPPeerConfig{
				LocalAddr: inside.String(), RouterID: "10.0.0.1", ASN: torASN, Netns: ns, HoldTime: 3,
				Neighbors: []testsvc.BGPNeighbor{{Addr: host.String(), ASN: edgeASN, Passive: true, Password: "v6-md5-" + kind}},
			})
			cfg := baseConfig(inside.String(), tor.Port(), host.String())
			cfg.Announce.NextHopV4, cfg.Announce.NextHopV6 = "", ""
			cfg.Peers[0].Password = "v6-md5-" + kind
			run(t, cfg)
			tor.WaitEstablished(t, host.String(), 15*time.Second)
			waitFor(t, tor, 10*time.Second, "all routes over the MD5 IPv6 session", allThere)
		})
	}
	t.Run("wrong-key", func(t *testing.T) {
		t.Parallel()
		ns, host, inside := vethNetns(t)
		tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{
			LocalAddr: inside.String(), RouterID: "10.0.0.1", ASN: torASN, Netns: ns, HoldTime: 3,
			Neighbors: []testsvc.BGPNeighbor{{Addr: host.String(), ASN: edgeASN, Passive: true, Password: "right"}},
		})
		cfg := baseConfig(inside.String(), tor.Port(), host.String())
		cfg.Announce.NextHopV4, cfg.Announce.NextHopV6 = "", ""
		cfg.Peers[0].Password = "wrong"
		s := run(t, cfg)
		time.Sleep(2 * time.Second) // two connect retries
		if st, _ := tor.NeighborState(host.String()); st == "Established" {
			t.Fatal("session up with a wrong TCP-MD5 key")
		}
		if st := s.Status(); st.Peers[0].State == "established" {
			t.Fatalf("status: %+v", st.Peers[0])
		}
	})
}

// A flapping VIP does not turn into a stream of Consul writes: the status
// key is written at most about once a second, and ends up current.
func TestStatusWritesRateLimited(t *testing.T) {
	t.Parallel()
	consul := testsvc.StartConsul(t)
	torAddr, edgeAddr := loopPair()
	cfg := baseConfig(torAddr, 1, edgeAddr) // no ToR: not needed here
	cfg.Consul = consul.URL("v6pod")
	cfg.Node = "flappy"
	s := run(t, cfg)
	vip := netip.MustParsePrefix(vip4)
	start := time.Now()
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		s.SetReady(vip, i%2 == 0)
		time.Sleep(5 * time.Millisecond)
	}
	s.SetReady(vip, false)
	el := time.Since(start)
	// The first write at start, then at most one a second (+ slack for
	// the once-a-minute refresh and retries).
	if n := gauge(t, s, "v6pod_bgp_status_writes_total", "ok"); n > el.Seconds()+3 {
		t.Errorf("%v status writes in %s of flapping, want about one a second", n, el.Round(time.Millisecond))
	}
	kv := consul.Client().KV()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var st Status
		if pair, _, err := kv.Get("v6pod/edges/flappy/bgp", nil); err == nil && pair != nil && json.Unmarshal(pair.Value, &st) == nil &&
			len(st.Prefixes) > 0 && !st.Prefixes[0].Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the status key does not show the last state")
		}
	}
}

// A check that flaps on every probe (pass, fail, pass, ...) never reaches
// rise=2 passes in a row: the VIP is never announced, so a flapping
// backend does not flap the route. Once it passes steadily, it is.
func TestFlappingCheckDoesNotFlapRoute(t *testing.T) {
	t.Parallel()
	torAddr, edgeAddr := loopPair()
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
	vipAddr := strings.TrimSuffix(edgeAddr, ".3") + ".12"
	ln, err := net.Listen("tcp", vipAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	var n, steady atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flip := !n.Load()
		n.Store(flip)
		if !steady.Load() && !flip {
			http.Error(w, "flap", http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
	cfg.Announce.VIPs = []PrefixConfig{{Prefix: vipAddr}}
	cfg.Check = &CheckConfig{Kind: "http", Port: ln.Addr().(*net.TCPAddr).Port,
		Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 2, Fall: 2}
	s := run(t, cfg)
	tor.WaitEstablished(t, edgeAddr, 15*time.Second)
	waitFor(t, tor, 10*time.Second, "node prefix", func(m map[netip.Prefix]testsvc.Route) bool { return has(m, node) })
	vip := vipAddr + "/32"
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		if has(routes(t, tor), vip) {
			t.Fatal("a check flapping on every probe got the VIP announced")
		}
	}
	if v := gauge(t, s, "v6pod_bgp_checks_total", "fail"); v < 5 {
		t.Fatalf("only %v failed checks: the check did not run", v)
	}
	steady.Store(true)
	waitFor(t, tor, 5*time.Second, "VIP once the check passes steadily", func(m map[netip.Prefix]testsvc.Route) bool { return has(m, vip) })
}
