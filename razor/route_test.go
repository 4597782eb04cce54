package razor

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// podsDoc writes a pods file with the given pools (name, weight, state,
// v4 count, drained v4s) and one route over them.
func podsDoc(version int, route string, answers int, shard string, pools ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: %d\npools:\n", version)
	var names []string
	for i, p := range pools {
		f := strings.Fields(p) // name weight state n drained...
		var n int
		fmt.Sscan(f[3], &n)
		var v4, v6 []string
		for j := 1; j <= n; j++ {
			v4 = append(v4, fmt.Sprintf("10.%d.0.%d", i+1, j))
			v6 = append(v6, fmt.Sprintf("\"fd00:%d::%d\"", i+1, j))
		}
		fmt.Fprintf(&b, "  - name: %s\n    edge: %s\n    weight: %s\n    state: %s\n    v4: [%s]\n    v6: [%s]\n",
			f[0], strings.TrimPrefix(f[0], "edge-"), f[1], f[2], strings.Join(v4, ", "), strings.Join(v6, ", "))
		if len(f) > 4 {
			fmt.Fprintf(&b, "    drain: [%s]\n", strings.Join(f[4:], ", "))
		}
		names = append(names, f[0])
	}
	fmt.Fprintf(&b, "routes:\n  - name: %s\n    pools: [%s]\n    answers: %d\n    ttl: 30\n    shard: %s\n", route, strings.Join(names, ", "), answers, shard)
	if shard == "label" {
		b.WriteString("    shard_size: 8\n")
	}
	return b.String()
}

// Over 40 000 answers (at least the 10 000 of the issue) every eligible address's share is within 10% of its
// weighted share; drained addresses and draining/disabled pools never
// appear.
func TestWeightedShares(t *testing.T) {
	t.Parallel()
	pods := podsDoc(1, "route.v6pod.test.", 4, "none",
		"edge-a 300 active 21 10.1.0.21", // 20 eligible, weight 300
		"edge-b 100 active 10",           // 10 eligible, weight 100
		"edge-c 500 draining 5",
		"edge-d 500 disabled 5")
	s, _ := testServer(t, pods)
	hits := map[netip.Addr]int{}
	// 40 000 answers (160 000 records): 10% is over 6 standard deviations
	// of every address's count, so the test does not flake.
	const rounds = 40000
	for range rounds {
		r := ask(t, s, newQuery("route.v6pod.test", dns.TypeA), false)
		got := addrsOf(r.Answer)
		if len(got) != 4 {
			t.Fatalf("want 4 records:\n%s", r)
		}
		for _, a := range got {
			hits[a]++
		}
	}
	total := float64(rounds * 4)
	for a, n := range hits {
		var want float64
		switch {
		case strings.HasPrefix(a.String(), "10.1."):
			want = total * 300 / 400 / 20
		case strings.HasPrefix(a.String(), "10.2."):
			want = total * 100 / 400 / 10
		default:
			t.Fatalf("%s handed out (draining/disabled pool)", a)
		}
		if a.String() == "10.1.0.21" {
			t.Fatalf("drained address 10.1.0.21 handed out")
		}
		if d := math.Abs(float64(n)-want) / want; d > 0.10 {
			t.Errorf("%s: %d records, want %.0f ±10%%", a, n, want)
		}
	}
	if len(hits) != 30 {
		t.Errorf("%d distinct addresses seen, want all 30 eligible", len(hits))
	}
}

// When fewer addresses are eligible than `answers`, the answer holds all
// of them.
func TestFewerRecordsWhenFewerEligible(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, podsDoc(1, "route.v6pod.test.", 8, "none", "edge-a 100 active 3 10.1.0.3"))
	r := ask(t, s, newQuery("route.v6pod.test", dns.TypeAAAA), false)
	if got := addrsOf(r.Answer); len(got) != 3 {
		t.Fatalf("AAAA: %d records, want all 3:\n%s", len(got), r)
	}
	r = ask(t, s, newQuery("route.v6pod.test", dns.TypeA), false)
	if got := addrsOf(r.Answer); len(got) != 2 {
		t.Fatalf("A: %d records, want the 2 undrained:\n%s", len(got), r)
	}
}

// A pool whose edge is critical in Consul disappears; when none is
// healthy razor fails open to every non-disabled pool and counts it.
func TestHealthAndFailOpen(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, podsDoc(1, "route.v6pod.test.", 4, "none",
		"edge-a 100 active 4", "edge-b 100 active 4", "edge-c 100 draining 4", "edge-d 100 disabled 4"))
	prefixes := func() map[string]bool {
		m := map[string]bool{}
		for range 100 {
			for _, a := range addrsOf(ask(t, s, newQuery("route.v6pod.test", dns.TypeA), false).Answer) {
				m[strings.Join(strings.Split(a.String(), ".")[:2], ".")] = true
			}
		}
		return m
	}
	if got := prefixes(); !got["10.1"] || !got["10.2"] || len(got) != 2 {
		t.Fatalf("all healthy: pools %v, want a and b", got)
	}
	s.setEdgeUp(map[string]bool{"a": false, "b": true})
	if got := prefixes(); len(got) != 1 || !got["10.2"] {
		t.Fatalf("a critical: pools %v, want b only", got)
	}
	s.setEdgeUp(map[string]bool{"b": true}) // a missing from the catalog
	if got := prefixes(); len(got) != 1 || !got["10.2"] {
		t.Fatalf("a missing: pools %v, want b only", got)
	}
	s.setEdgeUp(map[string]bool{}) // nobody healthy: fail open
	if got := prefixes(); !got["10.1"] || !got["10.2"] || !got["10.3"] || got["10.4"] {
		t.Fatalf("fail open: pools %v, want a, b and the draining c, never the disabled d", got)
	}
	if v := counterValue(t, s, "razor_fail_open_total"); v < 100 {
		t.Fatalf("razor_fail_open_total = %v, want at least 100", v)
	}
	if h, _ := s.PoolHealthy("edge-a"); h {
		t.Fatal("edge-a reported healthy")
	}
}

