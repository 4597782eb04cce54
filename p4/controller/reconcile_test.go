package controller

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/client"
)

// noPeers is a config without BGP servers: only EIP entries and meters.
func noPeers(t *testing.T, dev string) Config {
	cfg := testConfig(t, dev, freePort(t, "127.0.0.1"), 0)
	cfg.BGP.ConvergeTime = 100 * time.Millisecond
	os.WriteFile(cfg.Device.ElectionIDFile, []byte("100\n"), 0o600)
	return cfg
}

// foreign programs the device as another controller would, then leaves.
func foreign(t *testing.T, dev string, cookie uint64, ups ...*p4v1.Update) {
	t.Helper()
	info, _ := p4.P4Info()
	foreignInfo(t, dev, info, cookie, ups...)
}

// foreignInfo is foreign with another P4Info.
func foreignInfo(t *testing.T, dev string, info *p4configv1.P4Info, cookie uint64, ups ...*p4v1.Update) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, dev, 1, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(ctx, info, nil, cookie); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, ups); err != nil {
		t.Fatal(err)
	}
}

// TestReplacesAnotherPipeline: the device runs another program (a P4Info
// that differs), which it cannot reconcile with access.p4: the controller
// falls back to VERIFY_AND_COMMIT and programs it from scratch.
func TestReplacesAnotherPipeline(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t)
	slot := slotEntry(9, 0, &target{mac: [6]byte{1}, port: 1})
	other, _ := p4.P4Info()
	other.Tables[1].Size = 1024 // another build of the program
	foreignInfo(t, dev, other, 42, tableUpdate(p4v1.Update_INSERT, slot))
	s.ResetStats()
	ctrl := runController(t, noPeers(t, dev))
	waitFor(t, "sync", 20*time.Second, func() bool { return ctrl.c.Status().Syncs > 0 })
	st := s.Stats()
	if st.PipelineSets != 1 {
		t.Fatalf("pipeline sets %d, want 1", st.PipelineSets)
	}
	if _, cookie := s.Running(); cookie != p4.Cookie(nil) {
		t.Fatalf("cookie %x", cookie)
	}
	if len(s.Entries(p4.TableMaglev)) != 0 || len(s.Entries(p4.TableEIPToVIP)) != 1 {
		t.Fatal("old program's state survived or EIP missing")
	}
	if m := s.MeterConfig(p4.MeterSYN, 0); m.GetPir() != 100 || m.GetPburst() != 100 {
		t.Fatalf("meter %v", m)
	}
	ctrl.stop()
}

// TestReconcileCanonical: the device already holds the desired EIP entry
// (written full width by someone else, read back shortest-form), a stray
// slot and a meter with other values. The controller deletes the stray,
// fixes the meter, and leaves the EIP entry alone. After the device
// restarts its P4Runtime server, a reconnect reads back and writes nothing.
func TestReconcileCanonical(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t)
	eip := &p4v1.TableEntry{
		TableId: p4.TableEIPToVIP,
		Match:   []*p4v1.FieldMatch{exactMatch(p4.FieldEIPDst, func() []byte { b := netip.MustParseAddr("64:ff9b::c000:201").As16(); return b[:] }())},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: p4.ActionSetVIP, Params: []*p4v1.Action_Param{
			{ParamId: p4.ParamVIPID, Value: []byte{0, 1}},
			{ParamId: p4.ParamTableSize, Value: []byte{0, 0, 0x03, 0xfd}}, // 1021
			{ParamId: p4.ParamEIPIndex, Value: []byte{0, 0}},
		}}}},
	}
	stray := slotEntry(9, 5, &target{mac: [6]byte{0, 0, 0, 0, 0, 2}, port: 1})
	foreign(t, dev, p4.Cookie(nil),
		tableUpdate(p4v1.Update_INSERT, eip),
		tableUpdate(p4v1.Update_INSERT, stray),
		meterUpdate(0, &meterVal{cir: 5, cburst: 5, pir: 5, pburst: 5}))
	s.ResetStats()
	ctrl := runController(t, noPeers(t, dev))
	waitFor(t, "sync", 20*time.Second, func() bool { return ctrl.c.Status().Syncs > 0 })
	st := s.Stats()
	if st.PipelineSets != 0 || st.TableUpdates[p4.TableEIPToVIP] != 0 || st.TableUpdates[p4.TableMaglev] != 1 || st.MeterUpdates != 1 {
		t.Fatalf("writes: %+v", st)
	}
	if len(s.Entries(p4.TableMaglev)) != 0 {
		t.Fatal("stray slot kept")
	}

	// The device's P4Runtime server restarts (state kept, as a switch
	// agent restart with warm state would).
	s.Stop()
	s.ResetStats()
	before := metric(t, ctrl.c.Registry(), "p4access_reconciles_total")
	waitFor(t, "disconnect", 10*time.Second, func() bool { return !ctrl.c.Status().Connected })
	var l net.Listener
	waitFor(t, "the port to be free", 10*time.Second, func() bool {
		var err error
		l, err = net.Listen("tcp", dev)
		return err == nil
	})
	go s.Serve(l)
	waitFor(t, "reconnect", 20*time.Second, func() bool {
		return ctrl.c.Status().Connected && metric(t, ctrl.c.Registry(), "p4access_reconciles_total") > before
	})
	time.Sleep(200 * time.Millisecond)
	if st := s.Stats(); st.WriteRPCs != 0 || st.ReadRPCs == 0 {
		t.Fatalf("after reconnect: %+v", st)
	}
	ctrl.stop()
}

// TestReconcilesOtherCookie: the device runs access.p4's P4Info under
// another cookie (a new device_config, another tool's cookie). The
// controller sets its pipeline with RECONCILE_AND_COMMIT, so the entries
// the device holds keep forwarding: the EIP entry it wants is neither
// deleted nor rewritten, only the stray slot goes.
func TestReconcilesOtherCookie(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t)
	want := eipEntry(netip.MustParseAddr("64:ff9b::c000:201"), &eipVal{vip: 1, size: testSize, index: 0})
	stray := slotEntry(9, 5, &target{mac: [6]byte{0, 0, 0, 0, 0, 2}, port: 1})
	foreign(t, dev, 42, tableUpdate(p4v1.Update_INSERT, want), tableUpdate(p4v1.Update_INSERT, stray))
	s.ResetStats()
	ctrl := runController(t, noPeers(t, dev))
	waitFor(t, "sync", 20*time.Second, func() bool { return ctrl.c.Status().Syncs > 0 })
	st := s.Stats()
	if st.PipelineSets != 1 || st.TableUpdates[p4.TableEIPToVIP] != 0 || st.TableUpdates[p4.TableMaglev] != 1 {
		t.Fatalf("writes: %+v", st)
	}
	if _, cookie := s.Running(); cookie != p4.Cookie(nil) {
		t.Fatalf("cookie %x", cookie)
	}
	if len(s.Entries(p4.TableEIPToVIP)) != 1 || len(s.Entries(p4.TableMaglev)) != 0 {
		t.Fatal("entries after reconcile")
	}
	// The stray slot's VIP id is not configured: its delete is counted
	// under vip="unknown", not an empty label.
	mfs, err := ctrl.c.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, mf := range mfs {
		if mf.GetName() == "p4access_slots_changed" {
			for _, m := range mf.Metric {
				labels = append(labels, m.GetLabel()[0].GetValue())
			}
		}
	}
	if len(labels) != 1 || labels[0] != "unknown" {
		t.Fatalf("slots_changed vip labels %q", labels)
	}
	ctrl.stop()
}
