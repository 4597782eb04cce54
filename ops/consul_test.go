package ops

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
)

// Two operators add addresses to the same pool at the same time, many
// rounds: every command either lands (exit 0) or says it lost a conflict
// (exit 1); no accepted change is ever lost.
func TestConcurrentOperatorsNeverLoseAnUpdate(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		const rounds = 25
		var (
			mu        sync.Mutex
			accepted  []netip.Addr
			conflicts int
			wg        sync.WaitGroup
		)
		start := make(chan struct{})
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range rounds {
					a := netip.AddrFrom4([4]byte{198, 18, byte(w), byte(i + 1)})
					code, _, errs := h.run("pool", "add-addr", "edge-ams-01", a.String(), "--allow-reserved")
					mu.Lock()
					switch {
					case code == ExitOK:
						accepted = append(accepted, a)
					case code == ExitFail && strings.Contains(errs, "conflict") && strings.Contains(errs, "nothing of this change was written"):
						conflicts++
					default:
						t.Errorf("writer %d round %d: exit %d: %s", w, i, code, errs)
					}
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		p := h.load().Pool("edge-ams-01")
		for _, a := range accepted {
			if !inPool(p, a) {
				t.Errorf("lost update: %s was accepted but is not in the pool", a)
			}
		}
		if len(p.V4) != 2+len(accepted) {
			t.Errorf("pool has %d IPv4 addresses, want 2 + %d accepted", len(p.V4), len(accepted))
		}
		t.Logf("%d accepted, %d conflicts", len(accepted), conflicts)
	})
}

// status with razors and edges registered in the Consul catalog.
func TestStatusWithCatalog(t *testing.T) {
	t.Parallel()
	h := consulHarness(t)
	h.seed()
	agent := h.consul.Client().Agent()
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "razor-1", Name: serviceRazor, Address: "127.0.0.1", Port: 5353, Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}},
		{ID: "ams-01", Name: serviceEdge, Address: "2001:db8:1::100", Port: 8080, Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}},
		{ID: "fra-01", Name: serviceEdge, Address: "2001:db8:2::100", Port: 8080, Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthCritical}},
	} {
		if err := agent.ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	h.ok("edge", "drain", "ams-01")
	out := h.ok("status")
	out = strings.ReplaceAll(out, h.url, "STORE")
	out = strings.ReplaceAll(out, h.consul.NodeName(), "testsvc-node-name-xx")
	out = regexp.MustCompile(`version \d+`).ReplaceAllString(out, "version N")
	golden(t, "status_consul", out)

	var rep statusReport
	if err := json.Unmarshal([]byte(h.ok("status", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Razors) != 1 || len(rep.Edges) != 2 || rep.Pools[1].Health != api.HealthCritical || !*rep.Edges[0].Drain {
		t.Errorf("status json: %+v", rep)
	}
	// The razor helper's view: the routes count only healthy active pools.
	if rep.Routes[1].EligibleV4 != 2 {
		t.Errorf("route %s: eligible v4 %d, want 2 (fra-01 is critical)", rep.Routes[1].Name, rep.Routes[1].EligibleV4)
	}

	// The file store with --consul sees the same catalog.
	f := fileHarness(t)
	f.stdin = h.ok("export")
	f.ok("import", "-", "--allow-reserved")
	fout := f.ok("--consul", h.consul.HTTPAddr(), "status")
	if !strings.Contains(fout, "razor-1") || !strings.Contains(fout, "critical") {
		t.Errorf("file store + --consul status:\n%s", fout)
	}
}

func TestEdgeDrain(t *testing.T) {
	t.Parallel()
	h := consulHarness(t)
	kv := h.consul.Client().KV()
	h.ok("edge", "drain", "ams-01", "--dry-run")
	if p, _, _ := kv.Get("v6pod/edges/ams-01/drain", nil); p != nil {
		t.Fatal("dry run wrote the drain key")
	}
	if out := h.ok("edge", "drain", "ams-01"); !strings.Contains(out, "edge ams-01: drained (key v6pod/edges/ams-01/drain)") {
		t.Errorf("drain: %s", out)
	}
	if p, _, _ := kv.Get("v6pod/edges/ams-01/drain", nil); p == nil {
		t.Fatal("no drain key")
	}
	if out := h.ok("edge", "drain", "ams-01"); !strings.Contains(out, "already drained") {
		t.Errorf("second drain: %s", out)
	}
	bgp := `{"peers":[{"address":"127.0.0.2","state":"established","since":"2026-11-22T03:00:00Z"}],"announced":["2001:db8:1::/48"]}`
	kv.Put(&api.KVPair{Key: "v6pod/edges/ams-01/bgp", Value: []byte(bgp)}, nil)
	out := h.ok("edge", "status", "ams-01")
	for _, want := range []string{"DRAINED  yes", "HEALTH   missing", `"state": "established"`} {
		if !strings.Contains(out, want) {
			t.Errorf("edge status lacks %q:\n%s", want, out)
		}
	}
	var rep edgeReport
	if err := json.Unmarshal([]byte(h.ok("edge", "status", "ams-01", "-o", "json")), &rep); err != nil || !rep.Drained || !strings.Contains(string(rep.BGP), "established") {
		t.Errorf("edge status json: %+v, %v", rep, err)
	}
	h.ok("edge", "undrain", "ams-01")
	if p, _, _ := kv.Get("v6pod/edges/ams-01/drain", nil); p != nil {
		t.Fatal("drain key still there")
	}
	h.fail(ExitUsage, `edge "AMS 01"`, "edge", "drain", "AMS 01")

	// Without Consul: the flag file.
	f := fileHarness(t)
	flag := filepath.Join(t.TempDir(), "drain")
	f.fail(ExitUsage, "no --drain-file", "edge", "drain", "ams-01")
	f.ok("edge", "drain", "ams-01", "--drain-file", flag)
	if _, err := os.Stat(flag); err != nil {
		t.Fatal(err)
	}
	if out := f.ok("edge", "status", "ams-01", "--drain-file", flag); !strings.Contains(out, "DRAINED  yes") {
		t.Errorf("status: %s", out)
	}
	f.ok("edge", "undrain", "ams-01", "--drain-file", flag)
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Fatal("flag file still there")
	}
}

func TestMaglevStudy(t *testing.T) {
	h := fileHarness(t)
	h.url = "" // needs no store
	code, out, errs := h.run("maglev", "study", "--backends", "3", "--max-ratio", "2", "--flows", "200", "--trials", "1", "-o", "json")
	if code != ExitOK || !strings.HasPrefix(out, "[") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := h.run("maglev", "study", "--help"); code != ExitOK || !strings.Contains(out, "example:\n  ops maglev study") || !strings.Contains(out, "-backends") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	if code, _, _ := h.run("maglev", "study", "--bogus"); code != ExitUsage {
		t.Errorf("bad flag: exit %d", code)
	}
}
