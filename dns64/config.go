package dns64

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/internal/addr"
)

// Config is the dns64 configuration, the `dns64` YAML file. Zero values mean
// the defaults documented on each field; call Validate (New does) before use.
type Config struct {
	// Listen is the address served over UDP and TCP. Default [::1]:5364.
	Listen string `yaml:"listen"`
	// Upstreams are the resolvers asked, host:port (port 53 when absent),
	// in order of preference. At least one is required.
	Upstreams []string `yaml:"upstreams"`
	// UpstreamTimeout bounds one attempt to one upstream. Default 1s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// UpstreamRetries is how many more attempts follow a failed one, each
	// to the next usable upstream. Default 2. In Go, -1 means none (0 is
	// the default); in YAML, 0 means none.
	UpstreamRetries int `yaml:"upstream_retries"`
	// UpstreamBackoff is how long an upstream is avoided after
	// FailThreshold consecutive failures; it doubles with every further
	// failure up to UpstreamBackoffMax. Defaults 1s and 30s.
	UpstreamBackoff    time.Duration `yaml:"upstream_backoff"`
	UpstreamBackoffMax time.Duration `yaml:"upstream_backoff_max"`
	// FailThreshold is the number of consecutive failed queries (timeouts,
	// network errors, SERVFAIL, REFUSED) after which an upstream backs off.
	// Default 2.
	FailThreshold int `yaml:"fail_threshold"`

	// Prefix is the Pref64::/n used for synthesis: the well-known prefix
	// 64:ff9b::/96 (default) or a network-specific prefix of length 32, 40,
	// 48, 56, 64 or 96 (RFC 6052 section 2.2).
	Prefix string `yaml:"prefix"`
	// Prefixes maps IPv4 ranges to their own Pref64::/n; the longest match
	// wins, Prefix serves the rest.
	Prefixes []RangePrefix `yaml:"prefixes"`
	// ExcludeAAAA lists IPv6 ranges whose AAAA records count as absent
	// (RFC 6147 section 5.1.4). Default [::ffff:0:0/96].
	ExcludeAAAA []string `yaml:"exclude_aaaa"`
	// ExcludeIPv4 lists IPv4 ranges never synthesized from. Default
	// 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 255.255.255.255/32. An empty
	// list in the file (exclude_ipv4: []) excludes nothing.
	ExcludeIPv4 []string `yaml:"exclude_ipv4"`
	// AllowNonGlobalWKP lets the well-known prefix map non-global IPv4
	// addresses (RFC 1918, documentation ranges, ...), which RFC 6052
	// section 3.1 forbids. For labs that use documentation addresses only.
	AllowNonGlobalWKP bool `yaml:"allow_non_global_wkp"`
	// DisablePTR turns off the CNAME answers to PTR queries for names
	// inside the prefixes (RFC 6147 section 5.3.1).
	DisablePTR bool `yaml:"disable_ptr"`
	// PTRTTL is the TTL of those CNAME records. Default 600s.
	PTRTTL time.Duration `yaml:"ptr_ttl"`

	// MaxConcurrent bounds the UDP queries being resolved at once (cache
	// misses waiting on upstreams); beyond it queries are dropped and the
	// clients retry. Default 10000.
	MaxConcurrent int `yaml:"max_concurrent"`
	// TCPMaxConns bounds the open TCP connections; beyond it new ones
	// wait in the kernel's backlog until one closes (idle ones close
	// after 10 s). Default 1024.
	TCPMaxConns int `yaml:"tcp_max_connections"`

	// UDPSize is the EDNS0 payload size advertised to clients and
	// upstreams, and the largest UDP answer sent. Default 1232.
	UDPSize int `yaml:"udp_size"`

	Cache CacheConfig `yaml:"cache"`

	// Metrics, when set, serves Prometheus metrics at http://Metrics/metrics.
	Metrics string `yaml:"metrics"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (default) or json.
	LogFormat string `yaml:"log_format"`

	excludeIPv4Set bool // the file named exclude_ipv4, possibly empty
}

// RangePrefix maps one IPv4 range to its own NAT64 prefix.
type RangePrefix struct {
	IPv4   string `yaml:"ipv4"`
	Prefix string `yaml:"prefix"`
}

// CacheConfig bounds the answer cache.
type CacheConfig struct {
	// MaxEntries bounds the number of cached answers. Default 100000.
	MaxEntries int `yaml:"max_entries"`
	// MaxBytes bounds their total size (wire bytes plus bookkeeping).
	// Default 64 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxTTL caps how long any answer is kept. Default 1h.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Disabled turns the cache off.
	Disabled bool `yaml:"disabled"`
}

// DefaultExcludeIPv4 are the IPv4 ranges never synthesized from, whatever
// the prefix.
var DefaultExcludeIPv4 = []string{"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "255.255.255.255/32"}

// NonGlobalIPv4 are the ranges the well-known prefix must not represent
// (RFC 6052 section 3.1: RFC 1918 and the special-use ranges of RFC 5735
// section 3, plus the shared address space of RFC 6598).
var NonGlobalIPv4 = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
	"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
	"240.0.0.0/4", "255.255.255.255/32",
}

// LoadConfigFile reads and strictly decodes a YAML file.
func LoadConfigFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("dns64: config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("dns64: config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig strictly decodes YAML: an unknown key is an error naming its
// line. It does not validate; call Validate.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		return Config{}, err
	}
	// Tell "exclude_ipv4: []" (nothing excluded) from an absent key.
	var probe struct {
		ExcludeIPv4     *[]string `yaml:"exclude_ipv4"`
		UpstreamRetries *int      `yaml:"upstream_retries"`
	}
	if err := yaml.Unmarshal(b, &probe); err == nil {
		c.excludeIPv4Set = probe.ExcludeIPv4 != nil
		if probe.UpstreamRetries != nil && *probe.UpstreamRetries == 0 {
			c.UpstreamRetries = -1
		}
	}
	return c, nil
}

// SetExcludeIPv4 sets the excluded IPv4 ranges, an empty list meaning none.
func (c *Config) SetExcludeIPv4(ranges []string) {
	c.ExcludeIPv4 = ranges
	c.excludeIPv4Set = true
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "[::1]:5364"
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = time.Second
	}
	if c.UpstreamRetries == 0 {
		c.UpstreamRetries = 2
	} else if c.UpstreamRetries < 0 {
		c.UpstreamRetries = 0
	}
	if c.UpstreamBackoff == 0 {
		c.UpstreamBackoff = time.Second
	}
	if c.UpstreamBackoffMax == 0 {
		c.UpstreamBackoffMax = max(30*time.Second, c.UpstreamBackoff)
	}
	if c.FailThreshold == 0 {
		c.FailThreshold = 2
	}
	if c.Prefix == "" {
		c.Prefix = addr.WellKnownPrefix.String()
	}
	if c.ExcludeAAAA == nil {
		c.ExcludeAAAA = []string{"::ffff:0:0/96"}
	}
	if c.ExcludeIPv4 == nil && !c.excludeIPv4Set {
		c.ExcludeIPv4 = append([]string(nil), DefaultExcludeIPv4...)
	}
	if c.PTRTTL == 0 {
		c.PTRTTL = 600 * time.Second
	}
	if c.UDPSize == 0 {
		c.UDPSize = 1232
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 10000
	}
	if c.TCPMaxConns == 0 {
		c.TCPMaxConns = 1024
	}
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = 100000
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = 64 << 20
	}
	if c.Cache.MaxTTL == 0 {
		c.Cache.MaxTTL = time.Hour
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
}

// compiled is a validated configuration in the forms the server uses.
type compiled struct {
	upstreams   []string // host:port
	defPrefix   addr.NAT64Prefix
	ranges      []rangePrefix // longest IPv4 range first
	excludeAAAA []netip.Prefix
	exclude4    []netip.Prefix
	nonGlobal   []netip.Prefix // empty when AllowNonGlobalWKP
}

type rangePrefix struct {
	v4  netip.Prefix
	pfx addr.NAT64Prefix
}

// Validate fills in the defaults and checks every field, returning all the
// problems found, each naming its key.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

func (c *Config) compile() (*compiled, error) {
	c.applyDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	out := &compiled{}

	if err := checkListen(c.Listen); err != nil {
		bad("listen: %v", err)
	}
	if len(c.Upstreams) == 0 {
		bad("upstreams: at least one upstream resolver is required")
	}
	for i, u := range c.Upstreams {
		hp, err := normalizeUpstream(u)
		if err != nil {
			bad("upstreams[%d]: %v", i, err)
			continue
		}
		out.upstreams = append(out.upstreams, hp)
	}
	if len(c.Upstreams) > 64 {
		bad("upstreams: at most 64 upstreams")
	}
	if c.UpstreamTimeout < 0 {
		bad("upstream_timeout: %v is negative", c.UpstreamTimeout)
	}
	if c.UpstreamRetries > 10 {
		bad("upstream_retries: %d is more than 10", c.UpstreamRetries)
	}
	if c.UpstreamBackoff < 0 || c.UpstreamBackoffMax < c.UpstreamBackoff {
		bad("upstream_backoff: %v must be positive and at most upstream_backoff_max %v", c.UpstreamBackoff, c.UpstreamBackoffMax)
	}
	if c.FailThreshold < 1 {
		bad("fail_threshold: %d must be at least 1", c.FailThreshold)
	}

	if p, err := parseNAT64Prefix(c.Prefix); err != nil {
		bad("prefix: %v", err)
	} else {
		out.defPrefix = p
	}
	for i, rp := range c.Prefixes {
		v4, err := netip.ParsePrefix(strings.TrimSpace(rp.IPv4))
		if err != nil || !v4.Addr().Is4() || v4.Masked() != v4 {
			bad("prefixes[%d].ipv4: %q is not an IPv4 network", i, rp.IPv4)
			continue
		}
		p, err := parseNAT64Prefix(rp.Prefix)
		if err != nil {
			bad("prefixes[%d].prefix: %v", i, err)
			continue
		}
		for _, r := range out.ranges {
			if r.v4 == v4 {
				bad("prefixes[%d].ipv4: %s is listed twice", i, v4)
			}
		}
		out.ranges = append(out.ranges, rangePrefix{v4: v4, pfx: p})
	}
	// Longest IPv4 range first, so the first match is the longest.
	for i := 1; i < len(out.ranges); i++ {
		for j := i; j > 0 && out.ranges[j].v4.Bits() > out.ranges[j-1].v4.Bits(); j-- {
			out.ranges[j], out.ranges[j-1] = out.ranges[j-1], out.ranges[j]
		}
	}
	for i, s := range c.ExcludeAAAA {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || !p.Addr().Is6() {
			bad("exclude_aaaa[%d]: %q is not an IPv6 network", i, s)
			continue
		}
		out.excludeAAAA = append(out.excludeAAAA, p.Masked())
	}
	for i, s := range c.ExcludeIPv4 {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || !p.Addr().Is4() {
			bad("exclude_ipv4[%d]: %q is not an IPv4 network", i, s)
			continue
		}
		out.exclude4 = append(out.exclude4, p.Masked())
	}
	if !c.AllowNonGlobalWKP {
		for _, s := range NonGlobalIPv4 {
			out.nonGlobal = append(out.nonGlobal, netip.MustParsePrefix(s))
		}
	}
	if c.PTRTTL < 0 || c.PTRTTL > 7*24*time.Hour {
		bad("ptr_ttl: %v is out of range", c.PTRTTL)
	}
	if c.MaxConcurrent < 1 {
		bad("max_concurrent: %d must be at least 1", c.MaxConcurrent)
	}
	if c.TCPMaxConns < 1 {
		bad("tcp_max_connections: %d must be at least 1", c.TCPMaxConns)
	}
	if c.UDPSize < 512 || c.UDPSize > 65535 {
		bad("udp_size: %d must be 512-65535", c.UDPSize)
	}
	if c.Cache.MaxEntries < 0 {
		bad("cache.max_entries: %d is negative", c.Cache.MaxEntries)
	}
	if c.Cache.MaxBytes < 0 {
		bad("cache.max_bytes: %d is negative", c.Cache.MaxBytes)
	}
	if c.Cache.MaxTTL < 0 {
		bad("cache.max_ttl: %v is negative", c.Cache.MaxTTL)
	}
	if c.Metrics != "" {
		if err := checkListen(c.Metrics); err != nil {
			bad("metrics: %v", err)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format: %q is not text or json", c.LogFormat)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dns64: invalid config: %w", errors.Join(errs...))
	}
	return out, nil
}

func parseNAT64Prefix(s string) (addr.NAT64Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return addr.NAT64Prefix{}, fmt.Errorf("%q is not an IPv6 prefix", s)
	}
	return addr.NewNAT64Prefix(p)
}

// normalizeUpstream accepts 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53
// and 2001:db8::53, and returns host:port.
func normalizeUpstream(s string) (string, error) {
	if ap, err := addr.ParseEndpoint(s); err == nil {
		return ap.String(), nil
	}
	a, err := addr.Parse(s)
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// checkListen accepts an address with a port, port 0 (any) included.
func checkListen(s string) error {
	if h, ok := strings.CutSuffix(s, ":0"); ok {
		if _, err := addr.Parse(h); err == nil {
			return nil
		}
	}
	_, err := addr.ParseEndpoint(s)
	return err
}
