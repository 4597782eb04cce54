package nat64

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/edge/announce"
	"github.com/v6pod/v6pod/internal/addr"
)

// Config is the translator's configuration: the nat64 section of a YAML
// file, or the quick-start flags. Zero values take the defaults below.
type Config struct {
	// TUN is the device name (default "nat64").
	TUN string `yaml:"tun"`
	// Pool6 is the RFC 6052 prefix (length 32, 40, 48, 56, 64 or 96).
	Pool6 string `yaml:"pool6"`
	// Pool4 lists IPv4 addresses or prefixes, each optionally followed by
	// a port range: "198.51.100.0/28", "198.51.100.17 2000-3999". The
	// default range is 1024-65535; it applies to TCP and UDP ports and
	// ICMP identifiers alike.
	Pool4 []string `yaml:"pool4"`
	// NoRoutes leaves the routes of pool6 and pool4 to the operator.
	NoRoutes bool `yaml:"no_routes"`
	// MTU of the TUN device (default 1500).
	MTU int `yaml:"mtu"`
	// MTU6 is the size to which IPv4 packets without DF are fragmented
	// when their translation would be larger (default 1280, RFC 7915 4).
	MTU6 int `yaml:"mtu6"`
	// NoOffload opens the TUN device without IFF_VNET_HDR and offloads:
	// every TCP segment is then translated on its own.
	NoOffload bool `yaml:"no_offload"`
	// Queues is the number of TUN queues and workers (default: CPUs).
	Queues int `yaml:"queues"`
	// Filtering is "endpoint-independent" (default) or
	// "address-dependent" (RFC 6146 section 3.5, RFC 4787).
	Filtering string `yaml:"filtering"`
	// MaxSessionsPerClient bounds the sessions of one IPv6 source
	// address (default 10000; -1: no limit).
	MaxSessionsPerClient int `yaml:"max_sessions_per_client"`
	// MaxSessions bounds all sessions (default 4000000; -1: no limit).
	MaxSessions int `yaml:"max_sessions"`
	// SYNRate is the most TCP SYNs per second towards one IPv4 address
	// (default 50000; -1: no limit).
	SYNRate int `yaml:"syn_rate"`
	// ICMPErrorRate bounds the ICMP errors the translator itself sends
	// (time exceeded, parameter problem), per worker and second, as RFC
	// 4443 section 2.4 (f) requires (default 1000; -1: no limit).
	ICMPErrorRate int `yaml:"icmp_error_rate"`
	// Timeouts are the session lifetimes of RFC 6146 section 4.
	Timeouts Timeouts `yaml:"timeouts"`
	// Static bindings, for services published behind the translator.
	Static []Static `yaml:"static"`
	// BindingLog is where binding creation and removal lines go (RFC 6888
	// REQ-12): "" (nowhere), "stdout", "stderr" or a file path.
	BindingLog string `yaml:"binding_log"`
	// Metrics is the address of the Prometheus /metrics listener; empty:
	// none.
	Metrics string `yaml:"metrics"`
	// BGP, when set, announces the cluster VIP to the access tier
	// (p4access) while the translator is healthy (bgp.go).
	BGP *announce.Config `yaml:"bgp"`

	// checked values, filled by Validate
	prefix           addr.NAT64Prefix
	pool4            []poolRange
	static           []staticBinding
	addressDependent bool
	allowShort       bool
	collectors       []prometheus.Collector // more metrics for /metrics (the BGP speaker's)
}

// Timeouts are session lifetimes.
type Timeouts struct {
	UDP            time.Duration `yaml:"udp"`              // default 5m, at least 2m
	TCPEstablished time.Duration `yaml:"tcp_established"`  // default 2h4m, at least 2h4m
	TCPTransitory  time.Duration `yaml:"tcp_transitory"`   // default 4m, at least 4m
	TCPIncomingSYN time.Duration `yaml:"tcp_incoming_syn"` // default 6s (V4 INIT)
	ICMP           time.Duration `yaml:"icmp"`             // default 60s
}

// Static is one static binding: "[v6]:port" <-> "v4:port" for a protocol
// (tcp, udp, or icmp with the port being the echo identifier).
type Static struct {
	Proto string `yaml:"proto"`
	V6    string `yaml:"v6"`
	V4    string `yaml:"v4"`
}

