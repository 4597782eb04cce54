package announce

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/internal/addr"
)

// Config is the `bgp:` section of a component's configuration. Decode it
// strictly (ParseConfig), then call Validate, which also fills defaults.
type Config struct {
	// LocalASN is this speaker's AS number.
	LocalASN uint32 `yaml:"local_asn"`
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID string `yaml:"router_id"`
	// ListenPort, when not 0, makes the speaker also accept sessions on
	// this port. 0 (the default) never binds a port: the speaker connects
	// out to its peers only, and never touches 179.
	ListenPort int `yaml:"listen_port"`
	// Node names this node in Consul keys (v6pod/edges/<node>/...).
	// Default: the host name.
	Node string `yaml:"node"`
	// Consul, when set, is a consul://host:port/prefix URL: the speaker
	// follows <prefix>/edges/<node>/drain and writes
	// <prefix>/edges/<node>/bgp. The ACL token comes from
	// CONSUL_HTTP_TOKEN.
	Consul string `yaml:"consul"`

	Peers    []PeerConfig   `yaml:"peers"`
	Announce AnnounceConfig `yaml:"announce"`

	// GracefulShutdownWait is how long routes stay announced with the
	// GRACEFUL_SHUTDOWN community (RFC 8326) before they are withdrawn,
	// on Shutdown and on drain. Default 10s.
	GracefulShutdownWait time.Duration `yaml:"graceful_shutdown_wait"`
	// ManageAddresses puts the VIP addresses on Interface (netlink, root)
	// when the speaker starts and removes the ones it added after their
	// withdrawal went out.
	ManageAddresses bool `yaml:"manage_addresses"`
	// Interface holds the VIP addresses: lo (default) or a dummy
	// interface, created when missing.
	Interface string `yaml:"interface"`
	// DrainFile: while this file exists, the node's VIPs are drained.
	DrainFile string `yaml:"drain_file"`
	// Check is an optional local health check of each VIP.
	Check *CheckConfig `yaml:"check"`
	// HealthInterval is the period of the health loop (checks, readiness
	// polls, dead-man heartbeat). Default 1s.
	HealthInterval time.Duration `yaml:"health_interval"`
	// DeadmanIntervals: when the health loop has not completed a round for
	// this many intervals, every route is withdrawn. Default 3.
	DeadmanIntervals int `yaml:"deadman_intervals"`

	// Parsed by Validate.
	routerID  netip.Addr
	vips      []prefixSpec
	node      *prefixSpec
	nextHopV4 netip.Addr
	nextHopV6 netip.Addr
	consulURL *url.URL
}

// PeerConfig is one BGP neighbour (the top-of-rack router).
type PeerConfig struct {
	Address string `yaml:"address"`
	ASN     uint32 `yaml:"asn"`
	// Port is the peer's TCP port. Default 179.
	Port int `yaml:"port"`
	// Password enables TCP-MD5 (RFC 2385). Never logged.
	Password string `yaml:"password"`
	// HoldTime, whole seconds, 0 or at least 3s. Default 9s.
	HoldTime time.Duration `yaml:"hold_time"`
	// Keepalive default HoldTime/3.
	Keepalive time.Duration `yaml:"keepalive"`
	// ConnectRetry is the pause between connection attempts. Default 5s.
	ConnectRetry time.Duration `yaml:"connect_retry"`
	// LocalAddress binds the session's source address.
	LocalAddress string `yaml:"local_address"`
	// Passive waits for the peer to connect (needs listen_port).
	Passive bool `yaml:"passive"`
	// Multihop sets the eBGP TTL (0: directly connected, TTL 1).
	Multihop int `yaml:"multihop"`

	addr netip.Addr
}

