package edge

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/testsvc"
)

func TestRedisSourceChangesAreLiveWithinASecond(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", a.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL()})
	c := newClient()
	if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
		t.Fatalf("%d %q", code, body)
	}
	live := func(what string, change func(), cond func() bool) {
		t.Helper()
		start := time.Now()
		change()
		waitFor(t, 5*time.Second, what, cond)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v, want under 1 s", what, d)
		} else {
			t.Logf("%s live after %v", what, d)
		}
	}
	pool := func() int {
		if p := s.Table().Pool("shop"); p != nil {
			return p.Len()
		}
		return 0
	}
	live("SADD", func() {
		rc.SAdd(ctx, "v6pod:app:shop:upstreams", "[::1]:"+itoa(int(b.ap.Port())))
		rc.Publish(ctx, "v6pod:changes", "app:shop")
	}, func() bool { return pool() == 2 })
	live("SREM", func() {
		rc.SRem(ctx, "v6pod:app:shop:upstreams", a.ap.String())
		rc.Publish(ctx, "v6pod:changes", "app:shop")
	}, func() bool {
		_, body := get(t, c, s.Addrs()[0], "www.shop.test", "/")
		return pool() == 1 && body == "b"
	})
	live("host SET", func() {
		rc.Set(ctx, "v6pod:host:*.blog.test", "shop", 0)
		rc.Publish(ctx, "v6pod:changes", "host:*.blog.test")
	}, func() bool { _, ok := s.Table().App("x.blog.test"); return ok })
	live("host DEL", func() {
		rc.Del(ctx, "v6pod:host:*.blog.test")
		rc.Publish(ctx, "v6pod:changes", "host:*.blog.test")
	}, func() bool { _, ok := s.Table().App("x.blog.test"); return !ok })
}

func TestRedisBadMembersAreCountedAndSkipped(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	good := startUpstream(t, "good", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", "not-an-ip", "[::1", "[2001:db8::1]:99999", good.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL()})
	if n := s.Source().Stats().BadMembers.Load(); n != 3 {
		t.Errorf("bad members counted: %d, want 3", n)
	}
	if n := s.Table().Pool("shop").Len(); n != 1 {
		t.Errorf("pool has %d upstreams, want the 1 good one", n)
	}
	c := newClient()
	for range 20 {
		if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "good" {
			t.Fatalf("%d %q", code, body)
		}
	}
	// A bad member added live is counted too, and the good one serves on.
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", "2001:db8::1:80")
	rc.Publish(ctx, "v6pod:changes", "app:shop")
	waitFor(t, 5*time.Second, "the fourth bad member", func() bool { return s.Source().Stats().BadMembers.Load() >= 7 })
	if code, body := get(t, c, s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "good" {
		t.Fatalf("%d %q", code, body)
	}
}

func TestRedisRestartReloadsAndNeverServesAnEmptyList(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t, testsvc.WithRedisPersistence())
	rc := r.Client()
	ctx := context.Background()
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", a.ap.String(), b.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL()})
	stats := s.Source().Stats()

	// Requests flow during the whole restart; none may fail.
	var stop atomic.Bool
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := newClient()
		for !stop.Load() {
			code, _ := get(t, c, s.Addrs()[0], "www.shop.test", "/")
			sent.Add(1)
			if code != 200 {
				failed.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	loads := stats.FullLoads.Load()
	r.Stop()
	waitFor(t, 10*time.Second, "the source to notice", func() bool { return !stats.Up.Load() })
	time.Sleep(200 * time.Millisecond)
	if st := stats.Staleness(time.Now()); st <= 0 {
		t.Errorf("staleness %v while Redis is down, want > 0", st)
	}
	if n := s.Table().Pool("shop").Len(); n != 2 {
		t.Errorf("while Redis is down the pool has %d upstreams, want the last good 2", n)
	}
	r.Restart()
	waitFor(t, 10*time.Second, "the source to reconnect", stats.Up.Load)
	if stats.FullLoads.Load() <= loads {
		t.Error("no full reload after the reconnect")
	}
	// The reload after reconnect sees changes made while the edge was away
	// (no notice was published for this one).
	rc2 := r.Client()
	rc2.SRem(ctx, "v6pod:app:shop:upstreams", a.ap.String())
	rc2.Publish(ctx, "v6pod:changes", "app:shop")
	waitFor(t, 5*time.Second, "a change after the restart", func() bool { return s.Table().Pool("shop").Len() == 1 })
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 || sent.Load() < 10 {
		t.Fatalf("%d of %d requests failed across the Redis restart", failed.Load(), sent.Load())
	}
	t.Logf("%d requests across the restart, none failed", sent.Load())
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// A change made without a notice is picked up by the periodic resync.
func TestRedisPeriodicResync(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", a.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL(), Resync: 300 * time.Millisecond})
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", b.ap.String()) // no PUBLISH
	waitFor(t, 10*time.Second, "the resync", func() bool { return s.Table().Pool("shop").Len() == 2 })
}

func TestRedisAuthAndNoSecretInNames(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t, testsvc.WithRedisPassword("s3cret-pw"))
	rc := r.Client()
	ctx := context.Background()
	up := startUpstream(t, "a", nil)
	rc.SAdd(ctx, "v6pod:app:shop:upstreams", up.ap.String())
	rc.Set(ctx, "v6pod:host:www.shop.test", "shop", 0)
	s := startEdge(t, Config{Source: r.URL(), Metrics: "[::1]:0"})
	if code, body := get(t, newClient(), s.Addrs()[0], "www.shop.test", "/"); code != 200 || body != "a" {
		t.Fatalf("%d %q", code, body)
	}
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "s3cret-pw") || strings.Contains(s.Source().String(), "s3cret-pw") {
		t.Fatal("the Redis password shows in /metrics or the source name")
	}
}
