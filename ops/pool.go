package ops

import (
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

func init() {
	register(
		&command{name: "pool list", max: 0, read: true, run: poolList,
			summary: "list the pools: edge, state, weight, address counts, rotations",
			example: "ops --store file:///etc/v6pod/pods.yaml pool list\nops pool list -o json"},
		&command{name: "pool show", args: "POOL", min: 1, max: 1, read: true, run: poolShow,
			summary: "show one pool: its settings, the routes using it, and each address with its status",
			example: "ops pool show edge-ams-01"},
		&command{name: "pool create", args: "POOL [ADDR...]", min: 1, max: -1, write: true, run: poolCreate,
			summary: "create a pool owned by an edge node; addresses go to v4 or v6 by family",
			example: "ops pool create edge-ams-01 --edge ams-01 --site ams --v4 203.0.113.1,203.0.113.2 --v6 2001:db8:1::1 --allow-reserved",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.edge, "edge", "", "the edge node that owns and serves the pool (required)")
				fs.StringVar(&o.site, "site", "", "the site of the edge node")
				fs.UintVar(&o.weight, "weight", model.DefaultWeight, "weight among the pools of a route")
				fs.StringVar(&o.state, "state", string(model.Active), "active, draining or disabled")
				fs.Var(&o.v4, "v4", "IPv4 addresses, comma-separated or repeated")
				fs.Var(&o.v6, "v6", "IPv6 addresses, comma-separated or repeated")
				allowReserved(fs, o)
			}},
		&command{name: "pool delete", args: "POOL", min: 1, max: 1, write: true, run: poolDelete,
			summary: "delete a pool that no route uses",
			example: "ops pool delete edge-ams-01 --dry-run"},
		&command{name: "pool set-weight", args: "POOL WEIGHT", min: 2, max: 2, write: true, run: poolSetWeight,
			summary: "set a pool's weight (its share of the answers of the routes using it)",
			example: "ops pool set-weight edge-ams-01 50"},
		&command{name: "pool set-state", args: "POOL STATE", min: 2, max: 2, write: true, run: poolSetState,
			summary: "set a pool's state: active, draining (edge serves, razor stops handing out) or disabled",
			example: "ops pool set-state edge-ams-01 draining"},
		&command{name: "pool add-addr", args: "POOL ADDR...", min: 2, max: -1, write: true, run: poolAddAddr,
			summary: "add addresses (any textual form) to a pool; none may be in another pool or a reserved range",
			example: "ops pool add-addr edge-ams-01 203.0.113.7 '[2001:DB8:1::7]' --allow-reserved",
			flags:   allowReserved},
		&command{name: "pool remove-addr", args: "POOL ADDR...", min: 2, max: -1, write: true, run: poolRemoveAddr,
			summary: "remove drained addresses from a pool (ops pool rotate does drain, wait and remove safely)",
			example: "ops pool remove-addr edge-ams-01 203.0.113.2",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.force, "force", false, "remove addresses that are not drained (clients may still hold them in cache)")
			}},
		&command{name: "pool drain", args: "POOL ADDR...", min: 2, max: -1, write: true, run: poolDrain,
			summary: "stop razor handing out addresses; the edge keeps serving them",
			example: "ops pool drain edge-ams-01 203.0.113.2"},
		&command{name: "pool undrain", args: "POOL ADDR...", min: 2, max: -1, write: true, run: poolUndrain,
			summary: "let razor hand out drained addresses again",
			example: "ops pool undrain edge-ams-01 203.0.113.2"},
	)
}

func allowReserved(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.allowReserved, "allow-reserved", false, "accept addresses from reserved ranges (documentation, private, loopback, ...)")
}

// getPool finds a pool or says it does not exist.
func getPool(d *model.Document, name string) (*model.Pool, error) {
	p := d.Pool(name)
	if p == nil {
		return nil, fmt.Errorf("pool %s: no such pool", name)
	}
	return p, nil
}

// routesUsing lists the routes that answer from the pool.
func routesUsing(d *model.Document, pool string) []*model.Route {
	var rs []*model.Route
	for i := range d.Routes {
		if slices.Contains(d.Routes[i].Pools, pool) {
			rs = append(rs, &d.Routes[i])
		}
	}
	return rs
}

// rotationSummary is the ROTATION column: what goes out and in, and the
// phase at time now.
func rotationSummary(d *model.Document, p *model.Pool, now time.Time) string {
	r := p.Rotation
	if r == nil {
		return ""
	}
	phase := "adding"
	if until, ok := rotationUntil(d, p); ok {
		phase = "waiting until " + until.UTC().Round(time.Second).Format(time.RFC3339)
		if !now.Before(until) {
			phase = "waited; ops pool rotate --resume " + p.Name + " finishes it"
		}
	} else if r.DrainedAt != "" {
		phase = "waiting since " + r.DrainedAt
	}
	return fmt.Sprintf("out %s in %s (%s)", addrStrings(r.Out), addrStrings(r.In), phase)
}

