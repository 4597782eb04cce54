package razor

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/v6pod/v6pod/internal/model"
)

// maxUDPSize is the largest edns_udp_size: the size of the UDP send
// buffers.
const maxUDPSize = 4096

// Config is razor's configuration: the YAML file of --config, with the
// quick-start flags laid over it. Zero values mean the defaults that
// Defaults fills in.
type Config struct {
	// Listen holds host:port addresses, each served over UDP and TCP.
	Listen []string `yaml:"listen"`
	// Zones are the zones razor is authoritative for.
	Zones []ZoneConfig `yaml:"zones"`
	// Store names the pools and routes: file:///pods.yaml or
	// consul://127.0.0.1:8500/v6pod. Empty: zones only.
	Store string `yaml:"store"`
	// Metrics is the host:port of the Prometheus /metrics listener; empty
	// means none.
	Metrics string `yaml:"metrics"`
	// EDNSSize is the UDP payload size razor advertises and the largest
	// UDP response it sends (default 1232, the DNS flag day 2020 value).
	EDNSSize int `yaml:"edns_udp_size"`
	// UDPWorkers is the number of sockets (SO_REUSEPORT) and goroutines per
	// UDP listener; default GOMAXPROCS.
	UDPWorkers int `yaml:"udp_workers"`
	// TCPIdleTimeout closes idle TCP connections (default 10s).
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	// TCPMaxConns bounds open TCP connections (default 1000).
	TCPMaxConns int `yaml:"tcp_max_conns"`
	// TCPMaxConnsPerPrefix bounds the open TCP connections of one client
	// /24 (IPv4) or /56 (IPv6); default 64.
	TCPMaxConnsPerPrefix int          `yaml:"tcp_max_conns_per_prefix"`
	Cookies              CookieConfig `yaml:"cookies"`
	RRL                  RRLConfig    `yaml:"rrl"`
	Consul               ConsulConfig `yaml:"consul"`
	Probe                ProbeConfig  `yaml:"probe"`
	// MaxStaleness is how old the store's data may get before razor logs
	// warnings (it keeps answering from it regardless). Default 1m.
	MaxStaleness time.Duration `yaml:"max_staleness"`
}

// ZoneConfig is one zone: its origin and its RFC 1035 zone file.
type ZoneConfig struct {
	Origin string `yaml:"origin"`
	File   string `yaml:"file"`
}

// CookieConfig configures DNS cookies (RFC 7873, server cookies in the
// RFC 9018 format).
type CookieConfig struct {
	// Disabled turns cookie processing off (options are then ignored).
	Disabled bool `yaml:"disabled"`
	// Secret is 16 bytes in hex; every razor of a pod should share it so
	// a client's server cookie is valid everywhere (anycast). Empty: a
	// random secret per process.
	Secret string `yaml:"secret"`
}

// RRLConfig configures response rate limiting (the BIND/Knot design).
type RRLConfig struct {
	// ResponsesPerSecond per client prefix and response kind; 0 (the
	// default) turns RRL off.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Slip: every Slip-th limited response is sent truncated (TC) instead
	// of dropped, so real clients retry over TCP. 0 drops all. Default 2.
	Slip *int `yaml:"slip"`
	// IPv4Prefix and IPv6Prefix are the client prefix lengths a bucket
	// covers (defaults 24 and 56).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// TableSize is the number of buckets (default 65536).
	TableSize int `yaml:"table_size"`
}

// ConsulConfig names the Consul agent used for the edge health catalog and
// razor's own registration. With a consul:// store and no address here,
// the store's agent is used.
type ConsulConfig struct {
	Address string `yaml:"address"`
	// Token is the ACL token (CONSUL_HTTP_TOKEN when empty). Never logged.
	Token string `yaml:"token"`
	// Register registers razor as service v6pod-razor with a TCP check
	// (default true when Consul is configured).
	Register *bool `yaml:"register"`
	// ServiceID defaults to v6pod-razor-<hostname>-<port>.
	ServiceID string `yaml:"service_id"`
	// Health makes a pool unhealthy when its edge's v6pod-edge service is
	// critical or missing (default true when Consul is configured).
	Health *bool `yaml:"health"`
	// EdgeService is the service name of the edges (default v6pod-edge).
	EdgeService string `yaml:"edge_service"`
}

