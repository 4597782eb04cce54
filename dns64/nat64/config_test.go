package nat64

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeConfig returns the YAML example of README.md.
func readmeConfig(t testing.TB) string {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("README.md has no yaml block")
	}
	y, _, _ := strings.Cut(rest, "```")
	return y
}

func TestReadmeConfigExample(t *testing.T) {
	c, err := ParseConfig([]byte(readmeConfig(t)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.pool4) != 17 || c.pool4[16].lo != 20000 || c.pool4[16].hi != 29999 || c.pool4[0].lo != 1024 {
		t.Fatalf("pool4 %+v", c.pool4)
	}
	if c.Timeouts.TCPEstablished != 2*time.Hour+4*time.Minute || len(c.static) != 2 || c.Queues != 2 || c.SYNRate != 50000 {
		t.Fatalf("config %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	base := "pool6: 64:ff9b::/96\npool4: [198.51.100.0/28]\n"
	for _, tc := range []struct{ yaml, want string }{
		{base + "bogus: 1\n", "line 3: field bogus not found"},
		{"pool6: 64:ff9b::/33\npool4: [198.51.100.1]\n", "length must be 32, 40, 48, 56, 64 or 96"},
		{"pool6: 64:ff9b::/96\n", "pool4: at least one"},
		{"pool6: 64:ff9b::/96\npool4: [\"198.51.100.1 9-3\"]\n", "port range"},
		{"pool6: 64:ff9b::/96\npool4: [2001:db8::1]\n", "want an IPv4"},
		{base + "timeouts: {udp: 1m}\n", "at least 2m0s"},
		{base + "timeouts: {tcp_established: 1h}\n", "at least 2h4m0s"},
		{base + "filtering: symmetric\n", "filtering"},
		{base + "static: [{proto: sctp, v6: \"[2001:db8::1]:1\", v4: \"198.51.100.1:1\"}]\n", "sctp"},
		{base + "static: [{proto: tcp, v6: \"[2001:db8::1]:1\", v4: \"192.0.2.1:1\"}]\n", "not a pool4 address"},
	} {
		c, err := ParseConfig([]byte(tc.yaml))
		if err == nil {
			c.SetDefaults()
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// Test-only short timeouts pass only with the option.
	c := Config{Pool6: "64:ff9b::/96", Pool4: []string{"198.51.100.1"}, Timeouts: Timeouts{UDP: time.Second}}
	if _, err := NewTranslator(c); err == nil {
		t.Fatal("1s UDP timeout accepted")
	}
	if _, err := NewTranslator(c, AllowShortTimeouts()); err != nil {
		t.Fatal(err)
	}
}

func TestMainCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nat64.yaml")
	os.WriteFile(path, []byte(readmeConfig(t)), 0o600)
	var out, errb bytes.Buffer
	// Flags override the file: a bad pool6 flag must win over the file's.
	if code := Main(context.Background(), []string{"--config", path, "--pool6", "64:ff9b::/33", "--check"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "/33") {
		t.Fatalf("code %d, stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main(context.Background(), []string{"--config", path, "--pool4", "192.0.2.0/29,192.0.2.8 3000-4000", "--check"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "not a pool4 address") {
		// the README's static bindings use 198.51.100.1, no longer in pool4
		t.Fatalf("code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := Main(context.Background(), []string{"--tun", "nat64", "--pool6", "64:ff9b::/96", "--pool4", "198.51.100.0/28", "--check"}, &out, &errb); code != 0 {
		t.Fatalf("code %d, stderr %q", code, errb.String())
	}
	if code := Main(context.Background(), []string{"--nope"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: code %d", code)
	}
}