// AnnounceConfig says what the speaker announces.
type AnnounceConfig struct {
	// VIPs are the anycast addresses: a bare address (an IPv4 /32 or an
	// IPv6 /128) or a prefix, optionally with its own communities and MED.
	VIPs []PrefixConfig `yaml:"vips"`
	// NodePrefix is the node's own prefix (its containers' /64); it
	// follows neither readiness nor drain, only shutdown and the dead-man.
	NodePrefix *PrefixConfig `yaml:"node_prefix"`
	// Communities are added to every route, "ASN:value" or a well-known
	// name (no-export, no-advertise, no-export-subconfed, blackhole).
	Communities []string `yaml:"communities"`
	// MED, when set, is sent on every route without its own.
	MED *uint32 `yaml:"med"`
	// NextHopV4 is the next hop of IPv4 routes. Default: the session's
	// own address, which is an IPv6 address on an IPv6 session (RFC 8950
	// extended next hop).
	NextHopV4 string `yaml:"next_hop_v4"`
	// NextHopV6 is the next hop of IPv6 routes. Default: the session's own
	// address.
	NextHopV6 string `yaml:"next_hop_v6"`
}

// PrefixConfig is one announced prefix. In YAML it is either a scalar
// ("203.0.113.10", "2001:db8:100::/48") or a mapping with prefix,
// communities and med.
type PrefixConfig struct {
	Prefix      string   `yaml:"prefix"`
	Communities []string `yaml:"communities"`
	MED         *uint32  `yaml:"med"`
}

// UnmarshalYAML accepts the scalar and the mapping forms.
func (p *PrefixConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		p.Prefix = n.Value
		return nil
	}
	type plain PrefixConfig
	var v plain
	if err := decodeNodeStrict(n, &v); err != nil {
		return err
	}
	*p = PrefixConfig(v)
	return nil
}

// decodeNodeStrict decodes a node rejecting unknown keys (Node.Decode does
// not inherit the decoder's KnownFields).
func decodeNodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// Line numbers of the re-encoded node are relative; name the
			// original line instead.
			return fmt.Errorf("line %d: %s", n.Line, strings.Join(stripLines(te.Errors), "; "))
		}
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

func stripLines(errs []string) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		if j := strings.Index(e, ": "); strings.HasPrefix(e, "line ") && j > 0 {
			e = e[j+2:]
		}
		out[i] = e
	}
	return out
}

