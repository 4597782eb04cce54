package ops

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

func init() {
	routeFlags := func(fs *flag.FlagSet, o *opts) {
		fs.Var(&o.pools, "pools", "the pools answers come from (comma-separated or repeated)")
		fs.IntVar(&o.answers, "answers", model.DefaultAnswers, "records per answer, per family")
		fs.UintVar(&o.ttl, "ttl", model.DefaultTTL, "TTL of the answers, seconds")
		fs.StringVar(&o.shard, "shard", model.ShardNone, "none, or label: each label under the route gets its own subset of addresses")
		fs.IntVar(&o.shardSize, "shard-size", 0, "addresses per label and family with --shard label (default max(8, answers))")
	}
	register(
		&command{name: "route list", max: 0, read: true, run: routeList,
			summary: "list the routes: pools, answers, TTL, sharding",
			example: "ops route list\nops route list -o json"},
		&command{name: "route show", args: "ROUTE", min: 1, max: 1, read: true, run: routeShow,
			summary: "show one route and what its pools can hand out",
			example: "ops route show shop.route.v6pod.test"},
		&command{name: "route create", args: "ROUTE", min: 1, max: 1, write: true, run: routeCreate, flags: routeFlags,
			summary: "create a route answered from pools",
			example: "ops route create shop.route.v6pod.test --pools edge-ams-01,edge-fra-01 --answers 4 --ttl 30"},
		&command{name: "route delete", args: "ROUTE", min: 1, max: 1, write: true, run: routeDelete,
			summary: "delete a route",
			example: "ops route delete shop.route.v6pod.test"},
		&command{name: "route set", args: "ROUTE", min: 1, max: 1, write: true, run: routeSet, flags: routeFlags,
			summary: "change a route: only the flags given change",
			example: "ops route set shop.route.v6pod.test --ttl 60 --shard label --shard-size 8"},
	)
}

func getRoute(d *model.Document, name string) (*model.Route, error) {
	r := d.Route(name)
	if r == nil {
		return nil, fmt.Errorf("route %s: no such route", model.CanonicalName(name))
	}
	return r, nil
}

func shardString(r *model.Route) string {
	if r.Shard == model.ShardLabel {
		return fmt.Sprintf("label/%d", r.ShardSize)
	}
	return r.Shard
}

func routeList(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	sortDoc(d)
	if c.o.output == "json" {
		routes := d.Routes
		if routes == nil {
			routes = []model.Route{}
		}
		return printJSON(c.e.stdout, routes)
	}
	t := newTable(c.e.stdout, "NAME", "POOLS", "ANSWERS", "TTL", "SHARD")
	for i := range d.Routes {
		r := &d.Routes[i]
		t.row(r.Name, strings.Join(r.Pools, ","), strconv.Itoa(r.Answers), strconv.Itoa(int(r.TTL)), shardString(r))
	}
	return t.flush()
}

func routeShow(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	r, err := getRoute(d, c.args[0])
	if err != nil {
		return err
	}
	if c.o.output == "json" {
		return printJSON(c.e.stdout, r)
	}
	kv := newTable(c.e.stdout, "NAME", r.Name)
	kv.row("ANSWERS", strconv.Itoa(r.Answers))
	kv.row("TTL", strconv.Itoa(int(r.TTL)))
	kv.row("SHARD", shardString(r))
	if err := kv.flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.e.stdout)
	t := newTable(c.e.stdout, "POOL", "STATE", "WEIGHT", "ELIGIBLE V4", "ELIGIBLE V6")
	for _, name := range r.Pools {
		p := d.Pool(name)
		switch {
		case p == nil:
			t.row(name, "missing", "-", "0", "0")
		case p.State != model.Active:
			t.row(name, string(p.State), strconv.Itoa(int(p.Weight)), "0", "0")
		default:
			t.row(name, string(p.State), strconv.Itoa(int(p.Weight)),
				strconv.Itoa(len(p.Eligible(false))), strconv.Itoa(len(p.Eligible(true))))
		}
	}
	return t.flush()
}

// applyRouteFlags sets the fields whose flags were given (all of them for
// a new route).
func applyRouteFlags(o *opts, r *model.Route, all bool) {
	set := func(name string) bool { return all || o.set[name] }
	if set("pools") {
		r.Pools = slices.Clone([]string(o.pools))
	}
	if set("answers") {
		r.Answers = o.answers
	}
	if set("ttl") {
		r.TTL = uint32(o.ttl)
	}
	if set("shard") {
		r.Shard = o.shard
		if o.shard == model.ShardNone && !o.set["shard-size"] {
			r.ShardSize = 0
		}
	}
	if set("shard-size") {
		r.ShardSize = o.shardSize
	}
}

