package edge

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/testsvc"
)

func TestConsulSourceAndRegistration(t *testing.T) {
	t.Parallel()
	cs := testsvc.StartConsul(t)
	cc := cs.Client()
	a, b, sick := startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "sick", nil)
	reg := func(id string, u *upstream, status string) {
		t.Helper()
		r := &api.AgentServiceRegistration{ID: id, Name: "shop", Address: u.ap.Addr().String(), Port: int(u.ap.Port())}
		if status != "" {
			r.Check = &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "1h", Status: status}
		}
		if err := cc.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	reg("shop-a", a, "passing")
	reg("shop-sick", sick, "critical")
	if _, err := cc.KV().Put(&api.KVPair{Key: "v6pod/hosts/www.shop.test", Value: []byte("shop")}, nil); err != nil {
		t.Fatal(err)
	}
	s := startEdge(t, Config{Source: cs.URL("v6pod"), Metrics: "[::1]:0", Node: "edge-c1", Consul: Consul{CheckInterval: 200 * time.Millisecond}})
	c := newClient()
	for range 10 {
		if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
			t.Fatalf("%d %q (only the passing instance may serve)", code, body)
		}
	}
	start := time.Now()
	reg("shop-b", b, "")
	waitFor(t, 5*time.Second, "the new instance", func() bool { return s.Table().Pool("shop").Len() == 2 })
	t.Logf("catalog change live after %v", time.Since(start))
	if err := cc.Agent().UpdateTTL("shop-a:ttl", "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the failing instance to leave", func() bool { return s.Table().Pool("shop").Len() == 1 })
	if _, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); body != "b" {
		t.Fatalf("served by %q", body)
	}
	cc.KV().Put(&api.KVPair{Key: "v6pod/hosts/*.blog.test", Value: []byte("shop")}, nil)
	waitFor(t, 5*time.Second, "the new host", func() bool { _, ok := s.Table().App("a.blog.test"); return ok })

	// The edge registered itself, and its /readyz check passes.
	waitFor(t, 10*time.Second, "v6pod-edge passing", func() bool {
		entries, _, err := cc.Health().Service("v6pod-edge", "", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.ID == "edge-c1"
	})
	s.Close()
	waitFor(t, 5*time.Second, "deregistration", func() bool {
		svcs, err := cc.Agent().Services()
		_, ok := svcs["edge-c1"]
		return err == nil && !ok
	})
	_ = context.Background()
}

// While Consul is away the last good lists serve and staleness grows.
func TestConsulOutageKeepsLastGoodLists(t *testing.T) {
	t.Parallel()
	cs := testsvc.StartConsul(t)
	cc := cs.Client()
	a := startUpstream(t, "a", nil)
	if err := cc.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "shop-a", Name: "shop", Address: "::1", Port: int(a.ap.Port())}); err != nil {
		t.Fatal(err)
	}
	cc.KV().Put(&api.KVPair{Key: "v6pod/hosts/www.shop.test", Value: []byte("shop")}, nil)
	s := startEdge(t, Config{Source: cs.URL("v6pod")})
	cs.Stop()
	stats := s.Source().Stats()
	waitFor(t, 10*time.Second, "the source to notice", func() bool { return !stats.Up.Load() })
	time.Sleep(100 * time.Millisecond)
	if st := stats.Staleness(time.Now()); st <= 0 {
		t.Errorf("staleness %v while Consul is down", st)
	}
	c := newClient()
	for range 10 {
		if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
			t.Fatalf("%d %q while Consul is down", code, body)
		}
	}
}
