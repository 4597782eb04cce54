package controller

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/v6pod/v6pod/internal/maglev"
	"github.com/v6pod/v6pod/p4"
)

var protoUnmarshalOptions = proto.UnmarshalOptions{}

// target is what a maglev slot points at: a NAT64 server's MAC and port.
type target struct {
	mac  [6]byte
	port uint32
}

// eipVal is an eip_to_vip entry's action.
type eipVal struct {
	vip   uint16
	size  uint32
	index uint16
}

type meterVal struct{ cir, cburst, pir, pburst int64 }

// state is the forwarding state, desired or installed on the device, in
// comparable form (canonical values decoded).
type state struct {
	eips   map[netip.Addr]eipVal // key: <prefix>::<EIP>
	maglev map[uint16]map[uint32]target
	meters map[int64]meterVal // configured cells only
	// junk holds installed entries the controller cannot parse (another
	// action, or bad values): deleted on sync.
	junk []*p4v1.TableEntry
}

func newState() *state {
	return &state{eips: map[netip.Addr]eipVal{}, maglev: map[uint16]map[uint32]target{}, meters: map[int64]meterVal{}}
}

// parseInstalled builds the installed state from what the device returned.
func parseInstalled(eips, slots []*p4v1.TableEntry, meters []*p4v1.MeterEntry) *state {
	st := newState()
	for _, e := range eips {
		k, v, ok := decodeEIP(e)
		if !ok {
			st.junk = append(st.junk, e)
			continue
		}
		st.eips[k] = v
	}
	for _, e := range slots {
		vip, slot, sv, ok := decodeSlot(e)
		if !ok {
			st.junk = append(st.junk, e)
			continue
		}
		if st.maglev[vip] == nil {
			st.maglev[vip] = map[uint32]target{}
		}
		st.maglev[vip][slot] = sv
	}
	for _, m := range meters {
		// Targets differ in how they return a cell nobody configured: no
		// config (p4/sim), or an all-zero one. Both mean unconfigured, or
		// every reconnect would "reset" thousands of untouched cells. The
		// controller never writes an all-zero config (rates default).
		if c := m.GetConfig(); c != nil && c.Cir|c.Cburst|c.Pir|c.Pburst != 0 {
			st.meters[m.GetIndex().GetIndex()] = meterVal{c.Cir, c.Cburst, c.Pir, c.Pburst}
		}
	}
	return st
}

func exactValue(e *p4v1.TableEntry, id uint32) ([]byte, bool) {
	for _, m := range e.Match {
		if m.FieldId == id && m.GetExact() != nil {
			return m.GetExact().Value, true
		}
	}
	return nil, false
}

func param(a *p4v1.Action, id uint32) (uint64, []byte, bool) {
	for _, p := range a.GetParams() {
		if p.ParamId == id {
			v, err := p4.ToUint(p.Value)
			return v, p.Value, err == nil || id == p4.ParamDMAC
		}
	}
	return 0, nil, false
}

func decodeEIP(e *p4v1.TableEntry) (netip.Addr, eipVal, bool) {
	dst, ok := exactValue(e, p4.FieldEIPDst)
	a := e.GetAction().GetAction()
	if !ok || len(dst) > 16 || a.GetActionId() != p4.ActionSetVIP {
		return netip.Addr{}, eipVal{}, false
	}
	var b [16]byte
	copy(b[16-len(dst):], dst)
	vip, _, ok1 := param(a, p4.ParamVIPID)
	size, _, ok2 := param(a, p4.ParamTableSize)
	idx, _, ok3 := param(a, p4.ParamEIPIndex)
	if !ok1 || !ok2 || !ok3 {
		return netip.Addr{}, eipVal{}, false
	}
	return netip.AddrFrom16(b), eipVal{uint16(vip), uint32(size), uint16(idx)}, true
}

func decodeSlot(e *p4v1.TableEntry) (uint16, uint32, target, bool) {
	vb, ok1 := exactValue(e, p4.FieldMaglevVIP)
	sb, ok2 := exactValue(e, p4.FieldMaglevSlot)
	a := e.GetAction().GetAction()
	if !ok1 || !ok2 || a.GetActionId() != p4.ActionToServer {
		return 0, 0, target{}, false
	}
	vip, err1 := p4.ToUint(vb)
	slot, err2 := p4.ToUint(sb)
	_, mac, ok3 := param(a, p4.ParamDMAC)
	port, _, ok4 := param(a, p4.ParamPort)
	if err1 != nil || err2 != nil || !ok3 || !ok4 || len(mac) > 6 {
		return 0, 0, target{}, false
	}
	var sv target
	copy(sv.mac[6-len(mac):], mac)
	sv.port = uint32(port)
	return uint16(vip), uint32(slot), sv, true
}

// Entry builders (values in canonical form).

func exactMatch(id uint32, v []byte) *p4v1.FieldMatch {
	return &p4v1.FieldMatch{FieldId: id, FieldMatchType: &p4v1.FieldMatch_Exact_{Exact: &p4v1.FieldMatch_Exact{Value: v}}}
}

