// Package source feeds the edge its host → app and app → upstream lists
// from the file store, Redis or the Consul catalog, keeping the last good
// lists whenever the source fails.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Sink receives the lists. route.Table implements it.
type Sink interface {
	SetApp(app string, eps []netip.AddrPort) (bool, error)
	DeleteApp(app string) bool
	SetHost(host, app string)
	DeleteHost(host string)
	Replace(hosts map[string]string, apps map[string][]netip.AddrPort) (int, []error)
}

// Source runs until ctx ends, feeding sink; it returns only on ctx's end
// or a configuration error, and retries everything else itself.
type Source interface {
	Run(ctx context.Context, sink Sink) error
	// String names the source for logs and metrics, without secrets.
	String() string
	// Stats are the source's counters.
	Stats() *Stats
}

// Stats describe a source's health; metrics read them.
type Stats struct {
	lastSync   atomic.Int64 // unix nanoseconds of the last good full view
	Synced     atomic.Bool  // a full load has succeeded at least once
	Up         atomic.Bool  // connected now
	Errors     atomic.Uint64
	BadMembers atomic.Uint64
	Updates    atomic.Uint64
	FullLoads  atomic.Uint64 // complete reloads (Redis: start, reconnects, resyncs)
	// Refused counts full loads not applied because they could not be
	// trusted (Redis: an empty answer while the lists had entries, a
	// replica out of sync with its master).
	Refused atomic.Uint64
	// Stale is set while the source is connected but its lists cannot be
	// trusted (a refused full load); MarkSync does nothing meanwhile.
	Stale atomic.Bool
}

// MarkSync records that the source's lists are current now (unless they
// are marked stale).
func (s *Stats) MarkSync(now time.Time) {
	if s.Stale.Load() {
		return
	}
	s.lastSync.Store(now.UnixNano())
	s.Synced.Store(true)
}

// LastSync is when the lists were last known current (zero if never).
func (s *Stats) LastSync() time.Time {
	n := s.lastSync.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Staleness is how long the lists may have been stale: zero while the
// source is up (its lists are live), else the time since they were last
// known current.
func (s *Stats) Staleness(now time.Time) time.Duration {
	if !s.Synced.Load() || s.Up.Load() && !s.Stale.Load() {
		return 0
	}
	return now.Sub(s.LastSync())
}

// Options are shared by the sources.
type Options struct {
	Logger *slog.Logger
	// Resync is the period of full reloads (Redis); default 30s.
	Resync time.Duration
	// ConsulToken is the ACL token (CONSUL_HTTP_TOKEN when empty).
	ConsulToken string
	// KeyPrefix is the Redis key prefix, default "v6pod:".
	KeyPrefix string
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Open returns the source named by URL: file:///path.yaml,
// redis://[user:pass@]host:port/db, rediss://..., consul://host:port/prefix.
func Open(raw string, o Options) (Source, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", redact(raw), urlErr(err))
	}
	switch u.Scheme {
	case "file", "":
		p := u.Path
		if u.Scheme == "" {
			p = raw
		}
		if p == "" || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("source %q: want file:///absolute/path.yaml", raw)
		}
		return NewFile(p, o), nil
	case "redis", "rediss":
		return NewRedis(raw, o)
	case "consul":
		return NewConsul(u, o)
	default:
		return nil, fmt.Errorf("source %q: unknown kind %q; want file://, redis://, rediss:// or consul://", redact(raw), u.Scheme)
	}
}

// urlErr drops the URL (it may hold a password) from a parse error.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact removes a password from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "<redacted>@" + raw[i+1:]
		}
		return raw
	}
	return u.Redacted()
}

// backoff returns the wait before attempt n (from 0): 100ms doubling to max.
func backoff(n int, max time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
