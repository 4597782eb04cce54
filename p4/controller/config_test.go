package controller

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeExample returns the YAML block of the README's Configuration section.
func readmeExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Configuration")
	if i < 0 {
		t.Fatal("README has no Configuration section")
	}
	s = s[i:]
	i = strings.Index(s, "```yaml\n")
	j := strings.Index(s[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("README Configuration has no yaml block")
	}
	return []byte(s[i+8 : i+8+j])
}

func TestREADMEExample(t *testing.T) {
	c, err := ParseConfig(readmeExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Device.BatchSize != 1000 || c.BGP.Listen != "127.0.0.1:1790" || len(c.VIPs) != 1 || c.VIPs[0].TableSize != 65537 ||
		len(c.Servers) != 2 || c.Servers[0].mac != [6]byte{2, 0, 0, 0, 0, 2} || c.Servers[1].MAC != "" || c.Device.Resync != 10*time.Second || c.EIPs[0].dst.String() != "64:ff9b::c000:201" ||
		c.Device.BackoffMin != 100*time.Millisecond || c.BGP.ConvergeTime != 10*time.Second {
		t.Fatalf("README example decoded wrong: %+v", c)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Device.Address != DefaultDeviceAddress || c.BGP.Listen != DefaultBGPListen || c.BGP.RouterID != "127.0.0.1" ||
		c.NAT64Prefix != DefaultPrefix || c.Device.DeviceID != 1 {
		t.Fatalf("defaults: %+v", c)
	}
	c = Config{VIPs: []VIPConfig{{Name: "a", Address: "2001:db8::1"}}, EIPs: []EIPConfig{{Address: "192.0.2.9", VIP: "a"}, {Address: "192.0.2.8", VIP: "a"}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.VIPs[0].TableSize != 65537 || c.EIPs[0].SYNRate != 50000 || c.EIPs[0].SYNBurst != 50000 || *c.EIPs[1].Index != 1 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigStrict(t *testing.T) {
	_, err := ParseConfig([]byte("device:\n  address: x:1\n  adress: y\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := ParseConfig([]byte("")); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	vip := "vips:\n  - {name: a, address: \"2001:db8::1\", id: 1, table_size: 1021}\n"
	for _, tc := range []struct{ yaml, want string }{
		{"vips:\n  - {name: a, address: \"2001:db8::1\", table_size: 1000}\n", "not a prime"},
		{"vips:\n  - {name: a, address: 192.0.2.1}\n", "want an IPv6"},
		{"vips:\n  - {name: a, address: \"2001:db8::1\", id: 4096}\n", "below 4096"},
		{vip + "  - {name: b, address: \"2001:db8::2\", id: 1, table_size: 1021}\n", "duplicate id"},
		{vip + "eips:\n  - {address: 192.0.2.1, vip: b}\n", "unknown vip"},
		{vip + "eips:\n  - {address: \"2001:db8::5\", vip: a}\n", "want an IPv4"},
		{vip + "eips:\n  - {address: 192.0.2.1, vip: a, index: 0}\n  - {address: 192.0.2.2, vip: a, index: 0}\n", "duplicate"},
		{"servers:\n  - {next_hop: \"2001:db8::1\", mac: zz, port: 1}\n", "6-byte MAC"},
		{"servers:\n  - {next_hop: \"2001:db8::1\", mac: \"02:00:00:00:00:01\", port: 512}\n", "9 bits"},
		{"bgp:\n  listen: \"[::1]:1790\"\n", "router_id"},
		{"bgp:\n  peers:\n    - {address: 127.0.0.2}\n", "asn required"},
		{"nat64_prefix: 64:ff9b::/95\n", "nat64_prefix"},
		{"device:\n  batch_size: -1\n", "batch_size"},
	} {
		if tc.want == "" {
			continue
		}
		c, err := ParseConfig([]byte(tc.yaml))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// Too many slots for the switch.
	var c Config
	for i := range 17 {
		c.VIPs = append(c.VIPs, VIPConfig{Name: string(rune('a' + i)), Address: fmt.Sprintf("2001:db8::%x", i+1), ID: uint16(i)})
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("17 VIPs of 65537: %v", err)
	}
}

func TestElectionIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eid")
	for want := uint64(1); want <= 3; want++ {
		id, err := nextElectionID(path)
		if err != nil || id != want {
			t.Fatalf("id %d, %v; want %d", id, err, want)
		}
	}
	os.WriteFile(path, []byte("41\n"), 0o600)
	if id, _ := nextElectionID(path); id != 42 {
		t.Fatalf("after 41: %d", id)
	}
	os.WriteFile(path, []byte("junk"), 0o600)
	if _, err := nextElectionID(path); err == nil {
		t.Fatal("junk accepted")
	}
}

func TestMainCheckAndErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p4access.yaml")
	if err := os.WriteFile(cfg, readmeExample(t), 0o600); err != nil {
		t.Fatal(err)
	}
	// device_config names a file that exists only on a real install; --check
	// validates without opening anything.
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--config", cfg, "--check", "--device", "127.0.0.1:9999"}, &out, &errb); code != 0 {
		t.Fatalf("check: exit %d: %s", code, errb.String())
	}
	for _, args := range [][]string{
		{"--config", filepath.Join(dir, "missing.yaml")},
		{"--bgp-listen", "nonsense"},
		{"--log-level", "loud"},
		{"stray"},
	} {
		out.Reset()
		errb.Reset()
		if code := Main(context.Background(), args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
