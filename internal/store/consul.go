package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
)

// DefaultConsulPrefix is the KV prefix when the URL names none.
const DefaultConsulPrefix = "v6pod"

// Consul is the Consul KV store (see DESIGN.md):
//
//	<prefix>/pools/<pool>     JSON of a model.Pool
//	<prefix>/routes/<fqdn>    JSON of a model.Route (canonical name, final dot)
//	<prefix>/hosts/<hostname> the app name, raw
//	<prefix>/version          a counter every writer bumps with check-and-set
//
// Other keys under the prefix (edges/, nat64/) belong to other readers and
// are ignored. Every write is one transaction with check-and-set on each
// changed key and on <prefix>/version, so concurrent writers serialize: a
// change that was checked against one state of the whole document (no
// address in two pools, routes naming existing pools) never lands on
// another. A change too big for one transaction (over 128 keys or about
// 384 KiB) is written in several, the first holding the version check;
// readers may then briefly see part of it. Apps are not kept in KV: they come from the Consul catalog.
// The document's Version is the <prefix>/version counter (0 before the
// first write).
type Consul struct {
	client *api.Client
	addr   string
	prefix string // without a final slash
	log    *slog.Logger

	// waitTime bounds one blocking query of Watch; retryMin and retryMax
	// bound its back-off after an error.
	waitTime, retryMin, retryMax time.Duration
}

var _ Store = (*Consul)(nil)

// maxTxnOps is Consul's limit on the operations of one transaction, and
// maxTxnBytes stays well under its default request size limit
// (txn_max_req_len, 512 KiB).
const (
	maxTxnOps   = 128
	maxTxnBytes = 384 << 10
)

func init() { openers["consul"] = openConsulURL }

func openConsulURL(u *url.URL, opts Options) (Store, error) { return OpenConsul(u, opts) }

// OpenConsul opens the Consul store consul://host:port/prefix. The token is
// opts.ConsulToken, or CONSUL_HTTP_TOKEN when that is empty; the other
// CONSUL_* variables of the Consul API client (TLS files) apply too, except
// CONSUL_HTTP_ADDR: the URL names the agent.
func OpenConsul(u *url.URL, opts Options) (*Consul, error) {
	client, prefix, err := ConsulClient(u, opts)
	if err != nil {
		return nil, err
	}
	return &Consul{
		client: client, addr: u.Host, prefix: prefix, log: opts.logger(),
		waitTime: time.Minute, retryMin: 100 * time.Millisecond, retryMax: 10 * time.Second,
	}, nil
}

