package sim

import (
	"context"
	"net"
	"slices"
	"sort"
	"sync"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// APIVersion is the P4Runtime version the simulator reports.
const APIVersion = "1.4.1"

// readBatch is the number of entities per ReadResponse.
const readBatch = 1000

// Service returns the P4Runtime gRPC service of s, to register on a
// grpc.Server.
func (s *Sim) Service() p4v1.P4RuntimeServer { return &service{s: s} }

// Serve serves P4Runtime on lis until Stop or a listener error.
func (s *Sim) Serve(lis net.Listener) error {
	g := grpc.NewServer()
	p4v1.RegisterP4RuntimeServer(g, s.Service())
	s.mu.Lock()
	s.servers = append(s.servers, g)
	s.mu.Unlock()
	return g.Serve(lis)
}

// Close is Stop.
func (s *Sim) Close() error {
	s.Stop()
	return nil
}

// Stop stops every server started by Serve, closing client streams.
func (s *Sim) Stop() {
	s.mu.Lock()
	gs := s.servers
	s.servers = nil
	s.mu.Unlock()
	for _, g := range gs {
		g.Stop()
	}
}

type service struct {
	p4v1.UnimplementedP4RuntimeServer
	s *Sim
}

func (v *service) Capabilities(context.Context, *p4v1.CapabilitiesRequest) (*p4v1.CapabilitiesResponse, error) {
	return &p4v1.CapabilitiesResponse{P4RuntimeApiVersion: APIVersion}, nil
}

// --- arbitration (P4Runtime spec 5: client arbitration) ---

type electionID struct{ hi, lo uint64 }

func (a electionID) less(b electionID) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

type streamClient struct {
	role  string
	id    electionID
	hasID bool
	out   chan *p4v1.StreamMessageResponse
}

type arbiter struct {
	mu      sync.Mutex
	clients map[*streamClient]bool
	strict  bool                  // see WithStrictArbitration
	highest map[string]electionID // highest election ID seen per role
}

func (a *arbiter) init() { a.clients = map[*streamClient]bool{}; a.highest = map[string]electionID{} }

// seen records an election ID a client of role arbitrated with.
func (a *arbiter) seen(role string, id electionID) {
	if h, ok := a.highest[role]; !ok || h.less(id) {
		a.highest[role] = id
	}
}

// primary returns the client of role with the highest election ID; in
// strict mode only if that ID is the highest the role has seen.
func (a *arbiter) primary(role string) *streamClient {
	var p *streamClient
	for c := range a.clients {
		if c.role == role && c.hasID && (p == nil || p.id.less(c.id)) {
			p = c
		}
	}
	if a.strict && p != nil && p.id.less(a.highest[role]) {
		return nil
	}
	return p
}

// notify tells every client of role who is primary; with a lock held.
func (a *arbiter) notify(role string, deviceID uint64) {
	p := a.primary(role)
	for c := range a.clients {
		if c.role != role {
			continue
		}
		u := &p4v1.MasterArbitrationUpdate{DeviceId: deviceID}
		if role != "" {
			u.Role = &p4v1.Role{Name: role}
		}
		switch {
		case p == nil:
			if h, ok := a.highest[role]; ok {
				u.ElectionId = &p4v1.Uint128{High: h.hi, Low: h.lo}
			}
			u.Status = &rpcstatus.Status{Code: int32(codes.NotFound), Message: "no primary"}
		case c == p:
			u.ElectionId = &p4v1.Uint128{High: p.id.hi, Low: p.id.lo}
			u.Status = &rpcstatus.Status{Code: int32(codes.OK), Message: "primary"}
		default:
			u.ElectionId = &p4v1.Uint128{High: p.id.hi, Low: p.id.lo}
			u.Status = &rpcstatus.Status{Code: int32(codes.AlreadyExists), Message: "backup: a client with a higher election id is primary"}
		}
		select {
		case c.out <- &p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Arbitration{Arbitration: u}}:
		default: // a client that does not read loses updates, not the switch
		}
	}
}

// checkPrimary verifies that a write comes from the role's primary.
func (s *Sim) checkPrimary(deviceID uint64, role string, id *p4v1.Uint128) error {
	if deviceID != s.deviceID {
		return status.Errorf(codes.NotFound, "device id %d: this device is %d", deviceID, s.deviceID)
	}
	s.arb.mu.Lock()
	defer s.arb.mu.Unlock()
	p := s.arb.primary(role)
	if p == nil {
		return status.Error(codes.PermissionDenied, "no primary client for this role: open a StreamChannel and send arbitration first")
	}
	if id == nil || id.High != p.id.hi || id.Low != p.id.lo {
		return status.Error(codes.PermissionDenied, "election id is not the primary's")
	}
	return nil
}

