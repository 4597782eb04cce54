package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/model"
)

// Redis reads the lists from a Redis server (the edge's local replica):
//
//	<prefix>app:<app>:upstreams  SET of endpoints ([2001:db8::1]:8080 ...)
//	<prefix>host:<hostname>      STRING app name ("*.example.com" allowed)
//	channel <prefix>changes      "app:<app>" or "host:<hostname>"
//
// It subscribes first and then loads everything, at start and after every
// reconnect, so no change slips between; it also reloads every Resync. A
// bad member is counted and skipped, never fatal. While Redis is away the
// last good lists keep serving.
type Redis struct {
	name   string
	opts   *redis.Options
	o      Options
	prefix string
	stats  Stats

	refusal string // why the last full load was refused ("" when applied)

	// warned holds what was last warned about per bad entry ("app:shop",
	// "host:x"), so that a resync repeating the same problem logs it at
	// debug level only; rebuilt by every full load (entries that went
	// away are forgotten).
	warned, prevWarned map[string]string
}

// warnOnce logs at warning level when sig is new for key, else at debug.
func (r *Redis) warnOnce(key, sig, msg string, args ...any) {
	lvl := slog.LevelWarn
	if r.prevWarned[key] == sig || r.warned[key] == sig {
		lvl = slog.LevelDebug
	}
	if r.warned == nil {
		r.warned = map[string]string{}
	}
	r.warned[key] = sig
	r.o.logger().Log(context.Background(), lvl, msg, args...)
}

// RefusedError is a full load that was read but not applied, because it
// could not be trusted; the last good lists keep serving.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "full load refused: " + e.Reason }

// refuse records a refused full load: counted, marked stale, logged at
// warning level when the reason changes.
func (r *Redis) refuse(reason string) error {
	r.stats.Refused.Add(1)
	r.stats.Stale.Store(true)
	lvl := slog.LevelDebug
	if reason != r.refusal {
		lvl = slog.LevelWarn
	}
	r.refusal = reason
	r.o.logger().Log(context.Background(), lvl, "edge source: redis full load refused, keeping the last good lists",
		"source", r.name, "reason", reason)
	return &RefusedError{Reason: reason}
}

// replicaInSync checks INFO replication: a replica whose link to its
// master is down or which is loading a sync may answer with no data or
// old data, so a full load from it is not trusted. It returns "" when the
// server can be trusted (a master, a replica in sync, or INFO not allowed).
func (r *Redis) replicaInSync(ctx context.Context, client *redis.Client) (string, error) {
	info, err := client.Info(ctx, "replication").Result()
	if err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "ERR unknown command") {
			return "", nil
		}
		return "", fmt.Errorf("info replication: %w", err)
	}
	return replicaProblem(info), nil
}

// replicaProblem reads an INFO replication answer.
func replicaProblem(info string) string {
	kv := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			kv[k] = v
		}
	}
	if kv["role"] != "slave" && kv["role"] != "replica" {
		return ""
	}
	if st := kv["master_link_status"]; st != "up" {
		return "replica: master_link_status " + st
	}
	if kv["master_sync_in_progress"] == "1" {
		return "replica: master_sync_in_progress"
	}
	return ""
}

var _ Source = (*Redis)(nil)

// NewRedis returns the source for redis://[user:pass@]host:port/db or
// rediss://... (TLS).
func NewRedis(raw string, o Options) (*Redis, error) {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", redact(raw), urlErr(err))
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 5 * time.Second
	opts.WriteTimeout = 5 * time.Second
	opts.PoolSize = 4
	opts.MaxRetries = 1
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "v6pod:"
	}
	return &Redis{name: redact(raw), opts: opts, o: o, prefix: o.KeyPrefix}, nil
}

func (r *Redis) String() string { return r.name }

// Stats implements Source.
func (r *Redis) Stats() *Stats { return &r.stats }

