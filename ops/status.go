package ops

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

// Consul catalog service names (DESIGN.md).
const (
	serviceEdge  = "v6pod-edge"
	serviceRazor = "v6pod-razor"
)

func init() {
	register(&command{name: "status", max: 0, read: true, run: status,
		summary: "pools with state, health and address counts; routes; the razors and edges Consul knows, with their health",
		example: "ops --store consul://127.0.0.1:8500/v6pod status\nops --store file:///etc/v6pod/pods.yaml --consul 127.0.0.1:8500 status -o json"})
}

// consulClient returns the Consul agent ops talks to for the catalog and
// the edges/ keys: the store's when it is Consul, else --consul. It
// returns a nil client when there is none.
func (c *call) consulClient() (*api.Client, string, error) {
	if c.e.storeURL != "" || c.e.getenv(EnvStore) != "" {
		st, err := c.store()
		if err != nil {
			return nil, "", err
		}
		if cs, ok := st.(*store.Consul); ok {
			return cs.Client(), cs.Prefix(), nil
		}
	}
	if c.e.consul == "" {
		return nil, "", nil
	}
	raw := c.e.consul
	if !store.IsConsulURL(raw) {
		if _, _, err := net.SplitHostPort(raw); err != nil {
			return nil, "", usagef("--consul %q: want host:port or consul://host:port/prefix", raw)
		}
		raw = "consul://" + raw
	}
	pu, err := url.Parse(raw)
	if err != nil {
		return nil, "", usagef("--consul %q: %v", c.e.consul, err)
	}
	client, prefix, err := store.ConsulClient(pu, store.Options{})
	if err != nil {
		return nil, "", usagef("--consul: %v", err)
	}
	return client, prefix, nil
}

type instanceStatus struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	Address string `json:"address"`
	Health  string `json:"health"`
	Drain   *bool  `json:"drain,omitempty"`
}

type poolStatus struct {
	Name     string          `json:"name"`
	Edge     string          `json:"edge"`
	State    model.PoolState `json:"state"`
	Health   string          `json:"health"`
	Weight   uint32          `json:"weight"`
	V4       int             `json:"v4"`
	V6       int             `json:"v6"`
	Drained  int             `json:"drained"`
	Rotation *rotationStatus `json:"rotation,omitempty"`
}

// rotationStatus is an unfinished rotation in status -o json.
type rotationStatus struct {
	model.Rotation
	// Until is when the outgoing addresses may be removed (RFC 3339),
	// once they are drained.
	Until string `json:"until,omitempty"`
	// Summary is the ROTATION column of the table.
	Summary string `json:"summary"`
}

func newRotationStatus(d *model.Document, p *model.Pool, now time.Time) *rotationStatus {
	if p.Rotation == nil {
		return nil
	}
	rs := &rotationStatus{Rotation: *p.Rotation, Summary: rotationSummary(d, p, now)}
	if until, ok := rotationUntil(d, p); ok {
		rs.Until = until.UTC().Format(time.RFC3339)
	}
	return rs
}

type routeStatus struct {
	Name       string   `json:"name"`
	Pools      []string `json:"pools"`
	Answers    int      `json:"answers"`
	TTL        uint32   `json:"ttl"`
	EligibleV4 int      `json:"eligible_v4"`
	EligibleV6 int      `json:"eligible_v6"`
}

type statusReport struct {
	Store   string           `json:"store"`
	Version uint64           `json:"version"`
	Consul  bool             `json:"consul"`
	Pools   []poolStatus     `json:"pools"`
	Routes  []routeStatus    `json:"routes"`
	Razors  []instanceStatus `json:"razors"`
	Edges   []instanceStatus `json:"edges"`
}

// Health words beyond Consul's passing/warning/critical/maintenance.
const (
	healthUnknown = "unknown" // no Consul to ask
	healthMissing = "missing" // the edge's service is not registered
)