// The same label gets the same shard of shard_size addresses on two
// independent razors.
func TestShardStableAcrossInstances(t *testing.T) {
	t.Parallel()
	pods := podsDoc(1, "route.v6pod.test.", 2, "label", "edge-a 100 active 50", "edge-b 100 active 50")
	s1, _ := testServer(t, pods)
	s2, _ := testServer(t, pods)
	seen := func(s *Server, label string) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for range 300 {
			r := ask(t, s, newQuery(label+".route.v6pod.test", dns.TypeAAAA), false)
			for _, a := range addrsOf(r.Answer) {
				m[a] = true
			}
		}
		return m
	}
	for _, label := range []string{"shop", "blog", "Shop"} {
		a, b := seen(s1, label), seen(s2, label)
		if len(a) != 8 || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: shard differs or is not 8 addresses:\n%v\n%v", label, a, b)
		}
	}
	if fmt.Sprint(seen(s1, "shop")) == fmt.Sprint(seen(s1, "blog")) {
		t.Fatal("two labels got the same shard")
	}
}

// Replacing the pods file by rename changes the answers; an invalid file
// keeps the last good data.
func TestFileStoreReload(t *testing.T) {
	t.Parallel()
	s, path := testServer(t, podsDoc(1, "route.v6pod.test.", 4, "none", "edge-a 100 active 4"))
	first := func() string {
		return addrsOf(ask(t, s, newQuery("route.v6pod.test", dns.TypeA), false).Answer)[0].String()
	}
	if a := first(); !strings.HasPrefix(a, "10.1.") {
		t.Fatalf("got %s", a)
	}
	write := func(body string) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(podsDoc(2, "route.v6pod.test.", 4, "none", "edge-a 100 disabled 4", "edge-b 100 active 4"))
	eventually(t, 5*time.Second, "answers from edge-b after the rename", func() bool { return strings.HasPrefix(first(), "10.2.") })
	write("version: 3\npools: [{bogus: 1}]\n")
	eventually(t, 5*time.Second, "the store error counted", func() bool { return counterValue(t, s, "razor_store_errors_total") >= 1 })
	if a := first(); !strings.HasPrefix(a, "10.2.") {
		t.Fatalf("after an invalid file: %s, want the last good data", a)
	}
	if age := gaugeValue(t, s, "razor_store_age_seconds"); age < 0 {
		t.Fatalf("store age %v", age)
	}
	// A route outside every zone is rejected as a whole.
	write(podsDoc(4, "route.example.org.", 4, "none", "edge-x 100 active 4"))
	eventually(t, 5*time.Second, "the bad route counted", func() bool { return counterValue(t, s, "razor_store_errors_total") >= 2 })
	if a := first(); !strings.HasPrefix(a, "10.2.") {
		t.Fatalf("after a route outside the zones: %s, want the last good data", a)
	}
}

func counterValue(t testing.TB, s *Server, name string) float64 {
	t.Helper()
	return metricSum(t, s, name)
}

func gaugeValue(t testing.TB, s *Server, name string) float64 { return metricSum(t, s, name) }

func metricSum(t testing.TB, s *Server, name string) float64 {
	t.Helper()
	mfs, err := s.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// A route outside every served zone is a configuration error at start.
func TestRouteOutsideZonesRefusedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := dir + "/pods.yaml"
	os.WriteFile(p, []byte(podsDoc(1, "route.example.org.", 4, "none", "edge-a 100 active 4")), 0o644)
	_, err := New(Config{Listen: []string{"127.0.0.1:0"}, Zones: []ZoneConfig{{Origin: "v6pod.test", File: "testdata/v6pod.test.zone"}}, Store: p})
	if err == nil || !strings.Contains(err.Error(), "not inside any zone") {
		t.Fatalf("got %v, want an error naming the route outside the zones", err)
	}
	os.WriteFile(p, []byte(podsDoc(1, "x.sub.v6pod.test.", 4, "none", "edge-a 100 active 4")), 0o644)
	_, err = New(Config{Listen: []string{"127.0.0.1:0"}, Zones: []ZoneConfig{{Origin: "v6pod.test", File: "testdata/v6pod.test.zone"}}, Store: p})
	if err == nil || !strings.Contains(err.Error(), "below the delegation") {
		t.Fatalf("got %v, want an error about the delegation", err)
	}
}
