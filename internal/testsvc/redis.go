package testsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server started by StartRedis for one test.
type Redis struct {
	t        testing.TB
	bin      string
	dir      string
	port     int
	password string
	persist  bool
	extra    []string

	mu   sync.Mutex
	proc *proc
}

// RedisOption changes how StartRedis runs the server.
type RedisOption func(*Redis)

// WithRedisPersistence turns on the append-only file (fsync always) and RDB
// snapshots in the data dir, so data survives Restart.
func WithRedisPersistence() RedisOption { return func(r *Redis) { r.persist = true } }

// WithRedisPassword requires AUTH with this password (requirepass); URL
// then carries it.
func WithRedisPassword(pw string) RedisOption { return func(r *Redis) { r.password = pw } }

// WithRedisArgs passes extra command-line configuration to redis-server,
// e.g. "--maxmemory", "10mb".
func WithRedisArgs(args ...string) RedisOption {
	return func(r *Redis) { r.extra = append(r.extra, args...) }
}

// StartRedis runs redis-server on a free 127.0.0.1 port with its own data
// dir (no persistence unless WithRedisPersistence), waits until PING
// answers, and stops it when the test ends.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: Require(t, "redis-server"), dir: t.TempDir()}
	for _, o := range opts {
		o(r)
	}
	t.Cleanup(r.Stop)
	var err error
	for range startAttempts {
		if r.port, err = freePort("127.0.0.1"); err != nil {
			break
		}
		if err = r.start(); err == nil {
			return r
		}
		if !isAddrInUse(err) {
			break
		}
	}
	t.Fatal(err)
	return nil
}

func (r *Redis) args() []string {
	a := []string{r.bin,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--unixsocket", "",
		"--loglevel", "notice",
		"--databases", "16",
		"--repl-diskless-sync-delay", "0",
		"--save", "",
	}
	if r.persist {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always",
			"--save", "1 1")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if r.password != "" {
		a = append(a, "--requirepass", r.password)
	}
	return append(a, r.extra...)
}

func (r *Redis) start() error {
	p, err := startProc(fmt.Sprintf("redis-server on %s", r.Addr()),
		filepath.Join(r.dir, "redis.log"), nil, r.args()...)
	if err != nil {
		return err
	}
	if err := p.waitReady(15*time.Second, r.ping); err != nil {
		p.stop(time.Second)
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	return nil
}

// ping sends a raw PING and accepts PONG, or NOAUTH when a password is set.
func (r *Redis) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
}

// Addr is host:port of the server.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Port is the server's TCP port.
func (r *Redis) Port() int { return r.port }

// Dir is the server's data dir.
func (r *Redis) Dir() string { return r.dir }

// URL is redis://[:password@]127.0.0.1:port/0.
func (r *Redis) URL() string {
	u := url.URL{Scheme: "redis", Host: r.Addr(), Path: "/0"}
	if r.password != "" {
		u.User = url.UserPassword("", r.password)
	}
	return u.String()
}

// Client returns a go-redis client for database 0, closed when the test ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), Password: r.password, MaxRetries: -1})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// LogTail returns the last n lines of the server log.
func (r *Redis) LogTail(n int) string { return tailFile(filepath.Join(r.dir, "redis.log"), n) }

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it to exit.
// Stopping twice is harmless.
func (r *Redis) Stop() {
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p != nil {
		p.stop(5 * time.Second)
	}
}

// Restart stops the server and starts it again on the same port with the
// same data dir (with WithRedisPersistence the data survives). Call it from
// the test goroutine: it fails the test when the server does not come back.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port may linger a moment
		if err = r.start(); err == nil || !isAddrInUse(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("testsvc: restart redis: %v", err)
	}
}

// Replicaof makes r a replica of master and waits until the replication
// link is up. Call it from the test goroutine.
func (r *Redis) Replicaof(master *Redis) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), Password: r.password})
	defer c.Close()
	if master.password != "" {
		if err := c.ConfigSet(ctx, "masterauth", master.password).Err(); err != nil {
			r.t.Fatalf("testsvc: redis masterauth: %v", err)
		}
	}
	if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(master.port)).Err(); err != nil {
		r.t.Fatalf("testsvc: REPLICAOF %s: %v", master.Addr(), err)
	}
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("testsvc: replica %s never linked to %s: %v\n%s", r.Addr(), master.Addr(), err, r.LogTail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func isAddrInUse(err error) bool { return errors.Is(err, errAddrInUse) }