func poolList(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	sortDoc(d)
	if c.o.output == "json" {
		pools := d.Pools
		if pools == nil {
			pools = []model.Pool{}
		}
		return printJSON(c.e.stdout, pools)
	}
	t := newTable(c.e.stdout, "NAME", "EDGE", "SITE", "STATE", "WEIGHT", "V4", "V6", "DRAINED", "ROTATION")
	for i := range d.Pools {
		p := &d.Pools[i]
		t.row(p.Name, p.Edge, p.Site, string(p.State), strconv.Itoa(int(p.Weight)),
			strconv.Itoa(len(p.V4)), strconv.Itoa(len(p.V6)), strconv.Itoa(len(p.Drain)), rotationSummary(d, p, c.e.now()))
	}
	return t.flush()
}

func poolShow(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	p, err := getPool(d, c.args[0])
	if err != nil {
		return err
	}
	if c.o.output == "json" {
		return printJSON(c.e.stdout, p)
	}
	var routes []string
	for _, r := range routesUsing(d, p.Name) {
		routes = append(routes, r.Name)
	}
	kv := newTable(c.e.stdout, "NAME", p.Name)
	kv.row("EDGE", p.Edge)
	kv.row("SITE", p.Site)
	kv.row("STATE", string(p.State))
	kv.row("WEIGHT", strconv.Itoa(int(p.Weight)))
	kv.row("ROUTES", strings.Join(routes, ","))
	kv.row("ROTATION", rotationSummary(d, p, c.e.now()))
	if err := kv.flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.e.stdout)
	t := newTable(c.e.stdout, "ADDRESS", "FAMILY", "STATUS")
	for _, fam := range []struct {
		name string
		list model.AddrList
	}{{"v4", p.V4}, {"v6", p.V6}} {
		for _, a := range fam.list {
			t.row(a.String(), fam.name, addrStatus(p, a))
		}
	}
	return t.flush()
}

// addrStatus says what razor does with an address of the pool.
func addrStatus(p *model.Pool, a netip.Addr) string {
	s := "eligible"
	switch {
	case slices.Contains(p.Drain, a):
		s = "drained"
	case p.State != model.Active:
		s = "not handed out (pool " + string(p.State) + ")"
	}
	if r := p.Rotation; r != nil {
		switch {
		case slices.Contains(r.Out, a):
			s += ", rotating out"
		case slices.Contains(r.In, a):
			s += ", rotating in"
		}
	}
	return s
}

