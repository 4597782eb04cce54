package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/client"
)

// start serves s on a loopback port and returns its address.
func start(t *testing.T, s *Sim) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, election uint64) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, 1, 0, election)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func setPipeline(t *testing.T, c *client.Client) {
	t.Helper()
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(ctx(t), info, []byte("{}"), p4.Cookie([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
}

func update(typ p4v1.Update_Type, e *p4v1.TableEntry) *p4v1.Update {
	return &p4v1.Update{Type: typ, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: e}}}
}

func eipEntry(eip netip.Addr, vip uint16, size uint32, idx uint16) *p4v1.TableEntry {
	return &p4v1.TableEntry{
		TableId: p4.TableEIPToVIP,
		Match:   []*p4v1.FieldMatch{exact(p4.FieldEIPDst, p4.Addr(eip))},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{
			ActionId: p4.ActionSetVIP,
			Params: []*p4v1.Action_Param{
				{ParamId: p4.ParamVIPID, Value: p4.Uint(uint64(vip))},
				{ParamId: p4.ParamTableSize, Value: p4.Uint(uint64(size))},
				{ParamId: p4.ParamEIPIndex, Value: p4.Uint(uint64(idx))},
			},
		}}},
	}
}

// slotEntry writes full-width (non-canonical) values, as a careless
// controller would.
func slotEntry(vip uint16, slot uint32, mac [6]byte, port uint16) *p4v1.TableEntry {
	v := binary.BigEndian.AppendUint16(nil, vip)
	sl := binary.BigEndian.AppendUint32(nil, slot)
	return &p4v1.TableEntry{
		TableId: p4.TableMaglev,
		Match:   []*p4v1.FieldMatch{exact(p4.FieldMaglevSlot, sl), exact(p4.FieldMaglevVIP, v)},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{
			ActionId: p4.ActionToServer,
			Params: []*p4v1.Action_Param{
				{ParamId: p4.ParamDMAC, Value: mac[:]},
				{ParamId: p4.ParamPort, Value: binary.BigEndian.AppendUint16(nil, port)},
			},
		}}},
	}
}

var (
	client6 = netip.MustParseAddr("2001:db8:aa::1")
	eip     = netip.MustParseAddr("64:ff9b::c000:201")
)

// frame builds Ethernet + IPv6 + TCP (flags) or UDP (flags < 0).
func frame(src, dst netip.Addr, sport, dport uint16, flags int) []byte {
	b := make([]byte, 14, 14+40+20)
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	ip[7] = 64
	var l4 []byte
	if flags >= 0 {
		ip[6] = 6
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		l4[13] = byte(flags)
	} else {
		ip[6] = 17
		l4 = make([]byte, 8)
	}
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	return append(append(b, ip...), l4...)
}

func code(err error) codes.Code {
	var we *client.WriteError
	if errors.As(err, &we) {
		for _, u := range we.Updates {
			if c := codes.Code(u.CanonicalCode); c != codes.OK {
				return c
			}
		}
	}
	return status.Code(errors.Unwrap(err))
}

func TestArbitration(t *testing.T) {
	t.Parallel()
	s := New()
	addr := start(t, s)
	low := dial(t, addr, 5)
	if err := low.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	high := dial(t, addr, 9)
	if err := high.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// The lower one is told it is a backup, and its writes are refused.
	deadline := time.Now().Add(5 * time.Second)
	for low.Primary() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if low.Primary() {
		t.Fatal("lower election id still primary")
	}
	info, _ := p4.P4Info()
	if err := low.SetPipeline(ctx(t), info, nil, 1); status.Code(errors.Unwrap(err)) != codes.PermissionDenied {
		t.Fatalf("backup set pipeline: %v", err)
	}
	// A duplicate election id is refused.
	c, err := client.Dial(ctx(t), addr, 1, 0, 9)
	if err == nil {
		c.Close()
		t.Fatal("duplicate election id accepted")
	}
	// Wrong device id.
	if c, err := client.Dial(ctx(t), addr, 2, 0, 1); err == nil {
		c.Close()
		t.Fatal("wrong device id accepted")
	}
	// When the primary leaves, the other takes over.
	high.Close()
	if err := low.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestPipeline(t *testing.T) {
	t.Parallel()
	s := New()
	c := dial(t, start(t, s), 1)
	if _, ok, err := c.Pipeline(ctx(t)); err != nil || ok {
		t.Fatalf("fresh device: ok=%v err=%v", ok, err)
	}
	if _, err := c.ReadTable(ctx(t), p4.TableMaglev); status.Code(errors.Unwrap(err)) != codes.FailedPrecondition {
		t.Fatalf("read without pipeline: %v", err)
	}
	if err := c.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	info, _ := p4.P4Info()
	info.Tables = info.Tables[:1]
	if err := c.SetPipeline(ctx(t), info, nil, 7); status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Fatalf("other program: %v", err)
	}
	setPipeline(t, c)
	cookie, ok, err := c.Pipeline(ctx(t))
	if err != nil || !ok || cookie != p4.Cookie([]byte("{}")) {
		t.Fatalf("cookie %x ok=%v err=%v", cookie, ok, err)
	}
}

