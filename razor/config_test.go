package razor

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// readmeConfig returns the YAML example of README.md's Configuration
// section.
func readmeConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Configuration")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in the Configuration section")
	}
	y, _, _ := strings.Cut(rest, "```")
	return []byte(y)
}

func TestREADMEConfigExample(t *testing.T) {
	t.Parallel()
	abs, _ := filepath.Abs(".")
	cfg, err := ParseConfig(readmeConfig(t), abs)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Zones) != 2 || cfg.Probe.Rise != 2 || cfg.RRL.IPv6Prefix != 56 || cfg.Consul.EdgeService != "v6pod-edge" {
		t.Fatalf("unexpected: %+v", cfg)
	}
	// It runs: on free ports, with the example zones and pods file.
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Metrics = "127.0.0.1:0"
	cfg.Probe.Type = ""
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The metrics listener serves the registry.
	var body []byte
	eventually(t, 5*time.Second, "metrics served", func() bool {
		resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	})
	for _, m := range []string{"razor_queries_total", "razor_pool_healthy", "razor_store_age_seconds"} {
		if !bytes.Contains(body, []byte(m)) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

func TestConfigStrict(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig([]byte("listen: [\"127.0.0.1:53\"]\nzones: []\nrrl:\n  responses_per_second: 5\n  slipp: 2\n"), "")
	if err == nil || !strings.Contains(err.Error(), "line 5") || !strings.Contains(err.Error(), "slipp") {
		t.Fatalf("unknown key: %v, want an error naming line 5 and the key", err)
	}
	for _, tc := range []struct {
		yaml, want string
	}{
		{"zones: [{origin: a.test, file: x}]", "listen"},
		{"listen: [\"127.0.0.1:53\"]", "zones"},
		{"listen: [\"nope\"]\nzones: [{origin: a.test, file: x}]", "listen \"nope\""},
		{"listen: [\"127.0.0.1:53\"]\nzones: [{origin: a.test, file: x}]\nprobe: {type: icmp}", "probe.type"},
		{"listen: [\"127.0.0.1:53\"]\nzones: [{origin: a.test, file: x}]\ncookies: {secret: abc}", "cookies.secret"},
		{"listen: [\"127.0.0.1:53\"]\nzones: [{origin: a.test, file: x}, {origin: a.test., file: y}]", "listed twice"},
		// Larger UDP answers would not fit the send buffers and were
		// dropped; RFC 6891 §6.2.5 leaves the size to the responder.
		{"listen: [\"127.0.0.1:53\"]\nzones: [{origin: a.test, file: x}]\nedns_udp_size: 4097", "edns_udp_size 4097: want 512 to 4096"},
	} {
		c, err := ParseConfig([]byte(tc.yaml), "")
		if err == nil {
			c.Defaults()
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error about %s", tc.yaml, err, tc.want)
		}
	}
}

// Zone files with errors are refused with the reason.
func TestZoneFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ zone, want string }{
		{"@ 3600 IN NS ns.a.test.\n", "no SOA"},
		{"@ 3600 IN SOA ns.a.test. h.a.test. 1 2 3 4 5\n", "no NS"},
		{"@ 3600 IN SOA ns.a.test. h.a.test. 1 2 3 4 5\n@ IN NS ns\nx IN CNAME y\nx IN A 192.0.2.1\n", "CNAME and other data"},
		{"@ 3600 IN SOA ns.a.test. h.a.test. 1 2 3 4 5\n@ IN NS ns\nwww.b.test. IN A 192.0.2.1\n", "outside the zone"},
		{"@ 3600 IN SOA ns.a.test. h.a.test. 1 2 3 4 5\n@ IN NS ns\nx IN A 300.0.0.1\n", "a.test"},
	} {
		p := filepath.Join(dir, "a.zone")
		os.WriteFile(p, []byte("$ORIGIN a.test.\n$TTL 60\n"+tc.zone), 0o644)
		_, err := New(Config{Listen: []string{"127.0.0.1:0"}, Zones: []ZoneConfig{{Origin: "a.test", File: p}}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.zone, err, tc.want)
		}
	}
}

