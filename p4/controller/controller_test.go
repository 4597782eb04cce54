package controller

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/v6pod/v6pod/internal/maglev"
	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/sim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("P4ACCESS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quiet
}

func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startSim(t *testing.T, opts ...sim.Option) (*sim.Sim, string) {
	t.Helper()
	s := sim.New(opts...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return s, l.Addr().String()
}

// nat64 is a NAT64 server's BGP speaker: the GoBGP library, peering from
// 127.0.0.N with the controller and announcing the VIP with its own IPv6
// address as next hop.
type nat64 struct {
	s       *server.BgpServer
	nextHop string
	path    *api.Path
}

func startNAT64(t *testing.T, local string, ctrlPort int, vip, nextHop string) *nat64 {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(slogAdapter{quiet}))
	go s.Serve()
	t.Cleanup(s.Stop)
	ctx := context.Background()
	startMu.Lock()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65001, RouterId: local, ListenPort: -1}})
	startMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65000},
		Transport: &api.Transport{LocalAddress: local, RemotePort: uint32(ctrlPort)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry: 1, HoldTime: 3, KeepaliveInterval: 1, IdleHoldTimeAfterReset: 1,
		}},
		EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 8},
		AfiSafis:     []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: vip, PrefixLen: 128})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	mp, _ := anypb.New(&api.MpReachNLRIAttribute{Family: familyV6, NextHops: []string{nextHop}, Nlris: []*anypb.Any{nlri}})
	n := &nat64{s: s, nextHop: nextHop, path: &api.Path{Family: familyV6, Nlri: nlri, Pattrs: []*anypb.Any{origin, mp}}}
	if _, err := s.AddPath(ctx, &api.AddPathRequest{Path: n.path}); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *nat64) withdraw(t *testing.T) {
	t.Helper()
	if err := n.s.DeletePath(context.Background(), &api.DeletePathRequest{Path: n.path}); err != nil {
		t.Fatal(err)
	}
}

const (
	testVIP  = "2001:db8:feed::1"
	testSize = 1021
)

var testEIP = netip.MustParseAddr("192.0.2.1")

func serverMAC(i int) [6]byte { return [6]byte{2, 0, 0, 0, 0, byte(i)} }

func testConfig(t *testing.T, device string, bgpPort int, servers int) Config {
	cfg := Config{
		Device: DeviceConfig{Address: device, ElectionIDFile: filepath.Join(t.TempDir(), "election-id"), BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second},
		BGP:    BGPConfig{Listen: fmt.Sprintf("127.0.0.1:%d", bgpPort), ASN: 65000, HoldTime: 3 * time.Second, ConvergeTime: 20 * time.Second},
		VIPs:   []VIPConfig{{Name: "cluster-a", Address: testVIP, ID: 1, TableSize: testSize}},
		EIPs:   []EIPConfig{{Address: testEIP.String(), VIP: "cluster-a", SYNRate: 100, SYNBurst: 100}},
	}
	for i := 2; i < 2+servers; i++ {
		cfg.BGP.Peers = append(cfg.BGP.Peers, PeerConfig{Address: fmt.Sprintf("127.0.0.%d", i), ASN: 65001})
		m := serverMAC(i)
		cfg.Servers = append(cfg.Servers, ServerConfig{
			NextHop: fmt.Sprintf("2001:db8:64::%d", i),
			MAC:     net.HardwareAddr(m[:]).String(),
			Port:    uint32(i),
		})
	}
	return cfg
}

type running struct {
	c    *Controller
	stop func()
}

func runController(t *testing.T, cfg Config) *running {
	t.Helper()
	c, err := New(cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	r := &running{c: c, stop: func() {
		c.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	}}
	t.Cleanup(func() { c.Close() })
	return r
}

// expected is internal/maglev's table for these next hops.
func expected(t *testing.T, hops ...int) map[uint32][6]byte {
	var bs []maglev.Backend
	for _, h := range hops {
		bs = append(bs, maglev.Backend{Name: fmt.Sprintf("2001:db8:64::%d", h)})
	}
	tab, err := maglev.Build(bs, testSize)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32][6]byte{}
	for slot := range tab.Size() {
		var h int
		fmt.Sscanf(strings.TrimPrefix(tab.Slot(slot).Name, "2001:db8:64::"), "%d", &h)
		out[uint32(slot)] = serverMAC(h)
	}
	return out
}

