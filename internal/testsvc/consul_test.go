package testsvc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestConsulKVPutGet(t *testing.T) {
	t.Parallel()
	c := StartConsul(t)
	kv := c.Client().KV()
	val := `{"name":"edge-ams-01","edge":"ams-01","weight":100}`
	if _, err := kv.Put(&api.KVPair{Key: "v6pod/pools/edge-ams-01", Value: []byte(val)}, nil); err != nil {
		t.Fatal(err)
	}
	p, _, err := kv.Get("v6pod/pools/edge-ams-01", nil)
	if err != nil || p == nil || string(p.Value) != val {
		t.Fatalf("Get = %v, %v; want %s", p, err, val)
	}
	if !strings.HasPrefix(c.URL("v6pod"), "consul://127.0.0.1:") || !strings.HasSuffix(c.URL("v6pod"), "/v6pod") {
		t.Errorf("URL = %q", c.URL("v6pod"))
	}
}

// A blocking query on a key returns as soon as another writer changes it.
func TestConsulBlockingQueryWakesOnChange(t *testing.T) {
	t.Parallel()
	c := StartConsul(t)
	kv := c.Client().KV()
	if _, err := kv.Put(&api.KVPair{Key: "v6pod/routes/r.test.", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := kv.Get("v6pod/routes/r.test.", nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		p   *api.KVPair
		idx uint64
		err error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		q := (&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 25 * time.Second}).WithContext(ctx)
		p, m, err := kv.Get("v6pod/routes/r.test.", q)
		r := result{p: p, err: err}
		if m != nil {
			r.idx = m.LastIndex
		}
		done <- r
	}()
	// The query must still be waiting: nothing changed yet.
	select {
	case r := <-done:
		t.Fatalf("blocking query returned before any change: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := kv.Put(&api.KVPair{Key: "v6pod/routes/r.test.", Value: []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.p == nil || string(r.p.Value) != "2" || r.idx <= meta.LastIndex {
			t.Fatalf("woke with %+v (index %d), want value 2 and index > %d", r, r.idx, meta.LastIndex)
		}
	case <-ctx.Done():
		t.Fatal("blocking query did not wake on the change")
	}
}

func TestConsulRestartSameAddress(t *testing.T) {
	t.Parallel()
	c := StartConsul(t)
	addr := c.HTTPAddr()
	c.Restart()
	if c.HTTPAddr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, c.HTTPAddr())
	}
	if _, err := c.Client().KV().Put(&api.KVPair{Key: "a", Value: []byte("b")}, nil); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	c.Stop()
	if _, _, err := c.Client().KV().Get("a", nil); err == nil {
		t.Fatal("KV answered after Stop")
	}
}
