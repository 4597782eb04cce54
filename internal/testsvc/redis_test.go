package testsvc

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisSetGet(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", r.URL(), err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Set(ctx, "v6pod:host:www.shop.test", "shop", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "v6pod:host:www.shop.test").Result()
	if err != nil || got != "shop" {
		t.Fatalf("GET = %q, %v; want shop", got, err)
	}
}

func TestRedisPubSub(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := r.Client()
	sub := c.Subscribe(ctx, "v6pod:changes")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "v6pod:changes", "app:shop").Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != "v6pod:changes" || msg.Payload != "app:shop" {
		t.Fatalf("got %s %q, want v6pod:changes app:shop", msg.Channel, msg.Payload)
	}
}

func TestRedisRestartKeepsPortAndData(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, WithRedisPersistence(), WithRedisPassword("s3cret"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.Client()
	if err := c.SAdd(ctx, "v6pod:app:shop:upstreams", "[2001:db8:c0::17]:8080").Err(); err != nil {
		t.Fatal(err)
	}
	addr := r.Addr()
	r.Restart()
	if r.Addr() != addr {
		t.Fatalf("address changed over restart: %s -> %s", addr, r.Addr())
	}
	// The old client reconnects by itself.
	var got []string
	var err error
	for ctx.Err() == nil {
		if got, err = c.SMembers(ctx, "v6pod:app:shop:upstreams").Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || len(got) != 1 || got[0] != "[2001:db8:c0::17]:8080" {
		t.Fatalf("after restart SMEMBERS = %q, %v", got, err)
	}
}

func TestRedisStopThenClientFails(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	c := r.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Stop() // twice is harmless
}

func TestRedisReplicaof(t *testing.T) {
	t.Parallel()
	m := StartRedis(t)
	rep := StartRedis(t)
	rep.Replicaof(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rc := rep.Client()
	for {
		v, err := rc.Get(ctx, "k").Result()
		if err == nil && v == "v" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replica never saw k: %q %v", v, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
