package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/model"
)

const seed = `version: 1
pools:
  - {name: a, edge: e1, v4: [192.0.2.1]}
routes:
  - {name: r.v6pod.test., pools: [a]}
`

func newFile(t *testing.T, content string) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pods.yaml")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return OpenFile(path, Options{})
}

func TestFileUpdateBumpsVersion(t *testing.T) {
	f := newFile(t, seed)
	d, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pool("a").Weight = 7
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 2 || d.Pool("a").Weight != 7 {
		t.Fatalf("after update: version %d weight %d", d.Version, d.Pool("a").Weight)
	}
	got, err := f.Load(context.Background())
	if err != nil || got.Version != 2 || got.Pool("a").Weight != 7 {
		t.Fatalf("reload: %+v, %v", got, err)
	}
	// A no-op update writes nothing.
	d, err = f.Update(context.Background(), func(*model.Document) error { return nil })
	if err != nil || d.Version != 2 {
		t.Fatalf("no-op update: version %d, %v", d.Version, err)
	}
}

func TestFileUpdateCreatesMissingFile(t *testing.T) {
	f := newFile(t, "")
	_, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "a", Edge: "e1"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := f.Load(context.Background()); err != nil || d.Version != 1 || d.Pool("a") == nil {
		t.Fatalf("got %+v, %v", d, err)
	}
}

// Two writers on the same pool, many times each: the lock serializes them,
// so every change survives.
func TestFileConcurrentWritersLoseNothing(t *testing.T) {
	f := newFile(t, seed)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				a := netip.AddrFrom4([4]byte{198, 51, byte(100 + w), byte(i + 1)})
				if _, err := f.Update(context.Background(), func(d *model.Document) error {
					p := d.Pool("a")
					p.V4 = append(p.V4, a)
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	d, err := f.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Pool("a").V4); n != 41 {
		t.Errorf("pool has %d addresses, want 41: updates were lost", n)
	}
	if d.Version != 41 {
		t.Errorf("version %d, want 41", d.Version)
	}
}

// A writer that does not take the lock (an editor) changed the file after
// we read it: the update is refused rather than overwriting that change.
func TestFileConflictWithUnlockedWriter(t *testing.T) {
	f := newFile(t, seed)
	_, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pool("a").Weight = 5
		return os.WriteFile(f.path, []byte(strings.Replace(seed, "version: 1", "version: 9", 1)), 0o644)
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if d, _ := f.Load(context.Background()); d.Version != 9 {
		t.Errorf("the editor's change was overwritten: version %d", d.Version)
	}
}

func TestFileUpdateRejectsInvalidChange(t *testing.T) {
	f := newFile(t, seed)
	_, err := f.Update(context.Background(), func(d *model.Document) error {
		d.Pools = append(d.Pools, model.Pool{Name: "b", Edge: "e2", V4: model.AddrList{netip.MustParseAddr("192.0.2.1")}})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1 is already in pool a") {
		t.Fatalf("err = %v", err)
	}
	if d, _ := f.Load(context.Background()); d.Version != 1 || len(d.Pools) != 1 {
		t.Error("an invalid change was written")
	}
}

func TestFileWatch(t *testing.T) {
	f := newFile(t, seed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ev struct {
		d   *model.Document
		err error
	}
	evs := make(chan ev, 16)
	go f.Watch(ctx, func(d *model.Document, err error) { evs <- ev{d, err} })
	next := func(what string) ev {
		t.Helper()
		select {
		case e := <-evs:
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no watch event: %s", what)
		}
		return ev{}
	}
	if e := next("initial"); e.err != nil || e.d.Version != 1 {
		t.Fatalf("initial: %+v", e)
	}
	// A writer's rename is seen.
	if _, err := f.Update(ctx, func(d *model.Document) error { d.Pool("a").Weight = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if e := next("update"); e.err != nil || e.d.Pool("a").Weight != 3 {
		t.Fatalf("after update: %+v", e)
	}
	// A broken file is reported, not delivered.
	os.WriteFile(f.path, []byte("version: 3\npools: [{name: a, edge: e1, v4: [not-an-ip]}]\n"), 0o644)
	if e := next("broken"); e.err == nil || e.d != nil || !strings.Contains(e.err.Error(), `"not-an-ip"`) {
		t.Fatalf("broken file: %+v", e)
	}
	// Fixed again, with the very bytes it had before: delivered.
	b, _ := model.MarshalYAML(&model.Document{Version: 2, Pools: []model.Pool{{Name: "a", Edge: "e1", Weight: 3}}})
	writeAtomic(f.path, b)
	if e := next("fixed"); e.err != nil || e.d.Version != 2 {
		t.Fatalf("fixed: %+v", e)
	}
}

func TestOpen(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"file:///tmp/x.yaml", ""},
		{"/tmp/x.yaml", ""},
		{"file://host/x.yaml", "has no host"},
		{"redis://127.0.0.1/0", `unknown kind "redis"`},
		{"pods", "want file:///path.yaml"},
	} {
		s, err := Open(tc.url, Options{})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Open(%q) = %v, %v; want %q", tc.url, s, err, tc.want)
		}
	}
}

// A store path that is a symlink (config management links files into
// place): a change to the target, in its own folder, is seen.
func TestFileWatchFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	tgtDir := filepath.Join(dir, "tgt")
	os.Mkdir(tgtDir, 0o755)
	target := filepath.Join(tgtDir, "pods-a.yaml")
	os.WriteFile(target, []byte(seed), 0o644)
	link := filepath.Join(dir, "pods.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	f := OpenFile(link, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	docs := make(chan *model.Document, 16)
	go f.Watch(ctx, func(d *model.Document, err error) {
		if err != nil {
			t.Errorf("watch error: %v", err)
			return
		}
		docs <- d
	})
	next := func() *model.Document {
		t.Helper()
		select {
		case d := <-docs:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no document")
		}
		return nil
	}
	if d := next(); d.Version != 1 {
		t.Fatalf("initial version %d", d.Version)
	}
	writeAtomic(target, []byte(strings.Replace(seed, "version: 1", "version: 2", 1)))
	if d := next(); d.Version != 2 {
		t.Fatalf("after the target changed: version %d", d.Version)
	}
}

// A file that does not exist yet reads as an empty store once, not as a
// stream of errors from the periodic re-read.
func TestFileWatchMissingFileIsQuiet(t *testing.T) {
	f := newFile(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var calls, errs int
	f.Watch(ctx, func(d *model.Document, err error) {
		calls++
		if err != nil {
			errs++
		}
	})
	if calls != 1 || errs != 0 {
		t.Errorf("%d calls, %d errors; want one empty document", calls, errs)
	}
}
