package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/testsvc"
)

func newConsul(t *testing.T) (*Consul, *testsvc.Consul) {
	t.Helper()
	agent := testsvc.StartConsul(t)
	s, err := Open(agent.URL("v6pod"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.(*Consul)
	c.retryMin, c.retryMax = 20*time.Millisecond, 200*time.Millisecond
	return c, agent
}

func seedConsul(t *testing.T, c *Consul) {
	t.Helper()
	_, err := c.Update(context.Background(), func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "a", Edge: "e1", V4: model.AddrList{netip.MustParseAddr("192.0.2.1")}})
		d.Routes = append(d.Routes, model.Route{Name: "r.v6pod.test", Pools: []string{"a"}})
		d.Hosts = map[string]string{"www.shop.test": "shop"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenConsulURL(t *testing.T) {
	for _, tc := range []struct{ url, str, want string }{
		{"consul://127.0.0.1:8500/v6pod", "consul://127.0.0.1:8500/v6pod", ""},
		{"consul://127.0.0.1:8500", "consul://127.0.0.1:8500/v6pod", ""},
		{"consul://127.0.0.1:8500/a/b/", "consul://127.0.0.1:8500/a/b", ""},
		{"consul:///v6pod", "", "no agent address"},
		{"consul://secret@127.0.0.1:8500/v6pod", "", "no credentials"},
		{"consul://127.0.0.1:8500/v6pod?token=secret", "", "no credentials"},
		{"CONSUL://127.0.0.1:8500/v6pod", "consul://127.0.0.1:8500/v6pod", ""},
	} {
		s, err := Open(tc.url, Options{ConsulToken: "t0ken"})
		switch {
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
				t.Errorf("Open(%q) err = %v, want %q", tc.url, err, tc.want)
			}
		case err != nil:
			t.Errorf("Open(%q): %v", tc.url, err)
		case s.String() != tc.str:
			t.Errorf("Open(%q).String() = %q, want %q", tc.url, s.String(), tc.str)
		}
	}
}

func TestConsulLoadUpdate(t *testing.T) {
	t.Parallel()
	c, agent := newConsul(t)
	ctx := context.Background()
	d, err := c.Load(ctx)
	if err != nil || len(d.Pools) != 0 {
		t.Fatalf("empty store: %+v, %v", d, err)
	}
	seedConsul(t, c)
	kv := agent.Client().KV()
	for key, want := range map[string]string{
		"v6pod/pools/a":              `"v4":["192.0.2.1"]`,
		"v6pod/routes/r.v6pod.test.": `"pools":["a"]`,
		"v6pod/hosts/www.shop.test":  `shop`,
		"v6pod/version":              `1`,
	} {
		p, _, err := kv.Get(key, nil)
		if err != nil || p == nil || !strings.Contains(string(p.Value), want) {
			t.Errorf("key %s = %v, %v; want it to hold %s", key, p, err, want)
		}
	}
	d, err = c.Load(ctx)
	if err != nil || d.Pool("a") == nil || d.Route("r.v6pod.test") == nil || d.Hosts["www.shop.test"] != "shop" || d.Version == 0 {
		t.Fatalf("load: %+v, %v", d, err)
	}

	// Only the changed key is written.
	before, _, _ := kv.Get("v6pod/routes/r.v6pod.test.", nil)
	d2, err := c.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 7; return nil })
	if err != nil || d2.Pool("a").Weight != 7 || d2.Version <= d.Version {
		t.Fatalf("update: %+v, %v", d2, err)
	}
	after, _, _ := kv.Get("v6pod/routes/r.v6pod.test.", nil)
	if after.ModifyIndex != before.ModifyIndex {
		t.Error("an unchanged route was rewritten")
	}
	// A no-op update writes nothing.
	d3, err := c.Update(ctx, func(*model.Document) error { return nil })
	if err != nil || d3.Version != d2.Version {
		t.Fatalf("no-op update: version %d (was %d), %v", d3.Version, d2.Version, err)
	}
	// Removals delete keys.
	if _, err := c.Update(ctx, func(d *model.Document) error { d.Hosts = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("v6pod/hosts/www.shop.test", nil); p != nil {
		t.Error("removed host still in KV")
	}
	// An invalid change is refused and writes nothing.
	_, err = c.Update(ctx, func(d *model.Document) error {
		d.Routes[0].Pools = []string{"nope"}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `route r.v6pod.test.: pool "nope" does not exist`) {
		t.Fatalf("invalid update: %v", err)
	}
	// Keys of other readers are left alone.
	kv.Put(&api.KVPair{Key: "v6pod/edges/ams-01/drain", Value: []byte("1")}, nil)
	if _, err := c.Load(ctx); err != nil {
		t.Errorf("edges/ keys broke Load: %v", err)
	}
}

func TestConsulBadKeyNamed(t *testing.T) {
	t.Parallel()
	c, agent := newConsul(t)
	seedConsul(t, c)
	agent.Client().KV().Put(&api.KVPair{Key: "v6pod/pools/b", Value: []byte(`{"name":"b","edge":"e2","v4":["192.0.2.300"]}`)}, nil)
	_, err := c.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "key v6pod/pools/b") || !strings.Contains(err.Error(), "192.0.2.300") {
		t.Fatalf("err = %v, want it to name the key and the address", err)
	}
	agent.Client().KV().Put(&api.KVPair{Key: "v6pod/pools/b", Value: []byte(`{"name":"b","edge":"e2","colour":"red"}`)}, nil)
	if _, err := c.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: err = %v", err)
	}
	if _, err := c.Update(context.Background(), func(*model.Document) error { return nil }); err == nil {
		t.Fatal("update over invalid data succeeded")
	}
}

// Two writers add addresses to the same pool, many rounds each. Every
// change either survives or its writer got ErrConflict; none is lost.
func TestConsulConcurrentWritersNeverLoseAnUpdate(t *testing.T) {
	t.Parallel()
	c, _ := newConsul(t)
	seedConsul(t, c)
	const rounds = 40
	var (
		mu       sync.Mutex
		accepted = map[netip.Addr]bool{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
		conflict int
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range rounds {
				a := netip.AddrFrom4([4]byte{198, 51, byte(100 + w), byte(i + 1)})
				_, err := c.Update(context.Background(), func(d *model.Document) error {
					p := d.Pool("a")
					p.V4 = append(p.V4, a)
					p.Weight++
					return nil
				})
				mu.Lock()
				switch {
				case err == nil:
					accepted[a] = true
				case errors.Is(err, ErrConflict):
					conflict++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	d, err := c.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := d.Pool("a")
	have := map[netip.Addr]bool{}
	for _, a := range p.V4 {
		have[a] = true
	}
	for a := range accepted {
		if !have[a] {
			t.Errorf("lost update: %s was accepted but is not in the pool", a)
		}
	}
	if len(p.V4) != len(accepted)+1 {
		t.Errorf("pool has %d addresses, want %d (accepted) + 1", len(p.V4), len(accepted))
	}
	if int(p.Weight) != model.DefaultWeight+len(accepted) {
		t.Errorf("weight %d, want %d: a read-modify-write was lost", p.Weight, model.DefaultWeight+len(accepted))
	}
	t.Logf("%d accepted, %d conflicts", len(accepted), conflict)
}

// Writers on different pools serialize too: a change checked against one
// state of the document never lands on another (here: the same address
// added to two pools at once must not end up in both).
func TestConsulCrossPoolInvariantHolds(t *testing.T) {
	t.Parallel()
	c, _ := newConsul(t)
	seedConsul(t, c)
	if _, err := c.Update(context.Background(), func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "b", Edge: "e2"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		var wg sync.WaitGroup
		for _, pool := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Update(context.Background(), func(d *model.Document) error {
					p := d.Pool(pool)
					p.V4 = append(p.V4, a)
					return nil
				})
				if err != nil && !errors.Is(err, ErrConflict) && !strings.Contains(err.Error(), "already in pool") {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if _, err := c.Load(context.Background()); err != nil {
			t.Fatalf("round %d: the store became invalid: %v", i, err)
		}
	}
}

func TestConsulWatch(t *testing.T) {
	t.Parallel()
	c, agent := newConsul(t)
	seedConsul(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ev struct {
		d   *model.Document
		err error
	}
	evs := make(chan ev, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, func(d *model.Document, err error) { evs <- ev{d, err} })
	}()
	next := func(what string) ev {
		t.Helper()
		select {
		case e := <-evs:
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no watch event: %s", what)
		}
		return ev{}
	}
	if e := next("initial"); e.err != nil || e.d.Pool("a") == nil {
		t.Fatalf("initial: %+v", e)
	}
	if _, err := c.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if e := next("update"); e.err != nil || e.d.Pool("a").Weight != 3 {
		t.Fatalf("after update: %+v", e)
	}
	// A write to someone else's key under the prefix is not news.
	kv := agent.Client().KV()
	kv.Put(&api.KVPair{Key: "v6pod/edges/e1/bgp", Value: []byte(`{}`)}, nil)
	// A bad key is reported, not delivered.
	kv.Put(&api.KVPair{Key: "v6pod/routes/bad.test.", Value: []byte(`{"name":"bad.test.","pools":["zz"]}`)}, nil)
	if e := next("bad key"); e.err == nil || e.d != nil || !strings.Contains(e.err.Error(), `pool "zz" does not exist`) {
		t.Fatalf("bad key: %+v", e)
	}
	kv.Delete("v6pod/routes/bad.test.", nil)
	if e := next("fixed"); e.err != nil || e.d.Pool("a").Weight != 3 || e.d.Route("bad.test") != nil {
		t.Fatalf("fixed: %+v", e)
	}
	// Consul goes away: errors, no panic, and the watch ends with ctx.
	agent.Stop()
	if e := next("consul stopped"); e.err == nil || e.d != nil {
		t.Fatalf("consul stopped: %+v", e)
	}
	if e := next("still down"); e.err == nil {
		t.Fatalf("still down: %+v", e)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

// A restarted dev agent comes back empty, with a smaller index: the watch
// reports lost data instead of delivering an empty document, and picks up
// new data written afterwards.
func TestConsulWatchSurvivesRestart(t *testing.T) {
	t.Parallel()
	c, agent := newConsul(t)
	seedConsul(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := make(chan *model.Document, 64)
	errs := make(chan error, 64)
	go c.Watch(ctx, func(d *model.Document, err error) {
		if err != nil {
			errs <- err
			return
		}
		evs <- d
	})
	select {
	case <-evs:
	case <-time.After(10 * time.Second):
		t.Fatal("no initial document")
	}
	agent.Restart()
	deadline := time.After(20 * time.Second)
	for seeded := false; ; {
		select {
		case d := <-evs:
			if len(d.Pools) == 0 {
				t.Fatal("an empty document was delivered after the agent lost its data")
			}
			if seeded {
				return
			}
		case <-errs:
			if !seeded {
				seeded = true
				seedConsul(t, c)
			}
		case <-deadline:
			t.Fatal("no document after the restart")
		}
	}
}

// The token comes from Options or CONSUL_HTTP_TOKEN, travels in the
// request header, and never shows in String().
func TestConsulToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("X-Consul-Token"))
		mu.Unlock()
		w.Header().Set("X-Consul-Index", "5")
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	u, _ := url.Parse("consul://" + strings.TrimPrefix(srv.URL, "http://") + "/v6pod")
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	for _, opt := range []string{"", "from-options"} {
		c, err := OpenConsul(u, Options{ConsulToken: opt})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(c.String(), "from-") {
			t.Error("String() shows the token")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "from-env" || got[1] != "from-options" {
		t.Errorf("tokens sent: %q", got)
	}
}

// Whatever bytes sit under the prefix, decoding never panics, and what it
// accepts is a valid document.
func FuzzConsulDecode(f *testing.F) {
	f.Add("pools/a", `{"name":"a","edge":"e1","v4":["192.0.2.1"],"drain":["192.0.2.1"]}`, "routes/r.test.", `{"name":"r.test.","pools":["a"],"shard":"label"}`)
	f.Add("pools/a", `{"name":"b"}`, "hosts/WWW.x.test.", "shop")
	f.Add("version", "7", "routes/x", `{"pools":[],"answers":-1}`)
	f.Add("pools/", "", "edges/n/bgp", `{}`)
	c := &Consul{prefix: "v6pod", addr: "fuzz"}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		pairs := api.KVPairs{
			{Key: "v6pod/" + k1, Value: []byte(v1), ModifyIndex: 1},
			{Key: "v6pod/" + k2, Value: []byte(v2), ModifyIndex: 2},
		}
		// A tolerant read never fails, and without problems it is a
		// valid document.
		if st, err := c.decode(pairs, true); err != nil {
			t.Fatalf("tolerant decode failed: %v", err)
		} else if len(st.problems) == 0 {
			if err := st.doc.Validate(); err != nil {
				t.Fatalf("tolerant decode reported no problem for an invalid document: %v", err)
			}
		}
		st, err := c.decode(pairs, false)
		if err != nil {
			return
		}
		if err := st.doc.Validate(); err != nil {
			t.Fatalf("decode accepted an invalid document: %v", err)
		}
		if _, err := c.encode(st.doc); err != nil {
			t.Fatal(err)
		}
	})
}

// A change bigger than one Consul transaction (more than 128 keys, more
// than the request size limit) is written completely.
func TestConsulBigUpdate(t *testing.T) {
	t.Parallel()
	c, _ := newConsul(t)
	ctx := context.Background()
	_, err := c.Update(ctx, func(d *model.Document) error {
		d.Hosts = map[string]string{}
		for i := range 300 {
			d.Hosts[fmt.Sprintf("h%d.shop.test", i)] = "shop"
		}
		for i := range 40 {
			p := model.Pool{Name: fmt.Sprintf("p%02d", i), Edge: "e"}
			for j := range 600 {
				p.V6 = append(p.V6, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i), 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, byte(j >> 8), byte(j)}))
			}
			d.Pools = append(d.Pools, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Load(ctx)
	if err != nil || len(d.Hosts) != 300 || len(d.Pools) != 40 || len(d.Pools[39].V6) != 600 {
		t.Fatalf("after a big update: %d hosts, %d pools, %v", len(d.Hosts), len(d.Pools), err)
	}
	// And all of it removed again.
	if _, err := c.Update(ctx, func(d *model.Document) error { d.Hosts, d.Pools = nil, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Load(ctx); err != nil || len(d.Hosts)+len(d.Pools) != 0 {
		t.Fatalf("after removing everything: %+v, %v", d, err)
	}
}