func poolCreate(c *call) error {
	name := c.args[0]
	if err := model.CheckName(name); err != nil {
		return usagef("pool %q: name: %v", name, err)
	}
	if c.o.edge == "" {
		return usagef("pool create %s: --edge is required (the edge node that serves the pool)", name)
	}
	state := model.PoolState(c.o.state)
	if !state.Valid() {
		return usagef("pool %s: state %q: want active, draining or disabled", name, c.o.state)
	}
	if c.o.weight == 0 || c.o.weight > model.MaxWeight {
		return usagef("pool %s: weight %d: want 1 to %d", name, c.o.weight, model.MaxWeight)
	}
	v4, err := parseAddrs("pool "+name+": v4", c.o.v4)
	if err != nil {
		return err
	}
	v6, err := parseAddrs("pool "+name+": v6", c.o.v6)
	if err != nil {
		return err
	}
	if err := checkFamily(name, "v4", v4); err != nil {
		return err
	}
	if err := checkFamily(name, "v6", v6); err != nil {
		return err
	}
	more, err := parseAddrs("pool "+name, c.args[1:])
	if err != nil {
		return err
	}
	all := slices.Concat(v4, v6, more)
	if err := noDup("pool "+name, all); err != nil {
		return err
	}
	d, changed, err := c.update(func(d *model.Document) error {
		if d.Pool(name) != nil {
			return fmt.Errorf("pool %s: already exists", name)
		}
		p := model.Pool{Name: name, Edge: c.o.edge, Site: c.o.site, Weight: uint32(c.o.weight), State: state,
			V4: model.AddrList{}, V6: model.AddrList{}}
		for _, a := range all {
			if err := checkNewAddr(d, name, a, c.o.allowReserved); err != nil {
				return err
			}
			addTo(&p, a)
		}
		if err := p.Check(); err != nil {
			return err
		}
		d.Pools = append(d.Pools, p)
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: created with %s", name, plural(len(all), "address", "addresses"))
	return nil
}

func poolDelete(c *call) error {
	name := c.args[0]
	// A pool whose key holds bad data (Consul) is deleted by deleting the
	// key; the rest of the store is read tolerantly for that.
	var opts []store.UpdateOption
	bad, err := badKey(c, "pools", name)
	if err != nil {
		return err
	}
	if bad != "" {
		opts = append(opts, store.DropBad(bad))
	}
	d, changed, err := c.update(func(d *model.Document) error {
		if _, err := getPool(d, name); err != nil && bad == "" {
			return err
		}
		if rs := routesUsing(d, name); len(rs) > 0 {
			var names []string
			for _, r := range rs {
				names = append(names, r.Name)
			}
			return fmt.Errorf("pool %s: used by route(s) %s; take it out of them first (ops route set ROUTE --pools ...)", name, strings.Join(names, ", "))
		}
		d.Pools = slices.DeleteFunc(d.Pools, func(p model.Pool) bool { return p.Name == name })
		return nil
	}, opts...)
	if err != nil {
		return err
	}
	if bad != "" {
		changed = true // the bad key went, though the document did not hold it
	}
	c.done(d, changed, "pool %s: deleted", name)
	return nil
}

func poolSetWeight(c *call) error {
	name := c.args[0]
	w, err := strconv.ParseUint(c.args[1], 10, 32)
	if err != nil || w == 0 || w > model.MaxWeight {
		return usagef("pool %s: weight %q: want a whole number from 1 to %d", name, c.args[1], model.MaxWeight)
	}
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := getPool(d, name)
		if err != nil {
			return err
		}
		p.Weight = uint32(w)
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: weight %d", name, w)
	return nil
}

func poolSetState(c *call) error {
	name := c.args[0]
	state := model.PoolState(c.args[1])
	if !state.Valid() {
		return usagef("pool %s: state %q: want active, draining or disabled", name, c.args[1])
	}
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := getPool(d, name)
		if err != nil {
			return err
		}
		p.State = state
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: state %s", name, state)
	return nil
}

func poolAddAddr(c *call) error {
	name := c.args[0]
	as, err := parseAddrs("pool "+name, c.args[1:])
	if err != nil {
		return err
	}
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := getPool(d, name)
		if err != nil {
			return err
		}
		for _, a := range as {
			if err := checkNewAddr(d, name, a, c.o.allowReserved); err != nil {
				return err
			}
			addTo(p, a)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: added %s", name, addrStrings(as))
	return nil
}

// mustBeInPool checks that the addresses are the pool's.
func mustBeInPool(p *model.Pool, as []netip.Addr) error {
	for _, a := range as {
		if !inPool(p, a) {
			return fmt.Errorf("pool %s: %s is not an address of the pool", p.Name, a)
		}
	}
	return nil
}

// notRotating refuses to touch addresses of an unfinished rotation.
func notRotating(p *model.Pool, as []netip.Addr) error {
	if r := p.Rotation; r != nil {
		for _, a := range as {
			if slices.Contains(r.Out, a) || slices.Contains(r.In, a) {
				return fmt.Errorf("pool %s: %s is part of an unfinished rotation; finish it with ops pool rotate --resume %s (or --abort)", p.Name, a, p.Name)
			}
		}
	}
	return nil
}

func poolRemoveAddr(c *call) error {
	return changeAddrs(c, "removed", func(p *model.Pool, as []netip.Addr) error {
		for _, a := range as {
			if !c.o.force && !slices.Contains(p.Drain, a) && p.State == model.Active {
				return fmt.Errorf("pool %s: %s is not drained: resolvers may still hand it out; drain it and wait twice the TTL (ops pool rotate does both), or pass --force", p.Name, a)
			}
			removeFrom(p, a)
		}
		return nil
	})
}

func poolDrain(c *call) error {
	return changeAddrs(c, "drained", func(p *model.Pool, as []netip.Addr) error {
		for _, a := range as {
			if !slices.Contains(p.Drain, a) {
				p.Drain = append(p.Drain, a)
			}
		}
		return nil
	})
}

func poolUndrain(c *call) error {
	return changeAddrs(c, "undrained", func(p *model.Pool, as []netip.Addr) error {
		p.Drain = slices.DeleteFunc(p.Drain, func(a netip.Addr) bool { return slices.Contains(as, a) })
		return nil
	})
}

// changeAddrs applies change to the pool named by the first argument, for
// the addresses that follow, after the checks remove-addr, drain and undrain
// share: the addresses belong to the pool and no rotation owns them.
func changeAddrs(c *call, did string, change func(p *model.Pool, as []netip.Addr) error) error {
	name := c.args[0]
	as, err := parseAddrs("pool "+name, c.args[1:])
	if err != nil {
		return err
	}
	d, changed, err := c.update(func(d *model.Document) error {
		p, err := getPool(d, name)
		if err != nil {
			return err
		}
		if err := mustBeInPool(p, as); err != nil {
			return err
		}
		if err := notRotating(p, as); err != nil {
			return err
		}
		return change(p, as)
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "pool %s: %s %s", name, did, addrStrings(as))
	return nil
}

// badKey returns the store key of the named object when a tolerant read
// found it bad (Consul), or "".
func badKey(c *call, kind, name string) (string, error) {
	_, probs, err := c.loadPartial()
	if err != nil {
		return "", err
	}
	for _, p := range probs {
		if p.Kind != kind {
			continue
		}
		if p.Name == name || kind == "routes" && model.CanonicalName(p.Name) == model.CanonicalName(name) {
			return p.Key, nil
		}
	}
	return "", nil
}

// plural is "1 address", "2 addresses".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
