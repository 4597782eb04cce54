// Package controller is p4access: it learns each NAT64 VIP's servers from
// BGP, builds one Maglev table per VIP and keeps an access.p4 switch's
// tables in step over P4Runtime, writing only what differs from what the
// device holds.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/server"
	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/client"
)

// Option configures a Controller.
type Option func(*Controller)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *Controller) { c.log = l } }

// WithRegistry registers the metrics on reg (default: a new registry).
func WithRegistry(reg *prometheus.Registry) Option { return func(c *Controller) { c.reg = reg } }

// Controller is one p4access instance.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	m    *metrics
	info *p4configv1.P4Info
	dcfg []byte // device config (bmv2 JSON)

	bgp     *server.BgpServer
	bgpKick chan struct{}
	kick    chan struct{} // desired state changed
	tables  map[uint16]cachedTable

	mu       sync.Mutex
	routes   map[netip.Addr][]netip.Addr
	status   Status
	election uint64
	started  time.Time

	converged  bool // owned by the device loop
	neigh      NeighborFunc
	macs       map[netip.Addr][6]byte // last MAC resolved per next hop; device loop only
	unresolved map[netip.Addr]string  // next hops ignored at the last computation

	runCancel context.CancelFunc // cancels a running Run; under mu
	runDone   chan struct{}      // closed when Run returns; under mu
	closed    bool               // Close was called; under mu

	announced   map[netip.Addr][]netip.Addr // VIP → next hops as BGP has them; under mu
	withdrawnAt map[vipHop]time.Time        // last withdrawal per VIP and next hop; under mu

	dynEIPs    []EIPConfig // from eip_source; under mu
	eipsLoaded bool        // eip_source read at least once (or none configured); under mu
}

// Status is a snapshot for tests and operators.
type Status struct {
	Connected  bool                // stream up, primary, reconciled
	ElectionID uint64              // this instance's election ID
	Syncs      int                 // successful syncs since start
	Servers    map[string][]string // VIP name → server next hops in its table
	LastPlan   int                 // updates written by the last sync
}

// New checks cfg (Validate) and prepares a controller; Run starts it.
func New(cfg Config, opts ...Option) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("p4access: config: %w", err)
	}
	c := &Controller{
		cfg:     cfg,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		bgpKick: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		tables:  map[uint16]cachedTable{},
		routes:  map[netip.Addr][]netip.Addr{},
		neigh:   kernelNeighbor,
		macs:    map[netip.Addr][6]byte{},
	}
	for _, o := range opts {
		o(c)
	}
	if c.reg == nil {
		c.reg = prometheus.NewRegistry()
	}
	c.m = newMetrics(c.reg)
	info, err := p4.P4Info()
	if err != nil {
		return nil, err
	}
	c.info = info
	if cfg.Device.DeviceConfig != "" {
		if c.dcfg, err = os.ReadFile(cfg.Device.DeviceConfig); err != nil {
			return nil, fmt.Errorf("p4access: device_config: %w", err)
		}
	}
	return c, nil
}

// Close stops a running Run and waits for it to return.
func (c *Controller) Close() error {
	c.mu.Lock()
	cancel, done := c.runCancel, c.runDone
	c.closed = true
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Registry returns the metrics registry.
func (c *Controller) Registry() *prometheus.Registry { return c.reg }

// Status returns a snapshot of the controller's state.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Servers = map[string][]string{}
	for k, v := range c.status.Servers {
		s.Servers[k] = append([]string(nil), v...)
	}
	return s
}

// nextElectionID reads the last election ID from the file, adds one and
// writes it back (temp file and rename), so a restarted controller always
// outranks its previous life. Without a file the Unix time in seconds
// serves, which also grows across restarts.
func nextElectionID(path string) (uint64, error) {
	if path == "" {
		return uint64(time.Now().Unix()), nil
	}
	var last uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if last, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("election id file %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("election id file: %w", err)
	}
	next := last + 1
	if err := writeElectionID(path, next); err != nil {
		return 0, err
	}
	return next, nil
}

// writeElectionID stores id in the file (temp file and rename); no file,
// nothing stored.
func writeElectionID(path string, next uint64) error {
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".election-id-*")
	if err != nil {
		return fmt.Errorf("election id file: %w", err)
	}
	_, err = fmt.Fprintf(tmp, "%d\n", next)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("election id file: %w", err)
	}
	return nil
}

