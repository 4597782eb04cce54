package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the lab started inside a namespace.
type proc struct {
	name string
	ns   string
	cmd  *exec.Cmd
	log  string
}

// start runs bin with args inside ns, detached in its own session (so it
// outlives `lab up`), output to <dir>/<name>.log, PID to <dir>/<name>.pid.
func (l *Lab) start(name, ns string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	os.WriteFile(filepath.Join(l.Dir, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	p := &proc{name: name, ns: ns, cmd: cmd, log: logPath}
	go cmd.Wait() // reap; the lab checks liveness by probing, not by Wait
	l.procs = append(l.procs, p)
	return p, nil
}

// stop sends sig to the process group of p and waits up to d for it to go.
func (p *proc) stop(sig syscall.Signal, d time.Duration) {
	pid := p.cmd.Process.Pid
	syscall.Kill(-pid, sig)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
}

// tail returns the last lines of p's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// killRecorded kills every process whose PID file is in dir (a previous
// run's, too) and removes the files.
func killRecorded(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.Remove(f)
	}
}

// waitFor polls check every 100ms until it returns nil or d passes.
func waitFor(d time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
