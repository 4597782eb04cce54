package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/v6pod/v6pod/internal/model"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// checkRotated checks the end state of rotating 203.0.113.2 and
// 2001:db8:1::2 out and 203.0.113.9 and 2001:db8:1::9 in.
func checkRotated(t *testing.T, d *model.Document) {
	t.Helper()
	p := d.Pool("edge-ams-01")
	want4, want6 := addrs("203.0.113.1", "203.0.113.9"), addrs("2001:db8:1::1", "2001:db8:1::9")
	if !slices.Equal(p.V4, want4) || !slices.Equal(p.V6, want6) || len(p.Drain) != 0 || p.Rotation != nil {
		t.Fatalf("after the rotation: v4 %v v6 %v drain %v rotation %+v; want v4 %v v6 %v, nothing drained, no rotation",
			p.V4, p.V6, p.Drain, p.Rotation, want4, want6)
	}
}

var rotateArgv = []string{"pool", "rotate", "edge-ams-01", "--out", "203.0.113.2", "2001:db8:1::2", "--in", "203.0.113.9", "[2001:db8:1::9]", "--allow-reserved"}

func TestRotate(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		out := h.ok(rotateArgv...)
		for _, want := range []string{"step 1/4", "step 2/4", "step 3/4: waiting 40s", "twice the largest TTL, 20s", "step 4/4"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		checkRotated(t, h.load())
		h.fail(ExitFail, "pool edge-ams-01: no rotation in progress; nothing to resume", "pool", "rotate", "--resume", "edge-ams-01")
	})
}

// A rotation interrupted after each of its steps leaves a valid store
// (every reader can load it) in which razor never hands out fewer than the
// addresses it should, and --resume ends in the right state.
func TestRotateInterruptedAndResumed(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.seed()
		for step := stepStart; step <= stepFinish; step++ {
			t.Run(fmt.Sprintf("after step %d", step), func(t *testing.T) {
				h.t = t
				// Start over from the seed each time.
				h.stdin = seedYAML
				h.ok("import", "-", "--allow-reserved", "--force")
				h.afterStep = func(n int) error {
					if n == step {
						return errors.New("injected interruption")
					}
					return nil
				}
				errs := h.fail(ExitFail, "injected interruption", rotateArgv...)
				if !strings.Contains(errs, "ops pool rotate --resume edge-ams-01") {
					t.Errorf("the error does not say how to resume:\n%s", errs)
				}
				h.afterStep = nil
				d := h.load() // loads = valid
				p := d.Pool("edge-ams-01")
				if step < stepFinish {
					if p.Rotation == nil {
						t.Fatal("no rotation recorded")
					}
					for _, a := range addrs("203.0.113.9", "2001:db8:1::9") {
						if !inPool(p, a) || slices.Contains(p.Drain, a) {
							t.Errorf("incoming %s not eligible after step %d", a, step)
						}
					}
					drained := step >= stepDrain
					for _, a := range addrs("203.0.113.2", "2001:db8:1::2") {
						if !inPool(p, a) || slices.Contains(p.Drain, a) != drained {
							t.Errorf("outgoing %s after step %d: in pool %v, drained %v", a, step, inPool(p, a), slices.Contains(p.Drain, a))
						}
					}
					// A second rotation is refused while one is open.
					h.fail(ExitFail, "a rotation is already in progress", "pool", "rotate", "edge-ams-01", "--out", "203.0.113.1")
					h.fail(ExitFail, "part of an unfinished rotation", "pool", "undrain", "edge-ams-01", "203.0.113.2")
					h.ok("pool", "rotate", "--resume", "edge-ams-01")
				}
				checkRotated(t, h.load())
			})
		}
	})
}