func (v *service) StreamChannel(st p4v1.P4Runtime_StreamChannelServer) error {
	s := v.s
	c := &streamClient{out: make(chan *p4v1.StreamMessageResponse, 16)}
	ctx := st.Context()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case m := <-c.out:
				if err := st.Send(m); err != nil {
					return
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	registered := false
	defer func() {
		if registered {
			s.arb.mu.Lock()
			delete(s.arb.clients, c)
			s.arb.notify(c.role, s.deviceID)
			s.arb.mu.Unlock()
		}
	}()
	for {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		switch u := req.Update.(type) {
		case *p4v1.StreamMessageRequest_Arbitration:
			a := u.Arbitration
			if a.DeviceId != s.deviceID {
				return status.Errorf(codes.NotFound, "device id %d: this device is %d", a.DeviceId, s.deviceID)
			}
			role := a.GetRole().GetName()
			if registered && role != c.role {
				return status.Error(codes.FailedPrecondition, "a stream cannot change its role")
			}
			s.arb.mu.Lock()
			if a.ElectionId != nil {
				id := electionID{a.ElectionId.High, a.ElectionId.Low}
				for o := range s.arb.clients {
					if o != c && o.role == role && o.hasID && o.id == id {
						s.arb.mu.Unlock()
						return status.Error(codes.InvalidArgument, "election id already used by another client of this role")
					}
				}
				c.id, c.hasID = id, true
				s.arb.seen(role, id)
			} else {
				c.hasID = false
			}
			c.role = role
			s.arb.clients[c] = true
			registered = true
			s.arb.notify(role, s.deviceID)
			s.arb.mu.Unlock()
		case *p4v1.StreamMessageRequest_Packet:
			c.out <- &p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
				CanonicalCode: int32(codes.Unimplemented), Message: "access.p4 has no packet-out header",
				Details: &p4v1.StreamError_PacketOut{PacketOut: &p4v1.PacketOutError{PacketOut: u.Packet}},
			}}}
		default:
			c.out <- &p4v1.StreamMessageResponse{Update: &p4v1.StreamMessageResponse_Error{Error: &p4v1.StreamError{
				CanonicalCode: int32(codes.Unimplemented), Message: "unsupported stream message",
			}}}
		}
	}
}

// --- pipeline ---

func (v *service) SetForwardingPipelineConfig(_ context.Context, req *p4v1.SetForwardingPipelineConfigRequest) (*p4v1.SetForwardingPipelineConfigResponse, error) {
	s := v.s
	if err := s.checkPrimary(req.DeviceId, req.Role, req.ElectionId); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Action {
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY:
		_, err := checkPipeline(req.Config)
		return &p4v1.SetForwardingPipelineConfigResponse{}, err
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_SAVE:
		if _, err := checkPipeline(req.Config); err != nil {
			return nil, err
		}
		s.saved = proto.Clone(req.Config).(*p4v1.ForwardingPipelineConfig)
	case p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT:
		pi, err := checkPipeline(req.Config)
		if err != nil {
			return nil, err
		}
		s.install(req.Config, pi, false)
		s.saved = nil
	case p4v1.SetForwardingPipelineConfigRequest_COMMIT:
		if s.saved == nil {
			return nil, status.Error(codes.FailedPrecondition, "no saved pipeline config to commit")
		}
		pi, _ := checkPipeline(s.saved)
		s.install(s.saved, pi, false)
		s.saved = nil
	case p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT:
		pi, err := checkPipeline(req.Config)
		if err != nil {
			return nil, err
		}
		// The simulator runs one program: state carries over when the
		// P4Info is unchanged, otherwise it cannot reconcile.
		if s.pipe != nil && !proto.Equal(s.pipe.P4Info, req.Config.P4Info) {
			return nil, status.Error(codes.Unimplemented, "sim: cannot reconcile a different p4info; use VERIFY_AND_COMMIT")
		}
		s.install(req.Config, pi, true)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "pipeline action %v", req.Action)
	}
	return &p4v1.SetForwardingPipelineConfigResponse{}, nil
}

