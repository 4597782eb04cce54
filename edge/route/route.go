// Package route maps a request's Host to its app and the app to its pool of
// upstreams. Every update touches only the entry it changes (copy-on-write
// per app), so updating one app of ten thousand costs that app alone.
package route

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/v6pod/v6pod/edge/balance"
	"github.com/v6pod/v6pod/internal/model"
)

// PoolFactory makes the pool of a new app (its policy and health come from
// the edge configuration).
type PoolFactory func(app string) *balance.Pool

// Table is the live host → app → pool mapping. All methods are safe for
// concurrent use; lookups take no locks.
type Table struct {
	newPool PoolFactory

	hosts sync.Map // string → string (exact names and "*.suffix" wildcards)
	apps  sync.Map // string → *balance.Pool

	nHosts, nApps atomic.Int64
	mu            sync.Mutex // serializes writers
}

// New returns an empty table.
func New(f PoolFactory) *Table {
	if f == nil {
		f = func(app string) *balance.Pool { return balance.NewPool(app, balance.P2C, balance.DefaultHealth) }
	}
	return &Table{newPool: f}
}

// HostName returns a request's Host header as a lookup key: port stripped,
// lower case, no final dot.
func HostName(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimRight(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return asciiLower(h)
		}
	}
	return h
}

// asciiLower lowers A-Z only: host names are ASCII (IDNs arrive as
// punycode), and other bytes must pass through unchanged.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// App returns the app serving host (already in HostName form): the exact
// name first, then the nearest enclosing "*." wildcard.
func (t *Table) App(host string) (string, bool) {
	if v, ok := t.hosts.Load(host); ok {
		return v.(string), true
	}
	for i := strings.IndexByte(host, '.'); i >= 0; {
		rest := host[i:] // ".example.com"
		if v, ok := t.hosts.Load("*" + rest); ok {
			return v.(string), true
		}
		j := strings.IndexByte(rest[1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return "", false
}

// Pool returns an app's pool.
func (t *Table) Pool(app string) *balance.Pool {
	if v, ok := t.apps.Load(app); ok {
		return v.(*balance.Pool)
	}
	return nil
}

// Lookup resolves a Host header to its app and pool (nil pool: the host is
// known but its app has no upstreams).
func (t *Table) Lookup(hostHeader string) (app string, pool *balance.Pool, ok bool) {
	app, ok = t.App(HostName(hostHeader))
	if !ok {
		return "", nil, false
	}
	return app, t.Pool(app), true
}

// SetHost maps host (canonical, maybe "*.suffix") to app.
func (t *Table) SetHost(host, app string) {
	host = model.CanonicalHost(host)
	if _, loaded := t.hosts.Swap(host, app); !loaded {
		t.nHosts.Add(1)
	}
}

// DeleteHost removes host.
func (t *Table) DeleteHost(host string) {
	if _, loaded := t.hosts.LoadAndDelete(model.CanonicalHost(host)); loaded {
		t.nHosts.Add(-1)
	}
}

// SetApp replaces an app's upstreams; an empty list removes the app. The
// cost is proportional to this app's lists. It reports whether anything
// changed.
func (t *Table) SetApp(app string, eps []netip.AddrPort) (bool, error) {
	if len(eps) == 0 {
		return t.DeleteApp(app), nil
	}
	if p := t.Pool(app); p != nil {
		return p.Update(eps)
	}
	t.mu.Lock()
	p := t.Pool(app)
	if p == nil {
		p = t.newPool(app)
		if _, err := p.Update(eps); err != nil {
			t.mu.Unlock()
			return false, err
		}
		t.apps.Store(app, p)
		t.nApps.Add(1)
		t.mu.Unlock()
		return true, nil
	}
	t.mu.Unlock()
	return p.Update(eps)
}

// DeleteApp removes an app and reports whether it existed.
func (t *Table) DeleteApp(app string) bool {
	if _, loaded := t.apps.LoadAndDelete(app); loaded {
		t.nApps.Add(-1)
		return true
	}
	return false
}

// Replace makes the table hold exactly hosts and apps (a full load from a
// source). Unchanged apps keep their pools and counters; the cost is one
// comparison per app plus the changed apps' lists.
func (t *Table) Replace(hosts map[string]string, apps map[string][]netip.AddrPort) (changed int, errs []error) {
	for h, a := range hosts {
		if cur, ok := t.hosts.Load(h); !ok || cur.(string) != a {
			t.SetHost(h, a)
			changed++
		}
	}
	t.hosts.Range(func(k, _ any) bool {
		if _, ok := hosts[k.(string)]; !ok {
			t.DeleteHost(k.(string))
			changed++
		}
		return true
	})
	for a, eps := range apps {
		c, err := t.SetApp(a, eps)
		if err != nil {
			errs = append(errs, err)
		}
		if c {
			changed++
		}
	}
	t.apps.Range(func(k, _ any) bool {
		if eps, ok := apps[k.(string)]; !ok || len(eps) == 0 {
			t.DeleteApp(k.(string))
			changed++
		}
		return true
	})
	return changed, errs
}

// Hosts and Apps count the entries.
func (t *Table) Hosts() int { return int(t.nHosts.Load()) }

// Apps counts the apps with upstreams.
func (t *Table) Apps() int { return int(t.nApps.Load()) }

// RangePools calls fn for every app's pool until it returns false.
func (t *Table) RangePools(fn func(app string, p *balance.Pool) bool) {
	t.apps.Range(func(k, v any) bool { return fn(k.(string), v.(*balance.Pool)) })
}

// Snapshot returns a copy of the host map (for status and tests).
func (t *Table) Snapshot() map[string]string {
	out := map[string]string{}
	t.hosts.Range(func(k, v any) bool { out[k.(string)] = v.(string); return true })
	return out
}
