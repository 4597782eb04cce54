package source

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/model"
)

// Consul reads hosts from KV <prefix>/hosts/<hostname> (value: the app)
// and each app's upstreams from the catalog (service <app>, passing
// instances only, ServiceAddress:ServicePort), all with blocking queries.
type Consul struct {
	name   string
	client *api.Client
	prefix string
	o      Options
	stats  Stats

	failing atomic.Int32 // watchers whose last query failed
}

var _ Source = (*Consul)(nil)

// NewConsul returns the source for consul://host:port/prefix.
func NewConsul(u *url.URL, o Options) (*Consul, error) {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = u.Host
	cfg.Scheme = "http"
	if o.ConsulToken != "" {
		cfg.Token = o.ConsulToken
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", u.Redacted(), err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix == "" {
		prefix = "v6pod"
	}
	return &Consul{name: "consul://" + u.Host + "/" + prefix, client: c, prefix: prefix, o: o}, nil
}

// Client is the API client (the edge reuses it to register itself).
func (c *Consul) Client() *api.Client { return c.client }

func (c *Consul) String() string { return c.name }

// Stats implements Source.
func (c *Consul) Stats() *Stats { return &c.stats }

type appWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Run implements Source.
func (c *Consul) Run(ctx context.Context, sink Sink) error {
	log := c.o.logger()
	watches := map[string]*appWatch{}
	defer func() {
		for _, w := range watches {
			w.cancel()
			<-w.done
		}
	}()
	cur := map[string]string{}
	var index uint64
	hostsOK := false
	for attempt := 0; ctx.Err() == nil; {
		pairs, meta, err := c.client.KV().List(c.prefix+"/hosts/", (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if hostsOK {
				c.failing.Add(1)
				hostsOK = false
			}
			c.stats.Up.Store(false)
			c.stats.Errors.Add(1)
			d := backoff(attempt, 5*time.Second)
			attempt++
			log.Warn("edge source: consul unavailable, keeping the last good lists", "source", c.name, "err", err, "retry_in", d)
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		attempt = 0
		if !hostsOK && index != 0 {
			c.failing.Add(-1)
		}
		hostsOK = true
		if meta.LastIndex < index {
			index = 0 // Consul restarted or the index went back: start over
		} else {
			index = meta.LastIndex
		}
		next := map[string]string{}
		for _, p := range pairs {
			host := model.CanonicalHost(strings.TrimPrefix(p.Key, c.prefix+"/hosts/"))
			app := strings.TrimSpace(string(p.Value))
			if model.CheckHost(host) != nil || model.CheckName(app) != nil {
				c.stats.BadMembers.Add(1)
				log.Warn("edge source: bad host entry skipped", "source", c.name, "key", p.Key)
				continue
			}
			next[host] = app
		}
		for h, a := range next {
			if cur[h] != a {
				sink.SetHost(h, a)
			}
		}
		for h := range cur {
			if _, ok := next[h]; !ok {
				sink.DeleteHost(h)
			}
		}
		cur = next
		// One watcher per referenced app; the first answers arrive before
		// the source counts as synced.
		want := map[string]bool{}
		for _, a := range next {
			want[a] = true
		}
		var first sync.WaitGroup
		for a := range want {
			if watches[a] == nil {
				wctx, cancel := context.WithCancel(ctx)
				w := &appWatch{cancel: cancel, done: make(chan struct{})}
				watches[a] = w
				first.Add(1)
				go func() {
					defer close(w.done)
					c.watchApp(wctx, a, sink, first.Done)
				}()
			}
		}
		for a, w := range watches {
			if !want[a] {
				w.cancel()
				<-w.done
				delete(watches, a)
				sink.DeleteApp(a)
			}
		}
		first.Wait()
		if c.failing.Load() == 0 {
			c.stats.Up.Store(true)
			c.stats.MarkSync(time.Now())
		}
	}
	return nil
}

func (c *Consul) watchApp(ctx context.Context, app string, sink Sink, firstDone func()) {
	log := c.o.logger()
	var once sync.Once
	defer once.Do(firstDone)
	var index uint64
	failing := false
	for attempt := 0; ctx.Err() == nil; {
		entries, meta, err := c.client.Health().Service(app, "", true, (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				failing = true
				c.failing.Add(1)
				c.stats.Up.Store(false)
			}
			c.stats.Errors.Add(1)
			once.Do(firstDone)
			d := backoff(attempt, 5*time.Second)
			attempt++
			log.Warn("edge source: consul app query failed, keeping the last good list", "source", c.name, "app", app, "err", err)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		attempt = 0
		if failing {
			failing = false
			if c.failing.Add(-1) == 0 {
				c.stats.Up.Store(true)
			}
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		eps := make([]netip.AddrPort, 0, len(entries))
		for _, e := range entries {
			host := e.Service.Address
			if host == "" {
				host = e.Node.Address
			}
			ep, err := addr.ParseEndpoint(net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
			if err != nil {
				c.stats.BadMembers.Add(1)
				log.Warn("edge source: bad catalog entry skipped", "source", c.name, "app", app, "err", err)
				continue
			}
			eps = append(eps, ep)
		}
		if _, err := sink.SetApp(app, eps); err != nil {
			c.stats.Errors.Add(1)
		}
		c.stats.Updates.Add(1)
		if c.failing.Load() == 0 {
			c.stats.MarkSync(time.Now())
		}
		once.Do(firstDone)
	}
}