func (v *service) GetForwardingPipelineConfig(_ context.Context, req *p4v1.GetForwardingPipelineConfigRequest) (*p4v1.GetForwardingPipelineConfigResponse, error) {
	s := v.s
	if req.DeviceId != s.deviceID {
		return nil, status.Errorf(codes.NotFound, "device id %d: this device is %d", req.DeviceId, s.deviceID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe == nil {
		return nil, status.Error(codes.FailedPrecondition, "no forwarding pipeline config set")
	}
	out := &p4v1.ForwardingPipelineConfig{Cookie: proto.Clone(s.pipe.GetCookie()).(*p4v1.ForwardingPipelineConfig_Cookie)}
	if s.pipe.Cookie == nil {
		out.Cookie = nil
	}
	switch req.ResponseType {
	case p4v1.GetForwardingPipelineConfigRequest_ALL:
		out.P4Info = s.pipe.P4Info
		out.P4DeviceConfig = s.pipe.P4DeviceConfig
	case p4v1.GetForwardingPipelineConfigRequest_P4INFO_AND_COOKIE:
		out.P4Info = s.pipe.P4Info
	case p4v1.GetForwardingPipelineConfigRequest_DEVICE_CONFIG_AND_COOKIE:
		out.P4DeviceConfig = s.pipe.P4DeviceConfig
	case p4v1.GetForwardingPipelineConfigRequest_COOKIE_ONLY:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "response type %v", req.ResponseType)
	}
	return &p4v1.GetForwardingPipelineConfigResponse{Config: proto.Clone(out).(*p4v1.ForwardingPipelineConfig)}, nil
}

// --- write ---

// change is one staged update.
type change struct {
	table  uint32
	key    string
	entry  *p4v1.TableEntry // nil: delete
	meter  *p4v1.MeterEntry
	ctr    *p4v1.CounterEntry
	update p4v1.Update_Type
}

func (v *service) Write(_ context.Context, req *p4v1.WriteRequest) (*p4v1.WriteResponse, error) {
	s := v.s
	if err := s.checkPrimary(req.DeviceId, req.Role, req.ElectionId); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe == nil {
		return nil, status.Error(codes.FailedPrecondition, "no forwarding pipeline config set")
	}
	s.stats.WriteRPCs++
	// Stage every update against the state plus the earlier updates of
	// the batch (overlay), so a batch may insert then modify an entry.
	overlay := map[uint32]map[string]*p4v1.TableEntry{} // nil value: deleted
	lookup := func(t uint32, k string) (*p4v1.TableEntry, bool) {
		if o, ok := overlay[t][k]; ok {
			return o, o != nil
		}
		e, ok := s.tables[t][k]
		return e, ok
	}
	size := func(t uint32) int {
		n := len(s.tables[t])
		for k, e := range overlay[t] {
			_, had := s.tables[t][k]
			switch {
			case e == nil && had:
				n--
			case e != nil && !had:
				n++
			}
		}
		return n
	}
	errs := make([]error, len(req.Updates))
	changes := make([]*change, len(req.Updates))
	failed := false
	for i, u := range req.Updates {
		ch, err := s.stage(u, lookup, size)
		if err != nil {
			errs[i] = err
			failed = true
			continue
		}
		changes[i] = ch
		if ch.meter == nil && ch.ctr == nil {
			if overlay[ch.table] == nil {
				overlay[ch.table] = map[string]*p4v1.TableEntry{}
			}
			overlay[ch.table][ch.key] = ch.entry
		}
	}
	if failed && req.Atomicity != p4v1.WriteRequest_CONTINUE_ON_ERROR {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = status.Error(codes.Aborted, "batch rolled back")
			}
		}
		changes = nil
	}
	now := s.now()
	for _, ch := range changes {
		if ch == nil {
			continue
		}
		switch {
		case ch.meter != nil:
			m := s.meters[ch.meter.MeterId]
			var cfg *p4v1.MeterConfig
			if ch.meter.Config != nil {
				cfg = proto.Clone(ch.meter.Config).(*p4v1.MeterConfig)
			}
			m[ch.meter.Index.Index].configure(cfg, now)
			s.stats.MeterUpdates++
		case ch.ctr != nil:
			c := s.counters[ch.ctr.CounterId]
			d := ch.ctr.Data
			c[ch.ctr.Index.Index] = cell{packets: d.GetPacketCount(), bytes: d.GetByteCount()}
		case ch.entry == nil:
			delete(s.tables[ch.table], ch.key)
			s.stats.TableUpdates[ch.table]++
		default:
			s.tables[ch.table][ch.key] = ch.entry
			s.stats.TableUpdates[ch.table]++
		}
	}
	if !failed {
		return &p4v1.WriteResponse{}, nil
	}
	// P4Runtime spec 12.3: UNKNOWN with one p4.v1.Error per update.
	st := &rpcstatus.Status{Code: int32(codes.Unknown), Message: "write failed"}
	for _, err := range errs {
		pe := &p4v1.Error{CanonicalCode: int32(codes.OK)}
		if err != nil {
			s.stats.FailedUpdates++
			gs, _ := status.FromError(err)
			pe.CanonicalCode = int32(gs.Code())
			pe.Message = gs.Message()
			st.Message = "write failed: " + gs.Message()
		}
		a, _ := anypb.New(pe)
		st.Details = append(st.Details, a)
	}
	return nil, status.FromProto(st).Err()
}