// ProbeConfig is razor's own health probe of every pool, off by default.
type ProbeConfig struct {
	// Type is "tcp" (connect) or "http" (GET, 2xx/3xx is up); empty: off.
	Type     string        `yaml:"type"`
	Port     int           `yaml:"port"`     // default 443
	Path     string        `yaml:"path"`     // http; default /readyz
	Host     string        `yaml:"host"`     // http Host header
	Interval time.Duration `yaml:"interval"` // default 1s
	Timeout  time.Duration `yaml:"timeout"`  // default 1s, at most interval
	Rise     int           `yaml:"rise"`     // successes to come back (default 2)
	Fall     int           `yaml:"fall"`     // failures to go down (default 2)
	// Targets overrides the probed host:port per pool name; by default the
	// pool's first eligible IPv6 (else IPv4) address with Port.
	Targets map[string]string `yaml:"targets"`
}

// ParseConfig decodes a YAML configuration strictly: an unknown key is an
// error that names its line. Relative zone files and file store paths
// are taken relative to dir. It fills defaults but does not validate.
func ParseConfig(b []byte, dir string) (Config, error) {
	var c Config
	if err := model.DecodeStrict(bytes.NewReader(b), &c); err != nil {
		return c, fmt.Errorf("razor config: %w", err)
	}
	for i := range c.Zones {
		if f := c.Zones[i].File; f != "" && !filepath.IsAbs(f) && dir != "" {
			c.Zones[i].File = filepath.Join(dir, f)
		}
	}
	if s := c.Store; strings.HasPrefix(s, "file://") && dir != "" {
		if p := strings.TrimPrefix(s, "file://"); !strings.HasPrefix(p, "/") {
			c.Store = "file://" + filepath.Join(dir, p)
		}
	} else if s != "" && !strings.Contains(s, "://") && !filepath.IsAbs(s) && dir != "" {
		c.Store = filepath.Join(dir, s) // a plain pods.yaml path
	}
	return c, nil
}

// LoadConfig reads and parses the configuration file path.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("razor config: %w", err)
	}
	// Relative paths in the file are the file's folder's, whatever the
	// working folder.
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("razor config: %w", err)
	}
	c, err := ParseConfig(b, dir)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.EDNSSize == 0 {
		c.EDNSSize = 1232
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = 10 * time.Second
	}
	if c.TCPMaxConns == 0 {
		c.TCPMaxConns = 1000
	}
	if c.TCPMaxConnsPerPrefix == 0 {
		c.TCPMaxConnsPerPrefix = 64
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = time.Minute
	}
	if c.RRL.Slip == nil {
		two := 2
		c.RRL.Slip = &two
	}
	if c.RRL.IPv4Prefix == 0 {
		c.RRL.IPv4Prefix = 24
	}
	if c.RRL.IPv6Prefix == 0 {
		c.RRL.IPv6Prefix = 56
	}
	if c.RRL.TableSize == 0 {
		c.RRL.TableSize = 65536
	}
	if c.Consul.EdgeService == "" {
		c.Consul.EdgeService = "v6pod-edge"
	}
	if c.Consul.Address == "" && strings.HasPrefix(c.Store, "consul://") {
		rest := strings.TrimPrefix(c.Store, "consul://")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		c.Consul.Address = rest
	}
	t := true
	if c.Consul.Register == nil {
		c.Consul.Register = &t
	}
	if c.Consul.Health == nil {
		c.Consul.Health = &t
	}
	p := &c.Probe
	if p.Type != "" {
		if p.Port == 0 {
			p.Port = 443
		}
		if p.Interval == 0 {
			p.Interval = time.Second
		}
		if p.Timeout == 0 {
			p.Timeout = min(time.Second, p.Interval)
		}
		if p.Rise == 0 {
			p.Rise = 2
		}
		if p.Fall == 0 {
			p.Fall = 2
		}
		if p.Type == "http" && p.Path == "" {
			p.Path = "/readyz"
		}
	}
}