// checkRouteFlags checks the route flags on their own (exit 2); the
// store checks the route they make.
func checkRouteFlags(c *call, name string, create bool) error {
	if c.o.set["answers"] && (c.o.answers < 1 || c.o.answers > model.MaxAnswers) {
		return usagef("route %s: --answers %d: want 1 to %d", name, c.o.answers, model.MaxAnswers)
	}
	if c.o.set["ttl"] && (c.o.ttl == 0 || c.o.ttl > model.MaxTTL) {
		return usagef("route %s: --ttl %d: want 1 to %d seconds", name, c.o.ttl, model.MaxTTL)
	}
	if c.o.shard != model.ShardNone && c.o.shard != model.ShardLabel {
		return usagef("route %s: --shard %q: want none or label", name, c.o.shard)
	}
	if c.o.set["shard-size"] {
		switch {
		case c.o.shardSize < 1:
			return usagef("route %s: --shard-size %d: want a positive number", name, c.o.shardSize)
		case c.o.shard != model.ShardLabel && (c.o.set["shard"] || create):
			return usagef("route %s: --shard-size needs --shard label", name)
		case c.o.set["answers"] && c.o.shardSize < c.o.answers:
			return usagef("route %s: --shard-size %d: must be at least --answers (%d)", name, c.o.shardSize, c.o.answers)
		}
	}
	for _, p := range c.o.pools {
		if err := model.CheckName(p); err != nil {
			return usagef("route %s: --pools: %v", name, err)
		}
	}
	if err := noDupNames("route "+name+": --pools", c.o.pools); err != nil {
		return err
	}
	return nil
}

func routeCreate(c *call) error {
	name := model.CanonicalName(c.args[0])
	if err := model.CheckDomain(name); err != nil {
		return usagef("route name %v", err)
	}
	if len(c.o.pools) == 0 {
		return usagef("route create %s: --pools is required", name)
	}
	if err := checkRouteFlags(c, name, true); err != nil {
		return err
	}
	d, changed, err := c.update(func(d *model.Document) error {
		if d.Route(name) != nil {
			return fmt.Errorf("route %s: already exists", name)
		}
		r := model.Route{Name: name}
		applyRouteFlags(c.o, &r, true)
		if err := checkRoutePools(d, &r); err != nil {
			return err
		}
		d.Routes = append(d.Routes, r)
		return nil
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "route %s: created", name)
	return nil
}

func checkRoutePools(d *model.Document, r *model.Route) error {
	for _, p := range r.Pools {
		if d.Pool(p) == nil {
			return fmt.Errorf("route %s: pool %s does not exist", r.Name, p)
		}
	}
	return nil
}

func routeDelete(c *call) error {
	name := model.CanonicalName(c.args[0])
	// A route whose key holds bad data (Consul) is deleted by deleting
	// the key.
	var opts []store.UpdateOption
	bad, err := badKey(c, "routes", name)
	if err != nil {
		return err
	}
	if bad != "" {
		opts = append(opts, store.DropBad(bad))
	}
	d, changed, err := c.update(func(d *model.Document) error {
		if _, err := getRoute(d, name); err != nil && bad == "" {
			return err
		}
		d.Routes = slices.DeleteFunc(d.Routes, func(r model.Route) bool { return r.Name == name })
		return nil
	}, opts...)
	if err != nil {
		return err
	}
	if bad != "" {
		changed = true
	}
	c.done(d, changed, "route %s: deleted", name)
	return nil
}

func routeSet(c *call) error {
	name := model.CanonicalName(c.args[0])
	if !slices.ContainsFunc([]string{"pools", "answers", "ttl", "shard", "shard-size"}, func(f string) bool { return c.o.set[f] }) {
		return usagef("route set %s: nothing to change; give --pools, --answers, --ttl, --shard or --shard-size", name)
	}
	if err := checkRouteFlags(c, name, false); err != nil {
		return err
	}
	d, changed, err := c.update(func(d *model.Document) error {
		r, err := getRoute(d, name)
		if err != nil {
			return err
		}
		applyRouteFlags(c.o, r, false)
		if r.Shard == model.ShardLabel && r.ShardSize == 0 {
			r.ShardSize = max(model.DefaultShardSize, r.Answers)
		}
		return checkRoutePools(d, r)
	})
	if err != nil {
		return err
	}
	c.done(d, changed, "route %s: changed", name)
	return nil
}

// noDupNames refuses a name given twice on the command line.
func noDupNames(what string, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return usagef("%s: %s given twice", what, n)
		}
		seen[n] = true
	}
	return nil
}