type poolRange struct {
	addr   [4]byte
	lo, hi uint16
}

type staticBinding struct {
	proto uint8
	v6    [16]byte
	port6 uint16
	v4    [4]byte
	port4 uint16
}

// RFC 6146 section 4 minima and defaults.
const (
	MinUDPTimeout         = 2 * time.Minute
	DefaultUDPTimeout     = 5 * time.Minute
	MinTCPEstablished     = 2*time.Hour + 4*time.Minute
	MinTCPTransitory      = 4 * time.Minute
	DefaultTCPIncomingSYN = 6 * time.Second
	DefaultICMPTimeout    = 60 * time.Second
	DefaultSYNRate        = 50000
)

// LoadConfig reads a strict YAML file (unknown keys are errors that name
// the line). It does not fill defaults or validate.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("nat64: config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("nat64: config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML strictly.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	return c, nil
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.TUN == "" {
		c.TUN = "nat64"
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.MTU6 == 0 {
		c.MTU6 = 1280
	}
	if c.Queues == 0 {
		c.Queues = runtime.NumCPU()
	}
	if c.Filtering == "" {
		c.Filtering = "endpoint-independent"
	}
	if c.MaxSessionsPerClient == 0 {
		c.MaxSessionsPerClient = 10000
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 4000000
	}
	if c.SYNRate == 0 {
		c.SYNRate = DefaultSYNRate
	}
	if c.ICMPErrorRate == 0 {
		c.ICMPErrorRate = 1000
	}
	t := &c.Timeouts
	if t.UDP == 0 {
		t.UDP = DefaultUDPTimeout
	}
	if t.TCPEstablished == 0 {
		t.TCPEstablished = MinTCPEstablished
	}
	if t.TCPTransitory == 0 {
		t.TCPTransitory = MinTCPTransitory
	}
	if t.TCPIncomingSYN == 0 {
		t.TCPIncomingSYN = DefaultTCPIncomingSYN
	}
	if t.ICMP == 0 {
		t.ICMP = DefaultICMPTimeout
	}
}

// Validate checks the configuration (after SetDefaults) and computes the
// parsed pools.
func (c *Config) Validate() error {
	if c.TUN == "" || len(c.TUN) > 15 || strings.ContainsAny(c.TUN, "/ \t") {
		return fmt.Errorf("nat64: tun %q: not a device name (1-15 characters)", c.TUN)
	}
	pp, err := netip.ParsePrefix(strings.TrimSpace(c.Pool6))
	if err != nil {
		return fmt.Errorf("nat64: pool6 %q: %w", c.Pool6, err)
	}
	if c.prefix, err = addr.NewNAT64Prefix(pp); err != nil {
		return fmt.Errorf("nat64: pool6: %w", err)
	}
	if len(c.Pool4) == 0 {
		return errors.New("nat64: pool4: at least one IPv4 address is needed")
	}
	c.pool4 = c.pool4[:0]
	seen := map[[4]byte]bool{}
	for _, e := range c.Pool4 {
		rs, err := parsePool4(e)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if seen[r.addr] {
				return fmt.Errorf("nat64: pool4 %q: address %s listed twice", e, netip.AddrFrom4(r.addr))
			}
			seen[r.addr] = true
			c.pool4 = append(c.pool4, r)
		}
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return fmt.Errorf("nat64: mtu %d: must be 1280-65535", c.MTU)
	}
	if c.MTU6 < 1280 || c.MTU6 > 65535 {
		return fmt.Errorf("nat64: mtu6 %d: must be 1280-65535", c.MTU6)
	}
	if c.Queues < 1 || c.Queues > 64 {
		return fmt.Errorf("nat64: queues %d: must be 1-64", c.Queues)
	}
	switch c.Filtering {
	case "endpoint-independent":
		c.addressDependent = false
	case "address-dependent":
		c.addressDependent = true
	default:
		return fmt.Errorf("nat64: filtering %q: want endpoint-independent or address-dependent", c.Filtering)
	}
	for name, v := range map[string]int{"max_sessions_per_client": c.MaxSessionsPerClient, "max_sessions": c.MaxSessions, "syn_rate": c.SYNRate, "icmp_error_rate": c.ICMPErrorRate} {
		if v < -1 {
			return fmt.Errorf("nat64: %s %d: must be positive, or -1 for no limit", name, v)
		}
	}
	t := c.Timeouts
	if !c.allowShort {
		if t.UDP < MinUDPTimeout {
			return fmt.Errorf("nat64: timeouts.udp %s: RFC 6146 section 3.5.1 says at least %s", t.UDP, MinUDPTimeout)
		}
		if t.TCPEstablished < MinTCPEstablished {
			return fmt.Errorf("nat64: timeouts.tcp_established %s: RFC 6146 section 3.5.2.2 says at least %s", t.TCPEstablished, MinTCPEstablished)
		}
		if t.TCPTransitory < MinTCPTransitory {
			return fmt.Errorf("nat64: timeouts.tcp_transitory %s: RFC 6146 section 3.5.2.2 says at least %s", t.TCPTransitory, MinTCPTransitory)
		}
	}
	for _, d := range []time.Duration{t.UDP, t.TCPEstablished, t.TCPTransitory, t.TCPIncomingSYN, t.ICMP} {
		if d <= 0 {
			return errors.New("nat64: timeouts: must be positive")
		}
	}
	c.static = c.static[:0]
	for i, s := range c.Static {
		b, err := c.parseStatic(s)
		if err != nil {
			return fmt.Errorf("nat64: static[%d]: %w", i, err)
		}
		c.static = append(c.static, b)
	}
	return nil
}

