package edge

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The configuration example of README.md parses and validates.
func TestREADMEConfigExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("README.md has no yaml example")
	}
	example, _, _ := strings.Cut(rest, "```")
	cfg, err := ParseConfig("README.md", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	// The example names a certificate folder of a real node; point it at
	// an existing one to validate the rest.
	cfg.TLS.CertDir = t.TempDir()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Apps["shop"].Balance != "maglev" || cfg.Apps["shop"].MaxFails != 3 || cfg.Apps["legacy"].Check.Interval != 5*time.Second {
		t.Errorf("defaults not applied to apps: %+v", cfg.Apps)
	}
	if len(cfg.Listen) != 3 || !cfg.Listen[1].TLS || !*cfg.Consul.Register {
		t.Errorf("parsed %+v", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listen: [{addr: \"[::1]:80\"}]\nsource: file:///x.yaml\nbogus: 1\n", "line 3"},
		{"listen: [{addr: \"[::1]:80\", tls: true}]\nsource: file:///x.yaml\n", "tls.cert_dir"},
		{"listen: [{addr: \"nope\"}]\nsource: file:///x.yaml\n", "listen #1"},
		{"listen: [{addr: \"[::1]:80\"}]\nsource: gopher://x\n", "unknown kind"},
		{"listen: [{addr: \"[::1]:80\"}]\nsource: file:///x.yaml\ndefaults: {balance: random}\n", "balance \"random\""},
		{"listen: [{addr: \"[::1]:80\"}]\nsource: file:///x.yaml\napps: {shop: {max_ejected: 2}}\n", "max_ejected"},
		{"listen: [{addr: \"[::1]:80\"}]\nsource: file:///x.yaml\nconsul: {register: true}\n", "consul.register"},
		{"source: file:///x.yaml\n", "at least one listener"},
	} {
		cfg, err := ParseConfig("t.yaml", []byte(tc.yaml))
		if err == nil {
			cfg.Node = "n"
			cfg.SetDefaults()
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.yaml, err, tc.want)
		}
	}
}

func TestMainFlagsAndCheck(t *testing.T) {
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods.yaml")
	os.WriteFile(pods, []byte("version: 1\n"), 0o644)
	cfgPath := filepath.Join(dir, "edge.yaml")
	os.WriteFile(cfgPath, []byte("listen: [{addr: \"[::1]:1\"}]\nsource: file:///nowhere.yaml\nnode: from-file\n"), 0o644)
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--config", cfgPath, "--listen", "[::1]:0", "--source", "file://" + pods, "--check"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "configuration ok") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main(context.Background(), []string{"--source", "file://" + pods}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "listener") {
		t.Fatalf("no listener: exit %d, %q", code, errb.String())
	}
	// A real run until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if code := Main(ctx, []string{"--listen", "[::1]:0", "--source", "file://" + pods}, &out, &errb); code != 0 {
		t.Fatalf("run: exit %d, %s", code, errb.String())
	}
}

func TestAccessLogSampler(t *testing.T) {
	sm := sampler{rate: 3, sample: 10}
	now := time.Unix(100, 0)
	logged := 0
	for range 103 {
		if _, ok := sm.take(now); ok {
			logged++
		}
	}
	if logged != 3+10 {
		t.Fatalf("logged %d of 103 with rate 3, sample 10; want 13", logged)
	}
	if every, ok := sm.take(now.Add(time.Second)); !ok || every != 1 {
		t.Fatalf("a new second logs in full: %d %v", every, ok)
	}
}
