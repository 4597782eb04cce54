package controller

import (
	"os"
	"testing"
	"time"
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