// ConsulClient returns an API client for the agent a consul:// URL names,
// and the KV prefix (DefaultConsulPrefix when the URL has no path). ops uses
// it for the catalog and the edges/ keys.
func ConsulClient(u *url.URL, opts Options) (*api.Client, string, error) {
	if u.Scheme != "consul" {
		return nil, "", fmt.Errorf("store %s: not a consul:// URL", u.Redacted())
	}
	if u.Host == "" {
		return nil, "", fmt.Errorf("store %s: no agent address; write consul://host:port/prefix", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, "", fmt.Errorf("store consul://%s%s: no credentials or options in the URL; give the token in CONSUL_HTTP_TOKEN", u.Host, u.EscapedPath())
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix == "" {
		prefix = DefaultConsulPrefix
	}
	cfg := api.DefaultConfig()
	cfg.Address = u.Host
	// The URL names the agent; only CONSUL_HTTP_SSL turns TLS on (not an
	// https:// in CONSUL_HTTP_ADDR, which names another agent).
	cfg.Scheme = "http"
	if ssl, _ := strconv.ParseBool(os.Getenv(api.HTTPSSLEnvName)); ssl {
		cfg.Scheme = "https"
	}
	cfg.Token = opts.ConsulToken
	if cfg.Token == "" {
		cfg.Token = os.Getenv("CONSUL_HTTP_TOKEN")
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("store consul://%s/%s: %w", u.Host, prefix, err)
	}
	return client, prefix, nil
}

func (c *Consul) String() string { return "consul://" + c.addr + "/" + c.prefix }

// Client is the Consul API client the store uses.
func (c *Consul) Client() *api.Client { return c.client }

// Prefix is the KV prefix, without a final slash.
func (c *Consul) Prefix() string { return c.prefix }

// Close implements Store.
func (c *Consul) Close() error { return nil }

// kvState is the document as read, with what a writer needs to check it.
type kvState struct {
	doc     *model.Document
	enc     map[string][]byte // key → canonical encoding of its value
	index   map[string]uint64 // key → ModifyIndex
	counter uint64            // value of <prefix>/version
	vindex  uint64            // ModifyIndex of <prefix>/version (0: absent)
	keys    int               // keys under the prefix, all kinds
	// A tolerant read leaves bad keys out of doc: what is wrong with
	// them, and their ModifyIndex for a repair's delete.
	problems []Problem
	bad      map[string]uint64
}

// Load implements Store: one consistent recursive read of the prefix.
func (c *Consul) Load(ctx context.Context) (*model.Document, error) {
	st, err := c.read(ctx, false)
	if err != nil {
		return nil, err
	}
	return st.doc, nil
}

// LoadPartial reads tolerantly: a key that cannot be decoded or fails the
// checks of its own object is left out and listed; when the rest does not
// pass the whole document's checks (a route naming a pool left out, say),
// that is listed too, with key "". Razor never reads this way.
func (c *Consul) LoadPartial(ctx context.Context) (*model.Document, []Problem, error) {
	st, err := c.read(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	return st.doc, st.problems, nil
}

func (c *Consul) read(ctx context.Context, tolerant bool) (*kvState, error) {
	q := (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
	pairs, _, err := c.client.KV().List(c.prefix+"/", q)
	if err != nil {
		return nil, fmt.Errorf("store %s: read: %w", c, err)
	}
	return c.decode(pairs, tolerant)
}

// decode turns the KV pairs under the prefix into a checked document.
// tolerant: leave bad keys out (listed in problems) instead of failing.
func (c *Consul) decode(pairs api.KVPairs, tolerant bool) (*kvState, error) {
	st := &kvState{
		doc:   &model.Document{},
		enc:   map[string][]byte{},
		index: map[string]uint64{},
		keys:  len(pairs),
		bad:   map[string]uint64{},
	}
	var errs []error
	var p *api.KVPair
	kind, name := "", ""
	bad := func(key string, format string, args ...any) {
		err := fmt.Errorf(format, args...)
		errs = append(errs, fmt.Errorf("key %s: %w", key, err))
		st.problems = append(st.problems, Problem{Key: key, Kind: kind, Name: name, Err: err})
		st.bad[key] = p.ModifyIndex
	}
	// Sort by key so the document's order is stable.
	slices.SortFunc(pairs, func(a, b *api.KVPair) int { return cmp.Compare(a.Key, b.Key) })
	for _, p = range pairs {
		rest, ok := strings.CutPrefix(p.Key, c.prefix+"/")
		if !ok || strings.HasSuffix(rest, "/") {
			continue // a folder marker
		}
		kind, name, _ = strings.Cut(rest, "/")
		switch kind {
		case "version":
			if name != "" {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(string(p.Value)), 10, 64)
			if err != nil {
				bad(p.Key, "not a counter: %v", err)
				continue
			}
			st.counter, st.vindex = n, p.ModifyIndex
			continue
		case "pools":
			var pool model.Pool
			if err := model.DecodeJSONStrict(p.Value, &pool); err != nil {
				bad(p.Key, "%v", err)
				continue
			}
			if pool.Name == "" {
				pool.Name = name
			}
			if pool.Name != name {
				bad(p.Key, "holds pool %q; the key must be the pool's name", pool.Name)
				continue
			}
			if tolerant {
				one := model.Document{Pools: []model.Pool{pool}}
				one.Normalize()
				if err := one.Pools[0].Check(); err != nil {
					bad(p.Key, "%v", err)
					continue
				}
			}
			st.doc.Pools = append(st.doc.Pools, pool)
		case "routes":
			var r model.Route
			if err := model.DecodeJSONStrict(p.Value, &r); err != nil {
				bad(p.Key, "%v", err)
				continue
			}
			if r.Name == "" {
				r.Name = name
			}
			if model.CanonicalName(r.Name) != model.CanonicalName(name) {
				bad(p.Key, "holds route %q; the key must be the route's name", r.Name)
				continue
			}
			if tolerant {
				one := model.Document{Routes: []model.Route{r}}
				one.Normalize()
				if err := one.Routes[0].Check(); err != nil {
					bad(p.Key, "%v", err)
					continue
				}
			}
			st.doc.Routes = append(st.doc.Routes, r)
		case "hosts":
			app := strings.TrimSpace(string(p.Value))
			if tolerant {
				h := model.CanonicalHost(name)
				if err := errors.Join(model.CheckHost(h), model.CheckName(app)); err != nil {
					bad(p.Key, "%v", err)
					continue
				}
			}
			if st.doc.Hosts == nil {
				st.doc.Hosts = map[string]string{}
			}
			st.doc.Hosts[name] = app
		default:
			continue // edges/, nat64/ and the like: not ours
		}
		st.index[p.Key] = p.ModifyIndex
	}
	if err := errors.Join(errs...); err != nil && !tolerant {
		return nil, &BadDataError{Store: c.String(), Problems: st.problems, err: err}
	}
	st.doc.Version = st.counter
	st.doc.Normalize()
	if err := st.doc.Validate(); err != nil {
		if !tolerant {
			return nil, fmt.Errorf("store %s: %w", c, err)
		}
		st.problems = append(st.problems, Problem{Err: fmt.Errorf("the rest does not pass the checks: %w", err)})
	}
	enc, err := c.encode(st.doc)
	if err != nil {
		return nil, err
	}
	// The keys read hold what the document holds; a key not in enc (a
	// route stored under a non-canonical key) is rewritten by the next
	// writer and its old key deleted.
	for k := range st.index {
		if b, ok := enc[k]; ok {
			st.enc[k] = b
		} else {
			st.enc[k] = nil
		}
	}
	return st, nil
}

// encode returns the KV form of a document: key → value.
func (c *Consul) encode(d *model.Document) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i := range d.Pools {
		b, err := json.Marshal(&d.Pools[i])
		if err != nil {
			return nil, fmt.Errorf("store %s: encode pool %s: %w", c, d.Pools[i].Name, err)
		}
		out[c.prefix+"/pools/"+d.Pools[i].Name] = b
	}
	for i := range d.Routes {
		b, err := json.Marshal(&d.Routes[i])
		if err != nil {
			return nil, fmt.Errorf("store %s: encode route %s: %w", c, d.Routes[i].Name, err)
		}
		out[c.prefix+"/routes/"+d.Routes[i].Name] = b
	}
	for h, app := range d.Hosts {
		out[c.prefix+"/hosts/"+h] = []byte(app)
	}
	return out, nil
}

// Update implements Store: read everything, let fn change a copy, check it,
// and write the changed keys in one transaction with check-and-set on each
// of them and on <prefix>/version.
//
// With DropBad the read is tolerant and the bad keys named (all, when none
// is) are deleted with check-and-set in the same write.
func (c *Consul) Update(ctx context.Context, fn func(*model.Document) error, opts ...UpdateOption) (*model.Document, error) {
	o := updateOptions(opts)
	st, err := c.read(ctx, o.dropBad)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the data before writing to it)", err)
	}
	if o.ifVersion && st.counter != o.version {
		return nil, &VersionError{Read: o.version, Current: st.counter}
	}
	d := st.doc.Clone()
	if err := fn(d); err != nil {
		return nil, err
	}
	d.Normalize()
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("store: %s: the change is not valid: %w", c, err)
	}
	if len(d.Apps) > 0 {
		return nil, fmt.Errorf("store: %s: apps are not kept in Consul KV (they come from the Consul catalog)", c)
	}
	enc, err := c.encode(d)
	if err != nil {
		return nil, err
	}
	var sets, dels api.TxnOps
	for k, b := range enc {
		if old, ok := st.enc[k]; ok && old != nil && bytes.Equal(old, b) {
			continue
		}
		sets = append(sets, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: k, Value: b, Index: st.index[k]}})
	}
	for k := range st.enc {
		if _, ok := enc[k]; !ok {
			dels = append(dels, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: k, Index: st.index[k]}})
		}
	}
	for _, op := range sets {
		if idx, ok := st.bad[op.KV.Key]; ok {
			op.KV.Index = idx // a good value over a bad one
		}
	}
	versionKey := c.prefix + "/version"
	if idx, ok := st.bad[versionKey]; ok {
		st.vindex = idx // a bad counter: the write replaces it (from 1)
	}
	for k, idx := range st.bad {
		if _, ok := enc[k]; ok || k == versionKey || len(o.badKeys) > 0 && !slices.Contains(o.badKeys, k) {
			continue
		}
		dels = append(dels, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: k, Index: idx}})
	}
	if len(sets)+len(dels) == 0 {
		return st.doc, nil
	}
	if o.dryRun {
		d.Version = st.counter + 1
		return d, nil
	}
	// Creations before deletions, pools before routes before hosts: when a
	// change is too big for one transaction, readers of the parts in
	// between see as few dangling references as possible.
	order := func(op *api.TxnOp) int {
		k := op.KV.Key[len(c.prefix)+1:]
		switch {
		case strings.HasPrefix(k, "pools/"):
			return 0
		case strings.HasPrefix(k, "routes/"):
			return 1
		}
		return 2
	}
	byKind := func(rev bool) func(a, b *api.TxnOp) int {
		return func(a, b *api.TxnOp) int {
			x, y := order(a), order(b)
			if rev {
				x, y = y, x
			}
			return cmp.Or(cmp.Compare(x, y), cmp.Compare(a.KV.Key, b.KV.Key))
		}
	}
	slices.SortFunc(sets, byKind(false))
	slices.SortFunc(dels, byKind(true))
	ops := append(api.TxnOps{{KV: &api.KVTxnOp{
		Verb: api.KVCAS, Key: versionKey,
		Value: []byte(strconv.FormatUint(st.counter+1, 10)), Index: st.vindex,
	}}}, append(sets, dels...)...)

	var written uint64
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && n < maxTxnOps {
			// The request carries values in base64, in JSON.
			size += len(ops[n].KV.Key) + base64.StdEncoding.EncodedLen(len(ops[n].KV.Value)) + 100
			if n > 0 && size > maxTxnBytes {
				break
			}
			n++
		}
		idx, err := c.txn(ctx, ops[:n])
		if err != nil {
			if written > 0 {
				return nil, fmt.Errorf("%w (the change was too big for one transaction and is only partly written; run it again)", err)
			}
			return nil, err
		}
		written = max(written, idx)
		ops = ops[n:]
	}
	d.Version = st.counter + 1
	c.log.Info("store written", "store", c.String(), "keys", len(sets)+len(dels), "version", d.Version, "index", written)
	return d, nil
}

