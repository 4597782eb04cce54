package announce

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/v6pod/v6pod/internal/testsvc"
)

// torEvents follows the best paths of a gobgpd ToR: for each prefix, when
// it appeared (true) or went (false). The stream gives the ToR's own view,
// so the latency measured is announcer → wire → ToR RIB.
func torEvents(b *testing.B, tor *testsvc.BGPPeer) <-chan torEvent {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := tor.API().WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan torEvent, 1024)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			for _, p := range r.GetTable().GetPaths() {
				var pfx api.IPAddressPrefix
				if p.GetNlri().UnmarshalTo(&pfx) != nil {
					continue
				}
				a, _ := netip.ParseAddr(pfx.GetPrefix())
				ch <- torEvent{netip.PrefixFrom(a, int(pfx.GetPrefixLen())), !p.GetIsWithdraw(), time.Now()}
			}
		}
	}()
	return ch
}

type torEvent struct {
	prefix netip.Prefix
	up     bool
	at     time.Time
}

func waitEvent(b *testing.B, ch <-chan torEvent, p netip.Prefix, up bool) time.Time {
	b.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.prefix == p && e.up == up {
				return e.at
			}
		case <-timeout:
			b.Fatalf("ToR: no event %s up=%v within 10s", p, up)
		}
	}
}

// report adds the median and p90 of the withdrawal latencies.
func report(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "withdraw-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "withdraw-p90-ms")
}

// BenchmarkWithdrawLatency measures the time from "this VIP must go" to
// the ToR's RIB losing it: the speaker (SetReady(false)) against BIRD
// driven the way a health script drives it (birdc disable of a static
// protocol). bench/announce/run.sh prints both and the ratio.
func BenchmarkWithdrawLatency(b *testing.B) {
	b.Run("announce", func(b *testing.B) {
		torAddr, edgeAddr := loopPair()
		tor := testsvc.StartGoBGPD(b, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 9,
			Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
		events := torEvents(b, tor)
		cfg := baseConfig(torAddr, tor.Port(), edgeAddr)
		cfg.Announce.NodePrefix = nil
		cfg.Announce.VIPs = cfg.Announce.VIPs[:1]
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		go s.Run(context.Background())
		b.Cleanup(func() { s.Close() })
		vip := netip.MustParsePrefix(vip4)
		waitEvent(b, events, vip, true)
		var lat []time.Duration
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			s.SetReady(vip, false)
			lat = append(lat, waitEvent(b, events, vip, false).Sub(t0))
			s.SetReady(vip, true)
			waitEvent(b, events, vip, true)
		}
		b.StopTimer()
		report(b, lat)
	})
	b.Run("bird", func(b *testing.B) {
		bird := testsvc.Require(b, "bird")
		birdc := testsvc.Require(b, "birdc")
		torAddr, edgeAddr := loopPair()
		tor := testsvc.StartGoBGPD(b, testsvc.BGPPeerConfig{LocalAddr: torAddr, ASN: torASN, HoldTime: 9,
			Neighbors: []testsvc.BGPNeighbor{{Addr: edgeAddr, ASN: edgeASN, Passive: true}}})
		events := torEvents(b, tor)
		dir, err := os.MkdirTemp("", "annb")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		ctl := filepath.Join(dir, "ctl")
		conf := fmt.Sprintf(`router id 192.0.2.11;
protocol device {}
protocol static vips { ipv4; route %s blackhole; }
protocol bgp tor {
  local %s as %d;
  neighbor %s port %d as %d;
  multihop;
  hold time 9; keepalive time 3; connect retry time 1; connect delay time 1;
  ipv4 { import none; export all; next hop address 198.51.100.3; };
}
`, vip4, edgeAddr, edgeASN, torAddr, tor.Port(), torASN)
		if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bird, "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", ctl, "-P", filepath.Join(dir, "pid"))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		vip := netip.MustParsePrefix(vip4)
		waitEvent(b, events, vip, true)
		run := func(args ...string) {
			if out, err := exec.Command(birdc, append([]string{"-s", ctl}, args...)...).CombinedOutput(); err != nil {
				b.Fatalf("birdc %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		var lat []time.Duration
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			run("disable", "vips")
			lat = append(lat, waitEvent(b, events, vip, false).Sub(t0))
			run("enable", "vips")
			waitEvent(b, events, vip, true)
		}
		b.StopTimer()
		report(b, lat)
	})
}