func (s *Sim) stage(u *p4v1.Update, lookup func(uint32, string) (*p4v1.TableEntry, bool), size func(uint32) int) (*change, error) {
	if u.GetEntity() == nil {
		return nil, status.Error(codes.InvalidArgument, "update without an entity")
	}
	switch e := u.Entity.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		ce, err := s.info.canonicalEntry(e.TableEntry, u.Type != p4v1.Update_DELETE)
		if err != nil {
			return nil, err
		}
		k := key(ce.Match)
		_, exists := lookup(ce.TableId, k)
		ch := &change{table: ce.TableId, key: k, entry: ce, update: u.Type}
		switch u.Type {
		case p4v1.Update_INSERT:
			if exists {
				return nil, status.Error(codes.AlreadyExists, "entry exists")
			}
			if size(ce.TableId) >= int(s.info.tables[ce.TableId].Size) {
				return nil, status.Errorf(codes.ResourceExhausted, "table %s is full (%d entries)", s.info.tables[ce.TableId].Preamble.Name, s.info.tables[ce.TableId].Size)
			}
		case p4v1.Update_MODIFY:
			if !exists {
				return nil, status.Error(codes.NotFound, "no such entry to modify")
			}
		case p4v1.Update_DELETE:
			if !exists {
				return nil, status.Error(codes.NotFound, "no such entry to delete")
			}
			ch.entry = nil
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update type %v", u.Type)
		}
		return ch, nil
	case *p4v1.Entity_MeterEntry:
		me := e.MeterEntry
		if u.Type != p4v1.Update_MODIFY {
			return nil, status.Error(codes.InvalidArgument, "meter entries only take MODIFY")
		}
		m, ok := s.info.meters[me.MeterId]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "meter id %#x not in the pipeline", me.MeterId)
		}
		if me.Index == nil {
			return nil, status.Error(codes.Unimplemented, "sim: writing all meter cells at once")
		}
		if me.Index.Index < 0 || me.Index.Index >= m.Size {
			return nil, status.Errorf(codes.OutOfRange, "meter %s: index %d not below %d", m.Preamble.Name, me.Index.Index, m.Size)
		}
		if c := me.Config; c != nil && (c.Cir < 0 || c.Pir < 0 || c.Cburst < 0 || c.Pburst < 0 || c.Cir > c.Pir) {
			return nil, status.Errorf(codes.InvalidArgument, "meter %s: bad config (need 0 <= cir <= pir)", m.Preamble.Name)
		}
		return &change{meter: me}, nil
	case *p4v1.Entity_CounterEntry:
		ce := e.CounterEntry
		if u.Type != p4v1.Update_MODIFY {
			return nil, status.Error(codes.InvalidArgument, "counter entries only take MODIFY")
		}
		c, ok := s.info.counters[ce.CounterId]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "counter id %#x not in the pipeline", ce.CounterId)
		}
		if ce.Index == nil || ce.Index.Index < 0 || ce.Index.Index >= c.Size {
			return nil, status.Errorf(codes.OutOfRange, "counter %s: index out of range", c.Preamble.Name)
		}
		return &change{ctr: ce}, nil
	default:
		return nil, status.Errorf(codes.Unimplemented, "sim: entity %T", e)
	}
}

// --- read ---

