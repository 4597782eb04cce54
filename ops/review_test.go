package ops

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
)

// Bug 1: an import of a file exported before later changes is refused
// (naming both versions) instead of silently undoing them; --force
// overrides; a file without a version needs --force too; an empty store
// takes any file.
func TestImportRefusesStaleFile(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		snap := h.ok("export")
		v := h.load().Version
		h.ok("pool", "drain", "edge-ams-01", "203.0.113.2")
		h.stdin = snap
		errs := h.fail(ExitFail, "the file is at version", "import", "-", "--allow-reserved")
		if !strings.Contains(errs, "store is at version") || !strings.Contains(errs, "--force") {
			t.Errorf("the conflict does not name both versions and --force:\n%s", errs)
		}
		h.fail(ExitFail, "the file is at version", "import", "-", "--allow-reserved", "--dry-run")
		if p := h.load().Pool("edge-ams-01"); len(p.Drain) != 1 {
			t.Fatalf("the stale import undid the drain: %+v", p)
		}
		// An export of the current state imports fine.
		h.stdin = h.ok("export")
		h.ok("import", "-", "--allow-reserved")
		// No version: no claim, --force needed.
		h.stdin = seedYAML
		h.fail(ExitFail, "the file has no version", "import", "-", "--allow-reserved")
		h.ok("import", "-", "--allow-reserved", "--force")
		// --force takes the old file over the newer store.
		h.stdin = snap
		h.ok("import", "-", "--allow-reserved", "--force")
		if p := h.load().Pool("edge-ams-01"); len(p.Drain) != 0 || h.load().Version <= v {
			t.Errorf("--force import: %+v", p)
		}
		// A new, empty store takes any file.
		other := fileHarness(t)
		if h.consul != nil {
			other = &harness{t: t, url: h.consul.URL("empty"), now: testNow}
		}
		other.stdin = snap
		other.ok("import", "-", "--allow-reserved")
	})
}

// Bug 2: on Consul, import --dry-run and the import agree: the apps of the
// file are left out with a note (they live in the catalog), both times.
func TestImportAppsIntoConsul(t *testing.T) {
	h := consulHarness(t)
	b, err := os.ReadFile("../internal/model/testdata/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h.stdin = string(b)
	for _, args := range [][]string{{"import", "-", "--allow-reserved", "--dry-run"}, {"import", "-", "--allow-reserved"}} {
		code, out, errs := h.run(args...)
		if code != ExitOK || !strings.Contains(errs, "leaving out the 2 apps") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	if d := h.load(); d.Pool("edge-ams-01") == nil || len(d.Apps) != 0 {
		t.Errorf("after import: %+v", d)
	}
}

// Bug 3: aborting a rotation undrains only the addresses the rotation
// drained, not those drained before it started.
func TestRotateAbortKeepsEarlierDrains(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		h.ok("pool", "drain", "edge-ams-01", "203.0.113.2")
		h.afterStep = func(n int) error {
			if n == stepDrain {
				return errors.New("stop")
			}
			return nil
		}
		h.fail(ExitFail, "stop", rotateArgv...)
		h.afterStep = nil
		out := h.ok("pool", "rotate", "--abort", "edge-ams-01")
		p := h.load().Pool("edge-ams-01")
		if p.Rotation != nil || !slices.Equal(p.Drain, addrs("203.0.113.2")) {
			t.Errorf("after abort: drain %v rotation %+v; want 203.0.113.2 still drained", p.Drain, p.Rotation)
		}
		if !strings.Contains(out, "still drained (they were before the rotation): 203.0.113.2") {
			t.Errorf("abort output:\n%s", out)
		}
	})
}

// Bug 8: draining or undraining an address of an unfinished rotation is
// refused, with the same message.
func TestDrainRotatingAddressRefused(t *testing.T) {
	h := fileHarness(t)
	h.seed()
	h.afterStep = func(n int) error {
		if n == stepStart {
			return errors.New("stop")
		}
		return nil
	}
	h.fail(ExitFail, "stop", rotateArgv...)
	h.afterStep = nil
	a := h.fail(ExitFail, "part of an unfinished rotation", "pool", "drain", "edge-ams-01", "203.0.113.9")
	b := h.fail(ExitFail, "part of an unfinished rotation", "pool", "undrain", "edge-ams-01", "203.0.113.9")
	if a != b {
		t.Errorf("drain and undrain say different things:\n%s%s", a, b)
	}
	h.fail(ExitFail, "part of an unfinished rotation", "pool", "drain", "edge-ams-01", "203.0.113.2")
}

