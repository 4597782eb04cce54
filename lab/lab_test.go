//go:build lab

package lab

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The lab's end-to-end test; `make lab-test` runs it (root, built binaries).
func TestPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root")
	}
	l, err := New(t.TempDir(), "../bin", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
		if left := listNS(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	if err := l.Up(); err != nil {
		t.Fatal(err)
	}
	edges := l.edges
	t.Run("client reaches a container through the ToR", func(t *testing.T) {
		body, err := l.Curl(ContainerURL(0))
		if err != nil || !strings.Contains(body, Containers[0]) {
			t.Fatalf("curl: %q, %v", body, err)
		}
	})
	t.Run("razor answers the customer name with every healthy edge's VIP", func(t *testing.T) {
		// The edges have just registered in Consul; their checks pass
		// within a few seconds, and then every pool is eligible.
		err := waitFor(15*time.Second, "all three pools in razor's answers", func() error {
			got, err := l.Dig("www.customer.test", "A")
			if err != nil {
				return err
			}
			if len(got) != 1+len(VIP4s) || got[0] != "shop.route.v6pod.test." {
				return fmt.Errorf("dig www.customer.test A = %v", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the ToR has an ECMP route with every edge for each VIP", func(t *testing.T) {
		err := waitFor(20*time.Second, "three BGP sessions and ECMP routes", func() error {
			for _, v := range append(append([]string{}, VIP4s...), VIP6s...) {
				fam := "-4"
				if strings.Contains(v, ":") {
					fam = "-6"
				}
				out, err := l.TORRoutes(fam, v)
				if err != nil {
					return err
				}
				if n := strings.Count(out, "nexthop"); n != Edges {
					return fmt.Errorf("VIP %s: %d paths: %s", v, n, out)
				}
			}
			return nil
		})
		if err != nil {
			out, _ := l.birdc("show", "route", "all")
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("requests succeed through every edge and ECMP spreads them", func(t *testing.T) {
		before := make([]int, Edges+1)
		for i := 1; i <= Edges; i++ {
			before[i], _ = l.EdgeRequests(i)
		}
		for n := 0; n < 60; n++ {
			flag := "-4"
			if n%2 == 1 {
				flag = "-6"
			}
			body, err := l.Curl(flag, "http://www.customer.test/")
			if err != nil || !strings.Contains(body, "container") {
				t.Fatalf("request %d (%s): %q, %v", n, flag, body, err)
			}
		}
		for i := 1; i <= Edges; i++ {
			after, err := l.EdgeRequests(i)
			if err != nil {
				t.Fatal(err)
			}
			if after-before[i] == 0 {
				t.Errorf("edge e%d served no request: ECMP does not spread flows", i)
			}
			t.Logf("edge e%d served %d of 60", i, after-before[i])
		}
	})
	t.Run("ops pool drain changes razor's answers", func(t *testing.T) {
		if out, err := l.Ops("pool", "drain", "pool-e1", VIP4s[0]); err != nil {
			t.Fatalf("ops pool drain: %v: %s", err, out)
		}
		err := waitFor(2*time.Second, "razor stops answering the drained VIP", func() error {
			got, err := l.Dig("route.v6pod.test", "A")
			if err != nil {
				return err
			}
			if slices.Contains(got, VIP4s[0]) || len(got) != len(VIP4s)-1 {
				return fmt.Errorf("answers %v", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := l.Ops("pool", "undrain", "pool-e1", VIP4s[0]); err != nil {
			t.Fatalf("ops pool undrain: %v: %s", err, out)
		}
	})
	t.Run("an upstream added on the Redis master serves within 2s", func(t *testing.T) {
		// The new container replaces the others in one atomic change, so
		// from the moment an edge has it every request must reach it.
		newC := fmt.Sprintf("[%s]:%d", Containers[2], containerPort)
		oldC := []string{fmt.Sprintf("[%s]:%d", Containers[0], containerPort), fmt.Sprintf("[%s]:%d", Containers[1], containerPort)}
		swap := func(add string, remove ...string) {
			t.Helper()
			script := "redis.call('SADD', KEYS[1], ARGV[1]); for i = 2, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end; redis.call('PUBLISH', 'v6pod:changes', 'app:shop')"
			args := append([]string{"EVAL", script, "1", "v6pod:app:shop:upstreams", add}, remove...)
			if out, err := l.RedisMaster(args...); err != nil {
				t.Fatalf("redis: %v: %s", err, out)
			}
		}
		swap(newC, oldC...)
		start := time.Now()
		err := waitFor(2*time.Second, "only the new container serves", func() error {
			for n := 0; n < 3; n++ {
				body, err := l.Curl([]string{"-4", "-6"}[n%2], "http://www.customer.test/")
				if err != nil {
					return err
				}
				if !strings.Contains(body, Containers[2]) {
					return fmt.Errorf("served by another: %q", body)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the new upstream served every request after %s", time.Since(start).Round(time.Millisecond))
		swap(oldC[0])
		swap(oldC[1])
	})
	t.Run("stopping an edge withdraws its routes; requests keep succeeding", func(t *testing.T) {
		stop := make(chan struct{})
		type result struct{ ok, failed int }
		res := make(chan result)
		go func() {
			var r result
			for n := 0; ; n++ {
				select {
				case <-stop:
					res <- r
					return
				default:
				}
				flag := []string{"-4", "-6"}[n%2]
				if body, err := l.Curl(flag, "http://www.customer.test/"); err != nil || !strings.Contains(body, "container") {
					r.failed++
					t.Logf("request failed: %q %v", body, err)
				} else {
					r.ok++
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		edges[1].stop(syscall.SIGTERM, 15*time.Second)
		err := waitFor(10*time.Second, "the ToR drops edge e1's paths", func() error {
			out, err := l.TORRoutes("-6", VIP6s[0])
			if err != nil {
				return err
			}
			if strings.Contains(out, "e1 ") || strings.Count(out, "nexthop") != Edges-1 {
				return fmt.Errorf("routes: %s", out)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		err = waitFor(5*time.Second, "razor stops handing out the stopped edge's VIPs", func() error {
			got, err := l.Dig("route.v6pod.test", "AAAA")
			if err != nil {
				return err
			}
			if slices.Contains(got, VIP6s[0]) {
				return fmt.Errorf("answers %v", got)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		time.Sleep(time.Second)
		close(stop)
		r := <-res
		t.Logf("while e1 stopped: %d requests succeeded, %d failed", r.ok, r.failed)
		if r.ok == 0 || r.failed > 1 {
			t.Errorf("%d of %d requests failed while an edge stopped; at most the in-flight one may", r.failed, r.ok+r.failed)
		}
	})
	t.Run("the IPv6-only client fetches from the IPv4-only origin through DNS64, the access tier and NAT64", func(t *testing.T) {
		out, err := inNS(nsV6Client, "dig", "+short", "+time=1", "+tries=2", OriginName, "AAAA")
		if err != nil || strings.TrimSpace(out) != OriginAddr6.String() {
			t.Errorf("dig %s AAAA through dns64: %q %v, want %s", OriginName, out, err, OriginAddr6)
		}
		body, err := l.CurlV6("-6", OriginURL)
		if err != nil || !strings.Contains(body, "container "+OriginEIP+":80") {
			t.Fatalf("curl -6 %s: %q, %v", OriginURL, body, err)
		}
		t.Logf("origin answered: %s", strings.TrimSpace(body))
	})
	// Long-lived flows for the next two subtests.
	const nFlows = 64
	var flows []*Flow
	onServer := map[*Flow]int{}
	t.Cleanup(func() { CloseFlows(flows) })
	t.Run("flows spread over both NAT64 servers as Maglev places them", func(t *testing.T) {
		var before [NAT64Servers + 1]float64
		for i := 1; i <= NAT64Servers; i++ {
			m, _ := l.NATMetrics(i)
			before[i], _ = metric(m, `nat64_translations_total{direction="6to4"}`)
		}
		var err error
		if flows, err = DialFlows(nFlows, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		count := map[int]int{}
		mismatch := 0
		for _, f := range flows {
			srv, err := f.Get(3 * time.Second)
			if err != nil {
				t.Fatalf("flow from port %d: %v", f.Sport, err)
			}
			onServer[f] = srv
			count[srv]++
			if want, err := ExpectedServer(f.Sport, []int{1, 2}); err != nil || want != srv {
				mismatch++
				t.Errorf("flow from port %d on nat%d, Maglev says nat%d (%v)", f.Sport, srv, want, err)
			}
		}
		for i := 1; i <= NAT64Servers; i++ {
			m, _ := l.NATMetrics(i)
			after, _ := metric(m, `nat64_translations_total{direction="6to4"}`)
			t.Logf("nat%d: %d of %d flows, %.0f packets translated 6to4", i, count[i], nFlows, after-before[i])
			if count[i] == 0 || after == before[i] {
				t.Errorf("nat%d carried no flow: the access tier does not spread them", i)
			}
		}
		t.Logf("%d of %d flows on the server internal/maglev predicts", nFlows-mismatch, nFlows)
	})
	t.Run("losing one NAT64 server moves only that server's share of flows", func(t *testing.T) {
		if len(flows) == 0 {
			t.Skip("no flows")
		}
		m, _ := l.NATMetrics(1)
		noSessionBefore, _ := metric(m, `nat64_drops_total{reason="tcp_no_session"}`)
		slotsBefore, _ := l.AccessMetric(`p4access_slots_changed_sum{vip="nat64-lab"}`)
		start := time.Now()
		l.StopNAT(2)
		t.Logf("nat2 stopped (SIGTERM: withdraw, then stop) in %s", time.Since(start).Round(time.Millisecond))
		if err := waitFor(10*time.Second, "p4access drops nat2 from the table", func() error {
			n, err := l.AccessServers()
			if err != nil || n != 1 {
				return fmt.Errorf("servers %d, %v", n, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slotsAfter, _ := l.AccessMetric(`p4access_slots_changed_sum{vip="nat64-lab"}`)
		t.Logf("p4access rewrote %.0f of %d Maglev slots %s after the SIGTERM", slotsAfter-slotsBefore, maglevSize, time.Since(start).Round(time.Millisecond))
		if share, err := MaglevSlots(2, []int{1, 2}); err != nil || float64(share) != slotsAfter-slotsBefore {
			t.Errorf("p4access rewrote %.0f slots; nat2 owned %d (%v)", slotsAfter-slotsBefore, share, err)
		}
		type res struct {
			f   *Flow
			srv int
			err error
		}
		results := make(chan res, len(flows))
		for _, f := range flows {
			go func() {
				srv, err := f.Get(2 * time.Second)
				results <- res{f, srv, err}
			}()
		}
		kept, broken, moved, movedOK := 0, 0, 0, 0
		for range flows {
			r := <-results
			switch onServer[r.f] {
			case 1:
				if r.err != nil || r.srv != 1 {
					broken++
					t.Errorf("flow from port %d on the surviving nat1 broke: server %d, %v", r.f.Sport, r.srv, r.err)
				} else {
					kept++
				}
			case 2:
				moved++
				if r.err == nil {
					movedOK++
				}
			}
		}
		m, _ = l.NATMetrics(1)
		noSessionAfter, _ := metric(m, `nat64_drops_total{reason="tcp_no_session"}`)
		t.Logf("after losing nat2: %d nat1 flows kept answering, %d broke; %d nat2 flows moved to nat1 (%d still answered; nat1 dropped %.0f packets without a session)",
			kept, broken, moved, movedOK, noSessionAfter-noSessionBefore)
		if moved > 0 && noSessionAfter == noSessionBefore {
			t.Errorf("nat2's flows did not reach nat1")
		}
		// New flows all land on nat1, as Maglev with one server says.
		fresh, err := DialFlows(16, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer CloseFlows(fresh)
		for _, f := range fresh {
			if srv, err := f.Get(3 * time.Second); err != nil || srv != 1 {
				t.Errorf("new flow from port %d: server %d, %v", f.Sport, srv, err)
			}
		}
	})
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
