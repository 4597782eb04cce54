package ops

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/model"
	"github.com/v6pod/v6pod/internal/store"
	"github.com/v6pod/v6pod/internal/testsvc"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// harness runs ops commands against one store.
type harness struct {
	t      *testing.T
	url    string
	consul *testsvc.Consul
	// now is the clock the commands see.
	now time.Time
	// afterStep is passed to the rotation.
	afterStep func(int) error
	stdin     string
	ctx       context.Context
}

func fileHarness(t *testing.T) *harness {
	return &harness{t: t, url: "file://" + filepath.Join(t.TempDir(), "pods.yaml"), now: testNow}
}

func consulHarness(t *testing.T) *harness {
	c := testsvc.StartConsul(t)
	return &harness{t: t, url: c.URL("v6pod"), consul: c, now: testNow}
}

var testNow = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

// backends runs f against the file store and against a real Consul.
func backends(t *testing.T, f func(t *testing.T, h *harness)) {
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		f(t, fileHarness(t))
	})
	t.Run("consul", func(t *testing.T) {
		t.Parallel()
		f(t, consulHarness(t))
	})
}

// run runs one command line and returns the exit code and the output.
func (h *harness) run(args ...string) (int, string, string) {
	h.t.Helper()
	var out, errb bytes.Buffer
	ctx := h.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	e := &env{
		stdin: strings.NewReader(h.stdin), stdout: &out, stderr: &errb,
		getenv:    func(string) string { return "" },
		now:       func() time.Time { return h.now },
		afterStep: h.afterStep,
		sleep:     func(ctx context.Context, d time.Duration) error { return ctx.Err() },
	}
	code := run(ctx, e, append([]string{"--store", h.url}, args...))
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its output.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	code, out, errs := h.run(args...)
	if code != ExitOK {
		h.t.Fatalf("ops %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fail runs a command that must fail with code, its stderr holding want.
func (h *harness) fail(code int, want string, args ...string) string {
	h.t.Helper()
	got, out, errs := h.run(args...)
	if got != code || !strings.Contains(errs, want) {
		h.t.Fatalf("ops %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, want, out, errs)
	}
	return errs
}

func (h *harness) load() *model.Document {
	h.t.Helper()
	st, err := store.Open(h.url, store.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Load(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// seed creates two pools and a route.
func (h *harness) seed() {
	h.t.Helper()
	h.ok("pool", "create", "edge-ams-01", "--edge", "ams-01", "--site", "ams",
		"--v4", "203.0.113.1,203.0.113.2", "--v6", "2001:db8:1::1", "--v6", "2001:db8:1::2", "--allow-reserved")
	h.ok("pool", "create", "edge-fra-01", "--edge", "fra-01", "--site", "fra", "--weight", "50",
		"198.51.100.1", "[2001:DB8:2::1]", "--allow-reserved")
	h.ok("route", "create", "Shop.Route.v6pod.test", "--pools", "edge-ams-01,edge-fra-01", "--ttl", "20")
	h.ok("route", "create", "blog.route.v6pod.test.", "--pools", "edge-fra-01", "--answers", "2", "--shard", "label")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// The table views, compared with golden files; the same on both stores.
func TestGoldenTables(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		h.ok("pool", "drain", "edge-ams-01", "203.0.113.2")
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"pool_list", []string{"pool", "list"}},
			{"pool_show", []string{"pool", "show", "edge-ams-01"}},
			{"route_list", []string{"route", "list"}},
			{"route_show", []string{"route", "show", "shop.route.v6pod.test"}},
		} {
			golden(t, tc.name, h.ok(tc.args...))
		}
		// status names the store; the rest is the same everywhere.
		out := strings.Replace(h.ok("status"), h.url, "STORE", 1)
		out = regexp.MustCompile(`version \d+`).ReplaceAllString(out, "version N")
		if h.consul != nil {
			golden(t, "status_consul_no_services", out)
		} else {
			golden(t, "status_file", out)
		}
	})
}

// The commands work the same against both stores.
func TestCommands(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		d := h.load()
		ams := d.Pool("edge-ams-01")
		if len(ams.V4) != 2 || len(ams.V6) != 2 || ams.Site != "ams" {
			t.Fatalf("pool after create: %+v", ams)
		}
		if fra := d.Pool("edge-fra-01"); fra.Weight != 50 || fra.V6[0].String() != "2001:db8:2::1" {
			t.Fatalf("addresses in any form, sorted by family: %+v", fra)
		}
		if r := d.Route("shop.route.v6pod.test."); r == nil || r.TTL != 20 {
			t.Fatalf("route: %+v", r)
		}

		h.ok("pool", "set-weight", "edge-ams-01", "70")
		h.ok("pool", "set-state", "edge-fra-01", "draining")
		h.ok("pool", "add-addr", "edge-ams-01", "::ffff:203.0.113.3", "2001:db8:1:0:0:0:0:3", "--allow-reserved")
		h.ok("pool", "drain", "edge-ams-01", "203.0.113.1", "2001:db8:1::3")
		h.ok("pool", "undrain", "edge-ams-01", "2001:db8:1::3")
		h.ok("pool", "remove-addr", "edge-ams-01", "203.0.113.1")
		h.ok("route", "set", "shop.route.v6pod.test", "--ttl", "60", "--answers", "3")
		d = h.load()
		ams = d.Pool("edge-ams-01")
		if ams.Weight != 70 || len(ams.V4) != 2 || len(ams.V6) != 3 || len(ams.Drain) != 0 {
			t.Fatalf("pool after changes: %+v", ams)
		}
		if d.Pool("edge-fra-01").State != model.Draining {
			t.Error("set-state did not land")
		}
		if r := d.Route("shop.route.v6pod.test"); r.TTL != 60 || r.Answers != 3 || len(r.Pools) != 2 {
			t.Errorf("route set changed more or less than asked: %+v", r)
		}

		// -o json of every read command decodes.
		for _, args := range [][]string{{"pool", "list"}, {"pool", "show", "edge-ams-01"}, {"route", "list"}, {"route", "show", "shop.route.v6pod.test"}, {"status"}} {
			out := h.ok(append(args, "-o", "json")...)
			if !strings.HasPrefix(out, "[") && !strings.HasPrefix(out, "{") {
				t.Errorf("%v -o json: %s", args, out)
			}
		}

		// Errors name the object and what is wrong; the store is unchanged.
		v := h.load().Version
		h.fail(ExitFail, "pool edge-fra-01: address 203.0.113.2 is already in pool edge-ams-01", "pool", "add-addr", "edge-fra-01", "203.0.113.2", "--allow-reserved")
		h.fail(ExitFail, "reserved range 192.0.2.0/24", "pool", "add-addr", "edge-fra-01", "192.0.2.7")
		h.fail(ExitFail, "reserved range 127.0.0.0/8", "pool", "add-addr", "edge-fra-01", "127.0.0.2")
		h.fail(ExitFail, "reserved range fe80::/10", "pool", "add-addr", "edge-fra-01", "fe80::1")

		h.fail(ExitFail, "pool nope: no such pool", "pool", "drain", "nope", "203.0.113.2")
		h.fail(ExitFail, "pool edge-ams-01: 198.51.100.1 is not an address of the pool", "pool", "drain", "edge-ams-01", "198.51.100.1")
		h.fail(ExitFail, "pool edge-ams-01: 203.0.113.2 is not drained", "pool", "remove-addr", "edge-ams-01", "203.0.113.2")
		h.fail(ExitFail, "pool edge-fra-01: used by route(s)", "pool", "delete", "edge-fra-01")
		h.fail(ExitFail, "route shop.route.v6pod.test.: pool nope does not exist", "route", "set", "shop.route.v6pod.test", "--pools", "nope")
		h.fail(ExitFail, "route x.test.: no such route", "route", "delete", "x.test")
		h.fail(ExitFail, "pool edge-ams-01: already exists", "pool", "create", "edge-ams-01", "--edge", "x")
		if got := h.load().Version; got != v {
			t.Errorf("a failed command wrote: version %d → %d", v, got)
		}

		// Usage errors exit 2.
		h.fail(ExitUsage, "weight \"heavy\"", "pool", "set-weight", "edge-ams-01", "heavy")
		h.fail(ExitUsage, "state \"asleep\"", "pool", "set-state", "edge-ams-01", "asleep")
		h.fail(ExitUsage, "want POOL ADDR...", "pool", "drain", "edge-ams-01")
		h.fail(ExitUsage, "unknown command", "pool", "explode")
		h.fail(ExitUsage, "flag provided but not defined", "pool", "list", "--frobnicate")
		h.fail(ExitUsage, "--edge is required", "pool", "create", "p9")
		h.fail(ExitUsage, "-o \"xml\"", "pool", "list", "-o", "xml")
		// Malformed arguments are usage errors too, on one line plus the
		// hint, the same for a dry run and a real one.
		for _, dry := range []bool{false, true} {
			var extra []string
			if dry {
				extra = []string{"--dry-run"}
			}
			for _, tc := range []struct {
				want string
				args []string
			}{
				{`address "203.0.113.300"`, []string{"pool", "add-addr", "edge-fra-01", "203.0.113.300"}},
				{"address 198.51.100.7 given twice", []string{"pool", "add-addr", "edge-fra-01", "198.51.100.7", "198.51.100.7"}},
				{"--ttl 0: want 1 to 86400", []string{"route", "set", "shop.route.v6pod.test", "--ttl", "0"}},
				{"--shard-size needs --shard label", []string{"route", "create", "x.test", "--pools", "edge-ams-01", "--shard-size", "8"}},
				{"--shard-size -1: want a positive number", []string{"route", "set", "shop.route.v6pod.test", "--shard-size", "-1"}},
				{"--pools: edge-ams-01 given twice", []string{"route", "set", "shop.route.v6pod.test", "--pools", "edge-ams-01,edge-ams-01"}},
				{`"bad name!.test.": label "bad name!"`, []string{"route", "create", "bad name!.test", "--pools", "edge-ams-01"}},
			} {
				errs := h.fail(ExitUsage, tc.want, append(tc.args, extra...)...)
				if lines := strings.Split(strings.TrimSpace(errs), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "see 'ops ") {
					t.Errorf("%v: want one line and the hint, got:\n%s", tc.args, errs)
				}
			}
		}

		// --dry-run prints the diff and writes nothing.
		out := h.ok("pool", "set-weight", "edge-ams-01", "5", "--dry-run")
		if !strings.Contains(out, "--- pool edge-ams-01") || !strings.Contains(out, "-weight: 70") || !strings.Contains(out, "+weight: 5") {
			t.Errorf("dry-run diff:\n%s", out)
		}
		if got := h.load().Version; got != v {
			t.Error("--dry-run wrote")
		}

		// Delete: routes first, then the pool.
		h.ok("route", "delete", "blog.route.v6pod.test")
		h.ok("route", "set", "shop.route.v6pod.test", "--pools", "edge-ams-01")
		h.ok("pool", "delete", "edge-fra-01")
		if d := h.load(); d.Pool("edge-fra-01") != nil || len(d.Routes) != 1 {
			t.Errorf("after deletes: %+v", d)
		}
	})
}

// Export, then import into an empty store, gives the same data; an import
// with one bad address writes nothing.
func TestExportImport(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		exported := h.ok("export")
		other := fileHarness(t)
		if h.consul != nil {
			other = &harness{t: t, url: h.consul.URL("copy"), now: testNow}
		}
		path := filepath.Join(t.TempDir(), "in.yaml")
		os.WriteFile(path, []byte(exported), 0o644)
		other.fail(ExitFail, "reserved range", "import", path)
		other.ok("import", path, "--allow-reserved")
		a, b := h.load(), other.load()
		a.Version, b.Version = 0, 0
		if same, _ := model.Equal(a, b); !same {
			t.Errorf("import of the export differs")
		}

		// One bad address among many: nothing is written.
		v := h.load().Version
		for _, bad := range []struct{ text, want string }{
			{strings.Replace(exported, "198.51.100.1", "198.51.100.999", 1), `"198.51.100.999"`},
			{strings.Replace(exported, "198.51.100.1", "203.0.113.1", 1), "203.0.113.1 is already in pool"},
			{strings.Replace(exported, "198.51.100.1", "2001:db8:9::1", 1), "is not an IPv4 address"},
			{strings.Replace(exported, "198.51.100.1", "127.0.0.1", 1), "127.0.0.0/8"},
		} {
			h.stdin = bad.text
			args := []string{"import", "-", "--allow-reserved"}
			if bad.want == "127.0.0.0/8" {
				args = args[:2]
			}
			h.fail(ExitFail, bad.want, args...)
		}
		if got := h.load().Version; got != v {
			t.Errorf("a bad import wrote: version %d → %d", v, got)
		}
	})
}