func (v *service) Read(req *p4v1.ReadRequest, st p4v1.P4Runtime_ReadServer) error {
	s := v.s
	if req.DeviceId != s.deviceID {
		return status.Errorf(codes.NotFound, "device id %d: this device is %d", req.DeviceId, s.deviceID)
	}
	s.mu.Lock()
	if s.pipe == nil {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "no forwarding pipeline config set")
	}
	s.stats.ReadRPCs++
	var out []*p4v1.Entity
	var err error
	for _, e := range req.Entities {
		if out, err = s.read(e, out); err != nil {
			break
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	for len(out) > 0 {
		n := min(len(out), readBatch)
		if err := st.Send(&p4v1.ReadResponse{Entities: out[:n]}); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

func (s *Sim) read(e *p4v1.Entity, out []*p4v1.Entity) ([]*p4v1.Entity, error) {
	switch x := e.Entity.(type) {
	case *p4v1.Entity_TableEntry:
		te := x.TableEntry
		var ids []uint32
		if te.TableId == 0 {
			for id := range s.tables {
				ids = append(ids, id)
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		} else {
			if _, ok := s.info.tables[te.TableId]; !ok {
				return nil, status.Errorf(codes.NotFound, "table id %#x not in the pipeline", te.TableId)
			}
			ids = []uint32{te.TableId}
		}
		if te.TableId != 0 && len(te.Match) > 0 {
			ce, err := s.info.canonicalEntry(&p4v1.TableEntry{TableId: te.TableId, Match: te.Match}, false)
			if err != nil {
				return nil, err
			}
			if got, ok := s.tables[te.TableId][key(ce.Match)]; ok {
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: proto.Clone(got).(*p4v1.TableEntry)}})
			}
			return out, nil
		}
		for _, id := range ids {
			keys := make([]string, 0, len(s.tables[id]))
			for k := range s.tables[id] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: proto.Clone(s.tables[id][k]).(*p4v1.TableEntry)}})
			}
		}
	case *p4v1.Entity_MeterEntry:
		me := x.MeterEntry
		ids := sortedIDs(s.meters)
		if me.MeterId != 0 {
			if _, ok := s.info.meters[me.MeterId]; !ok {
				return nil, status.Errorf(codes.NotFound, "meter id %#x not in the pipeline", me.MeterId)
			}
			ids = []uint32{me.MeterId}
		}
		for _, id := range ids {
			cells := s.meters[id]
			lo, hi, err := cellRange("meter", me.Index, len(cells))
			if err != nil {
				return nil, err
			}
			for i := lo; i < hi; i++ {
				r := &p4v1.MeterEntry{MeterId: id, Index: &p4v1.Index{Index: i}}
				if c := cells[i].cfg; c != nil {
					r.Config = proto.Clone(c).(*p4v1.MeterConfig)
				}
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: r}})
			}
		}
	case *p4v1.Entity_CounterEntry:
		ce := x.CounterEntry
		ids := sortedIDs(s.counters)
		if ce.CounterId != 0 {
			if _, ok := s.info.counters[ce.CounterId]; !ok {
				return nil, status.Errorf(codes.NotFound, "counter id %#x not in the pipeline", ce.CounterId)
			}
			ids = []uint32{ce.CounterId}
		}
		for _, id := range ids {
			cells := s.counters[id]
			lo, hi, err := cellRange("counter", ce.Index, len(cells))
			if err != nil {
				return nil, err
			}
			for i := lo; i < hi; i++ {
				d := cells[i]
				out = append(out, &p4v1.Entity{Entity: &p4v1.Entity_CounterEntry{CounterEntry: &p4v1.CounterEntry{
					CounterId: id, Index: &p4v1.Index{Index: i},
					Data: &p4v1.CounterData{PacketCount: d.packets, ByteCount: d.bytes},
				}}})
			}
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "sim: reading %T", x)
	}
	return out, nil
}

// sortedIDs returns the ids of a meter or counter map in order, so wildcard
// reads answer the same way every time.
func sortedIDs[V any](m map[uint32]V) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// cellRange is the cells a meter or counter read asks for: all n, or the
// one idx names.
func cellRange(kind string, idx *p4v1.Index, n int) (lo, hi int64, err error) {
	if idx == nil {
		return 0, int64(n), nil
	}
	if idx.Index < 0 || idx.Index >= int64(n) {
		return 0, 0, status.Errorf(codes.OutOfRange, "%s index %d", kind, idx.Index)
	}
	return idx.Index, idx.Index + 1, nil
}