// Bug 7: one bad key under the Consul prefix: reads show the rest with a
// warning naming the key; pool delete and route delete of the bad key,
// and import, repair it; razor's Load still refuses the bad data.
func TestBadConsulKey(t *testing.T) {
	h := consulHarness(t)
	h.seed()
	kv := h.consul.Client().KV()
	put := func(k, v string) {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("v6pod/pools/broken", `{"name":"broken","edge":"x","v4":["not-an-address"]}`)
	code, out, errs := h.run("pool", "list")
	if code != ExitOK || !strings.Contains(errs, "key v6pod/pools/broken") || !strings.Contains(out, "edge-ams-01") {
		t.Fatalf("pool list with a bad key: exit %d\n%s%s", code, out, errs)
	}
	errs = h.fail(ExitFail, "v6pod/pools/broken", "pool", "drain", "edge-ams-01", "203.0.113.2")
	if !strings.Contains(errs, "repair the store first: ops pool delete broken") {
		t.Errorf("no repair hint:\n%s", errs)
	}
	h.ok("pool", "delete", "broken")
	if p, _, _ := kv.Get("v6pod/pools/broken", nil); p != nil {
		t.Fatal("pool delete left the bad key")
	}
	h.ok("pool", "drain", "edge-ams-01", "203.0.113.2")

	put("v6pod/routes/bad.test.", `{"name":"bad.test.","pools":["edge-ams-01"],"answers":500}`)
	h.ok("route", "delete", "bad.test")
	if p, _, _ := kv.Get("v6pod/routes/bad.test.", nil); p != nil {
		t.Fatal("route delete left the bad key")
	}

	snap := h.ok("export")
	put("v6pod/pools/broken", `{not json`)
	h.stdin = snap
	h.ok("import", "-", "--allow-reserved")
	if p, _, _ := kv.Get("v6pod/pools/broken", nil); p != nil {
		t.Fatal("import left the bad key")
	}
}

// A flag error is one line and a pointer to --help, not the help.
func TestFlagErrorIsShort(t *testing.T) {
	h := fileHarness(t)
	errs := h.fail(ExitUsage, "flag provided but not defined", "pool", "list", "--frobnicate")
	if errs != "ops: pool list: flag provided but not defined: -frobnicate\nsee 'ops pool list --help'\n" {
		t.Errorf("stderr:\n%s", errs)
	}
	h.fail(ExitUsage, `unknown kind "http"`, "pool", "list", "--store", "http://x")
	h.fail(ExitUsage, "no credentials", "pool", "list", "--store", "consul://127.0.0.1:1/v6pod?token=s3cret")
}

// A missing store file: reads warn and show an empty store; the first
// write says it creates the file; a missing folder fails clearly.
func TestMissingStoreFile(t *testing.T) {
	h := fileHarness(t)
	code, _, errs := h.run("pool", "list")
	if code != ExitOK || !strings.Contains(errs, "does not exist; showing an empty store") {
		t.Errorf("exit %d: %s", code, errs)
	}
	code, _, errs = h.run("pool", "create", "p", "--edge", "e")
	if code != ExitOK || !strings.Contains(errs, "created the store file") {
		t.Errorf("exit %d: %s", code, errs)
	}
	h.url = "file://" + filepath.Join(t.TempDir(), "nope", "pods.yaml")
	h.fail(ExitFail, "does not exist", "pool", "create", "p", "--edge", "e")
}

// The rotation records --wait and the TTL at drain time; --resume honours
// them; the ROTATION column says until when it waits; with no route using
// the pool the wait is the floor.
func TestRotationWaitRecorded(t *testing.T) {
	h := fileHarness(t)
	h.seed()
	h.afterStep = func(n int) error {
		if n == stepDrain {
			return errors.New("stop")
		}
		return nil
	}
	h.fail(ExitFail, "stop", append(rotateArgv, "--wait", "5m")...)
	h.afterStep = nil
	r := h.load().Pool("edge-ams-01").Rotation
	if r.Wait != "5m0s" || r.TTL != 20 {
		t.Fatalf("rotation record: %+v", r)
	}
	if out := h.ok("pool", "list"); !strings.Contains(out, "waiting until 2026-11-22T03:05:00Z") {
		t.Errorf("pool list:\n%s", out)
	}
	if out := h.ok("status", "-o", "json"); !strings.Contains(out, `"until": "2026-11-22T03:05:00Z"`) || !strings.Contains(out, `"wait": "5m0s"`) {
		t.Errorf("status -o json:\n%s", out)
	}
	h.now = testNow.Add(6 * time.Minute)
	if out := h.ok("pool", "list"); !strings.Contains(out, "waited; ops pool rotate --resume edge-ams-01 finishes it") {
		t.Errorf("pool list after the wait:\n%s", out)
	}
	h.now = testNow
	out := h.ok("pool", "rotate", "--resume", "edge-ams-01")
	if !strings.Contains(out, "waiting 5m0s") || !strings.Contains(out, "--wait 5m0s") {
		t.Errorf("resume did not honour the recorded --wait:\n%s", out)
	}

	// No route uses edge-fra-01 once the routes are gone: the floor.
	h.ok("route", "delete", "blog.route.v6pod.test")
	h.ok("route", "set", "shop.route.v6pod.test", "--pools", "edge-ams-01")
	out = h.ok("pool", "rotate", "edge-fra-01", "--out", "198.51.100.1", "--in", "198.51.100.9", "--allow-reserved")
	if !strings.Contains(out, "waiting 1m0s") || !strings.Contains(out, "no route uses the pool") {
		t.Errorf("rotation of an unused pool:\n%s", out)
	}
}

// Pool and route views do not call addresses of a draining pool eligible.
func TestViewsOfDrainingPool(t *testing.T) {
	h := fileHarness(t)
	h.seed()
	h.ok("pool", "set-state", "edge-ams-01", "draining")
	if out := h.ok("pool", "show", "edge-ams-01"); strings.Contains(out, "eligible") || !strings.Contains(out, "not handed out (pool draining)") {
		t.Errorf("pool show:\n%s", out)
	}
	out := h.ok("route", "show", "shop.route.v6pod.test")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "edge-ams-01") && !strings.HasSuffix(strings.TrimSpace(l), "0  0") && !strings.HasSuffix(strings.Join(strings.Fields(l), " "), "0 0") {
			t.Errorf("route show counts a draining pool's addresses: %q", l)
		}
	}
	h.ok("pool", "set-weight", "edge-ams-01", "5")
	if out := h.ok("pool", "set-weight", "edge-ams-01", "5"); !strings.Contains(out, "no change; nothing written") {
		t.Errorf("no-op write: %s", out)
	}
}