// Every command's --help has an example and exits 0.
func TestHelp(t *testing.T) {
	h := fileHarness(t)
	for _, c := range commands {
		args := append(strings.Fields(c.name), "--help")
		code, out, errs := h.run(args...)
		if code != ExitOK || !strings.Contains(out, "example:\n  ops ") {
			t.Errorf("ops %s --help: exit %d\n%s%s", c.name, code, out, errs)
		}
	}
	if code, out, _ := h.run("--help"); code != ExitOK || !strings.Contains(out, "pool rotate") {
		t.Errorf("ops --help: exit %d\n%s", code, out)
	}
	if code, out, _ := h.run("pool", "--help"); code != ExitOK || !strings.Contains(out, "pool rotate") || !strings.Contains(out, "example:") {
		t.Errorf("ops pool --help: exit %d\n%s", code, out)
	}
	if code, _, errs := h.run("pool"); code != ExitUsage || !strings.Contains(errs, "which one?") {
		t.Errorf("ops pool: exit %d\n%s", code, errs)
	}
	if code, _, _ := h.run(); code != ExitUsage {
		t.Errorf("ops without a command: exit %d, want 2", code)
	}
}

func TestNoStore(t *testing.T) {
	h := fileHarness(t)
	h.url = ""
	code, _, errs := h.run("pool", "list")
	if code != ExitUsage || !strings.Contains(errs, "V6POD_STORE") {
		t.Errorf("exit %d, %s", code, errs)
	}
}

// Every ops command line in the README parses: the command exists, its
// flags are known, its argument count is right.
func TestReadmeCommandsParse(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	inSh := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		case !inSh || !strings.HasPrefix(line, "ops "):
			continue
		}
		words := shellWords(line)[1:]
		if i := slices.Index(words, ">"); i >= 0 {
			words = words[:i]
		}
		e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
			getenv: func(string) string { return "" }, now: time.Now, parseOnly: true}
		var errb bytes.Buffer
		e.stderr = &errb
		if code := run(context.Background(), e, words); code != ExitOK {
			t.Errorf("README: %s: exit %d: %s", line, code, errb.String())
		}
		n++
	}
	if n < 20 {
		t.Errorf("only %d command lines found in the README", n)
	}
}

// shellWords splits a command line at spaces, honouring single quotes.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, has := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, has = !quoted, true
		case r == ' ' && !quoted:
			if has {
				out = append(out, cur.String())
			}
			cur.Reset()
			has = false
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	if has {
		out = append(out, cur.String())
	}
	return out
}
