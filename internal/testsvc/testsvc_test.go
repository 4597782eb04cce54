package testsvc

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// recTB records Skip and Fatal instead of ending the test.
type recTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recTB) Helper()                           {}
func (r *recTB) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recTB) Fatal(args ...any)                 { r.fatal = fmt.Sprint(args...) }
func (r *recTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestRequireMissingBinarySkips(t *testing.T) {
	t.Setenv(EnvRequire, "")
	r := &recTB{TB: t}
	if p := Require(r, "v6pod-no-such-binary"); p != "" {
		t.Fatalf("Require returned %q", p)
	}
	want := "testsvc: v6pod-no-such-binary not found; install with scripts/deps.sh"
	if r.skipped != want || r.fatal != "" {
		t.Fatalf("skip %q fatal %q, want skip %q", r.skipped, r.fatal, want)
	}
}

func TestRequireMissingBinaryFailsWhenRequired(t *testing.T) {
	t.Setenv(EnvRequire, "1")
	r := &recTB{TB: t}
	Require(r, "v6pod-no-such-binary")
	if r.skipped != "" || !strings.Contains(r.fatal, "v6pod-no-such-binary not found") {
		t.Fatalf("skip %q fatal %q, want a failure", r.skipped, r.fatal)
	}
}

func TestRequireFindsBinary(t *testing.T) {
	want, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if got := Require(t, "sh"); got != want {
		t.Fatalf("Require(sh) = %q, want %q", got, want)
	}
}

func TestStartErrorCarriesLogTail(t *testing.T) {
	t.Parallel()
	sh := "/bin/sh"
	dir := t.TempDir()
	p, err := startProc("fake", dir+"/fake.log", nil, sh, "-c", "echo first; echo 'bind: Address already in use'; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = p.waitReady(5e9, func() error { return fmt.Errorf("not yet") })
	if err == nil || !strings.Contains(err.Error(), "Address already in use") || !isAddrInUse(err) {
		t.Fatalf("err = %v, want the log tail and errAddrInUse", err)
	}
	p.stop(0)
}