func simTable(s *sim.Sim) map[uint32][6]byte {
	out := map[uint32][6]byte{}
	for slot, sv := range s.MaglevTable(1) {
		out[slot] = sv.MAC
	}
	return out
}

func equalTables(a, b map[uint32][6]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// frame is Ethernet + IPv6 + TCP from client port sport to <prefix>::EIP.
func frame(sport uint16, flags byte) []byte {
	b := make([]byte, 14+40+20)
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ip := b[14:]
	ip[0], ip[6], ip[7] = 0x60, 6, 64
	binary.BigEndian.PutUint16(ip[4:], 20)
	src := netip.MustParseAddr("2001:db8:c11e:4::7").As16()
	dst := netip.MustParseAddr("64:ff9b::c000:201").As16()
	copy(ip[8:], src[:])
	copy(ip[24:], dst[:])
	tcp := ip[40:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 443)
	tcp[12], tcp[13] = 5<<4, flags
	return b
}

// TestProof is issue 7's proof: three NAT64 servers announce one VIP, one
// withdraws; a restart reconciles without rewrites; a SYN flood is
// metered.
func TestProof(t *testing.T) {
	if testing.Short() {
		t.Skip("BGP sessions take a few seconds")
	}
	t.Parallel()
	frozen := time.Unix(1_700_000_000, 0)
	s, dev := startSim(t, sim.WithClock(func() time.Time { return frozen }))
	port := freePort(t, "127.0.0.1")
	cfg := testConfig(t, dev, port, 3)
	ctrl := runController(t, cfg)
	var servers []*nat64
	for i := 2; i <= 4; i++ {
		servers = append(servers, startNAT64(t, fmt.Sprintf("127.0.0.%d", i), port, testVIP, fmt.Sprintf("2001:db8:64::%d", i)))
	}

	// 1. The sim's table becomes internal/maglev's for the three servers.
	want3 := expected(t, 2, 3, 4)
	waitFor(t, "the 3-server table on the device", 30*time.Second, func() bool {
		return equalTables(simTable(s), want3) && s.Process(frame(1, 0x10)).Verdict == sim.Forwarded
	})

	// Flows before the withdrawal.
	const flows = 3000
	before := make([][6]byte, flows)
	for i := range flows {
		r := s.Process(frame(uint16(20000+i), 0x10))
		if r.Verdict != sim.Forwarded {
			t.Fatalf("flow %d: %v", i, r.Verdict)
		}
		copy(before[i][:], r.Frame[:6])
	}

	// 2. Server 3 withdraws: only the slots that moved are written.
	s.ResetStats()
	servers[1].withdraw(t)
	want2 := expected(t, 2, 4)
	waitFor(t, "the 2-server table on the device", 30*time.Second, func() bool { return equalTables(simTable(s), want2) })
	moved := 0
	for slot, mac := range want3 {
		if want2[slot] != mac {
			moved++
		}
	}
	st := s.Stats()
	if got := st.TableUpdates[p4.TableMaglev]; got != moved {
		t.Fatalf("controller wrote %d maglev entries, %d slots moved", got, moved)
	}
	if frac := float64(moved) / testSize; frac < 0.28 || frac > 0.45 {
		t.Fatalf("%.3f of the slots moved, want about a third", frac)
	}
	if st.TableUpdates[p4.TableEIPToVIP] != 0 || st.MeterUpdates != 0 {
		t.Fatalf("unrelated writes: %+v", st)
	}
	t.Logf("withdrawal: %d of %d slots rewritten (%.1f%%) in %d Write RPCs", moved, testSize, 100*float64(moved)/testSize, st.WriteRPCs)

	// 3. Flows on the surviving servers keep their server, except those
	// hashing to the few slots Maglev moves between two survivors (it is
	// not minimally disruptive; see the study in p4/README.md): exactly
	// internal/maglev's diff, nothing more.
	gone := serverMAC(3)
	kept, rehomed, disturbed := 0, 0, 0
	for i := range flows {
		r := s.Process(frame(uint16(20000+i), 0x10))
		var now [6]byte
		copy(now[:], r.Frame[:6])
		switch {
		case before[i] == gone:
			if now == gone {
				t.Fatalf("flow %d still goes to the withdrawn server", i)
			}
			rehomed++
		case now == before[i]:
			if want2[r.Slot] != want3[r.Slot] {
				t.Fatalf("flow %d kept its server though its slot %d moved", i, r.Slot)
			}
			kept++
		default:
			if want2[r.Slot] == want3[r.Slot] || want3[r.Slot] == gone {
				t.Fatalf("flow %d moved from %x to %x, slot %d did not move between survivors", i, before[i], now, r.Slot)
			}
			disturbed++
		}
	}
	if frac := float64(disturbed) / float64(kept+disturbed); frac > 0.03 {
		t.Fatalf("%.2f%% of the flows on surviving servers moved", 100*frac)
	}
	t.Logf("flows: %d kept their server, %d re-homed from the withdrawn one, %d (%.2f%% of the survivors' flows) moved between survivors",
		kept, rehomed, disturbed, 100*float64(disturbed)/float64(kept+disturbed))

	// 4. Restart: the new instance outranks the old, reads back, and
	// rewrites nothing.
	oldID := ctrl.c.Status().ElectionID
	ctrl.stop()
	s.ResetStats()
	ctrl = runController(t, cfg)
	waitFor(t, "the restarted controller to sync", 30*time.Second, func() bool {
		st := ctrl.c.Status()
		return st.Connected && st.Syncs > 0 && len(st.Servers["cluster-a"]) == 2
	})
	if id := ctrl.c.Status().ElectionID; id <= oldID {
		t.Fatalf("election id %d after restart, was %d", id, oldID)
	}
	st = s.Stats()
	if n := st.TableUpdates[p4.TableMaglev] + st.TableUpdates[p4.TableEIPToVIP] + st.MeterUpdates; n != 0 || st.PipelineSets != 0 {
		t.Fatalf("restart rewrote %d entries (pipeline sets %d)", n, st.PipelineSets)
	}
	if st.ReadRPCs == 0 {
		t.Fatal("restart did not read the device back")
	}
	if !equalTables(simTable(s), want2) {
		t.Fatal("table changed across the restart")
	}
	if v := metric(t, ctrl.c.Registry(), "p4access_device_connected"); v != 1 {
		t.Fatalf("device_connected = %v", v)
	}
	if v := metric(t, ctrl.c.Registry(), "p4access_vip_servers"); v != 2 {
		t.Fatalf("vip_servers = %v", v)
	}

	// 5. A SYN flood above the meter's rate (100/s, burst 100; the sim's
	// clock is frozen) is dropped; established traffic passes.
	synPass, ackPass := 0, 0
	for i := range 1000 {
		if s.Process(frame(uint16(30000+i), 0x02)).Verdict == sim.Forwarded {
			synPass++
		}
		if s.Process(frame(uint16(20000+i%flows), 0x10)).Verdict == sim.Forwarded {
			ackPass++
		}
	}
	if synPass != 100 || ackPass != 1000 {
		t.Fatalf("flood: %d SYNs passed (want 100), %d of 1000 ACKs passed", synPass, ackPass)
	}
	if pk, _ := s.Counter(p4.CounterSYNDropped, 0); pk != 900 {
		t.Fatalf("syn_dropped = %d, want 900", pk)
	}
	ctrl.stop()
}

// metric returns the value of a gauge, or a counter, or a histogram's
// count (the first series of the family).
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.Metric) == 0 {
			continue
		}
		m := mf.Metric[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}
