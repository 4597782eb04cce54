// Package sim is a software simulator of access.p4: a P4Runtime server
// (pipeline config, arbitration, table, meter and counter writes and reads
// in canonical form, P4Runtime error codes) and a packet path that
// forwards by the program's logic. It stands in for bmv2 and hardware in
// tests and in the lab; it is not a general P4 target.
package sim

import (
	"bytes"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/v6pod/v6pod/p4"
)

// Option configures a Sim.
type Option func(*Sim)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Sim) { s.log = l } }

// WithClock sets the clock the meters run on (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Sim) { s.now = now } }

// WithStrictArbitration makes arbitration follow P4Runtime 1.4 to the
// letter where the default is lenient: when the primary leaves, no backup
// is promoted; the role has no primary (backups are told NOT_FOUND with
// the highest election ID seen) until a client arbitrates with an
// election ID at least that high.
func WithStrictArbitration() Option { return func(s *Sim) { s.arb.strict = true } }

// WithDeviceID sets the P4Runtime device ID (default 1).
func WithDeviceID(id uint64) Option { return func(s *Sim) { s.deviceID = id } }

// Sim is one simulated switch running access.p4.
type Sim struct {
	log      *slog.Logger
	now      func() time.Time
	deviceID uint64

	mu       sync.Mutex
	pipe     *p4v1.ForwardingPipelineConfig // committed; nil before the first
	saved    *p4v1.ForwardingPipelineConfig // VERIFY_AND_SAVE, awaiting COMMIT
	info     *pipeInfo
	tables   map[uint32]map[string]*p4v1.TableEntry
	meters   map[uint32][]meterState
	counters map[uint32][]cell
	stats    Stats

	arb     arbiter
	servers []*grpc.Server
}

// Stats counts what controllers did to the device.
type Stats struct {
	WriteRPCs     int
	TableUpdates  map[uint32]int // successful updates per table ID
	MeterUpdates  int
	PipelineSets  int // committed SetForwardingPipelineConfig calls
	ReadRPCs      int
	FailedUpdates int
}

// New returns a simulator with no pipeline.
func New(opts ...Option) *Sim {
	s := &Sim{
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:      time.Now,
		deviceID: 1,
	}
	for _, o := range opts {
		o(s)
	}
	s.stats.TableUpdates = map[uint32]int{}
	s.arb.init()
	return s
}

// DeviceID returns the P4Runtime device ID.
func (s *Sim) DeviceID() uint64 { return s.deviceID }

// Stats returns a copy of the counts so far.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.TableUpdates = map[uint32]int{}
	for k, v := range s.stats.TableUpdates {
		st.TableUpdates[k] = v
	}
	return st
}

// ResetStats zeroes the counts.
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{TableUpdates: map[uint32]int{}}
}

// pipeInfo indexes a P4Info.
type pipeInfo struct {
	tables   map[uint32]*p4configv1.Table
	actions  map[uint32]*p4configv1.Action
	counters map[uint32]*p4configv1.Counter
	meters   map[uint32]*p4configv1.Meter
}

// checkPipeline accepts access.p4's P4Info only: every table, action,
// counter and meter the simulator implements must be there under its ID.
func checkPipeline(cfg *p4v1.ForwardingPipelineConfig) (*pipeInfo, error) {
	if cfg == nil || cfg.P4Info == nil {
		return nil, status.Error(codes.InvalidArgument, "sim: pipeline config without p4info")
	}
	pi := &pipeInfo{
		tables:   map[uint32]*p4configv1.Table{},
		actions:  map[uint32]*p4configv1.Action{},
		counters: map[uint32]*p4configv1.Counter{},
		meters:   map[uint32]*p4configv1.Meter{},
	}
	names := map[uint32]string{}
	for _, t := range cfg.P4Info.Tables {
		pi.tables[t.GetPreamble().GetId()] = t
		names[t.GetPreamble().GetId()] = t.GetPreamble().GetName()
	}
	for _, a := range cfg.P4Info.Actions {
		pi.actions[a.GetPreamble().GetId()] = a
		names[a.GetPreamble().GetId()] = a.GetPreamble().GetName()
	}
	for _, c := range cfg.P4Info.Counters {
		pi.counters[c.GetPreamble().GetId()] = c
		names[c.GetPreamble().GetId()] = c.GetPreamble().GetName()
	}
	for _, m := range cfg.P4Info.Meters {
		pi.meters[m.GetPreamble().GetId()] = m
		names[m.GetPreamble().GetId()] = m.GetPreamble().GetName()
	}
	for name, id := range p4.Names {
		if bytes.IndexByte([]byte(name), '/') >= 0 {
			continue
		}
		if names[id] != name {
			return nil, status.Errorf(codes.InvalidArgument, "sim: simulates access.p4 only; p4info lacks %s (id %#x)", name, id)
		}
	}
	return pi, nil
}