func TestWriteReadCanonical(t *testing.T) {
	t.Parallel()
	s := New()
	c := dial(t, start(t, s), 1)
	setPipeline(t, c)
	mac := [6]byte{0, 0, 0, 0, 0, 2}
	ups := []*p4v1.Update{
		update(p4v1.Update_INSERT, eipEntry(eip, 7, 1021, 3)),
		update(p4v1.Update_INSERT, slotEntry(7, 5, mac, 1)),
	}
	if err := c.Write(ctx(t), ups); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadTable(ctx(t), p4.TableMaglev)
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %v %v", got, err)
	}
	// P4Runtime spec 8.4: reads return the shortest form; match fields in
	// ID order whatever order they were written in.
	e := got[0]
	if e.Match[0].FieldId != p4.FieldMaglevVIP || !bytes.Equal(e.Match[0].GetExact().Value, []byte{7}) ||
		!bytes.Equal(e.Match[1].GetExact().Value, []byte{5}) {
		t.Fatalf("match not canonical: %v", e.Match)
	}
	if p := e.Action.GetAction().Params; !bytes.Equal(p[0].Value, []byte{2}) || !bytes.Equal(p[1].Value, []byte{1}) {
		t.Fatalf("params not canonical: %v", p)
	}

	// Errors per update, with the right codes.
	for _, tc := range []struct {
		name string
		u    *p4v1.Update
		want codes.Code
	}{
		{"duplicate insert", update(p4v1.Update_INSERT, slotEntry(7, 5, mac, 1)), codes.AlreadyExists},
		{"modify missing", update(p4v1.Update_MODIFY, slotEntry(7, 6, mac, 1)), codes.NotFound},
		{"delete missing", update(p4v1.Update_DELETE, slotEntry(8, 6, mac, 1)), codes.NotFound},
		{"port wider than 9 bits", update(p4v1.Update_INSERT, slotEntry(7, 9, mac, 512)), codes.OutOfRange},
		{"unknown table", update(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: 0x02000099}), codes.NotFound},
		{"missing match field", update(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: p4.TableMaglev, Match: []*p4v1.FieldMatch{exact(1, []byte{1})}}), codes.InvalidArgument},
		{"default-only action", update(p4v1.Update_INSERT, &p4v1.TableEntry{TableId: p4.TableEIPToVIP, Match: []*p4v1.FieldMatch{exact(1, []byte{1})},
			Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: p4.ActionDrop}}}}), codes.InvalidArgument},
	} {
		if err := c.Write(ctx(t), []*p4v1.Update{tc.u}); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// A batch continues past errors by default.
	err = c.Write(ctx(t), []*p4v1.Update{
		update(p4v1.Update_INSERT, slotEntry(7, 5, mac, 1)), // exists
		update(p4v1.Update_MODIFY, slotEntry(7, 5, [6]byte{0, 0, 0, 0, 0, 3}, 2)),
	})
	var we *client.WriteError
	if !errors.As(err, &we) || len(we.Updates) != 2 || codes.Code(we.Updates[1].CanonicalCode) != codes.OK {
		t.Fatalf("mixed batch: %v", err)
	}
	if sv := s.MaglevTable(7)[5]; sv.MAC[5] != 3 || sv.Port != 2 {
		t.Fatalf("modify not applied: %+v", sv)
	}
	// Delete by key alone.
	if err := c.Write(ctx(t), []*p4v1.Update{update(p4v1.Update_DELETE, &p4v1.TableEntry{TableId: p4.TableMaglev, Match: slotEntry(7, 5, mac, 0).Match})}); err != nil {
		t.Fatal(err)
	}
	if len(s.MaglevTable(7)) != 0 {
		t.Fatal("delete not applied")
	}
}

