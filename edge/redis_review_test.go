package edge

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/testsvc"
)

// FLUSHALL (or a Redis restarted without its data) must not wipe the
// routes: the empty full load is refused, counted, the lists marked
// stale, and they keep serving; the next real load is applied again.
func TestRedisEmptyLoadIsRefused(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	a := startUpstream(t, "a", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", a.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL(), Resync: 200 * time.Millisecond})
	c := newClient()
	st := s.Source().Stats()
	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a refused load", func() bool { return st.Refused.Load() > 0 })
	if !st.Stale.Load() {
		t.Error("lists not marked stale after a refused load")
	}
	if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
		t.Fatalf("after FLUSHALL: %d %q, want the last good lists", code, body)
	}
	waitFor(t, 10*time.Second, "staleness to grow", func() bool { return st.Staleness(time.Now()) > 0 })
	rc.SAdd(ctx, "v6pod:app:blog:upstreams", a.ap.String())
	rc.Set(ctx, "v6pod:host:www.blog.test", "blog", 0)
	waitFor(t, 10*time.Second, "the next good load", func() bool {
		_, ok := s.Table().App("www.blog.test")
		_, old := s.Table().App("www.shop.test")
		return ok && !old && !st.Stale.Load()
	})
	if st.Staleness(time.Now()) != 0 {
		t.Error("still stale after a good load")
	}
}

// A replica whose master link is down is not trusted for a full load:
// an edge starting on it is not ready, and an edge already serving keeps
// its lists (marked stale) when the master goes away.
func TestRedisReplicaOutOfSyncIsNotTrusted(t *testing.T) {
	t.Parallel()
	m, rep := testsvc.StartRedis(t), testsvc.StartRedis(t)
	ctx := context.Background()
	a := startUpstream(t, "a", nil)
	mc := m.Client()
	mc.SAdd(ctx, "v6pod:app:shop:upstreams", a.ap.String())
	mc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	rep.Replicaof(m)
	waitFor(t, 10*time.Second, "the replica's copy", func() bool {
		n, _ := rep.Client().Exists(ctx, "v6pod:host:www.shop.test").Result()
		return n == 1
	})
	s := startEdge(t, Config{Source: rep.URL(), Resync: 200 * time.Millisecond})
	st := s.Source().Stats()
	m.Stop()
	waitFor(t, 10*time.Second, "a refused load", func() bool { return st.Refused.Load() > 0 && st.Stale.Load() })
	if code, body := get(t, newClient(), s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
		t.Fatalf("replica without master: %d %q, want the last good lists", code, body)
	}
	// A new edge on the out-of-sync replica loads nothing and is not ready.
	cfg := Config{Source: rep.URL(), Node: "edge-2", Listen: []Listener{{Addr: "[::1]:0"}}}
	s2, err := New(cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s2.Run(context.Background()) }()
	t.Cleanup(func() { s2.Close(); <-errc })
	waitFor(t, 10*time.Second, "refused loads on the second edge", func() bool { return s2.Source().Stats().Refused.Load() > 1 })
	if s2.Ready() || s2.Table().Apps() != 0 {
		t.Fatalf("an edge on an out-of-sync replica: ready %v with %d apps", s2.Ready(), s2.Table().Apps())
	}
}

// With no app at all the edge is not ready.
func TestNotReadyWithoutApps(t *testing.T) {
	t.Parallel()
	path, url := filePath(t)
	writeRaw(t, path, "version: 1\nhosts: {}\napps: {}\n")
	cfg := Config{Source: url, Node: "edge-empty", Listen: []Listener{{Addr: "[::1]:0"}}}
	s, err := New(cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-errc })
	waitFor(t, 10*time.Second, "the file loaded", func() bool { return s.Source().Stats().Synced.Load() && len(s.Addrs()) == 1 })
	if s.Ready() {
		t.Fatal("ready without any app")
	}
	up := startUpstream(t, "up", nil)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	waitFor(t, 10*time.Second, "ready with an app", s.Ready)
}

// countHandler counts log records by message at warning level.
type countHandler struct {
	mu    sync.Mutex
	warns map[string]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.mu.Lock()
		h.warns[r.Message]++
		h.mu.Unlock()
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.warns[msg]
}

// The same bad members, read again by every resync, are warned about once
// (and counted every time); a new problem warns again.
func TestRedisBadMembersWarnOncePerChange(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	good := startUpstream(t, "good", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", "not-an-ip", good.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	h := &countHandler{warns: map[string]int{}}
	s := startEdge(t, Config{Source: r.URL(), Resync: 100 * time.Millisecond}, WithLogger(slog.New(h)))
	st := s.Source().Stats()
	const msg = "edge source: bad upstream members skipped"
	waitFor(t, 10*time.Second, "three full loads", func() bool { return st.FullLoads.Load() >= 3 })
	if n := h.count(msg); n != 1 {
		t.Fatalf("%d warnings for the same bad member over %d loads, want 1", n, st.FullLoads.Load())
	}
	if n := st.BadMembers.Load(); n < 3 {
		t.Errorf("bad members counted %d times, want one per load", n)
	}
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", "[::1")
	waitFor(t, 10*time.Second, "a warning for the new bad member", func() bool { return h.count(msg) == 2 })
	loads := st.FullLoads.Load()
	waitFor(t, 10*time.Second, "more loads", func() bool { return st.FullLoads.Load() >= loads+2 })
	if n := h.count(msg); n != 2 {
		t.Fatalf("%d warnings, want 2", n)
	}
}