func eipEntry(dst netip.Addr, v *eipVal) *p4v1.TableEntry {
	e := &p4v1.TableEntry{TableId: p4.TableEIPToVIP, Match: []*p4v1.FieldMatch{exactMatch(p4.FieldEIPDst, p4.Addr(dst))}}
	if v != nil {
		e.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{
			ActionId: p4.ActionSetVIP,
			Params: []*p4v1.Action_Param{
				{ParamId: p4.ParamVIPID, Value: p4.Uint(uint64(v.vip))},
				{ParamId: p4.ParamTableSize, Value: p4.Uint(uint64(v.size))},
				{ParamId: p4.ParamEIPIndex, Value: p4.Uint(uint64(v.index))},
			},
		}}}
	}
	return e
}

func slotEntry(vip uint16, slot uint32, sv *target) *p4v1.TableEntry {
	e := &p4v1.TableEntry{TableId: p4.TableMaglev, Match: []*p4v1.FieldMatch{
		exactMatch(p4.FieldMaglevVIP, p4.Uint(uint64(vip))),
		exactMatch(p4.FieldMaglevSlot, p4.Uint(uint64(slot))),
	}}
	if sv != nil {
		e.Action = &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{
			ActionId: p4.ActionToServer,
			Params: []*p4v1.Action_Param{
				{ParamId: p4.ParamDMAC, Value: p4.MAC(sv.mac)},
				{ParamId: p4.ParamPort, Value: p4.Uint(uint64(sv.port))},
			},
		}}}
	}
	return e
}

func tableUpdate(t p4v1.Update_Type, e *p4v1.TableEntry) *p4v1.Update {
	return &p4v1.Update{Type: t, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: e}}}
}

func meterUpdate(index int64, m *meterVal) *p4v1.Update {
	me := &p4v1.MeterEntry{MeterId: p4.MeterSYN, Index: &p4v1.Index{Index: index}}
	if m != nil {
		me.Config = &p4v1.MeterConfig{Cir: m.cir, Cburst: m.cburst, Pir: m.pir, Pburst: m.pburst}
	}
	return &p4v1.Update{Type: p4v1.Update_MODIFY, Entity: &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: me}}}
}

// plan is the ordered list of writes that turns installed into desired.
type plan struct {
	// Phases, written in order so that no packet meets a half-built VIP:
	// EIP deletes, meters, slot inserts and modifies, EIP inserts and
	// modifies, slot deletes and junk.
	phases       [5][]*p4v1.Update
	slotsChanged map[uint16]int // per VIP id
}

func (p *plan) updates() int {
	n := 0
	for _, ph := range p.phases {
		n += len(ph)
	}
	return n
}

// diff plans the writes from installed to desired. Only entries whose
// canonical content differs are written.
func diff(installed, desired *state) *plan {
	p := &plan{slotsChanged: map[uint16]int{}}
	for _, k := range sortedAddrs(installed.eips) {
		if _, ok := desired.eips[k]; !ok {
			p.phases[0] = append(p.phases[0], tableUpdate(p4v1.Update_DELETE, eipEntry(k, nil)))
		}
	}
	for _, idx := range sortedKeys(desired.meters) {
		m := desired.meters[idx]
		if old, ok := installed.meters[idx]; !ok || old != m {
			p.phases[1] = append(p.phases[1], meterUpdate(idx, &m))
		}
	}
	for _, idx := range sortedKeys(installed.meters) {
		if _, ok := desired.meters[idx]; !ok {
			p.phases[1] = append(p.phases[1], meterUpdate(idx, nil))
		}
	}
	for _, vip := range sortedKeys(desired.maglev) {
		want, have := desired.maglev[vip], installed.maglev[vip]
		for _, slot := range sortedKeys(want) {
			sv := want[slot]
			old, ok := have[slot]
			switch {
			case !ok:
				p.phases[2] = append(p.phases[2], tableUpdate(p4v1.Update_INSERT, slotEntry(vip, slot, &sv)))
			case old != sv:
				p.phases[2] = append(p.phases[2], tableUpdate(p4v1.Update_MODIFY, slotEntry(vip, slot, &sv)))
			default:
				continue
			}
			p.slotsChanged[vip]++
		}
	}
	for _, k := range sortedAddrs(desired.eips) {
		v := desired.eips[k]
		old, ok := installed.eips[k]
		switch {
		case !ok:
			p.phases[3] = append(p.phases[3], tableUpdate(p4v1.Update_INSERT, eipEntry(k, &v)))
		case old != v:
			p.phases[3] = append(p.phases[3], tableUpdate(p4v1.Update_MODIFY, eipEntry(k, &v)))
		}
	}
	for _, vip := range sortedKeys(installed.maglev) {
		want := desired.maglev[vip]
		for _, slot := range sortedKeys(installed.maglev[vip]) {
			if _, ok := want[slot]; !ok {
				p.phases[4] = append(p.phases[4], tableUpdate(p4v1.Update_DELETE, slotEntry(vip, slot, nil)))
				p.slotsChanged[vip]++
			}
		}
	}
	for _, e := range installed.junk {
		p.phases[4] = append(p.phases[4], tableUpdate(p4v1.Update_DELETE, &p4v1.TableEntry{TableId: e.TableId, Match: e.Match}))
	}
	return p
}

