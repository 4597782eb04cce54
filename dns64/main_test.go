package dns64

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// freePort returns a loopback host:port that was free for UDP and TCP.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", a)
		pc.Close()
		if err == nil {
			ln.Close()
			return a
		}
	}
	t.Fatal("no free port")
	return ""
}

// waitAnswer polls addr until it answers the query (generous deadline).
func waitAnswer(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r, _, err := c.Exchange(m, addr); err == nil {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered", addr)
	return nil
}

func runMain(t *testing.T, args ...string) (stop func() int, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, io.Discard, stderr) }()
	stopped := false
	code := -1
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Main did not return after cancel")
			}
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return stop, stderr
}

func TestMainQuickStartFlags(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	listen, metrics := freePort(t), freePort(t)
	stop, stderr := runMain(t, "--listen", listen, "--upstream", up.addr, "--prefix", "2001:db8:64::/96",
		"--metrics", metrics, "--log-format", "json")
	m := waitAnswer(t, listen, "v4only.test.", dns.TypeAAAA)
	if got := aaaas(m); !slices.Equal(got, []string{"2001:db8:64::102:304"}) {
		t.Errorf("AAAA %v", got)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`dns64_queries_total{qtype="AAAA",transport="udp"}`, "dns64_synthesized_total 1",
		"dns64_cache_misses_total", "dns64_upstream_duration_seconds_bucket", "dns64_upstream_healthy"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr.String(), `"msg":"dns64 stopped"`) {
		t.Errorf("no structured shutdown log:\n%s", stderr)
	}
}

func TestMainConfigFileWithFlagOverride(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	listen := freePort(t)
	path := filepath.Join(t.TempDir(), "dns64.yaml")
	os.WriteFile(path, []byte("listen: "+listen+"\nupstreams: [\"192.0.2.1:53\"]\nprefix: 2001:db8:1::/96\n"), 0o600)
	stop, stderr := runMain(t, "--config", path, "--upstream", up.addr, "--prefix", "2001:db8:2::/96")
	m := waitAnswer(t, listen, "v4only.test.", dns.TypeAAAA)
	if got := aaaas(m); !slices.Equal(got, []string{"2001:db8:2::102:304"}) {
		t.Errorf("AAAA %v (flags must override the file)", got)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

func TestMainRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	tests := []struct {
		name string
		args []string
		code int
		want string // regexp on stderr/stdout
	}{
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"no upstream", []string{"--listen", "127.0.0.1:0"}, 2, "upstreams: at least one"},
		{"bad prefix length", []string{"--upstream", "127.0.0.1", "--prefix", "2001:db8::/44"}, 2, "length must be 32, 40, 48, 56, 64 or 96"},
		{"u octet set", []string{"--upstream", "127.0.0.1", "--prefix", "2001:db8:0:0:ff00::/96"}, 2, "bits 64-71"},
		{"unknown key names its line", []string{"--config", write("a.yaml", "upstreams: [127.0.0.1]\nprefixes: []\nbogus: 1\n")}, 2, `line 3: field bogus not found`},
		{"bad value names its key", []string{"--config", write("b.yaml", "upstreams: [127.0.0.1]\nexclude_ipv4: [\"2001:db8::/32\"]\n")}, 2, `exclude_ipv4\[0\]`},
		{"range listed twice", []string{"--config", write("c.yaml", "upstreams: [127.0.0.1]\nprefixes:\n  - {ipv4: 10.0.0.0/8, prefix: \"2001:db8::/32\"}\n  - {ipv4: 10.0.0.0/8, prefix: \"2001:db9::/32\"}\n")}, 2, `prefixes\[1\].ipv4: 10.0.0.0/8 is listed twice`},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, 2, "no such file"},
		{"check only", []string{"--check", "--upstream", "127.0.0.1"}, 0, "configuration is valid"},
		{"stray argument", []string{"--upstream", "127.0.0.1", "extra"}, 2, "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := Main(context.Background(), tc.args, &out, &out)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out.String())
			}
			if !regexp.MustCompile(tc.want).MatchString(out.String()) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}

// The configuration example of README.md parses strictly and validates.
func TestREADMEConfigExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Configuration.*?```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md has no yaml block under ## Configuration")
	}
	cfg, err := ParseConfig(m[1])
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("README example: %v", err)
	}
	if len(cfg.Upstreams) < 2 || len(cfg.Prefixes) == 0 || cfg.Metrics == "" {
		t.Errorf("README example should show several upstreams, per-range prefixes and metrics: %+v", cfg)
	}
	// Every documented metric name exists.
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mfs, _ := s.Registry().Gather()
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range regexp.MustCompile("`(dns64_[a-z_]+)`").FindAllSubmatch(b, -1) {
		n := strings.TrimSuffix(string(name[1]), "_bucket")
		if !have[n] && !strings.HasPrefix(n, "dns64_upstream") && !strings.HasPrefix(n, "dns64_responses") {
			t.Errorf("README documents %s, which is not registered", n)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
