package razor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
)

// watchEdges follows the Consul catalog's v6pod-edge instances with
// blocking queries: a pool is unhealthy when the instance whose ID is its
// edge has a critical check, or is missing. When Consul cannot be reached
// the last view stays.
func (s *Server) watchEdges(ctx context.Context) {
	var idx uint64
	failing := false
	for ctx.Err() == nil {
		started := time.Now()
		opts := (&api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second}).WithContext(ctx)
		entries, meta, err := s.consul.Health().Service(s.cfg.Consul.EdgeService, "", false, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.log.Warn("consul health query failed; keeping the last view of the edges", "err", err)
				failing = true
			}
			sleepCtx(ctx, time.Second)
			continue
		}
		if failing {
			s.log.Info("consul health query works again")
			failing = false
		}
		if meta.LastIndex < idx || meta.LastIndex == 0 {
			idx = 0 // the index went backwards (RFC: reset, Consul docs)
		} else {
			idx = meta.LastIndex
		}
		up := map[string]bool{}
		for _, e := range entries {
			if e.Service == nil {
				continue
			}
			up[e.Service.ID] = up[e.Service.ID] || e.Checks.AggregatedStatus() != api.HealthCritical
		}
		s.setEdgeUp(up)
		// Never spin: blocking queries can return at once.
		if d := time.Since(started); d < 50*time.Millisecond {
			sleepCtx(ctx, 50*time.Millisecond-d)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// serviceID is razor's ID in the Consul catalog.
func (s *Server) serviceID() string {
	if s.cfg.Consul.ServiceID != "" {
		return s.cfg.Consul.ServiceID
	}
	host, _ := os.Hostname()
	port := 0
	if a := s.TCPAddrs(); len(a) > 0 {
		port = int(a[0].Port())
	}
	return fmt.Sprintf("v6pod-razor-%s-%d", host, port)
}

// register puts razor in the catalog as v6pod-razor with an HTTP check of
// /readyz on the metrics listener when there is one, else a TCP check on
// its first DNS listener, keeps it there (an agent restart forgets it), and takes
// it out on shutdown.
func (s *Server) register(ctx context.Context) {
	addrs := s.TCPAddrs()
	if len(addrs) == 0 {
		return
	}
	a := addrs[0]
	id := s.serviceID()
	reg := &api.AgentServiceRegistration{
		ID: id, Name: "v6pod-razor", Address: a.Addr().String(), Port: int(a.Port()),
		Tags: []string{"dns"},
		Check: &api.AgentServiceCheck{
			Name: "razor DNS over TCP", TCP: a.String(),
			Interval: "10s", Timeout: "2s", DeregisterCriticalServiceAfter: "10m",
		},
	}
	if m := s.MetricsAddr(); m != "" {
		// With an HTTP listener, check /readyz like the edges do.
		reg.Check = &api.AgentServiceCheck{
			Name: "razor /readyz", HTTP: "http://" + m + "/readyz",
			Interval: "10s", Timeout: "2s", DeregisterCriticalServiceAfter: "10m",
		}
	}
	registered := false
	for {
		_, _, err := s.consul.Agent().Service(id, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil && ctx.Err() == nil {
			if err := s.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
				if registered || ctx.Err() == nil {
					s.log.Warn("consul registration failed; retrying", "service_id", id, "err", err)
				}
				registered = false
			} else {
				s.log.Info("registered in consul", "service", "v6pod-razor", "service_id", id)
				registered = true
			}
		}
		wait := 30 * time.Second
		if !registered {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.consul.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(dctx))
			cancel()
			return
		case <-time.After(wait):
		}
	}
}

// probeState is the rise/fall counting of one pool's probe.
type probeState struct {
	down       bool
	ok, failed int
}

// probeLoop probes every pool that is not disabled each interval (TCP
// connect or HTTP GET), and marks a pool down after Fall failures in a
// row, up again after Rise successes.
func (s *Server) probeLoop(ctx context.Context) {
	pc := s.cfg.Probe
	states := map[string]*probeState{}
	client := &http.Client{Timeout: pc.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	tick := time.NewTicker(pc.Interval)
	defer tick.Stop()
	for {
		s.mu.Lock()
		doc := s.in.doc
		s.mu.Unlock()
		targets := map[string]string{}
		if doc != nil {
			for i := range doc.Pools {
				p := &doc.Pools[i]
				if p.State == model.Disabled {
					continue
				}
				if t := probeTarget(p, pc); t != "" {
					targets[p.Name] = t
				}
			}
		}
		results := make(map[string]bool, len(targets))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for pool, target := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok := probeOnce(ctx, client, pc, target)
				mu.Lock()
				results[pool] = ok
				mu.Unlock()
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for pool, ok := range results {
			st := states[pool]
			if st == nil {
				st = &probeState{}
				states[pool] = st
			}
			if ok {
				st.ok, st.failed = st.ok+1, 0
				if st.down && st.ok >= pc.Rise {
					st.down = false
					s.log.Info("probe: pool up", "pool", pool, "target", targets[pool])
					s.setProbeDown(pool, false)
				}
			} else {
				st.ok, st.failed = 0, st.failed+1
				if !st.down && st.failed >= pc.Fall {
					st.down = true
					s.log.Warn("probe: pool down", "pool", pool, "target", targets[pool])
					s.setProbeDown(pool, true)
				}
			}
		}
		for pool := range states {
			if _, ok := targets[pool]; !ok {
				delete(states, pool)
				s.setProbeDown(pool, false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probeTarget is the host:port probed for pool p.
func probeTarget(p *model.Pool, pc ProbeConfig) string {
	if t, ok := pc.Targets[p.Name]; ok {
		return t
	}
	var a netip.Addr
	if el := p.Eligible(true); len(el) > 0 {
		a = el[0]
	} else if el := p.Eligible(false); len(el) > 0 {
		a = el[0]
	} else {
		return ""
	}
	return net.JoinHostPort(a.String(), strconv.Itoa(pc.Port))
}

func probeOnce(ctx context.Context, client *http.Client, pc ProbeConfig, target string) bool {
	ctx, cancel := context.WithTimeout(ctx, pc.Timeout)
	defer cancel()
	if pc.Type == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+pc.Path, nil)
	if err != nil {
		return false
	}
	if pc.Host != "" {
		req.Host = pc.Host
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
