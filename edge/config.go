package edge

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/v6pod/v6pod/edge/announce"
	"github.com/v6pod/v6pod/edge/balance"
	"github.com/v6pod/v6pod/edge/source"
	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/model"
)

// Config is the edge configuration (strict YAML; see README.md).
type Config struct {
	// Node is this edge's node name: its Consul service ID. Default: the
	// host name.
	Node string `yaml:"node"`
	// Listen are the serving sockets.
	Listen []Listener `yaml:"listen"`
	// Source names where the lists come from: file:///pods.yaml,
	// redis://..., rediss://..., consul://host:port/prefix.
	Source string `yaml:"source"`
	// Resync is the period of full reloads of the Redis source.
	Resync time.Duration `yaml:"resync"`
	// Metrics is the address of the metrics, /healthz and /readyz
	// listener; none when empty.
	Metrics string `yaml:"metrics"`
	// Pprof adds /debug/pprof/ to the metrics listener.
	Pprof  bool   `yaml:"pprof"`
	TLS    TLS    `yaml:"tls"`
	Consul Consul `yaml:"consul"`
	// Defaults apply to every app; Apps override them per app.
	Defaults    App            `yaml:"defaults"`
	Apps        map[string]App `yaml:"apps"`
	UnknownHost UnknownHost    `yaml:"unknown_host"`
	Drain       Drain          `yaml:"drain"`
	AccessLog   AccessLog      `yaml:"access_log"`
	Upstream    Upstream       `yaml:"upstream"`
	Client      Client         `yaml:"client"`
	// BGP announces the VIPs while they are served (edge/announce,
	// edge/bgp.go); none when absent.
	BGP *announce.Config `yaml:"bgp"`
}

// Listener is one serving socket.
type Listener struct {
	Addr string `yaml:"addr"`
	// TLS terminates TLS with the certificates of tls.cert_dir (HTTP/2 and
	// HTTP/1.1 by ALPN).
	TLS bool `yaml:"tls"`
	// H2C also accepts cleartext HTTP/2 (prior knowledge) on a plain
	// listener.
	H2C bool `yaml:"h2c"`
	// Freebind binds even when the address is not (yet) on an interface
	// (an anycast VIP that BGP will bring).
	Freebind bool `yaml:"freebind"`
}

// TLS configures certificates.
type TLS struct {
	// CertDir holds name.pem (chain and key in one file) or name.crt with
	// name.key; the certificate is chosen by SNI among the names of the
	// leaf certificates, reloaded when a file changes.
	CertDir string `yaml:"cert_dir"`
	// Default is the server name whose certificate answers clients that
	// send no SNI or an unknown one; none when empty (the handshake fails).
	Default string `yaml:"default"`
}

// Consul configures registration as service v6pod-edge.
type Consul struct {
	// Address of the local agent, host:port; taken from a consul:// source
	// when empty.
	Address string `yaml:"address"`
	// Token is the ACL token (CONSUL_HTTP_TOKEN when empty). Never logged.
	Token string `yaml:"token"`
	// Register as v6pod-edge with an HTTP check on /readyz (needs
	// metrics). Default true when Consul is configured.
	Register *bool `yaml:"register"`
	// CheckInterval of the /readyz check.
	CheckInterval time.Duration `yaml:"check_interval"`
}

// App is the per-app policy.
type App struct {
	// Balance: p2c (default), maglev or roundrobin.
	Balance string `yaml:"balance"`
	// MaxFails consecutive connect failures or 5xx answers eject an
	// upstream (default 3; -1 disables passive health).
	MaxFails int `yaml:"max_fails"`
	// EjectBase doubles with each ejection in a row, up to EjectMax.
	EjectBase time.Duration `yaml:"eject_base"`
	EjectMax  time.Duration `yaml:"eject_max"`
	// MaxEjected is the largest share of upstreams ejected at once
	// (default 0.5).
	MaxEjected float64 `yaml:"max_ejected"`
	// Retries of idempotent requests whose connection failed, each to
	// another upstream (default 2; -1 for none).
	Retries int `yaml:"retries"`
	// ProxyProtocol sends a PROXY v2 header to upstreams (one connection
	// per request then, since the header names the client).
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// Check turns on active health checks.
	Check *Check `yaml:"check"`
}