// Run implements Source.
func (r *Redis) Run(ctx context.Context, sink Sink) error {
	log := r.o.logger()
	client := redis.NewClient(r.opts)
	defer client.Close()
	for attempt := 0; ctx.Err() == nil; {
		start := time.Now()
		err := r.session(ctx, client, sink)
		r.stats.Up.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		r.stats.Errors.Add(1)
		if time.Since(start) > 10*time.Second {
			attempt = 0
		}
		d := backoff(attempt, 2*time.Second)
		attempt++
		log.Warn("edge source: redis unavailable, keeping the last good lists", "source", r.name, "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return nil
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *Redis) session(ctx context.Context, client *redis.Client, sink Sink) error {
	log := r.o.logger()
	ps := client.Subscribe(ctx)
	defer ps.Close()
	channel := r.prefix + "changes"
	if err := ps.Subscribe(ctx, channel); err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	if _, ok := m.(*redis.Subscription); !ok {
		return fmt.Errorf("subscribe %s: unexpected %T", channel, m)
	}
	var nextLoad time.Time
	load := func() error {
		err := r.FullLoad(ctx, client, sink)
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			nextLoad = time.Now().Add(time.Second) // try again soon
		case err != nil:
			return err
		default:
			nextLoad = time.Now().Add(r.o.Resync)
		}
		return nil
	}
	if err := load(); err != nil {
		return err
	}
	r.stats.Up.Store(true)
	lastPong := time.Now()
	pinged := false
	for {
		m, err := ps.ReceiveTimeout(ctx, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !isTimeout(err) {
				return err
			}
			if pinged && time.Since(lastPong) > 3*time.Second {
				return fmt.Errorf("no answer to PING on the subscription")
			}
			if !time.Now().Before(nextLoad) {
				if err := load(); err != nil {
					return err
				}
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		switch m := m.(type) {
		case *redis.Message:
			if err := r.apply(ctx, client, sink, m.Payload); err != nil {
				return err
			}
			r.stats.MarkSync(time.Now())
		case *redis.Pong:
			lastPong, pinged = time.Now(), false
			r.stats.MarkSync(time.Now())
		case *redis.Subscription:
			// The client reconnected underneath: changes may be lost.
			log.Info("edge source: redis resubscribed, reloading", "source", r.name)
			if err := load(); err != nil {
				return err
			}
		}
	}
}

// apply handles one change notice.
func (r *Redis) apply(ctx context.Context, client *redis.Client, sink Sink, payload string) error {
	log := r.o.logger()
	kind, name, ok := strings.Cut(payload, ":")
	switch {
	case ok && kind == "app" && model.CheckName(name) == nil:
		members, err := client.SMembers(ctx, r.prefix+"app:"+name+":upstreams").Result()
		if err != nil {
			if isWrongType(err) {
				r.stats.Errors.Add(1)
				log.Warn("edge source: bad app key", "source", r.name, "app", name, "err", err)
				return nil
			}
			return err
		}
		eps := r.parseMembers(name, members)
		if _, err := sink.SetApp(name, eps); err != nil {
			r.stats.Errors.Add(1)
			log.Warn("edge source: app update failed", "source", r.name, "app", name, "err", err)
		}
		r.stats.Updates.Add(1)
	case ok && kind == "host":
		host := model.CanonicalHost(name)
		app, err := client.Get(ctx, r.prefix+"host:"+name).Result()
		switch {
		case errors.Is(err, redis.Nil):
			sink.DeleteHost(host)
		case isWrongType(err):
			r.stats.Errors.Add(1)
			log.Warn("edge source: bad host key", "source", r.name, "host", name, "err", err)
			return nil
		case err != nil:
			return err
		default:
			if r.goodHost(host, app) {
				sink.SetHost(host, app)
			}
		}
		r.stats.Updates.Add(1)
	default:
		r.stats.Errors.Add(1)
		log.Warn("edge source: unknown change notice", "source", r.name, "payload", payload)
	}
	return nil
}

func isWrongType(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE") }

func (r *Redis) goodHost(host, app string) bool {
	app = strings.TrimSpace(app)
	if err := model.CheckHost(host); err != nil {
		r.stats.BadMembers.Add(1)
		r.warnOnce("host:"+host, err.Error(), "edge source: bad host name skipped", "source", r.name, "host", host, "err", err)
		return false
	}
	if err := model.CheckName(app); err != nil {
		r.stats.BadMembers.Add(1)
		r.warnOnce("host:"+host, err.Error(), "edge source: bad app name skipped", "source", r.name, "host", host, "err", err)
		return false
	}
	return true
}

// parseMembers parses set members; bad ones are counted, logged and
// skipped.
func (r *Redis) parseMembers(app string, members []string) []netip.AddrPort {
	eps := make([]netip.AddrPort, 0, len(members))
	bad := 0
	var first error
	for _, m := range members {
		ep, err := addr.ParseEndpoint(m)
		if err != nil {
			bad++
			if first == nil {
				first = err
			}
			continue
		}
		eps = append(eps, ep)
	}
	if bad > 0 {
		r.stats.BadMembers.Add(uint64(bad))
		r.warnOnce("app:"+app, fmt.Sprintf("%d %v", bad, first),
			"edge source: bad upstream members skipped", "source", r.name, "app", app, "bad", bad, "good", len(eps), "first", first)
	}
	return eps
}

// FullLoad reads every app and host and replaces the sink's lists with
// them. Nothing changes unless the whole load succeeds and can be trusted:
// a load from a replica out of sync with its master, or one that would
// empty the apps or hosts of a sink that has some (a Redis restarted
// without its data, a FLUSHALL), is refused with a *RefusedError — counted,
// logged, and the lists marked stale until a load is applied. Emptying
// the lists on purpose goes through change notices, one app or host at a
// time.
func (r *Redis) FullLoad(ctx context.Context, client *redis.Client, sink Sink) error {
	why, err := r.replicaInSync(ctx, client)
	if err != nil {
		return err
	}
	if why != "" {
		return r.refuse(why)
	}
	// Warnings of the previous load are remembered for this one only.
	r.prevWarned, r.warned = r.warned, nil
	defer func() { r.prevWarned = nil }()
	appPrefix, hostPrefix := r.prefix+"app:", r.prefix+"host:"
	var appKeys, hostKeys []string
	it := client.Scan(ctx, 0, r.prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		k := it.Val()
		switch {
		case strings.HasPrefix(k, appPrefix) && strings.HasSuffix(k, ":upstreams"):
			appKeys = append(appKeys, k)
		case strings.HasPrefix(k, hostPrefix):
			hostKeys = append(hostKeys, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	apps := make(map[string][]netip.AddrPort, len(appKeys))
	const batch = 500
	for i := 0; i < len(appKeys); i += batch {
		keys := appKeys[i:min(i+batch, len(appKeys))]
		pipe := client.Pipeline()
		cmds := make([]*redis.StringSliceCmd, len(keys))
		for j, k := range keys {
			cmds[j] = pipe.SMembers(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !isWrongType(err) {
			return fmt.Errorf("load apps: %w", err)
		}
		for j, k := range keys {
			app := strings.TrimSuffix(strings.TrimPrefix(k, appPrefix), ":upstreams")
			members, err := cmds[j].Result()
			if err != nil {
				r.stats.Errors.Add(1)
				continue
			}
			if model.CheckName(app) != nil {
				r.stats.BadMembers.Add(1)
				continue
			}
			if eps := r.parseMembers(app, members); len(eps) > 0 {
				apps[app] = eps
			}
		}
	}
	hosts := make(map[string]string, len(hostKeys))
	for i := 0; i < len(hostKeys); i += batch {
		keys := hostKeys[i:min(i+batch, len(hostKeys))]
		pipe := client.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for j, k := range keys {
			cmds[j] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
			return fmt.Errorf("load hosts: %w", err)
		}
		for j, k := range keys {
			app, err := cmds[j].Result()
			if err != nil {
				continue
			}
			host := model.CanonicalHost(strings.TrimPrefix(k, hostPrefix))
			if r.goodHost(host, app) {
				hosts[host] = strings.TrimSpace(app)
			}
		}
	}
	if c, ok := sink.(interface {
		Apps() int
		Hosts() int
	}); ok {
		if len(apps) == 0 && c.Apps() > 0 || len(hosts) == 0 && c.Hosts() > 0 {
			return r.refuse(fmt.Sprintf("the load has %d apps and %d hosts, the lists have %d and %d: an emptied or restarted Redis?",
				len(apps), len(hosts), c.Apps(), c.Hosts()))
		}
	}
	if r.refusal != "" {
		r.o.logger().Info("edge source: redis full load applied again after refusals", "source", r.name)
		r.refusal = ""
	}
	r.stats.Stale.Store(false)
	n, errs := sink.Replace(hosts, apps)
	for _, err := range errs {
		r.stats.Errors.Add(1)
		r.o.logger().Warn("edge source: app update failed", "source", r.name, "err", err)
	}
	r.stats.Updates.Add(uint64(n))
	r.stats.FullLoads.Add(1)
	r.stats.MarkSync(time.Now())
	r.o.logger().Info("edge source: redis loaded", "source", r.name, "hosts", len(hosts), "apps", len(apps), "changed", n)
	return nil
}