// apply records a successful plan in installed.
func (st *state) apply(desired *state) {
	st.eips = map[netip.Addr]eipVal{}
	for k, v := range desired.eips {
		st.eips[k] = v
	}
	st.meters = map[int64]meterVal{}
	for k, v := range desired.meters {
		st.meters[k] = v
	}
	st.maglev = map[uint16]map[uint32]target{}
	for vip, slots := range desired.maglev {
		m := make(map[uint32]target, len(slots))
		for k, v := range slots {
			m[k] = v
		}
		st.maglev[vip] = m
	}
	st.junk = nil
}

// desiredState computes the forwarding state from the configuration and
// each VIP's current next hops. tables caches Maglev builds by VIP.
func (c *Controller) desiredState(routes map[netip.Addr][]netip.Addr, dynEIPs []EIPConfig) (*state, map[string][]string, error) {
	st := newState()
	servers := map[netip.Addr]*ServerConfig{}
	for i := range c.cfg.Servers {
		servers[c.cfg.Servers[i].nh] = &c.cfg.Servers[i]
	}
	vips := map[string]*VIPConfig{}
	current := map[string][]string{}
	macs := map[netip.Addr][6]byte{}
	unresolved := map[netip.Addr]string{}
	defer func() {
		for nh, why := range unresolved {
			if _, logged := c.unresolved[nh]; !logged {
				c.log.Warn("next hop ignored", "next_hop", nh, "why", why)
			}
		}
		c.unresolved = unresolved
		c.m.unresolved.Set(float64(len(unresolved)))
	}()
	for i := range c.cfg.VIPs {
		v := &c.cfg.VIPs[i]
		vips[v.Name] = v
		var bs []maglev.Backend
		seen := map[netip.Addr]bool{}
		for _, nh := range routes[v.addr] {
			if seen[nh] {
				continue
			}
			seen[nh] = true
			sc := servers[nh]
			if sc == nil {
				unresolved[nh] = "is not in servers"
				continue
			}
			mac, ok := c.resolve(sc)
			if !ok {
				unresolved[nh] = "has no MAC in the neighbour table yet"
				continue
			}
			macs[nh] = mac
			bs = append(bs, maglev.Backend{Name: nh.String()})
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
		if uint64(len(bs)) > v.TableSize {
			c.log.Warn("more servers than slots: using the first by address", "vip", v.Name, "servers", len(bs), "table_size", v.TableSize)
			bs = bs[:v.TableSize]
		}
		for _, b := range bs {
			current[v.Name] = append(current[v.Name], b.Name)
		}
		if len(bs) == 0 {
			continue
		}
		t, err := c.table(v, bs)
		if err != nil {
			return nil, nil, fmt.Errorf("vip %s: %w", v.Name, err)
		}
		slots := make(map[uint32]target, t.Size())
		srv := make([]target, len(t.Backends()))
		for i, b := range t.Backends() {
			nh := netip.MustParseAddr(b.Name)
			srv[i] = target{mac: macs[nh], port: servers[nh].Port}
		}
		for i, s := range t.Slots() {
			slots[uint32(i)] = srv[s]
		}
		st.maglev[v.ID] = slots
	}
	for _, e := range append(c.cfg.EIPs[:len(c.cfg.EIPs):len(c.cfg.EIPs)], dynEIPs...) {
		v := vips[e.VIP]
		st.eips[e.dst] = eipVal{vip: v.ID, size: uint32(v.TableSize), index: uint16(*e.Index)}
		st.meters[int64(*e.Index)] = meterVal{cir: e.SYNRate, cburst: e.SYNBurst, pir: e.SYNRate, pburst: e.SYNBurst}
	}
	return st, current, nil
}

// table returns the VIP's Maglev table for these backends, reusing the
// last build when the set is unchanged.
func (c *Controller) table(v *VIPConfig, bs []maglev.Backend) (*maglev.Table, error) {
	var key bytes.Buffer
	for _, b := range bs {
		key.WriteString(b.Name)
		key.WriteByte(0)
	}
	if e, ok := c.tables[v.ID]; ok && e.key == key.String() {
		return e.t, nil
	}
	t, err := maglev.Build(bs, v.TableSize)
	if err != nil {
		return nil, err
	}
	c.tables[v.ID] = cachedTable{key: key.String(), t: t}
	return t, nil
}

type cachedTable struct {
	key string
	t   *maglev.Table
}

func sortedKeys[K int64 | uint16 | uint32, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