// Run starts the BGP speaker and keeps the device in step until ctx ends
// or Close is called.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	if c.runCancel != nil {
		c.mu.Unlock()
		return errors.New("p4access: Run called twice")
	}
	c.runCancel, c.runDone = cancel, done
	c.mu.Unlock()

	id, err := nextElectionID(c.cfg.Device.ElectionIDFile)
	if err != nil {
		return fmt.Errorf("p4access: %w", err)
	}
	c.mu.Lock()
	c.election = id
	c.status.ElectionID = id
	c.started = time.Now()
	c.eipsLoaded = c.cfg.EIPSource == ""
	c.mu.Unlock()
	if err := c.startBGP(ctx); err != nil {
		return err
	}
	defer c.bgp.Stop()
	c.log.Info("p4access running", "bgp", c.cfg.BGP.Listen, "device", c.cfg.Device.Address, "election_id", id)

	var wg sync.WaitGroup
	if c.cfg.EIPSource != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.guard("consul eips", func() { c.watchConsulEIPs(ctx) })
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.guard("bgp routes", func() { c.routeLoop(ctx) })
	}()
	go func() {
		defer wg.Done()
		c.guard("device", func() { c.deviceLoop(ctx) })
	}()
	if err := c.watchBGP(ctx); err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("p4access: bgp watch: %w", err)
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// guard runs f, logging a panic instead of crashing, and restarts it
// until it returns normally.
func (c *Controller) guard(name string, f func()) {
	for {
		ok := func() (ok bool) {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("panic, restarting", "loop", name, "panic", r)
				}
			}()
			f()
			return true
		}()
		if ok {
			return
		}
		time.Sleep(time.Second)
	}
}

// routeLoop re-reads the VIP routes after BGP events.
func (c *Controller) routeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.bgpKick:
		}
		raw, err := c.readRoutes(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("bgp: list paths, retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			select {
			case c.bgpKick <- struct{}{}:
			default:
			}
			continue
		}
		if c.setRoutes(raw, time.Now()) {
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
}

type vipHop struct{ vip, nh netip.Addr }

// setRoutes records the routes BGP holds and derives the ones the tables
// use: a next hop that withdrew a VIP less than flap_hold_down ago stays
// out of it (a re-read of the routes is scheduled for when it may
// return). It reports whether the routes in use changed.
func (c *Controller) setRoutes(raw map[netip.Addr][]netip.Addr, now time.Time) bool {
	hold := c.cfg.BGP.FlapHoldDown
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.withdrawnAt == nil {
		c.withdrawnAt = map[vipHop]time.Time{}
	}
	for vip, hops := range c.announced {
		for _, nh := range hops {
			if !slices.Contains(raw[vip], nh) {
				c.withdrawnAt[vipHop{vip, nh}] = now
			}
		}
	}
	c.announced = raw
	routes := map[netip.Addr][]netip.Addr{}
	var wake time.Duration
	for vip, hops := range raw {
		for _, nh := range hops {
			k := vipHop{vip, nh}
			if at, ok := c.withdrawnAt[k]; ok && hold > 0 {
				if left := at.Add(hold).Sub(now); left > 0 {
					if wake == 0 || left < wake {
						wake = left
					}
					continue
				}
				delete(c.withdrawnAt, k)
			}
			routes[vip] = append(routes[vip], nh)
		}
	}
	for k, at := range c.withdrawnAt {
		if hold <= 0 || now.Sub(at) >= hold {
			delete(c.withdrawnAt, k)
		}
	}
	if wake > 0 {
		time.AfterFunc(wake, func() {
			select {
			case c.bgpKick <- struct{}{}:
			default:
			}
		})
	}
	changed := !sameRoutes(c.routes, routes)
	c.routes = routes
	return changed
}

func sameRoutes(a, b map[netip.Addr][]netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y := b[k]
		if len(x) != len(y) {
			return false
		}
		seen := map[netip.Addr]int{}
		for _, v := range x {
			seen[v]++
		}
		for _, v := range y {
			seen[v]--
		}
		for _, n := range seen {
			if n != 0 {
				return false
			}
		}
	}
	return true
}