// CheckConfig is a local health check run against every VIP address.
type CheckConfig struct {
	// Kind is tcp (connect) or http (GET, 2xx or 3xx passes).
	Kind string `yaml:"kind"`
	Port int    `yaml:"port"`
	// Path of the HTTP GET. Default /.
	Path string `yaml:"path"`
	// Host header of the HTTP GET. Default: the VIP.
	Host     string        `yaml:"host"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Rise consecutive passes make a VIP healthy (default 2), Fall
	// consecutive failures unhealthy (default 2). A VIP starts unhealthy.
	Rise int `yaml:"rise"`
	Fall int `yaml:"fall"`
}

// prefixKind tells VIPs from the node prefix.
type prefixKind string

const (
	kindVIP  prefixKind = "vip"
	kindNode prefixKind = "node"
)

// prefixSpec is a checked prefix with its attributes.
type prefixSpec struct {
	prefix      netip.Prefix
	kind        prefixKind
	communities []uint32
	med         *uint32
}

// ParseConfig strictly decodes a YAML `bgp:` section (an unknown key is an
// error naming its line). It does not validate; call Validate.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("announce: config: %w", err)
	}
	return c, nil
}

// wellKnownCommunities maps RFC 1997, RFC 7999 and RFC 8326 names.
var wellKnownCommunities = map[string]uint32{
	"graceful-shutdown":   communityGracefulShutdown,
	"blackhole":           0xFFFF029A,
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
}

// communityGracefulShutdown is GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326).
const communityGracefulShutdown uint32 = 0xFFFF0000

// ParseCommunity parses "ASN:value" (each 0-65535) or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnownCommunities[strings.ToLower(s)]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:value or a well-known name", s)
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	v, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: both halves must be 0-65535", s)
	}
	return uint32(a)<<16 | uint32(v), nil
}

// FormatCommunity writes a community as ASN:value.
func FormatCommunity(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xFFFF) }

// parsePrefix accepts a bare address (a host prefix) or a masked prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("prefix %q: %v", s, err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("prefix %q: IPv4-mapped IPv6; write the IPv4 prefix", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("prefix %q: host bits set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := addr.Parse(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseCommunities(where string, list []string) ([]uint32, error) {
	var out []uint32
	for _, s := range list {
		c, err := ParseCommunity(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Validate fills defaults and checks the section, naming the bad field.
// A Config must pass Validate before New uses it (New calls it).
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("announce: config: %w", err)
	}
	return nil
}

func (c *Config) validate() error {
	if c.LocalASN == 0 {
		return errors.New("local_asn: required")
	}
	rid, err := addr.Parse(c.RouterID)
	if err != nil || !rid.Unmap().Is4() {
		return fmt.Errorf("router_id: %q is not an IPv4 address", c.RouterID)
	}
	c.routerID = rid.Unmap()
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return fmt.Errorf("listen_port: %d out of range 0-65535", c.ListenPort)
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node: not set and no host name: %v", err)
		}
		c.Node, _, _ = strings.Cut(h, ".")
	}
	if strings.ContainsAny(c.Node, "/ \t\n") {
		return fmt.Errorf("node: %q must not contain '/' or spaces", c.Node)
	}
	c.consulURL = nil
	if c.Consul != "" {
		u, err := url.Parse(c.Consul)
		if err != nil || u.Scheme != "consul" || u.Host == "" {
			return fmt.Errorf("consul: %q: want consul://host:port/prefix", c.Consul)
		}
		c.consulURL = u
	}
	if len(c.Peers) == 0 {
		return errors.New("peers: at least one peer is required")
	}
	seen := map[netip.Addr]bool{}
	for i := range c.Peers {
		p := &c.Peers[i]
		if err := p.validate(c.ListenPort); err != nil {
			return fmt.Errorf("peers[%d]: %w", i, err)
		}
		if seen[p.addr] {
			return fmt.Errorf("peers[%d]: address %s listed twice", i, p.addr)
		}
		seen[p.addr] = true
	}

	a := &c.Announce
	common, err := parseCommunities("announce.communities", a.Communities)
	if err != nil {
		return err
	}
	c.vips = nil
	have := map[netip.Prefix]string{}
	for i, v := range a.VIPs {
		where := fmt.Sprintf("announce.vips[%d]", i)
		spec, err := v.spec(where, kindVIP, common, a.MED)
		if err != nil {
			return err
		}
		if other, dup := have[spec.prefix]; dup {
			return fmt.Errorf("%s: %s already in %s", where, spec.prefix, other)
		}
		have[spec.prefix] = where
		c.vips = append(c.vips, spec)
	}
	c.node = nil
	if a.NodePrefix != nil {
		spec, err := a.NodePrefix.spec("announce.node_prefix", kindNode, common, a.MED)
		if err != nil {
			return err
		}
		if !spec.prefix.Addr().Is6() {
			return fmt.Errorf("announce.node_prefix: %s is not an IPv6 prefix", spec.prefix)
		}
		if other, dup := have[spec.prefix]; dup {
			return fmt.Errorf("announce.node_prefix: %s already in %s", spec.prefix, other)
		}
		c.node = &spec
	}
	if len(c.vips) == 0 && c.node == nil {
		return errors.New("announce: nothing to announce (no vips, no node_prefix)")
	}
	if err := c.checkOverlaps(); err != nil {
		return err
	}
	c.nextHopV4, c.nextHopV6 = netip.Addr{}, netip.Addr{}
	if a.NextHopV4 != "" {
		nh, err := addr.Parse(a.NextHopV4)
		if err != nil {
			return fmt.Errorf("announce.next_hop_v4: %w", err)
		}
		if !nh.Unmap().Is4() || nh.IsUnspecified() {
			return fmt.Errorf("announce.next_hop_v4: %q is not a unicast IPv4 address", a.NextHopV4)
		}
		c.nextHopV4 = nh.Unmap()
	}
	if a.NextHopV6 != "" {
		nh, err := addr.Parse(a.NextHopV6)
		if err != nil {
			return fmt.Errorf("announce.next_hop_v6: %w", err)
		}
		if !nh.Is6() || nh.Is4In6() || nh.IsUnspecified() {
			return fmt.Errorf("announce.next_hop_v6: %q is not a unicast IPv6 address", a.NextHopV6)
		}
		c.nextHopV6 = nh
	}

	if c.GracefulShutdownWait == 0 {
		c.GracefulShutdownWait = 10 * time.Second
	}
	if c.GracefulShutdownWait < 0 || c.GracefulShutdownWait > 30*time.Minute {
		return fmt.Errorf("graceful_shutdown_wait: %s out of range (0, 30m]", c.GracefulShutdownWait)
	}
	if c.Interface == "" {
		c.Interface = "lo"
	}
	if len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "/ \t") {
		return fmt.Errorf("interface: %q is not an interface name", c.Interface)
	}
	if c.ManageAddresses {
		for _, v := range c.vips {
			if !v.prefix.IsSingleIP() {
				return fmt.Errorf("manage_addresses: VIP %s is not a single address; list addresses or manage them yourself", v.prefix)
			}
		}
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = time.Second
	}
	if c.HealthInterval < 10*time.Millisecond {
		return fmt.Errorf("health_interval: %s is shorter than 10ms", c.HealthInterval)
	}
	if c.DeadmanIntervals == 0 {
		c.DeadmanIntervals = 3
	}
	if c.DeadmanIntervals < 2 {
		return fmt.Errorf("deadman_intervals: %d, want at least 2", c.DeadmanIntervals)
	}
	if c.Check != nil {
		if err := c.Check.validate(); err != nil {
			return fmt.Errorf("check: %w", err)
		}
	}
	return nil
}

// Shortest prefixes accepted as a VIP or node prefix: anything wider is a
// typo (an IPv4 VIP written /8 instead of /32, a ::/0) that would pull a
// whole range, or the default route, to this node.
const (
	minBitsV4 = 16
	minBitsV6 = 32
)

// checkOverlaps refuses announced prefixes that contain one another. A
// route covering another keeps attracting its traffic after the more
// specific one is withdrawn (an unhealthy /32 inside an announced /24, a
// VIP inside the node prefix): health-gating would silently not work.
func (c *Config) checkOverlaps() error {
	type named struct {
		p     netip.Prefix
		where string
	}
	var all []named
	for i, v := range c.vips {
		all = append(all, named{v.prefix, fmt.Sprintf("announce.vips[%d]", i)})
	}
	if c.node != nil {
		all = append(all, named{c.node.prefix, "announce.node_prefix"})
	}
	for i, a := range all {
		for _, b := range all[:i] {
			if a.p.Overlaps(b.p) {
				return fmt.Errorf("%s: %s overlaps %s (%s): the wider route would keep attracting the traffic of the narrower one after its withdrawal", a.where, a.p, b.p, b.where)
			}
		}
	}
	return nil
}

func (p PrefixConfig) spec(where string, kind prefixKind, common []uint32, med *uint32) (prefixSpec, error) {
	if p.Prefix == "" {
		return prefixSpec{}, fmt.Errorf("%s: prefix is empty", where)
	}
	pfx, err := parsePrefix(p.Prefix)
	if err != nil {
		return prefixSpec{}, fmt.Errorf("%s: %w", where, err)
	}
	if min := minBitsV4; pfx.Addr().Is4() && pfx.Bits() < min || pfx.Addr().Is6() && pfx.Bits() < minBitsV6 {
		if pfx.Addr().Is6() {
			min = minBitsV6
		}
		return prefixSpec{}, fmt.Errorf("%s: %s is wider than /%d (a typo for a /32 or /128?)", where, pfx, min)
	}
	s := prefixSpec{prefix: pfx, kind: kind, communities: common, med: med}
	if p.Communities != nil {
		own, err := parseCommunities(where+".communities", p.Communities)
		if err != nil {
			return prefixSpec{}, err
		}
		s.communities = own
	}
	if p.MED != nil {
		s.med = p.MED
	}
	for _, c := range s.communities {
		if c == communityGracefulShutdown {
			return prefixSpec{}, fmt.Errorf("%s: 65535:0 (graceful-shutdown) is added by the speaker itself, do not configure it", where)
		}
	}
	return s, nil
}

func (p *PeerConfig) validate(listenPort int) error {
	a, err := addr.Parse(p.Address)
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	p.addr = a.Unmap()
	if p.addr.IsUnspecified() || p.addr.IsMulticast() {
		return fmt.Errorf("address: %q is not a unicast address", p.Address)
	}
	if p.ASN == 0 {
		return errors.New("asn: required")
	}
	if p.Port == 0 {
		p.Port = 179
	}
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("port: %d out of range 1-65535", p.Port)
	}
	if p.HoldTime == 0 {
		p.HoldTime = 9 * time.Second
	}
	if p.HoldTime%time.Second != 0 || p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second {
		return fmt.Errorf("hold_time: %s, want whole seconds from 3s to 65535s (RFC 4271 4.2)", p.HoldTime)
	}
	if p.Keepalive == 0 {
		p.Keepalive = (p.HoldTime / 3).Truncate(time.Second)
	}
	if p.Keepalive%time.Second != 0 || p.Keepalive < time.Second || p.Keepalive >= p.HoldTime {
		return fmt.Errorf("keepalive: %s, want whole seconds from 1s to less than hold_time %s", p.Keepalive, p.HoldTime)
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = 5 * time.Second
	}
	if p.ConnectRetry%time.Second != 0 || p.ConnectRetry < time.Second {
		return fmt.Errorf("connect_retry: %s, want whole seconds, at least 1s", p.ConnectRetry)
	}
	if p.LocalAddress != "" {
		la, err := addr.Parse(p.LocalAddress)
		if err != nil {
			return fmt.Errorf("local_address: %w", err)
		}
		if la.Unmap().Is4() != p.addr.Is4() {
			return fmt.Errorf("local_address: %s and address %s are of different families", la, p.addr)
		}
	}
	if p.Passive && listenPort == 0 {
		return errors.New("passive: needs listen_port, or the session can never come up")
	}
	if p.Multihop < 0 || p.Multihop > 255 {
		return fmt.Errorf("multihop: %d out of range 0-255", p.Multihop)
	}
	if len(p.Password) > 80 {
		return errors.New("password: longer than the 80 bytes TCP-MD5 allows")
	}
	return nil
}

func (k *CheckConfig) validate() error {
	switch k.Kind {
	case "tcp", "http":
	default:
		return fmt.Errorf("kind: %q, want tcp or http", k.Kind)
	}
	if k.Port < 1 || k.Port > 65535 {
		return fmt.Errorf("port: %d out of range 1-65535", k.Port)
	}
	if k.Kind == "tcp" && (k.Path != "" || k.Host != "") {
		return errors.New("path and host are for kind http")
	}
	if k.Path == "" {
		k.Path = "/"
	}
	if !strings.HasPrefix(k.Path, "/") {
		return fmt.Errorf("path: %q must start with /", k.Path)
	}
	if k.Interval == 0 {
		k.Interval = 2 * time.Second
	}
	if k.Timeout == 0 {
		k.Timeout = time.Second
	}
	if k.Interval < 10*time.Millisecond || k.Timeout <= 0 || k.Timeout > k.Interval {
		return fmt.Errorf("interval %s / timeout %s: want interval >= 10ms and 0 < timeout <= interval", k.Interval, k.Timeout)
	}
	if k.Rise == 0 {
		k.Rise = 2
	}
	if k.Fall == 0 {
		k.Fall = 2
	}
	if k.Rise < 1 || k.Fall < 1 {
		return fmt.Errorf("rise %d / fall %d: want at least 1", k.Rise, k.Fall)
	}
	return nil
}

// Prefixes returns the checked VIP prefixes in configuration order. Valid
// only after Validate.
func (c *Config) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(c.vips))
	for i, v := range c.vips {
		out[i] = v.prefix
	}
	return out
}

// NodePrefix returns the checked node prefix, if any. Valid only after
// Validate.
func (c *Config) NodePrefix() (netip.Prefix, bool) {
	if c.node == nil {
		return netip.Prefix{}, false
	}
	return c.node.prefix, true
}