func TestMetersAndCounters(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	s := New(WithClock(func() time.Time { return now }))
	c := dial(t, start(t, s), 1)
	setPipeline(t, c)
	mu := func(idx int64, cfg *p4v1.MeterConfig) *p4v1.Update {
		return &p4v1.Update{Type: p4v1.Update_MODIFY, Entity: &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: &p4v1.MeterEntry{
			MeterId: p4.MeterSYN, Index: &p4v1.Index{Index: idx}, Config: cfg}}}}
	}
	cfg := &p4v1.MeterConfig{Cir: 10, Cburst: 10, Pir: 10, Pburst: 10}
	if err := c.Write(ctx(t), []*p4v1.Update{mu(3, cfg)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx(t), []*p4v1.Update{mu(p4.MaxEIPs, cfg)}); code(err) != codes.OutOfRange {
		t.Fatalf("meter index out of range: %v", err)
	}
	if err := c.Write(ctx(t), []*p4v1.Update{mu(1, &p4v1.MeterConfig{Cir: 10, Pir: 5})}); code(err) != codes.InvalidArgument {
		t.Fatalf("cir > pir: %v", err)
	}
	ms, err := c.ReadMeters(ctx(t), p4.MeterSYN)
	if err != nil || len(ms) != p4.MaxEIPs || ms[3].Config.GetPir() != 10 || ms[2].Config != nil {
		t.Fatalf("read meters: %d %v", len(ms), err)
	}

	// Forward SYNs to an EIP with this meter: 10 pass, the rest drop.
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	ups := []*p4v1.Update{update(p4v1.Update_INSERT, eipEntry(eip, 1, 3, 3))}
	for slot := range uint32(3) {
		ups = append(ups, update(p4v1.Update_INSERT, slotEntry(1, slot, mac, 4)))
	}
	if err := c.Write(ctx(t), ups); err != nil {
		t.Fatal(err)
	}
	pass := 0
	for i := range 100 {
		if r := s.Process(frame(client6, eip, uint16(10000+i), 80, 0x02)); r.Verdict == Forwarded {
			pass++
		} else if r.Verdict != DropSYN {
			t.Fatalf("SYN %d: %v", i, r.Verdict)
		}
	}
	if pass != 10 {
		t.Fatalf("%d SYNs passed a 10/s meter with burst 10", pass)
	}
	// Established traffic (ACK, SYN-ACK) and UDP are not metered.
	for _, f := range [][]byte{frame(client6, eip, 1, 80, 0x10), frame(client6, eip, 1, 80, 0x12), frame(client6, eip, 1, 53, -1)} {
		if r := s.Process(f); r.Verdict != Forwarded || r.Port != 4 || !bytes.Equal(r.Frame[:6], mac[:]) {
			t.Fatalf("non-SYN: %+v", r)
		}
	}
	// Tokens come back with time.
	now = now.Add(time.Second)
	if r := s.Process(frame(client6, eip, 1, 80, 0x02)); r.Verdict != Forwarded {
		t.Fatalf("SYN after a second: %v", r.Verdict)
	}
	d, err := c.ReadCounter(ctx(t), p4.CounterSYNDropped, 3)
	if err != nil || d.PacketCount != 90 {
		t.Fatalf("syn_dropped[3] = %v, %v; want 90", d, err)
	}
	d, err = c.ReadCounter(ctx(t), p4.CounterVIPPackets, 1)
	if err != nil || d.PacketCount != 14 || d.ByteCount == 0 {
		t.Fatalf("vip_packets[1] = %v, %v", d, err)
	}
}

func TestProcess(t *testing.T) {
	t.Parallel()
	s := New()
	c := dial(t, start(t, s), 1)
	setPipeline(t, c)
	const size = 7
	ups := []*p4v1.Update{update(p4v1.Update_INSERT, eipEntry(eip, 2, size, 0))}
	for slot := range uint32(size) {
		ups = append(ups, update(p4v1.Update_INSERT, slotEntry(2, slot, [6]byte{2, 0, 0, 0, 0, byte(slot)}, uint16(slot))))
	}
	if err := c.Write(ctx(t), ups); err != nil {
		t.Fatal(err)
	}
	f := frame(client6, eip, 40000, 80, 0x10)
	r := s.Process(f)
	want := p4.FlowHash(client6.As16(), eip.As16(), 6, 40000, 80) % size
	if r.Verdict != Forwarded || r.Slot != want || r.Port != want || r.Frame[5] != byte(want) || r.VIP != 2 {
		t.Fatalf("result %+v, want slot %d", r, want)
	}
	if !bytes.Equal(r.Frame[6:], f[6:]) {
		t.Fatal("only the destination MAC may change")
	}
	for name, tc := range map[string]struct {
		f    []byte
		want Verdict
	}{
		"ipv4":        {append(make([]byte, 12), 0x08, 0x00, 0x45), DropNotIP6},
		"short":       {f[:30], DropNotIP6},
		"other EIP":   {frame(client6, netip.MustParseAddr("64:ff9b::c000:202"), 1, 80, 0x10), DropNoVIP},
		"no TCP body": {f[:54], Forwarded},
	} {
		if r := s.Process(tc.f); r.Verdict != tc.want {
			t.Errorf("%s: %v, want %v", name, r.Verdict, tc.want)
		}
	}
}