// An interruption during the wait (Ctrl-C) leaves the outgoing addresses
// drained; a resume later waits only what is left.
func TestRotateWaitResumesWithTheRemainder(t *testing.T) {
	h := fileHarness(t)
	h.seed()
	var slept []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	h.afterStep = func(n int) error {
		if n == stepDrain {
			cancel() // Ctrl-C during the wait
		}
		return nil
	}
	errs := h.fail(ExitInterrupted, "ops: interrupted", rotateArgv...)
	if !strings.Contains(errs, "--resume edge-ams-01") {
		t.Errorf("no resume hint: %s", errs)
	}
	if p := h.load().Pool("edge-ams-01"); p.Rotation == nil || p.Rotation.DrainedAt != testNow.Format(time.RFC3339) {
		t.Fatalf("rotation after the interruption: %+v", p.Rotation)
	}
	h.ctx, h.afterStep = nil, nil
	h.now = testNow.Add(25 * time.Second)
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" },
		now: func() time.Time { return h.now },
		sleep: func(_ context.Context, d time.Duration) error {
			slept = append(slept, d)
			return nil
		}}
	if code := run(context.Background(), e, []string{"--store", h.url, "pool", "rotate", "--resume", "edge-ams-01"}); code != 0 {
		t.Fatalf("resume: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if len(slept) != 1 || slept[0] != 15*time.Second {
		t.Errorf("slept %v, want the 15s left of 2×20s", slept)
	}
	checkRotated(t, h.load())
}

func TestRotateAbortAndDryRun(t *testing.T) {
	h := fileHarness(t)
	h.seed()
	v := h.load().Version
	out := h.ok(append(rotateArgv, "--dry-run")...)
	if !strings.Contains(out, "+  - 203.0.113.9") || !strings.Contains(out, "+rotation:") {
		t.Errorf("dry run:\n%s", out)
	}
	if h.load().Version != v {
		t.Fatal("dry run wrote")
	}
	h.afterStep = func(n int) error {
		if n == stepDrain {
			return errors.New("stop")
		}
		return nil
	}
	h.fail(ExitFail, "stop", rotateArgv...)
	h.afterStep = nil
	h.ok("pool", "rotate", "--abort", "edge-ams-01")
	p := h.load().Pool("edge-ams-01")
	if p.Rotation != nil || len(p.Drain) != 0 || !inPool(p, netip.MustParseAddr("203.0.113.9")) {
		t.Errorf("after abort: %+v (the seed drains nothing; the abort must undrain the outgoing ones)", p)
	}
	h.fail(ExitUsage, "give --out", "pool", "rotate", "edge-ams-01")
	h.fail(ExitUsage, "exclude each other", "pool", "rotate", "edge-ams-01", "--resume", "--abort")
	h.fail(ExitUsage, "both in --out and --in", "pool", "rotate", "edge-ams-01", "--out", "203.0.113.1", "--in", "203.0.113.1")
}

func TestRotateArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"P --out A", "P --out A"},
		{"P --out 192.0.2.1 192.0.2.2 --in ::1 --dry-run", "P --out 192.0.2.1 --out 192.0.2.2 --in ::1 --dry-run"},
		{"--out 192.0.2.1 192.0.2.2 P", "--out 192.0.2.1 --out 192.0.2.2 P"},
		{"P --in 2001:db8::1,2001:db8::2 [2001:db8::3]", "P --in 2001:db8::1,2001:db8::2 --in [2001:db8::3]"},
		{"P --out 192.0.2.1 -- 192.0.2.2", "P --out 192.0.2.1 -- 192.0.2.2"},
	} {
		if got := strings.Join(rotateArgs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("rotateArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	now := testNow
	e := &env{now: func() time.Time { return now }, sleep: func(_ context.Context, d time.Duration) error {
		now = now.Add(d)
		return nil
	}}
	if err := progress(context.Background(), e, &buf, testNow, testNow.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "[....") || !strings.Contains(out, "100%") || strings.Count(out, "\r") != 5 {
		t.Errorf("progress output %q", out)
	}
}

const seedYAML = `pools:
  - name: edge-ams-01
    edge: ams-01
    site: ams
    v4: [203.0.113.1, 203.0.113.2]
    v6: ["2001:db8:1::1", "2001:db8:1::2"]
  - name: edge-fra-01
    edge: fra-01
    site: fra
    weight: 50
    v4: [198.51.100.1]
    v6: ["2001:db8:2::1"]
routes:
  - name: shop.route.v6pod.test.
    pools: [edge-ams-01, edge-fra-01]
    ttl: 20
`
