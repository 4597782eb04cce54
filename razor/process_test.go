package razor

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// envMain makes the test binary run razor.Main instead of the tests, so a
// test can start real razor processes without building the command.
const envMain = "RAZOR_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(envMain); args != "" {
		os.Exit(Main(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startProcess runs razor as a separate process and returns its address.
func startProcess(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envMain+"="+strings.Join(args, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("razor process did not stop on SIGINT")
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "serving on "); ok {
				addr, _, _ := strings.Cut(rest, " ")
				lines <- addr
			}
		}
	}()
	select {
	case a := <-lines:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("razor process did not start")
		return ""
	}
}

// Shard labels are the same on two razor processes (and so after
// restarts): each label's answers come from the same shard_size addresses.
func TestShardStableAcrossProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pods := dir + "/pods.yaml"
	if err := os.WriteFile(pods, []byte(podsDoc(1, "route.v6pod.test.", 2, "label", "edge-a 100 active 50", "edge-b 100 active 50")), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--listen", "127.0.0.1:0", "--zone", "v6pod.test=testdata/v6pod.test.zone", "--store", pods, "--log-level", "error"}
	a, b := startProcess(t, args...), startProcess(t, args...)
	c := &dns.Client{Timeout: 2 * time.Second}
	seen := func(addr, label string) string {
		m := map[netip.Addr]bool{}
		for range 200 {
			r, _, err := c.Exchange(newQuery(label+".route.v6pod.test", dns.TypeAAAA), addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range addrsOf(r.Answer) {
				m[x] = true
			}
		}
		if len(m) != 8 {
			t.Fatalf("%s at %s: %d addresses, want the shard of 8", label, addr, len(m))
		}
		return fmt.Sprint(m)
	}
	for _, label := range []string{"shop", "blog"} {
		if x, y := seen(a, label), seen(b, label); x != y {
			t.Fatalf("%s: the two processes serve different shards:\n%s\n%s", label, x, y)
		}
	}
}