func FuzzProcess(f *testing.F) {
	s := New()
	info, _ := p4.P4Info()
	pi, err := checkPipeline(&p4v1.ForwardingPipelineConfig{P4Info: info})
	if err != nil {
		f.Fatal(err)
	}
	s.install(&p4v1.ForwardingPipelineConfig{P4Info: info}, pi, false)
	ce, _ := pi.canonicalEntry(eipEntry(eip, 1, 3, 0), true)
	s.tables[p4.TableEIPToVIP][key(ce.Match)] = ce
	for slot := range uint32(3) {
		ce, _ := pi.canonicalEntry(slotEntry(1, slot, [6]byte{2}, 1), true)
		s.tables[p4.TableMaglev][key(ce.Match)] = ce
	}
	f.Add(frame(client6, eip, 1, 80, 0x02))
	f.Add(frame(client6, eip, 1, 53, -1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		r := s.Process(b)
		if !bytes.Equal(in, b) {
			t.Fatal("input modified")
		}
		if r.Verdict == Forwarded && (len(r.Frame) != len(b) || r.Slot >= 3) {
			t.Fatalf("bad result %+v", r)
		}
	})
}

func dialDevice(addr string, id uint64) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, id, 0, 1)
	if err != nil {
		return nil, err
	}
	if err := c.WaitPrimary(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestMaglevKeyMatchesKey(t *testing.T) {
	for _, tc := range []struct {
		vip  uint16
		slot uint32
	}{{0, 0}, {1, 5}, {300, 65536}, {65535, 1<<32 - 1}} {
		want := key([]*p4v1.FieldMatch{exact(p4.FieldMaglevVIP, p4.Uint(uint64(tc.vip))), exact(p4.FieldMaglevSlot, p4.Uint(uint64(tc.slot)))})
		if got := maglevKey(tc.vip, tc.slot); got != want {
			t.Fatalf("%v: %x, want %x", tc, got, want)
		}
	}
}

func BenchmarkProcess(b *testing.B) {
	s := programmed(b, [6]byte{2})
	f := frame(client6, eip, 40000, 443, 0x10)
	b.ReportAllocs()
	for b.Loop() {
		if s.Process(f).Verdict != Forwarded {
			b.Fatal("not forwarded")
		}
	}
}

// programmed returns a simulator with access.p4 and one EIP whose whole
// table (size 3) points at port 2.
func programmed(t testing.TB, mac [6]byte) *Sim {
	s := New()
	info, _ := p4.P4Info()
	pi, err := checkPipeline(&p4v1.ForwardingPipelineConfig{P4Info: info})
	if err != nil {
		t.Fatal(err)
	}
	s.install(&p4v1.ForwardingPipelineConfig{P4Info: info}, pi, false)
	ce, _ := pi.canonicalEntry(eipEntry(eip, 1, 3, 0), true)
	s.tables[p4.TableEIPToVIP][key(ce.Match)] = ce
	for slot := range uint32(3) {
		ce, _ := pi.canonicalEntry(slotEntry(1, slot, mac, 2), true)
		s.tables[p4.TableMaglev][key(ce.Match)] = ce
	}
	return s
}

// TestStrictArbitration: with WithStrictArbitration, a primary that leaves
// is not replaced by the backup; the backup hears NOT_FOUND with the
// highest election ID seen (128-bit: high word set), its writes are
// refused, and it becomes primary by arbitrating above that ID.
func TestStrictArbitration(t *testing.T) {
	t.Parallel()
	s := New(WithStrictArbitration())
	addr := start(t, s)
	low, err := client.Dial(ctx(t), addr, 1, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { low.Close() })
	high, err := client.Dial(ctx(t), addr, 1, 2, 0) // high word 2 outranks (1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := high.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	high.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if none, _ := low.NoPrimary(); none {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	none, h := low.NoPrimary()
	if !none || low.Primary() || h.GetHigh() != 2 || h.GetLow() != 0 {
		t.Fatalf("after the primary left: no primary %v, primary %v, highest %v", none, low.Primary(), h)
	}
	info, _ := p4.P4Info()
	if err := low.SetPipeline(ctx(t), info, nil, 1); status.Code(errors.Unwrap(err)) != codes.PermissionDenied {
		t.Fatalf("backup set pipeline: %v", err)
	}
	if err := low.Rearbitrate(2, 1); err != nil {
		t.Fatal(err)
	}
	if err := low.WaitPrimary(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := low.SetPipeline(ctx(t), info, nil, 1); err != nil {
		t.Fatal(err)
	}
}