// Ctrl-C: "ops: interrupted", exit 130.
func TestInterrupted(t *testing.T) {
	h := fileHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.ctx = ctx
	h.fail(ExitInterrupted, "ops: interrupted", "pool", "create", "p", "--edge", "e")
}

// maglev study errors look like every other ops error; --plot says where
// it wrote.
func TestMaglevStudyMessages(t *testing.T) {
	h := fileHarness(t)
	errs := h.fail(ExitUsage, "ops: maglev study: ", "maglev", "study", "--frobnicate")
	if strings.Count(errs, "\n") != 2 || !strings.Contains(errs, "see 'ops maglev study --help'") {
		t.Errorf("stderr:\n%s", errs)
	}
	h.fail(ExitUsage, "ops: maglev study: --backends", "maglev", "study", "--backends", "x")
	plot := filepath.Join(t.TempDir(), "s.png")
	code, _, errs := h.run("maglev", "study", "--backends", "4", "--flows", "1000", "--trials", "1", "--plot", plot)
	if code != ExitOK || !strings.Contains(errs, "wrote the plot to "+plot) {
		t.Errorf("exit %d: %s", code, errs)
	}
}

// conflictStore fails the first n updates with a conflict, after running
// the change.
type conflictStore struct {
	store.Store
	n, calls int
}

func (s *conflictStore) Update(ctx context.Context, fn func(*model.Document) error, opts ...store.UpdateOption) (*model.Document, error) {
	s.calls++
	if s.calls <= s.n {
		d := &model.Document{}
		if err := fn(d); err != nil {
			return nil, err
		}
		return nil, store.ErrConflict
	}
	return s.Store.Update(ctx, fn, opts...)
}

// A conflict is retried on fresh data, up to 3 tries, then reported.
func TestConflictRetried(t *testing.T) {
	for _, tc := range []struct {
		conflicts, runs int
		ok              bool
	}{{0, 1, true}, {2, 3, true}, {3, 3, false}} {
		fs := &conflictStore{Store: store.OpenFile(filepath.Join(t.TempDir(), "pods.yaml"), store.Options{}), n: tc.conflicts}
		var errb bytes.Buffer
		e := &env{stdout: io.Discard, stderr: &errb, getenv: func(string) string { return "" }, now: time.Now,
			sleep: func(ctx context.Context, d time.Duration) error { return nil }}
		c := &call{ctx: context.Background(), e: e, o: &opts{}, st: fs}
		runs := 0
		_, changed, err := c.update(func(d *model.Document) error {
			runs++
			d.Pools = append(d.Pools, model.Pool{Name: "p", Edge: "e"})
			return nil
		})
		if runs != tc.runs || (err == nil) != tc.ok || tc.ok && !changed {
			t.Errorf("%d conflicts: fn ran %d times (want %d), err %v", tc.conflicts, runs, tc.runs, err)
		}
		if !tc.ok && !strings.Contains(err.Error(), "conflict") || !tc.ok && !strings.Contains(err.Error(), "nothing of this change was written") {
			t.Errorf("conflict error: %v", err)
		}
	}
}