func parsePool4(e string) ([]poolRange, error) {
	f := strings.Fields(e)
	if len(f) == 0 || len(f) > 2 {
		return nil, fmt.Errorf("nat64: pool4 %q: want ADDRESS[/LEN] [LO-HI]", e)
	}
	lo, hi := uint16(1024), uint16(65535)
	if len(f) == 2 {
		a, b, ok := strings.Cut(f[1], "-")
		l, err1 := strconv.ParseUint(a, 10, 16)
		h, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil || l == 0 || l > h {
			return nil, fmt.Errorf("nat64: pool4 %q: port range %q: want LO-HI within 1-65535", e, f[1])
		}
		lo, hi = uint16(l), uint16(h)
	}
	var p netip.Prefix
	if strings.Contains(f[0], "/") {
		var err error
		if p, err = netip.ParsePrefix(f[0]); err != nil {
			return nil, fmt.Errorf("nat64: pool4 %q: %w", e, err)
		}
	} else {
		a, err := addr.Parse(f[0])
		if err != nil {
			return nil, fmt.Errorf("nat64: pool4: %w", err)
		}
		p = netip.PrefixFrom(a, 32)
	}
	if !p.Addr().Is4() || p.Masked() != p {
		return nil, fmt.Errorf("nat64: pool4 %q: want an IPv4 address or prefix without host bits", e)
	}
	if p.Bits() < 16 {
		return nil, fmt.Errorf("nat64: pool4 %q: at most a /16", e)
	}
	var out []poolRange
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		out = append(out, poolRange{addr: a.As4(), lo: lo, hi: hi})
		if !a.Next().IsValid() {
			break
		}
	}
	return out, nil
}

func (c *Config) parseStatic(s Static) (staticBinding, error) {
	var b staticBinding
	switch strings.ToLower(s.Proto) {
	case "tcp":
		b.proto = protoTCP
	case "udp":
		b.proto = protoUDP
	case "icmp":
		b.proto = protoICMP
	default:
		return b, fmt.Errorf("proto %q: want tcp, udp or icmp", s.Proto)
	}
	v6, err := addr.ParseEndpoint(s.V6)
	if err != nil {
		return b, fmt.Errorf("v6: %w", err)
	}
	v4, err := addr.ParseEndpoint(s.V4)
	if err != nil {
		return b, fmt.Errorf("v4: %w", err)
	}
	if !v6.Addr().Is6() || !v4.Addr().Is4() {
		return b, fmt.Errorf("v6 %q / v4 %q: wrong address families", s.V6, s.V4)
	}
	b.v6, b.port6 = v6.Addr().As16(), v6.Port()
	b.v4, b.port4 = v4.Addr().As4(), v4.Port()
	if c.poolIndex(b.v4) < 0 {
		return b, fmt.Errorf("v4 %s: not a pool4 address", s.V4)
	}
	return b, nil
}

func (c *Config) poolIndex(a [4]byte) int {
	for i := range c.pool4 {
		if c.pool4[i].addr == a {
			return i
		}
	}
	return -1
}