// Validate checks the configuration; New calls it before opening anything.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Listen) == 0 {
		bad("listen: no address (give --listen 127.0.0.1:5353)")
	}
	for _, l := range c.Listen {
		if _, err := netip.ParseAddrPort(l); err != nil {
			if _, _, err2 := net.SplitHostPort(l); err2 != nil {
				bad("listen %q: want host:port ([::1]:53, 127.0.0.1:5353)", l)
			}
		}
	}
	if len(c.Zones) == 0 {
		bad("zones: none (give --zone v6pod.test=v6pod.test.zone)")
	}
	seen := map[string]bool{}
	for _, z := range c.Zones {
		o := dns.CanonicalName(z.Origin)
		if _, ok := dns.IsDomainName(o); !ok || z.Origin == "" {
			bad("zone %q: not a domain name", z.Origin)
		}
		if seen[o] {
			bad("zone %s: listed twice", o)
		}
		seen[o] = true
		if z.File == "" {
			bad("zone %s: no file", o)
		}
	}
	if c.EDNSSize < 512 || c.EDNSSize > maxUDPSize {
		// Above 4096 an answer would not fit the UDP send buffers; 1232
		// avoids fragmentation (DNS flag day 2020).
		bad("edns_udp_size %d: want 512 to %d", c.EDNSSize, maxUDPSize)
	}
	if c.TCPMaxConns < 1 {
		bad("tcp_max_conns %d: want at least 1", c.TCPMaxConns)
	}
	if c.TCPMaxConnsPerPrefix < 1 {
		bad("tcp_max_conns_per_prefix %d: want at least 1", c.TCPMaxConnsPerPrefix)
	}
	if c.UDPWorkers < 0 || c.UDPWorkers > 256 {
		bad("udp_workers %d: want 0 (GOMAXPROCS) to 256", c.UDPWorkers)
	}
	if s := c.Cookies.Secret; s != "" {
		if b, err := hex.DecodeString(s); err != nil || len(b) != 16 {
			bad("cookies.secret: want 16 bytes as 32 hex digits")
		}
	}
	r := c.RRL
	if r.ResponsesPerSecond < 0 {
		bad("rrl.responses_per_second %d: negative", r.ResponsesPerSecond)
	}
	if r.Slip != nil && (*r.Slip < 0 || *r.Slip > 10) {
		bad("rrl.slip %d: want 0 to 10", *r.Slip)
	}
	if r.IPv4Prefix < 8 || r.IPv4Prefix > 32 {
		bad("rrl.ipv4_prefix %d: want 8 to 32", r.IPv4Prefix)
	}
	if r.IPv6Prefix < 16 || r.IPv6Prefix > 128 {
		bad("rrl.ipv6_prefix %d: want 16 to 128", r.IPv6Prefix)
	}
	if r.TableSize < 1 || r.TableSize > 1<<24 {
		bad("rrl.table_size %d: want 1 to 16777216", r.TableSize)
	}
	p := c.Probe
	switch p.Type {
	case "":
	case "tcp", "http":
		if p.Port < 1 || p.Port > 65535 {
			bad("probe.port %d: want 1 to 65535", p.Port)
		}
		if p.Interval < 100*time.Millisecond {
			bad("probe.interval %s: want at least 100ms", p.Interval)
		}
		if p.Timeout > p.Interval {
			bad("probe.timeout %s: above the interval %s", p.Timeout, p.Interval)
		}
		if p.Rise < 1 || p.Fall < 1 {
			bad("probe.rise and probe.fall: want at least 1")
		}
		for pool, t := range p.Targets {
			if _, _, err := net.SplitHostPort(t); err != nil {
				bad("probe.targets.%s %q: want host:port", pool, t)
			}
		}
	default:
		bad("probe.type %q: want tcp or http", p.Type)
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "file://") && !strings.HasPrefix(c.Store, "consul://") &&
		!strings.HasSuffix(c.Store, ".yaml") && !strings.HasSuffix(c.Store, ".yml") {
		bad("store %q: want file:///path.yaml or consul://host:port/prefix", c.Store)
	}
	return errors.Join(errs...)
}

// consulConfigured reports whether razor talks to a Consul agent.
func (c *Config) consulConfigured() bool { return c.Consul.Address != "" }