// deviceLoop connects to the device, reconciles, and syncs on every
// change; any failure drops the connection and retries with back-off.
func (c *Controller) deviceLoop(ctx context.Context) {
	backoff := c.cfg.Device.BackoffMin
	for ctx.Err() == nil {
		err := c.session(ctx, func() { backoff = c.cfg.Device.BackoffMin })
		c.m.connected.Set(0)
		c.m.primary.Set(0)
		c.mu.Lock()
		c.status.Connected = false
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("device session ended", "device", c.cfg.Device.Address, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.cfg.Device.BackoffMax)
	}
}

// session is one connection to the device: arbitration, pipeline,
// read-back, then syncs until an error.
func (c *Controller) session(ctx context.Context, healthy func()) error {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Device.Timeout)
	c.mu.Lock()
	id := c.election
	c.mu.Unlock()
	cl, err := client.Dial(dctx, c.cfg.Device.Address, c.cfg.Device.DeviceID, 0, id)
	cancel()
	if err != nil {
		return err
	}
	defer cl.Close()
	// A backup waits here until the device makes it primary.
	if err := c.waitPrimary(ctx, cl); err != nil {
		return err
	}
	c.m.primary.Set(1)

	rctx, cancel := context.WithTimeout(ctx, c.cfg.Device.Timeout)
	defer cancel()
	cookie := p4.Cookie(c.dcfg)
	have, ok, err := cl.Pipeline(rctx)
	if err != nil {
		return err
	}
	if !ok || have != cookie {
		c.log.Info("setting the forwarding pipeline", "had_pipeline", ok, "cookie", have, "want", cookie)
		// A device already running a pipeline (ours under another cookie:
		// a new device_config, or a cookie set by another tool) keeps its
		// tables with RECONCILE_AND_COMMIT, so traffic is not cut while
		// the read-back below repairs what differs. Where the device
		// cannot reconcile (another program, or no support), fall back to
		// VERIFY_AND_COMMIT, which clears the forwarding state.
		err := errors.New("no pipeline to reconcile")
		if ok {
			err = cl.SetPipelineAction(rctx, p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT, c.info, c.dcfg, cookie)
			if err != nil {
				c.log.Warn("the device cannot reconcile the pipeline: replacing it (forwarding state cleared)", "err", err)
			}
		}
		if err != nil {
			if err := cl.SetPipeline(rctx, c.info, c.dcfg, cookie); err != nil {
				return err
			}
		}
		c.m.pipelineSets.Inc()
	}
	installed, err := c.readBack(rctx, cl)
	if err != nil {
		return err
	}
	cancel()
	c.m.connected.Set(1)
	c.mu.Lock()
	c.status.Connected = true
	c.mu.Unlock()
	c.log.Info("device reconciled", "device", c.cfg.Device.Address, "eips", len(installed.eips), "vips", len(installed.maglev))

	if !c.converged {
		c.waitConverged(ctx)
		c.converged = true
		// Routes read before now may be stale.
		select {
		case c.bgpKick <- struct{}{}:
		default:
		}
		if routes, err := c.readRoutes(ctx); err == nil {
			c.setRoutes(routes, time.Now())
		}
	}
	resync := time.NewTicker(c.cfg.Device.Resync)
	defer resync.Stop()
	for {
		// A client demoted to backup (a controller with a higher election
		// ID arrived) must not write, and what it knows of the device is
		// stale from then on: another primary may rewrite it. End the
		// session; the next one waits as backup and reads back once
		// primary again.
		arb := cl.Changed()
		if !cl.Primary() {
			return errors.New("demoted to backup: another controller is primary")
		}
		if err := c.sync(ctx, cl, installed); err != nil {
			return err
		}
		healthy()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cl.Done():
			return fmt.Errorf("stream: %w", cl.Err())
		case <-arb:
		case <-c.kick:
		case <-resync.C:
		}
	}
}