// Check is an active health check.
type Check struct {
	// Type is http (GET Path, 2xx/3xx is healthy) or tcp (connect).
	Type     string        `yaml:"type"`
	Path     string        `yaml:"path"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Host header of HTTP checks (default: the upstream address).
	Host string `yaml:"host"`
}

// UnknownHost is the answer for a Host no app serves.
type UnknownHost struct {
	// Status defaults to 421 Misdirected Request.
	Status int `yaml:"status"`
	// Page is a file whose content is the body (text/html).
	Page string `yaml:"page"`
}

// Drain is the shutdown sequence.
type Drain struct {
	// Delay between entering draining (readiness fails) and closing the
	// listeners, after the before-close hooks (BGP withdrawal) ran.
	Delay time.Duration `yaml:"delay"`
	// Timeout bounds the hooks and then the in-flight requests.
	Timeout time.Duration `yaml:"timeout"`
}

// AccessLog configures the access log (slog, to the edge's logger).
type AccessLog struct {
	Enabled bool `yaml:"enabled"`
	// Rate is the number of requests per second logged in full; above it
	// one request in Sample is logged (with sampled=N).
	Rate   int `yaml:"rate"`
	Sample int `yaml:"sample"`
}

// Upstream tunes the connections to upstreams. A negative timeout turns
// it off.
type Upstream struct {
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseTimeout bounds the wait for response headers once the
	// request is sent (default 60s); a timeout is answered 504 and
	// counts against the upstream's passive health.
	ResponseTimeout time.Duration `yaml:"response_timeout"`
	// ReadTimeout bounds the wait for each read of a response body
	// (idle, not total; default 60s); the download is cut and the
	// upstream's passive health counts a failure.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write of a request body to the upstream
	// (idle, default 60s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleConns    int           `yaml:"idle_conns"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds an upstream's response head, 1xx responses
	// included (default 64 KiB, like the edge's own request heads); a
	// larger one is answered 502.
	MaxHeaderBytes int64 `yaml:"max_header_bytes"`
	// StdlibOnly sends every request through net/http.Transport; by
	// default requests without a body take the leaner edge/h1 transport.
	StdlibOnly bool `yaml:"stdlib_only"`
}

