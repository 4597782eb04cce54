package announce

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

const goodYAML = `
local_asn: 65010
router_id: 192.0.2.10
node: ams-01
peers:
  - address: "2001:db8:ff::1"
    asn: 65000
    port: 1179
    password: s3cret
    hold_time: 9s
announce:
  vips:
    - 203.0.113.10
    - "2001:db8:100::10"
    - prefix: 2001:db8:200::/48
      communities: ["65010:200"]
      med: 20
  node_prefix: 2001:db8:c0::/64
  communities: ["65010:100", no-export]
  med: 50
graceful_shutdown_wait: 15s
drain_file: /run/v6pod/drain
check:
  kind: http
  port: 80
  path: /healthz
`

func TestParseConfigGood(t *testing.T) {
	c, err := ParseConfig([]byte(goodYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Prefixes(); len(got) != 3 || got[0] != netip.MustParsePrefix("203.0.113.10/32") ||
		got[1] != netip.MustParsePrefix("2001:db8:100::10/128") || got[2] != netip.MustParsePrefix("2001:db8:200::/48") {
		t.Errorf("prefixes = %v", got)
	}
	if np, ok := c.NodePrefix(); !ok || np != netip.MustParsePrefix("2001:db8:c0::/64") {
		t.Errorf("node prefix = %v %v", np, ok)
	}
	// Defaults.
	p := c.Peers[0]
	if p.Keepalive != 3*time.Second || p.ConnectRetry != 5*time.Second {
		t.Errorf("peer defaults: keepalive %s connect_retry %s", p.Keepalive, p.ConnectRetry)
	}
	if c.Interface != "lo" || c.HealthInterval != time.Second || c.DeadmanIntervals != 3 {
		t.Errorf("defaults: interface %q health %s deadman %d", c.Interface, c.HealthInterval, c.DeadmanIntervals)
	}
	if c.Check.Rise != 2 || c.Check.Fall != 2 || c.Check.Interval != 2*time.Second || c.Check.Timeout != time.Second {
		t.Errorf("check defaults: %+v", *c.Check)
	}
	// Communities: the common ones, replaced by a VIP's own.
	if got := c.vips[0].communities; len(got) != 2 || got[0] != 65010<<16|100 || got[1] != 0xFFFFFF01 {
		t.Errorf("vip 0 communities = %x", got)
	}
	if got := c.vips[2].communities; len(got) != 1 || got[0] != 65010<<16|200 || *c.vips[2].med != 20 {
		t.Errorf("vip 2 communities = %x med %v", got, c.vips[2].med)
	}
	if *c.vips[0].med != 50 {
		t.Errorf("vip 0 med = %d", *c.vips[0].med)
	}
}

func TestParseConfigUnknownKeyNamesLine(t *testing.T) {
	for _, in := range []string{
		"local_asn: 1\nrouter_id: 192.0.2.1\nbogus: 1\n",
		"announce:\n  vips:\n    - prefix: 192.0.2.1/32\n      comunities: [1:1]\n",
	} {
		_, err := ParseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: err = %v, want one naming a line", in, err)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	base := func() Config {
		return Config{
			LocalASN: 65010, RouterID: "192.0.2.10", Node: "n1",
			Peers:    []PeerConfig{{Address: "127.0.0.2", ASN: 65000}},
			Announce: AnnounceConfig{VIPs: []PrefixConfig{{Prefix: "203.0.113.10"}}},
		}
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no asn", func(c *Config) { c.LocalASN = 0 }, "local_asn"},
		{"router id v6", func(c *Config) { c.RouterID = "2001:db8::1" }, "router_id"},
		{"no peers", func(c *Config) { c.Peers = nil }, "peers"},
		{"peer bad address", func(c *Config) { c.Peers[0].Address = "nope" }, "peers[0]: address"},
		{"peer no asn", func(c *Config) { c.Peers[0].ASN = 0 }, "peers[0]: asn"},
		{"peer twice", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "listed twice"},
		{"hold too short", func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, "hold_time"},
		{"hold fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, "hold_time"},
		{"keepalive >= hold", func(c *Config) { c.Peers[0].Keepalive = 9 * time.Second }, "keepalive"},
		{"passive without listen", func(c *Config) { c.Peers[0].Passive = true }, "passive"},
		{"port", func(c *Config) { c.Peers[0].Port = 70000 }, "port"},
		{"nothing", func(c *Config) { c.Announce.VIPs = nil }, "nothing to announce"},
		{"host bits", func(c *Config) { c.Announce.VIPs[0].Prefix = "203.0.113.10/24" }, "host bits"},
		{"dup vip", func(c *Config) { c.Announce.VIPs = append(c.Announce.VIPs, PrefixConfig{Prefix: "203.0.113.10/32"}) }, "already in"},
		// A covering route keeps the traffic of a withdrawn narrower one.
		{"vip inside vip", func(c *Config) { c.Announce.VIPs = append(c.Announce.VIPs, PrefixConfig{Prefix: "203.0.113.0/24"}) }, "overlaps 203.0.113.10/32"},
		{"vip inside node prefix", func(c *Config) {
			c.Announce.VIPs = append(c.Announce.VIPs, PrefixConfig{Prefix: "2001:db8:c0::10"})
			c.Announce.NodePrefix = &PrefixConfig{Prefix: "2001:db8:c0::/64"}
		}, "announce.node_prefix: 2001:db8:c0::/64 overlaps"},
		{"v4 vip far too wide", func(c *Config) { c.Announce.VIPs[0].Prefix = "203.0.0.0/8" }, "wider than /16"},
		{"default route", func(c *Config) { c.Announce.VIPs[0].Prefix = "::/0" }, "wider than /32"},
		{"node v4", func(c *Config) { c.Announce.NodePrefix = &PrefixConfig{Prefix: "10.0.0.0/24"} }, "not an IPv6 prefix"},
		{"bad community", func(c *Config) { c.Announce.Communities = []string{"70000:1"} }, "community"},
		{"gshut configured", func(c *Config) { c.Announce.Communities = []string{"65535:0"} }, "65535:0"},
		{"nh v4 is v6", func(c *Config) { c.Announce.NextHopV4 = "2001:db8::1" }, "next_hop_v4"},
		{"nh v6 is v4", func(c *Config) { c.Announce.NextHopV6 = "192.0.2.1" }, "next_hop_v6"},
		{"check kind", func(c *Config) { c.Check = &CheckConfig{Kind: "icmp", Port: 1} }, "check: kind"},
		{"check port", func(c *Config) { c.Check = &CheckConfig{Kind: "tcp"} }, "check: port"},
		{"check timeout", func(c *Config) {
			c.Check = &CheckConfig{Kind: "tcp", Port: 1, Interval: time.Second, Timeout: 2 * time.Second}
		}, "timeout"},
		{"manage prefix", func(c *Config) {
			c.ManageAddresses = true
			c.Announce.VIPs[0].Prefix = "2001:db8::/64"
		}, "manage_addresses"},
		{"consul url", func(c *Config) { c.Consul = "http://127.0.0.1:8500" }, "consul"},
		{"deadman", func(c *Config) { c.DeadmanIntervals = 1 }, "deadman_intervals"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
}

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]uint32{
		"65535:0":           0xFFFF0000,
		"65010:100":         65010<<16 | 100,
		"0:0":               0,
		"no-export":         0xFFFFFF01,
		"graceful-shutdown": 0xFFFF0000,
	} {
		got, err := ParseCommunity(in)
		if err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %x, %v; want %x", in, got, err, want)
		}
		if strings.Contains(in, ":") && FormatCommunity(got) != in {
			t.Errorf("FormatCommunity(%x) = %q", got, FormatCommunity(got))
		}
	}
	for _, bad := range []string{"", "1", "1:", ":1", "65536:1", "1:65536", "-1:1", "a:b"} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
}

// The graceful-shutdown decisions of RFC 8326 section 4 and the health
// gates, prefix by prefix.
func TestDesired(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	wait := 10 * time.Second
	vip := func(st routeState, ready, check bool) *prefixState {
		return &prefixState{spec: prefixSpec{kind: kindVIP}, state: st, ready: ready, checkOK: check}
	}
	node := &prefixState{spec: prefixSpec{kind: kindNode}, state: stateAnnounced, ready: true, checkOK: true}
	cases := []struct {
		name string
		in   inputs
		p    *prefixState
		want routeState
	}{
		{"healthy", inputs{now: t0}, vip(stateWithdrawn, true, true), stateAnnounced},
		{"not ready withdraws at once", inputs{now: t0}, vip(stateAnnounced, false, true), stateWithdrawn},
		{"check failing withdraws at once", inputs{now: t0}, vip(stateAnnounced, true, false), stateWithdrawn},
		{"drain: 65535:0 first", inputs{now: t0, wait: wait, drainSince: t0}, vip(stateAnnounced, true, true), stateGShut},
		{"drain: withdrawn after the wait", inputs{now: t0.Add(wait), wait: wait, drainSince: t0}, vip(stateGShut, true, true), stateWithdrawn},
		{"drain: never announced with 65535:0 first", inputs{now: t0, wait: wait, drainSince: t0}, vip(stateWithdrawn, true, true), stateWithdrawn},
		{"drain: unhealthy still withdraws at once", inputs{now: t0, wait: wait, drainSince: t0}, vip(stateGShut, false, true), stateWithdrawn},
		{"drain leaves the node prefix", inputs{now: t0, wait: wait, drainSince: t0}, node, stateAnnounced},
		{"shutdown: node prefix 65535:0", inputs{now: t0, wait: wait, shutdownSince: t0}, node, stateGShut},
		{"shutdown: then withdrawn", inputs{now: t0.Add(wait + 1), wait: wait, shutdownSince: t0}, node, stateWithdrawn},
		{"dead-man withdraws all", inputs{now: t0, deadman: true}, node, stateWithdrawn},
		{"stopped withdraws all", inputs{now: t0, stopped: true}, vip(stateAnnounced, true, true), stateWithdrawn},
	}
	for _, tc := range cases {
		if got, why := desired(tc.in, tc.p); got != tc.want {
			t.Errorf("%s: desired = %s (%s), want %s", tc.name, got, why, tc.want)
		}
	}
	if d, ok := nextDeadline(inputs{now: t0.Add(time.Second), wait: wait, drainSince: t0}); !ok || !d.Equal(t0.Add(wait)) {
		t.Errorf("nextDeadline = %v %v", d, ok)
	}
	if _, ok := nextDeadline(inputs{now: t0.Add(wait), wait: wait, drainSince: t0}); ok {
		t.Error("nextDeadline after the wait")
	}
}

func TestCheckerRiseFall(t *testing.T) {
	c := newChecker(CheckConfig{Kind: "tcp", Port: 1, Rise: 2, Fall: 3, Interval: time.Second, Timeout: time.Second}, netip.MustParseAddr("127.0.0.1"))
	steps := []struct {
		pass bool
		ok   bool
	}{
		{true, false}, {false, false}, {true, false}, {true, true}, // rise needs 2 in a row
		{false, true}, {false, true}, {true, true}, // the streak breaks
		{false, true}, {false, true}, {false, false}, // fall needs 3 in a row
	}
	for i, s := range steps {
		if ok, _ := c.record(s.pass); ok != s.ok {
			t.Fatalf("step %d (pass=%v): ok = %v, want %v", i, s.pass, ok, s.ok)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("announce:\n  vips: [1.2.3.4, {prefix: ::1}]\n"))
	f.Add([]byte("peers: [{address: '::1', asn: 1, hold_time: 3s}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		c.Node = "fuzz" // no host name lookups
		_ = c.Validate()
	})
}

// The example in README.md parses and validates.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in README.md")
	}
	block, _, _ := strings.Cut(rest, "```")
	c, err := ParseConfig([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Prefixes()) != 3 || c.Peers[0].Password == "" || c.Check == nil || c.Check.Kind != "http" {
		t.Errorf("README example: %+v", c)
	}
}
