package ops

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/razor"
)

// End to end: `ops pool drain` makes a running razor stop handing out the
// address within 1 s, over a real Consul (ops → KV → blocking query →
// razor) and over the file store (ops → rename → razor's watch).
func TestDrainReachesRazor(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.stdin = seedYAML
		h.ok("import", "-", "--allow-reserved")
		h.ok("route", "set", "shop.route.v6pod.test", "--answers", "64")

		no := false
		cfg := razor.Config{
			Listen:     []string{"127.0.0.1:0"},
			Zones:      []razor.ZoneConfig{{Origin: "v6pod.test", File: "testdata/v6pod.test.zone"}},
			Store:      h.url,
			UDPWorkers: 1,
			Consul:     razor.ConsulConfig{Register: &no, Health: &no},
		}
		s, err := razor.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		select {
		case <-s.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("razor not ready")
		}
		server := s.UDPAddrs()[0].String()
		answers := func() []netip.Addr {
			m := new(dns.Msg)
			m.SetQuestion("shop.route.v6pod.test.", dns.TypeA)
			r, err := dns.Exchange(m, server)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			var out []netip.Addr
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					ip, _ := netip.AddrFromSlice(a.A.To4())
					out = append(out, ip)
				}
			}
			return out
		}
		drained := netip.MustParseAddr("203.0.113.2")
		// Razor has the data before the drain (it watches the store).
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(answers(), drained) {
			if time.Now().After(deadline) {
				t.Fatalf("razor never answered with %s: %v", drained, answers())
			}
			time.Sleep(10 * time.Millisecond)
		}

		start := time.Now()
		h.ok("pool", "drain", "edge-ams-01", drained.String())
		for {
			got := answers()
			if !slices.Contains(got, drained) && len(got) == 2 {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("razor still answers %v 1s after ops pool drain started", got)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("razor stopped handing out %s %v after ops pool drain started", drained, time.Since(start).Round(time.Millisecond))

		start = time.Now()
		h.ok("pool", "undrain", "edge-ams-01", drained.String())
		for !slices.Contains(answers(), drained) {
			if time.Since(start) > time.Second {
				t.Fatalf("razor does not hand out %s 1s after ops pool undrain", drained)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