// waitPrimary waits until the device names this client primary. A
// P4Runtime 1.4 device does not promote a backup when the primary leaves:
// it reports no primary (NOT_FOUND) with the highest election ID it has
// seen, and waits for a client to arbitrate with one at least as high.
// The backup then takes over with that ID plus one, stored in the
// election ID file so a restart still outranks it.
func (c *Controller) waitPrimary(ctx context.Context, cl *client.Client) error {
	for {
		ch := cl.Changed()
		if cl.Primary() {
			return nil
		}
		if none, h := cl.NoPrimary(); none && h != nil {
			c.mu.Lock()
			id := c.election
			c.mu.Unlock()
			if h.High == 0 && h.Low >= id && h.Low < ^uint64(0) {
				next := h.Low + 1
				if err := writeElectionID(c.cfg.Device.ElectionIDFile, next); err != nil {
					return err
				}
				c.mu.Lock()
				c.election = next
				c.status.ElectionID = next
				c.mu.Unlock()
				c.log.Info("the device has no primary: taking over", "highest_seen", h.Low, "election_id", next)
				if err := cl.Rearbitrate(0, next); err != nil {
					return err
				}
			}
		}
		select {
		case <-ch:
		case <-cl.Done():
			return cl.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readBack reads what the device holds.
func (c *Controller) readBack(ctx context.Context, cl *client.Client) (*state, error) {
	c.m.reconciles.Inc()
	eips, err := cl.ReadTable(ctx, p4.TableEIPToVIP)
	if err != nil {
		return nil, err
	}
	slots, err := cl.ReadTable(ctx, p4.TableMaglev)
	if err != nil {
		return nil, err
	}
	meters, err := cl.ReadMeters(ctx, p4.MeterSYN)
	if err != nil {
		return nil, err
	}
	return parseInstalled(eips, slots, meters), nil
}

// sync writes the difference between installed and desired, batch by
// batch, and updates installed. On a write error installed is unknown:
// the caller reconnects and reads back.
func (c *Controller) sync(ctx context.Context, cl *client.Client, installed *state) error {
	c.mu.Lock()
	routes, dyn, loaded := c.routes, c.dynEIPs, c.eipsLoaded
	c.mu.Unlock()
	desired, current, err := c.desiredState(routes, dyn)
	if err != nil {
		return err
	}
	if !loaded {
		// The Consul EIPs are not known yet: keep what the device has
		// rather than delete EIPs that may still be wanted.
		for k, v := range installed.eips {
			if _, ok := desired.eips[k]; !ok {
				desired.eips[k] = v
				if m, ok := installed.meters[int64(v.index)]; ok {
					desired.meters[int64(v.index)] = m
				}
			}
		}
	}
	p := diff(installed, desired)
	if p.updates() > 0 {
		c.log.Info("syncing device", "updates", p.updates(), "slots_changed", p.slotsChanged)
	}
	for _, phase := range p.phases {
		for len(phase) > 0 {
			n := min(len(phase), c.cfg.Device.BatchSize)
			wctx, cancel := context.WithTimeout(ctx, c.cfg.Device.Timeout)
			start := time.Now()
			err := cl.Write(wctx, phase[:n])
			cancel()
			c.m.writeLatency.Observe(time.Since(start).Seconds())
			if err != nil {
				c.m.writeErrors.Inc()
				return err
			}
			for _, u := range phase[:n] {
				ent := "table"
				switch {
				case u.Entity.GetMeterEntry() != nil:
					ent = "meter"
				case u.Entity.GetTableEntry().GetTableId() == p4.TableMaglev:
					ent = "maglev"
				case u.Entity.GetTableEntry().GetTableId() == p4.TableEIPToVIP:
					ent = "eip_to_vip"
				}
				c.m.updates.WithLabelValues(ent, strings.ToLower(u.Type.String())).Inc()
			}
			phase = phase[n:]
		}
	}
	installed.apply(desired)
	vipByID := map[uint16]string{}
	for _, v := range c.cfg.VIPs {
		vipByID[v.ID] = v.Name
	}
	for id, n := range p.slotsChanged {
		name, ok := vipByID[id]
		if !ok {
			name = "unknown" // stray entries of a VIP id not configured (deleted)
		}
		c.m.slotsChanged.WithLabelValues(name).Observe(float64(n))
	}
	withServers := 0
	for _, v := range c.cfg.VIPs {
		c.m.servers.WithLabelValues(v.Name).Set(float64(len(current[v.Name])))
		if len(current[v.Name]) > 0 {
			withServers++
		}
	}
	c.m.vips.Set(float64(withServers))
	c.mu.Lock()
	c.status.Syncs++
	c.status.Servers = current
	c.status.LastPlan = p.updates()
	c.mu.Unlock()
	return nil
}
