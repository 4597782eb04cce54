// Package testsvc starts real services for one test.
//
// Each starter (StartRedis, StartConsul, StartBIRD, StartGoBGPD) runs the
// real binary on free loopback ports with its own files under t.TempDir,
// waits until the service answers, and registers a t.Cleanup that stops it
// by process group. Without the binary the test is skipped, unless
// V6POD_REQUIRE_SERVICES=1, when it fails instead.
package testsvc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvRequire names the variable that turns a missing binary or missing root
// into a test failure instead of a skip. CI sets it to 1.
const EnvRequire = "V6POD_REQUIRE_SERVICES"

// required reports whether missing services must fail the test.
func required() bool { return os.Getenv(EnvRequire) == "1" }

// Require returns the path of the executable bin, found on PATH. Without it
// the test is skipped with a message that names scripts/deps.sh, or fails
// when V6POD_REQUIRE_SERVICES=1.
func Require(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err == nil {
		return p
	}
	// Debian puts bird and birdc in /usr/sbin, which a non-root PATH lacks.
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p = filepath.Join(dir, bin)
		if isExecutable(p) {
			return p
		}
	}
	missing(t, fmt.Sprintf("testsvc: %s not found; install with scripts/deps.sh", bin))
	return ""
}

// RequireRoot skips the test when it does not run as root, or fails it when
// V6POD_REQUIRE_SERVICES=1 (CI runs as root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "testsvc: test needs root (network namespaces, TUN, TCP-MD5); run as root or in CI")
	}
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if required() {
		t.Fatal(msg + " (" + EnvRequire + "=1)")
		return
	}
	t.Skip(msg)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// freePort returns a TCP port on host that was free a moment ago. The race
// with other processes is accepted; starters retry on "address in use".
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("testsvc: free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeUDPTCPPort returns a port free for both TCP and UDP on host (Serf
// gossip uses both).
func freeUDPTCPPort(host string) (int, error) {
	for range 20 {
		p, err := freePort(host)
		if err != nil {
			return 0, err
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			u.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("testsvc: no port free for TCP and UDP on %s", host)
}

// errAddrInUse marks a start that failed because a port was taken; the
// starters retry with new ports.
var errAddrInUse = errors.New("address already in use")

// startAttempts is how often a starter tries when a port was taken.
const startAttempts = 3

// proc is one running service process, in its own process group.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile *os.File
	stopped sync.Once
}

// startProc starts argv with stdout and stderr appended to logPath.
func startProc(name, logPath string, env []string, argv ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testsvc: %s log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	// Own process group, so Stop reaches every child; killed with the test
	// binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("testsvc: start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: f}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) {
	p.stopped.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Children that ignored the signal to the leader.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// logTail returns the last n lines of the process log.
func (p *proc) logTail(n int) string { return tailFile(p.logPath, n) }

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b = bytes.TrimRight(b, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSays reports whether the log mentions one of the needles.
func logSays(path string, needles ...string) bool {
	b, _ := os.ReadFile(path)
	for _, n := range needles {
		if bytes.Contains(b, []byte(n)) {
			return true
		}
	}
	return false
}

// waitReady polls ready until it returns nil, the process exits, or the
// deadline passes. The error includes the end of the service log and wraps
// errAddrInUse when the log says a port was taken.
func (p *proc) waitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		if p.exited() {
			return p.startError(fmt.Errorf("exited (%v) before it answered: %v", p.waitErr, last))
		}
		if time.Now().After(deadline) {
			return p.startError(fmt.Errorf("not ready after %s: %v", timeout, last))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) startError(err error) error {
	tail := p.logTail(20)
	if logSays(p.logPath, "already in use", "Address in use", "EADDRINUSE") {
		return fmt.Errorf("testsvc: %s %v: %w\n--- last lines of %s ---\n%s", p.name, err, errAddrInUse, p.logPath, tail)
	}
	return fmt.Errorf("testsvc: %s %v\n--- last lines of %s ---\n%s", p.name, err, p.logPath, tail)
}

// shortDir returns a directory for Unix sockets whose paths must stay under
// the kernel's 108-byte limit: dir itself when short enough, otherwise a
// fresh folder under /tmp removed by t.Cleanup.
func shortDir(t testing.TB, dir string) string {
	if len(dir) < 80 {
		return dir
	}
	d, err := os.MkdirTemp("", "tsvc")
	if err != nil {
		t.Fatalf("testsvc: socket dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