// install makes cfg the running pipeline. keep keeps the forwarding state
// (RECONCILE_AND_COMMIT of the same P4Info).
func (s *Sim) install(cfg *p4v1.ForwardingPipelineConfig, pi *pipeInfo, keep bool) {
	s.pipe = proto.Clone(cfg).(*p4v1.ForwardingPipelineConfig)
	s.info = pi
	s.stats.PipelineSets++
	if keep && s.tables != nil {
		return
	}
	s.tables = map[uint32]map[string]*p4v1.TableEntry{}
	for id := range pi.tables {
		s.tables[id] = map[string]*p4v1.TableEntry{}
	}
	s.meters = map[uint32][]meterState{}
	for id, m := range pi.meters {
		s.meters[id] = make([]meterState, m.GetSize())
	}
	s.counters = map[uint32][]cell{}
	for id, c := range pi.counters {
		s.counters[id] = make([]cell, c.GetSize())
	}
}

// cell is one counter cell.
type cell struct{ packets, bytes int64 }

// key is the identity of a table entry: its match fields by ID, canonical.
func key(match []*p4v1.FieldMatch) string {
	var b []byte
	for _, m := range match {
		v := m.GetExact().GetValue()
		b = append(b, byte(m.FieldId>>8), byte(m.FieldId), byte(len(v)))
		b = append(b, v...)
	}
	return string(b)
}

// canonicalEntry validates a table entry against the P4Info and returns a
// canonical copy (match fields sorted by ID, values shortest-form). For a
// DELETE the action may be absent.
func (pi *pipeInfo) canonicalEntry(e *p4v1.TableEntry, needAction bool) (*p4v1.TableEntry, error) {
	t, ok := pi.tables[e.TableId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "table id %#x not in the pipeline", e.TableId)
	}
	if e.IsDefaultAction {
		if t.ConstDefaultActionId != 0 {
			return nil, status.Errorf(codes.PermissionDenied, "table %s has a const default action", t.Preamble.Name)
		}
		return nil, status.Error(codes.Unimplemented, "sim: default entries are not supported")
	}
	if e.Priority != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "table %s: priority %d on an exact-match table", t.Preamble.Name, e.Priority)
	}
	if e.IdleTimeoutNs != 0 || e.MeterConfig != nil || e.CounterData != nil || e.MeterCounterData != nil {
		return nil, status.Errorf(codes.InvalidArgument, "table %s has no direct resources or idle timeout", t.Preamble.Name)
	}
	out := &p4v1.TableEntry{TableId: e.TableId, ControllerMetadata: e.ControllerMetadata, Metadata: slices.Clone(e.Metadata)}
	seen := map[uint32]bool{}
	for _, m := range e.Match {
		var mf *p4configv1.MatchField
		for _, f := range t.MatchFields {
			if f.Id == m.FieldId {
				mf = f
			}
		}
		if mf == nil {
			return nil, status.Errorf(codes.InvalidArgument, "table %s: no match field id %d", t.Preamble.Name, m.FieldId)
		}
		if seen[m.FieldId] {
			return nil, status.Errorf(codes.InvalidArgument, "table %s: match field %s twice", t.Preamble.Name, mf.Name)
		}
		seen[m.FieldId] = true
		ex := m.GetExact()
		if ex == nil {
			return nil, status.Errorf(codes.InvalidArgument, "table %s: match field %s is exact", t.Preamble.Name, mf.Name)
		}
		if !p4.FitsBits(ex.Value, mf.Bitwidth) {
			return nil, status.Errorf(codes.OutOfRange, "table %s: match field %s: value %x wider than %d bits", t.Preamble.Name, mf.Name, ex.Value, mf.Bitwidth)
		}
		out.Match = append(out.Match, &p4v1.FieldMatch{FieldId: m.FieldId, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: slices.Clone(p4.Canonical(ex.Value))}}})
	}
	if len(seen) != len(t.MatchFields) {
		return nil, status.Errorf(codes.InvalidArgument, "table %s: exact match fields cannot be omitted", t.Preamble.Name)
	}
	sort.Slice(out.Match, func(i, j int) bool { return out.Match[i].FieldId < out.Match[j].FieldId })

	if e.Action == nil {
		if needAction {
			return nil, status.Errorf(codes.InvalidArgument, "table %s: entry without an action", t.Preamble.Name)
		}
		return out, nil
	}
	act := e.Action.GetAction()
	if act == nil {
		return nil, status.Errorf(codes.InvalidArgument, "table %s: only direct actions", t.Preamble.Name)
	}
	allowed := false
	for _, r := range t.ActionRefs {
		if r.Id == act.ActionId && r.Scope != p4configv1.ActionRef_DEFAULT_ONLY {
			allowed = true
		}
	}
	a, ok := pi.actions[act.ActionId]
	if !ok || !allowed {
		return nil, status.Errorf(codes.InvalidArgument, "table %s: action id %#x not allowed", t.Preamble.Name, act.ActionId)
	}
	oa := &p4v1.Action{ActionId: act.ActionId}
	pseen := map[uint32]bool{}
	for _, p := range act.Params {
		var pd *p4configv1.Action_Param
		for _, x := range a.Params {
			if x.Id == p.ParamId {
				pd = x
			}
		}
		if pd == nil {
			return nil, status.Errorf(codes.InvalidArgument, "action %s: no param id %d", a.Preamble.Name, p.ParamId)
		}
		if pseen[p.ParamId] {
			return nil, status.Errorf(codes.InvalidArgument, "action %s: param %s twice", a.Preamble.Name, pd.Name)
		}
		pseen[p.ParamId] = true
		if !p4.FitsBits(p.Value, pd.Bitwidth) {
			return nil, status.Errorf(codes.OutOfRange, "action %s: param %s: value %x wider than %d bits", a.Preamble.Name, pd.Name, p.Value, pd.Bitwidth)
		}
		oa.Params = append(oa.Params, &p4v1.Action_Param{ParamId: p.ParamId, Value: slices.Clone(p4.Canonical(p.Value))})
	}
	if len(pseen) != len(a.Params) {
		return nil, status.Errorf(codes.InvalidArgument, "action %s: %d params, want %d", a.Preamble.Name, len(pseen), len(a.Params))
	}
	sort.Slice(oa.Params, func(i, j int) bool { return oa.Params[i].ParamId < oa.Params[j].ParamId })
	out.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: oa}}
	return out, nil
}

