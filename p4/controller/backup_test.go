package controller

import (
	"context"
	"os"
	"testing"
	"time"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/v6pod/v6pod/p4"
	"github.com/v6pod/v6pod/p4/client"
	"github.com/v6pod/v6pod/p4/sim"
)

// TestBackupTakesOver: two controllers on one device; the higher election
// ID programs it, the other waits as backup and takes over, writing
// nothing, when the primary goes away.
func TestBackupTakesOver(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t)
	primaryCfg, backupCfg := noPeers(t, dev), noPeers(t, dev)
	os.WriteFile(primaryCfg.Device.ElectionIDFile, []byte("500\n"), 0o600)
	os.WriteFile(backupCfg.Device.ElectionIDFile, []byte("200\n"), 0o600)
	primary := runController(t, primaryCfg)
	waitFor(t, "the primary to sync", 20*time.Second, func() bool { return primary.c.Status().Syncs > 0 })
	backup := runController(t, backupCfg)
	time.Sleep(300 * time.Millisecond)
	if st := backup.c.Status(); st.Connected || st.Syncs != 0 {
		t.Fatalf("backup acted while the primary runs: %+v", st)
	}
	if v := metric(t, backup.c.Registry(), "p4access_device_primary"); v != 0 {
		t.Fatalf("backup primary gauge %v", v)
	}
	s.ResetStats()
	primary.stop()
	waitFor(t, "the backup to take over", 20*time.Second, func() bool {
		st := backup.c.Status()
		return st.Connected && st.Syncs > 0
	})
	if st := s.Stats(); st.WriteRPCs != 0 || st.PipelineSets != 0 {
		t.Fatalf("takeover rewrote the device: %+v", st)
	}
	backup.stop()
}

// TestDemotedReadsBack: a controller demoted by a higher election ID stops
// acting as primary at once (gauges drop), and once primary again it reads
// the device back instead of trusting what it wrote before: the entries
// the other primary changed meanwhile are repaired.
func TestDemotedReadsBack(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t)
	ctrl := runController(t, noPeers(t, dev))
	waitFor(t, "sync", 20*time.Second, func() bool { return ctrl.c.Status().Syncs > 0 })
	eips := s.Entries(p4.TableEIPToVIP)
	if len(eips) != 1 {
		t.Fatalf("eip entries %d", len(eips))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := client.Dial(ctx, dev, 1, 0, 1000) // outranks the controller's 100
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the controller to see it is backup", 20*time.Second, func() bool {
		return !ctrl.c.Status().Connected && metric(t, ctrl.c.Registry(), "p4access_device_primary") == 0
	})
	if err := other.Write(ctx, []*p4v1.Update{
		tableUpdate(p4v1.Update_DELETE, &p4v1.TableEntry{TableId: p4.TableEIPToVIP, Match: eips[0].Match}),
		tableUpdate(p4v1.Update_INSERT, slotEntry(9, 0, &target{mac: [6]byte{1}, port: 1})),
	}); err != nil {
		t.Fatal(err)
	}
	other.Close()
	waitFor(t, "the controller to repair the device", 20*time.Second, func() bool {
		return len(s.Entries(p4.TableEIPToVIP)) == 1 && len(s.Entries(p4.TableMaglev)) == 0 && ctrl.c.Status().Connected
	})
	ctrl.stop()
}

// TestBackupTakesOverStrict: on a device that, as P4Runtime 1.4 says,
// promotes no backup when the primary leaves (NOT_FOUND, highest election
// ID 500), the backup (200) takes over with 501, stores it in its election
// ID file, and writes nothing to the already programmed device.
func TestBackupTakesOverStrict(t *testing.T) {
	t.Parallel()
	s, dev := startSim(t, sim.WithStrictArbitration())
	primaryCfg, backupCfg := noPeers(t, dev), noPeers(t, dev)
	os.WriteFile(primaryCfg.Device.ElectionIDFile, []byte("499\n"), 0o600)
	os.WriteFile(backupCfg.Device.ElectionIDFile, []byte("199\n"), 0o600)
	primary := runController(t, primaryCfg)
	waitFor(t, "the primary to sync", 20*time.Second, func() bool { return primary.c.Status().Syncs > 0 })
	backup := runController(t, backupCfg)
	waitFor(t, "the backup to start", 20*time.Second, func() bool { return backup.c.Status().ElectionID == 200 })
	s.ResetStats()
	primary.stop()
	waitFor(t, "the backup to take over", 20*time.Second, func() bool {
		st := backup.c.Status()
		return st.Connected && st.Syncs > 0
	})
	if id := backup.c.Status().ElectionID; id != 501 {
		t.Fatalf("backup election id %d, want 501", id)
	}
	if b, _ := os.ReadFile(backupCfg.Device.ElectionIDFile); string(b) != "501\n" {
		t.Fatalf("election id file %q", b)
	}
	if st := s.Stats(); st.WriteRPCs != 0 || st.PipelineSets != 0 {
		t.Fatalf("takeover rewrote the device: %+v", st)
	}
	backup.stop()
}