func status(c *call) error {
	d, err := c.load()
	if err != nil {
		return err
	}
	client, prefix, err := c.consulClient()
	if err != nil {
		return err
	}
	st, _ := c.store()
	rep := statusReport{Store: st.String(), Version: d.Version, Consul: client != nil,
		Pools: []poolStatus{}, Routes: []routeStatus{}, Razors: []instanceStatus{}, Edges: []instanceStatus{}}
	edgeHealth := map[string]string{}
	if client != nil {
		ctx, cancel := c.opCtx()
		defer cancel()
		q := (&api.QueryOptions{}).WithContext(ctx)
		drained := map[string]bool{}
		keys, _, err := client.KV().Keys(prefix+"/edges/", "", q)
		if err != nil {
			return fmt.Errorf("status: consul: %w", err)
		}
		for _, k := range keys {
			if node, ok := strings.CutSuffix(strings.TrimPrefix(k, prefix+"/edges/"), "/drain"); ok {
				drained[node] = true
			}
		}
		for _, svc := range []string{serviceRazor, serviceEdge} {
			entries, _, err := client.Health().Service(svc, "", false, q)
			if err != nil {
				return fmt.Errorf("status: consul: service %s: %w", svc, err)
			}
			for _, e := range entries {
				in := instanceStatus{ID: e.Service.ID, Node: e.Node.Node, Health: e.Checks.AggregatedStatus()}
				host := e.Service.Address
				if host == "" {
					host = e.Node.Address
				}
				in.Address = net.JoinHostPort(host, strconv.Itoa(e.Service.Port))
				if svc == serviceEdge {
					dr := drained[e.Service.ID]
					in.Drain = &dr
					edgeHealth[e.Service.ID] = in.Health
					rep.Edges = append(rep.Edges, in)
				} else {
					rep.Razors = append(rep.Razors, in)
				}
			}
		}
		byID := func(a, b instanceStatus) int { return strings.Compare(a.ID, b.ID) }
		slices.SortFunc(rep.Razors, byID)
		slices.SortFunc(rep.Edges, byID)
	}
	sortDoc(d)
	for i := range d.Pools {
		p := &d.Pools[i]
		h := healthUnknown
		if client != nil {
			h = edgeHealth[p.Edge]
			if h == "" {
				h = healthMissing
			}
		}
		rep.Pools = append(rep.Pools, poolStatus{Name: p.Name, Edge: p.Edge, State: p.State, Health: h, Weight: p.Weight,
			V4: len(p.V4), V6: len(p.V6), Drained: len(p.Drain), Rotation: newRotationStatus(d, p, c.e.now())})
	}
	for i := range d.Routes {
		r := &d.Routes[i]
		rs := routeStatus{Name: r.Name, Pools: r.Pools, Answers: r.Answers, TTL: r.TTL}
		for _, name := range r.Pools {
			p := d.Pool(name)
			if p == nil || p.State != model.Active {
				continue
			}
			if client != nil && edgeHealth[p.Edge] != api.HealthPassing && edgeHealth[p.Edge] != api.HealthWarning {
				continue
			}
			rs.EligibleV4 += len(p.Eligible(false))
			rs.EligibleV6 += len(p.Eligible(true))
		}
		rep.Routes = append(rep.Routes, rs)
	}
	if c.o.output == "json" {
		return printJSON(c.e.stdout, rep)
	}
	return printStatus(c, &rep)
}

func printStatus(c *call, rep *statusReport) error {
	w := c.e.stdout
	fmt.Fprintf(w, "store %s, version %d\n\n", rep.Store, rep.Version)
	t := newTable(w, "POOL", "EDGE", "STATE", "HEALTH", "WEIGHT", "V4", "V6", "DRAINED", "ROTATION")
	for _, p := range rep.Pools {
		rot := ""
		if p.Rotation != nil {
			rot = p.Rotation.Summary
		}
		t.row(p.Name, p.Edge, string(p.State), p.Health, strconv.Itoa(int(p.Weight)),
			strconv.Itoa(p.V4), strconv.Itoa(p.V6), strconv.Itoa(p.Drained), rot)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t = newTable(w, "ROUTE", "POOLS", "ANSWERS", "TTL", "ELIGIBLE V4", "ELIGIBLE V6")
	for _, r := range rep.Routes {
		t.row(r.Name, strings.Join(r.Pools, ","), strconv.Itoa(r.Answers), strconv.Itoa(int(r.TTL)),
			strconv.Itoa(r.EligibleV4), strconv.Itoa(r.EligibleV6))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if !rep.Consul {
		fmt.Fprintln(w, "razors and edges: unknown (no Consul; use a consul:// store or --consul host:port)")
		return nil
	}
	if len(rep.Razors) == 0 {
		fmt.Fprintf(w, "razors: none registered (Consul service %s)\n", serviceRazor)
	} else {
		t = newTable(w, "RAZOR", "NODE", "ADDRESS", "HEALTH")
		for _, r := range rep.Razors {
			t.row(r.ID, r.Node, r.Address, r.Health)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(rep.Edges) == 0 {
		fmt.Fprintf(w, "edges: none registered (Consul service %s)\n", serviceEdge)
		return nil
	}
	t = newTable(w, "EDGE", "NODE", "ADDRESS", "HEALTH", "DRAIN")
	for _, e := range rep.Edges {
		dr := "no"
		if e.Drain != nil && *e.Drain {
			dr = "yes"
		}
		t.row(e.ID, e.Node, e.Address, e.Health, dr)
	}
	return t.flush()
}