// txn runs one transaction and returns the largest ModifyIndex it wrote.
func (c *Consul) txn(ctx context.Context, ops api.TxnOps) (uint64, error) {
	ok, resp, _, err := c.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("store %s: write: %w", c, err)
	}
	if !ok {
		var errs []error
		stale := false
		for _, e := range resp.Errors {
			if strings.Contains(e.What, "index is stale") {
				stale = true
			}
			errs = append(errs, errors.New(e.What))
		}
		if stale {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("store %s: write refused: %w", c, errors.Join(errs...))
	}
	var idx uint64
	for _, r := range resp.Results {
		if r.KV != nil {
			idx = max(idx, r.KV.ModifyIndex)
		}
	}
	return idx, nil
}

// Watch implements Store with blocking queries on the prefix. fn gets a
// document only when the data changed (a write elsewhere under the prefix,
// such as an edge's bgp status, is not news), and an error when Consul
// cannot be read or holds invalid data; after an error, the next good
// document is delivered even when it is the same as before. A prefix that
// held data and is then wholly empty (even <prefix>/version, which every
// writer leaves, is gone: a restarted dev agent, a recursive delete) is
// reported as an error rather than delivered as an empty document.
func (c *Consul) Watch(ctx context.Context, fn func(*model.Document, error)) error {
	var (
		index   uint64
		last    []byte // canonical encoding of the last document delivered
		hadData bool
		failed  bool
		retry   = c.retryMin
	)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.waitTime}).WithContext(ctx)
		pairs, meta, err := c.client.KV().List(c.prefix+"/", q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.log.Warn("store watch failed, keeping the last good data", "store", c.String(), "err", err, "retry", retry)
			fn(nil, fmt.Errorf("store %s: watch: %w", c, err))
			failed, index = true, 0
			if !wait(retry) {
				return nil
			}
			retry = min(2*retry, c.retryMax)
			continue
		}
		retry = c.retryMin
		if meta.LastIndex < index {
			// The index went backwards (a restored or restarted
			// server): start over.
			index = 0
		} else {
			index = max(meta.LastIndex, 1)
		}
		if len(pairs) == 0 && hadData {
			// Everything under the prefix is gone, even the version
			// key every writer leaves: data loss, not an operator.
			failed = true
			fn(nil, fmt.Errorf("store %s: nothing under %s/ any more (Consul lost its data?); keeping the last good data", c, c.prefix))
			continue
		}
		st, err := c.decode(pairs, false)
		if err != nil {
			c.log.Warn("store data invalid, keeping the last good data", "store", c.String(), "err", err)
			failed = true
			fn(nil, err)
			continue
		}
		cur, err := model.Canonical(st.doc)
		if err != nil {
			fn(nil, err)
			continue
		}
		if !failed && last != nil && bytes.Equal(cur, last) {
			continue
		}
		hadData = hadData || len(pairs) > 0
		failed, last = false, cur
		fn(st.doc, nil)
	}
	return nil
}