// Client tunes the client connections. A negative timeout turns it off.
type Client struct {
	// HeaderTimeout bounds reading a request head (default 10s).
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// IdleTimeout closes keep-alive connections idle for longer (120s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds the wait for each read of a request body (idle,
	// not total; default 60s); the request is then recorded 499.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write of a response to the client (idle,
	// not total; default 60s), so that a client that stops reading does
	// not hold the upstream connection.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// on returns d, or 0 (off) for a negative d.
func on(d time.Duration) time.Duration { return max(d, 0) }

func defaultDuration(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Node == "" {
		h, _ := os.Hostname()
		c.Node = strings.ToLower(strings.Split(h, ".")[0])
	}
	if c.Resync == 0 {
		c.Resync = 30 * time.Second
	}
	if c.Consul.CheckInterval == 0 {
		c.Consul.CheckInterval = 2 * time.Second
	}
	if c.Consul.Address == "" && strings.HasPrefix(c.Source, "consul://") {
		c.Consul.Address = strings.SplitN(strings.TrimPrefix(c.Source, "consul://"), "/", 2)[0]
	}
	if c.Consul.Register == nil {
		r := c.Consul.Address != "" && c.Metrics != ""
		c.Consul.Register = &r
	}
	c.Defaults.fill(App{Balance: "p2c", MaxFails: 3, EjectBase: 5 * time.Second, EjectMax: 5 * time.Minute, MaxEjected: 0.5, Retries: 2})
	for k, a := range c.Apps {
		a.fill(c.Defaults)
		c.Apps[k] = a
	}
	if c.UnknownHost.Status == 0 {
		c.UnknownHost.Status = 421
	}
	if c.Drain.Timeout == 0 {
		c.Drain.Timeout = 30 * time.Second
	}
	if c.AccessLog.Rate == 0 {
		c.AccessLog.Rate = 100
	}
	if c.AccessLog.Sample == 0 {
		c.AccessLog.Sample = 100
	}
	if c.Upstream.ConnectTimeout == 0 {
		c.Upstream.ConnectTimeout = 2 * time.Second
	}
	if c.Upstream.IdleConns == 0 {
		c.Upstream.IdleConns = 256
	}
	if c.Upstream.IdleTimeout == 0 {
		c.Upstream.IdleTimeout = 90 * time.Second
	}
	defaultDuration(&c.Upstream.ResponseTimeout, 60*time.Second)
	defaultDuration(&c.Upstream.ReadTimeout, 60*time.Second)
	defaultDuration(&c.Upstream.WriteTimeout, 60*time.Second)
	defaultDuration(&c.Client.HeaderTimeout, 10*time.Second)
	defaultDuration(&c.Client.IdleTimeout, 120*time.Second)
	defaultDuration(&c.Client.ReadTimeout, 60*time.Second)
	defaultDuration(&c.Client.WriteTimeout, 60*time.Second)
	if c.Upstream.MaxHeaderBytes == 0 {
		c.Upstream.MaxHeaderBytes = 64 << 10
	}
}

func (a *App) fill(d App) {
	if a.Balance == "" {
		a.Balance = d.Balance
	}
	if a.MaxFails == 0 {
		a.MaxFails = d.MaxFails
	}
	if a.EjectBase == 0 {
		a.EjectBase = d.EjectBase
	}
	if a.EjectMax == 0 {
		a.EjectMax = d.EjectMax
	}
	if a.MaxEjected == 0 {
		a.MaxEjected = d.MaxEjected
	}
	if a.Retries == 0 {
		a.Retries = d.Retries
	}
	if !a.ProxyProtocol {
		a.ProxyProtocol = d.ProxyProtocol
	}
	if a.Check == nil && d.Check != nil {
		c := *d.Check
		a.Check = &c
	}
	if a.Check != nil {
		if a.Check.Type == "" {
			a.Check.Type = "http"
		}
		if a.Check.Type == "http" && a.Check.Path == "" {
			a.Check.Path = "/"
		}
		if a.Check.Interval == 0 {
			a.Check.Interval = 5 * time.Second
		}
		if a.Check.Timeout == 0 {
			a.Check.Timeout = time.Second
		}
	}
}

func (a *App) health() balance.Health {
	h := balance.Health{MaxFails: a.MaxFails, EjectBase: a.EjectBase, EjectMax: a.EjectMax, MaxEjectedShare: a.MaxEjected}
	if h.MaxFails < 0 {
		h.MaxFails = 0
	}
	return h
}

func (a *App) retries() int { return max(a.Retries, 0) }

func (a *App) validate(name string) []error {
	var errs []error
	bad := func(f string, args ...any) { errs = append(errs, fmt.Errorf(name+": "+f, args...)) }
	if !balance.Policy(a.Balance).Valid() {
		bad("balance %q: want p2c, maglev or roundrobin", a.Balance)
	}
	if a.MaxEjected < 0 || a.MaxEjected > 1 {
		bad("max_ejected %v: want 0 to 1", a.MaxEjected)
	}
	if a.EjectBase < 0 || a.EjectMax < a.EjectBase {
		bad("eject_base %v / eject_max %v: want 0 <= base <= max", a.EjectBase, a.EjectMax)
	}
	if a.Retries > 10 {
		bad("retries %d: at most 10", a.Retries)
	}
	if c := a.Check; c != nil {
		if c.Type != "http" && c.Type != "tcp" {
			bad("check type %q: want http or tcp", c.Type)
		}
		if c.Type == "http" && !strings.HasPrefix(c.Path, "/") {
			bad("check path %q: must start with /", c.Path)
		}
		if c.Interval < 100*time.Millisecond || c.Timeout <= 0 {
			bad("check interval %v (>= 100ms) / timeout %v (> 0)", c.Interval, c.Timeout)
		}
	}
	return errs
}

// Validate checks the configuration (after SetDefaults) and returns every
// problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(f string, args ...any) { errs = append(errs, fmt.Errorf(f, args...)) }
	if len(c.Listen) == 0 {
		bad("listen: at least one listener is needed")
	}
	seen := map[string]bool{}
	anyTLS := false
	for i, l := range c.Listen {
		if _, err := addr.ParseEndpointWith(l.Addr, addr.Options{}); err != nil && !isPortZero(l.Addr) {
			bad("listen #%d: %v", i+1, err)
		}
		if seen[l.Addr] && !isPortZero(l.Addr) {
			bad("listen %s: listed twice", l.Addr)
		}
		seen[l.Addr] = true
		if l.TLS {
			anyTLS = true
			if l.H2C {
				bad("listen %s: h2c is for plain listeners (TLS listeners speak h2 by ALPN)", l.Addr)
			}
		}
	}
	if anyTLS && c.TLS.CertDir == "" {
		bad("tls.cert_dir: a TLS listener needs a certificate folder")
	}
	if c.TLS.CertDir != "" {
		if st, err := os.Stat(c.TLS.CertDir); err != nil || !st.IsDir() {
			bad("tls.cert_dir %s: not a folder", c.TLS.CertDir)
		}
	}
	if c.Source == "" {
		bad("source: want file:///pods.yaml, redis://host:port/db or consul://host:port/prefix")
	} else if _, err := source.Open(c.Source, source.Options{}); err != nil {
		bad("source: %v", err)
	}
	if c.Metrics != "" {
		if _, err := addr.ParseEndpoint(c.Metrics); err != nil && !isPortZero(c.Metrics) {
			bad("metrics: %v", err)
		}
	}
	if err := model.CheckName(c.Node); err != nil {
		bad("node: %v", err)
	}
	if c.Consul.Register != nil && *c.Consul.Register {
		if c.Consul.Address == "" {
			bad("consul.register: needs consul.address")
		}
		if c.Metrics == "" {
			bad("consul.register: the /readyz check needs a metrics listener")
		}
	}
	errs = append(errs, c.Defaults.validate("defaults")...)
	for name, a := range c.Apps {
		if err := model.CheckName(name); err != nil {
			bad("apps: %q: %v", name, err)
		}
		errs = append(errs, a.validate("apps."+name)...)
	}
	if s := c.UnknownHost.Status; s < 200 || s > 599 {
		bad("unknown_host.status %d: want 200-599", s)
	}
	if c.UnknownHost.Page != "" {
		if _, err := os.ReadFile(c.UnknownHost.Page); err != nil {
			bad("unknown_host.page: %v", err)
		}
	}
	if c.Drain.Timeout < 0 || c.Drain.Delay < 0 {
		bad("drain: negative durations")
	}
	if c.Upstream.MaxHeaderBytes < 1024 {
		bad("upstream.max_header_bytes %d: at least 1024", c.Upstream.MaxHeaderBytes)
	}
	if c.AccessLog.Rate < 0 || c.AccessLog.Sample < 1 {
		bad("access_log: rate >= 0 and sample >= 1")
	}
	return errors.Join(errs...)
}

// isPortZero accepts host:0 (tests) besides real endpoints.
func isPortZero(s string) bool {
	ap, err := netip.ParseAddrPort(s)
	return err == nil && ap.Port() == 0
}

// ParseConfig decodes a configuration strictly (unknown keys are errors
// naming their line) and fills defaults; call Validate afterwards.
func ParseConfig(name string, b []byte) (Config, error) {
	var c Config
	if err := model.DecodeStrict(bytes.NewReader(b), &c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// LoadConfig reads and parses a configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("edge: %w", err)
	}
	return ParseConfig(path, b)
}