// Entries returns a canonical copy of a table's entries, sorted by key.
func (s *Sim) Entries(tableID uint32) []*p4v1.TableEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.tables[tableID] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*p4v1.TableEntry, 0, len(keys))
	for _, k := range keys {
		out = append(out, proto.Clone(s.tables[tableID][k]).(*p4v1.TableEntry))
	}
	return out
}

// Server is one row of a VIP's maglev table in the simulator.
type Server struct {
	MAC  [6]byte
	Port uint32
}

// MaglevTable returns the maglev entries of one VIP by slot.
func (s *Sim) MaglevTable(vip uint16) map[uint32]Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint32]Server{}
	for _, e := range s.tables[p4.TableMaglev] {
		v, _ := p4.ToUint(e.Match[0].GetExact().Value)
		if uint16(v) != vip {
			continue
		}
		slot, _ := p4.ToUint(e.Match[1].GetExact().Value)
		out[uint32(slot)] = serverOf(e)
	}
	return out
}

func serverOf(e *p4v1.TableEntry) Server {
	var sv Server
	for _, p := range e.GetAction().GetAction().GetParams() {
		switch p.ParamId {
		case p4.ParamDMAC:
			m := p.Value
			copy(sv.MAC[6-len(m):], m)
		case p4.ParamPort:
			v, _ := p4.ToUint(p.Value)
			sv.Port = uint32(v)
		}
	}
	return sv
}

// Counter returns one cell of an indexed counter.
func (s *Sim) Counter(id uint32, index int) (packets, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters[id]
	if index < 0 || index >= len(c) {
		return 0, 0
	}
	return c[index].packets, c[index].bytes
}

// MeterConfig returns the configuration of one meter cell (nil: default,
// everything green).
func (s *Sim) MeterConfig(id uint32, index int) *p4v1.MeterConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meters[id]
	if index < 0 || index >= len(m) || m[index].cfg == nil {
		return nil
	}
	return proto.Clone(m[index].cfg).(*p4v1.MeterConfig)
}

// Running reports whether a pipeline is committed, and its cookie.
func (s *Sim) Running() (bool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe == nil {
		return false, 0
	}
	return true, s.pipe.GetCookie().GetCookie()
}