// Main with the quick-start flags serves, and stops when ctx ends.
func TestMainQuickStart(t *testing.T) {
	t.Parallel()
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--listen", "127.0.0.1:0", "--zone", "v6pod.test=testdata/v6pod.test.zone",
			"--zone", "customer.test=testdata/customer.test.zone", "--store", "file://testdata/pods.yaml"}, &out, &errb)
	}()
	eventually(t, 10*time.Second, "serving line", func() bool { return strings.Contains(out.String(), "serving on") })
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after ctx ended")
	}
	if code := Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--zone", "v6pod.test=testdata/v6pod.test.zone", "--check"}, &out, &errb); code != 0 {
		t.Fatalf("--check: %d %s", code, errb.String())
	}
	if code := Main(context.Background(), []string{"--zone", "v6pod.test"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad --zone: exit %d, want 2", code)
	}
	if code := Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--zone", "v6pod.test=nope.zone"}, io.Discard, io.Discard); code != 1 {
		t.Fatalf("missing zone file: exit %d, want 1", code)
	}
}

// SIGHUP makes Main reload the zone files.
func TestMainSIGHUPReloadsZones(t *testing.T) {
	dir := t.TempDir()
	zf := filepath.Join(dir, "v6pod.test.zone")
	b, _ := os.ReadFile("testdata/v6pod.test.zone")
	os.WriteFile(zf, b, 0o644)
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--listen", "127.0.0.1:0", "--zone", "v6pod.test=" + zf, "--store", "testdata/pods.yaml"}, &out, &errb)
	}()
	var addr string
	eventually(t, 10*time.Second, "serving line", func() bool {
		_, rest, ok := strings.Cut(out.String(), "serving on ")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	})
	os.WriteFile(zf, append(b, []byte("hup 60 IN A 192.0.2.77\n")...), 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Timeout: time.Second}
	eventually(t, 10*time.Second, "the new record after SIGHUP", func() bool {
		r, _, err := c.Exchange(newQuery("hup.v6pod.test", dns.TypeA), addr)
		return err == nil && len(r.Answer) == 1
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// Relative paths in a config file are the file's folder's, also when
// --config itself is relative; probe.port defaults to 443 (as documented).
func TestConfigRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ store, want string }{
		{"file://pods.yaml", "file://" + filepath.Join(dir, "pods.yaml")},
		{"sub/pods.yaml", filepath.Join(dir, "sub/pods.yaml")},
		{"file:///abs/pods.yaml", "file:///abs/pods.yaml"},
		{"consul://127.0.0.1:8500/v6pod", "consul://127.0.0.1:8500/v6pod"},
	} {
		p := filepath.Join(dir, "razor.yaml")
		body := "listen: [\"127.0.0.1:0\"]\nzones: [{origin: a.test, file: a.zone}]\nstore: " + tc.store + "\nprobe: {type: tcp}\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		rel, err := filepath.Rel(wd, p)
		if err != nil || filepath.IsAbs(rel) {
			t.Fatalf("no relative path to %s: %v", p, err)
		}
		c, err := LoadConfig(rel)
		if err != nil {
			t.Fatal(err)
		}
		if c.Store != tc.want {
			t.Errorf("store %q: got %q, want %q", tc.store, c.Store, tc.want)
		}
		if want := filepath.Join(dir, "a.zone"); c.Zones[0].File != want {
			t.Errorf("zone file %q, want %q", c.Zones[0].File, want)
		}
		c.Defaults()
		if c.Probe.Port != 443 {
			t.Errorf("probe.port %d, want the default 443", c.Probe.Port)
		}
	}
}

// razor --check opens no socket: it succeeds while the listen address is
// taken.
func TestCheckOpensNoSocket(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", l.Addr().String())
	if err != nil {
		t.Skipf("UDP port of %s taken: %v", l.Addr(), err)
	}
	defer u.Close()
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--listen", l.Addr().String(), "--zone", "v6pod.test=testdata/v6pod.test.zone",
		"--store", "testdata/pods.yaml", "--metrics", l.Addr().String(), "--check"}, &out, &errb); code != 0 {
		t.Fatalf("--check on a taken address: exit %d: %s", code, errb.String())
	}
}
