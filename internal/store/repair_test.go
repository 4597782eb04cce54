package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
)

// A symlinked store file is written through: the link stays a link and
// its target gets the change.
func TestFileWritesThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "pods.yaml")
	os.Mkdir(filepath.Dir(target), 0o755)
	if err := os.WriteFile(target, []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "pods.yaml")
	if err := os.Symlink("real/pods.yaml", link); err != nil {
		t.Fatal(err)
	}
	f := OpenFile(link, Options{})
	if _, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pool("a").Weight = 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(target)
	if !strings.Contains(string(b), "weight: 7") {
		t.Errorf("the target was not written:\n%s", b)
	}
	if _, err := os.Stat(target + ".lock"); err != nil {
		t.Errorf("the lock is not beside the target: %v", err)
	}
}

// IfVersion refuses a write based on an old read, naming both versions;
// DryRun checks everything and writes nothing.
func TestFileIfVersionAndDryRun(t *testing.T) {
	f := newFile(t, seed)
	ctx := context.Background()
	_, err := f.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 7; return nil }, IfVersion(0))
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Read != 0 || ve.Current != 1 || errors.Is(err, ErrConflict) {
		t.Fatalf("stale IfVersion: %v", err)
	}
	d, err := f.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 7; return nil }, IfVersion(1), DryRun())
	if err != nil || d.Version != 2 || d.Pool("a").Weight != 7 {
		t.Fatalf("dry run: %+v %v", d, err)
	}
	if got, _ := f.Load(ctx); got.Version != 1 || got.Pool("a").Weight != 100 {
		t.Fatalf("the dry run wrote: %+v", got)
	}
	if _, err := f.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 0; d.Pool("a").State = "x"; return nil }, DryRun()); err == nil {
		t.Error("a dry run skipped the checks")
	}
}

// A write into a missing folder fails and says why.
func TestFileMissingFolder(t *testing.T) {
	f := OpenFile(filepath.Join(t.TempDir(), "nope", "pods.yaml"), Options{})
	_, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "a", Edge: "e"})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "folder") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("err = %v", err)
	}
}

// Waiting for the lock ends with a message naming the lock file.
func TestFileLockTimeout(t *testing.T) {
	f := newFile(t, seed)
	unlock, err := lockFile(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = f.Update(ctx, func(d *model.Document) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "timed out after") || !strings.Contains(err.Error(), f.path+".lock") {
		t.Errorf("err = %v", err)
	}
}

// Root keeps the file's owner when it rewrites it.
func TestFileKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	f := newFile(t, seed)
	if err := os.Chown(f.path, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Update(context.Background(), func(d *model.Document) error { d.Pool("a").Weight = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(f.path)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
}

// One bad key under the prefix: Load (razor) still refuses everything;
// LoadPartial returns the rest and names the key; DropBad repairs.
func TestConsulBadKeyRepair(t *testing.T) {
	t.Parallel()
	c, agent := newConsul(t)
	ctx := context.Background()
	seedConsul(t, c)
	kv := agent.Client().KV()
	if _, err := kv.Put(kvPair("v6pod/pools/broken", `{"name":"broken","edge":"e2","v4":["nope"]}`), nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Load(ctx)
	var bde *BadDataError
	if !errors.As(err, &bde) || !strings.Contains(err.Error(), "v6pod/pools/broken") || len(bde.Problems) != 1 || bde.Problems[0].Name != "broken" {
		t.Fatalf("Load of a bad key: %v", err)
	}
	d, probs, err := LoadPartial(ctx, c)
	if err != nil || d.Pool("a") == nil || len(probs) != 1 || probs[0].Key != "v6pod/pools/broken" || probs[0].Kind != "pools" || probs[0].Name != "broken" {
		t.Fatalf("LoadPartial: %+v %+v %v", d, probs, err)
	}
	if d.Version != 1 {
		t.Errorf("version %d, want the counter 1", d.Version)
	}
	// A repair that deletes the bad key, and nothing else.
	d, err = c.Update(ctx, func(*model.Document) error { return nil }, DropBad("v6pod/pools/broken"))
	if err != nil || d.Version != 2 {
		t.Fatalf("repair: %+v %v", d, err)
	}
	if p, _, _ := kv.Get("v6pod/pools/broken", nil); p != nil {
		t.Error("the bad key is still there")
	}
	if d, err := c.Load(ctx); err != nil || d.Pool("a") == nil || d.Version != 2 {
		t.Fatalf("after the repair: %+v %v", d, err)
	}
	// A good value written over a bad one (an import).
	kv.Put(kvPair("v6pod/pools/broken", `{bad json`), nil)
	_, err = c.Update(ctx, func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "broken", Edge: "e2", V4: model.AddrList{netip.MustParseAddr("192.0.2.9")}})
		return nil
	}, DropBad())
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Load(ctx); err != nil || d.Pool("broken") == nil {
		t.Fatalf("after the overwrite: %+v %v", d, err)
	}
	// A bad counter is replaced by a repair.
	kv.Put(kvPair("v6pod/version", "seven"), nil)
	if _, err := c.Load(ctx); err == nil {
		t.Fatal("Load accepted a bad counter")
	}
	if d, err := c.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 5; return nil }, DropBad()); err != nil || d.Version != 1 {
		t.Fatalf("repair of the counter: %+v %v", d, err)
	}
	if d, err := c.Load(ctx); err != nil || d.Version != 1 {
		t.Fatalf("after the counter's repair: %+v %v", d, err)
	}
	// IfVersion compares the counter.
	if _, err := c.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 3; return nil }, IfVersion(7)); !errors.As(err, new(*VersionError)) {
		t.Errorf("stale IfVersion: %v", err)
	}
	// A dry run makes the store's own checks.
	if _, err := c.Update(ctx, func(d *model.Document) error { d.Apps = map[string]model.EndpointList{"x": nil}; return nil }, DryRun()); err == nil || !strings.Contains(err.Error(), "apps") {
		t.Errorf("dry run with apps: %v", err)
	}
}

func kvPair(k, v string) *api.KVPair { return &api.KVPair{Key: k, Value: []byte(v)} }
