package controller

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/maglev"
	"github.com/v6pod/v6pod/p4"
)

// Config is p4access's configuration (strict YAML; see README.md).
type Config struct {
	Device      DeviceConfig   `yaml:"device"`
	BGP         BGPConfig      `yaml:"bgp"`
	NAT64Prefix string         `yaml:"nat64_prefix"`
	VIPs        []VIPConfig    `yaml:"vips"`
	EIPs        []EIPConfig    `yaml:"eips"`
	Servers     []ServerConfig `yaml:"servers"`
	Metrics     string         `yaml:"metrics"`
	// EIPSource adds EIPs from Consul KV: consul://host:port/prefix, keys
	// <prefix>/nat64/eips/<EIP> holding a VIP name (or a JSON object with
	// vip, syn_rate, syn_burst, index). Config EIPs win.
	EIPSource string `yaml:"eip_source"`

	prefix netip.Prefix
}

// DeviceConfig names the P4Runtime device and how to program it.
type DeviceConfig struct {
	Address        string        `yaml:"address"`
	DeviceID       uint64        `yaml:"device_id"`
	ElectionIDFile string        `yaml:"election_id_file"`
	DeviceConfig   string        `yaml:"device_config"` // bmv2 JSON (p4c output); empty for p4/sim
	BatchSize      int           `yaml:"batch_size"`
	Timeout        time.Duration `yaml:"timeout"`
	BackoffMin     time.Duration `yaml:"backoff_min"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// Resync recomputes the desired state this often even without BGP
	// events (neighbour table changes); only differences are written.
	Resync time.Duration `yaml:"resync"`
}

// BGPConfig is the embedded speaker NAT64 servers peer with.
type BGPConfig struct {
	Listen       string          `yaml:"listen"`
	ASN          uint32          `yaml:"asn"`
	RouterID     string          `yaml:"router_id"`
	Peers        []PeerConfig    `yaml:"peers"`
	DynamicPeers []DynamicConfig `yaml:"dynamic_peers"`
	HoldTime     time.Duration   `yaml:"hold_time"`
	// ConvergeTime bounds how long after start the controller waits for
	// the peers before its first write to the maglev table (so a restart
	// does not wipe the device before the servers have re-announced).
	ConvergeTime time.Duration `yaml:"converge_time"`
	// FlapHoldDown damps a flapping server: a withdrawal takes effect at
	// once, but a server that re-announces a VIP gets its slots back only
	// once it has not withdrawn for this long (each withdrawal restarts
	// the wait), so a server flapping faster than this costs one rewrite,
	// not two per flap. Default 5s; negative disables.
	FlapHoldDown time.Duration `yaml:"flap_hold_down"`
}

// PeerConfig is one configured NAT64 server session.
type PeerConfig struct {
	Address  string `yaml:"address"`
	ASN      uint32 `yaml:"asn"`
	Password string `yaml:"password"`
}

// DynamicConfig accepts sessions from any address in a prefix.
type DynamicConfig struct {
	Prefix string `yaml:"prefix"`
	ASN    uint32 `yaml:"asn"`
}

// VIPConfig is one NAT64 cluster: the /128 its servers announce, the id
// the switch knows it by, and its Maglev table size.
type VIPConfig struct {
	Name      string `yaml:"name"`
	Address   string `yaml:"address"`
	ID        uint16 `yaml:"id"`
	TableSize uint64 `yaml:"table_size"`

	addr netip.Addr
}

// EIPConfig is one IPv4 address served by a VIP, with its SYN meter.
type EIPConfig struct {
	Address  string `yaml:"address"`
	VIP      string `yaml:"vip"`
	Index    *int   `yaml:"index"`
	SYNRate  int64  `yaml:"syn_rate"`
	SYNBurst int64  `yaml:"syn_burst"`

	addr netip.Addr
	dst  netip.Addr // <prefix>::<EIP>
}

// ServerConfig resolves a NAT64 server's next hop to its MAC (MAC empty:
// from the kernel's neighbour table) and the switch port it hangs off.
type ServerConfig struct {
	NextHop string `yaml:"next_hop"`
	MAC     string `yaml:"mac"`
	Port    uint32 `yaml:"port"`

	nh  netip.Addr
	mac [6]byte
}

// Defaults.
const (
	DefaultDeviceAddress = "127.0.0.1:9559"
	DefaultBGPListen     = "127.0.0.1:1790"
	DefaultASN           = 65000
	DefaultBatchSize     = 1000
	DefaultPrefix        = "64:ff9b::/96"
)

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("p4access: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("p4access: %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML strictly (unknown keys are errors naming the
// line) and fills defaults. Call Validate after applying flags.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.Device.Address == "" {
		c.Device.Address = DefaultDeviceAddress
	}
	if c.Device.DeviceID == 0 {
		c.Device.DeviceID = 1
	}
	if c.Device.BatchSize == 0 {
		c.Device.BatchSize = DefaultBatchSize
	}
	if c.Device.Timeout == 0 {
		c.Device.Timeout = 30 * time.Second
	}
	if c.Device.BackoffMin == 0 {
		c.Device.BackoffMin = 100 * time.Millisecond
	}
	if c.Device.BackoffMax == 0 {
		c.Device.BackoffMax = 10 * time.Second
	}
	if c.Device.Resync == 0 {
		c.Device.Resync = 10 * time.Second
	}
	if c.BGP.Listen == "" {
		c.BGP.Listen = DefaultBGPListen
	}
	if c.BGP.ASN == 0 {
		c.BGP.ASN = DefaultASN
	}
	if c.BGP.HoldTime == 0 {
		c.BGP.HoldTime = 9 * time.Second
	}
	if c.BGP.ConvergeTime == 0 {
		c.BGP.ConvergeTime = 10 * time.Second
	}
	if c.BGP.FlapHoldDown == 0 {
		c.BGP.FlapHoldDown = 5 * time.Second
	}
	if c.NAT64Prefix == "" {
		c.NAT64Prefix = DefaultPrefix
	}
	for i := range c.VIPs {
		if c.VIPs[i].TableSize == 0 {
			c.VIPs[i].TableSize = maglev.DefaultSize
		}
	}
	for i := range c.EIPs {
		e := &c.EIPs[i]
		if e.SYNRate == 0 {
			e.SYNRate = p4.DefaultSYNRate
		}
		if e.SYNBurst == 0 {
			e.SYNBurst = e.SYNRate
		}
		if e.Index == nil {
			i := i
			e.Index = &i
		}
	}
}

// Validate fills defaults and checks everything before any socket opens.
func (c *Config) Validate() error {
	c.applyDefaults()
	if _, _, err := net.SplitHostPort(c.Device.Address); err != nil {
		return fmt.Errorf("device.address %q: %w", c.Device.Address, err)
	}
	if c.Device.BatchSize < 1 {
		return fmt.Errorf("device.batch_size %d: at least 1", c.Device.BatchSize)
	}
	if c.Device.BackoffMin <= 0 || c.Device.BackoffMax < c.Device.BackoffMin {
		return fmt.Errorf("device.backoff_min/backoff_max: need 0 < min <= max")
	}
	host, port, err := net.SplitHostPort(c.BGP.Listen)
	if err != nil {
		return fmt.Errorf("bgp.listen %q: %w", c.BGP.Listen, err)
	}
	if pn, err := strconv.Atoi(port); err != nil || pn <= 0 || pn > 65535 {
		return fmt.Errorf("bgp.listen %q: bad port", c.BGP.Listen)
	}
	if _, err := addr.Parse(host); err != nil {
		return fmt.Errorf("bgp.listen: %w", err)
	}
	if c.BGP.RouterID == "" {
		a, _ := addr.Parse(host)
		if !a.Is4() {
			return fmt.Errorf("bgp.router_id: required when bgp.listen is not IPv4")
		}
		c.BGP.RouterID = a.String()
	}
	if a, err := netip.ParseAddr(c.BGP.RouterID); err != nil || !a.Is4() {
		return fmt.Errorf("bgp.router_id %q: want an IPv4 address", c.BGP.RouterID)
	}
	for i, p := range c.BGP.Peers {
		if _, err := addr.Parse(p.Address); err != nil {
			return fmt.Errorf("bgp.peers[%d]: %w", i, err)
		}
		if p.ASN == 0 {
			return fmt.Errorf("bgp.peers[%d]: asn required", i)
		}
	}
	for i, d := range c.BGP.DynamicPeers {
		if _, err := netip.ParsePrefix(d.Prefix); err != nil {
			return fmt.Errorf("bgp.dynamic_peers[%d]: prefix %q: %w", i, d.Prefix, err)
		}
		if d.ASN == 0 {
			return fmt.Errorf("bgp.dynamic_peers[%d]: asn required", i)
		}
	}
	c.prefix, err = netip.ParsePrefix(c.NAT64Prefix)
	if err == nil {
		err = addr.CheckPrefix(c.prefix)
	}
	if err != nil {
		return fmt.Errorf("nat64_prefix %q: %w", c.NAT64Prefix, err)
	}

	names := map[string]*VIPConfig{}
	ids := map[uint16]bool{}
	addrs := map[netip.Addr]bool{}
	var slots uint64
	for i := range c.VIPs {
		v := &c.VIPs[i]
		if v.Name == "" {
			return fmt.Errorf("vips[%d]: name required", i)
		}
		if names[v.Name] != nil {
			return fmt.Errorf("vips[%d]: duplicate name %q", i, v.Name)
		}
		names[v.Name] = v
		a, err := addr.Parse(v.Address)
		if err != nil || !a.Is6() {
			return fmt.Errorf("vips[%d] %s: address %q: want an IPv6 address", i, v.Name, v.Address)
		}
		if addrs[a] {
			return fmt.Errorf("vips[%d] %s: duplicate address %s", i, v.Name, a)
		}
		addrs[a] = true
		v.addr = a
		if int(v.ID) >= p4.MaxVIPs {
			return fmt.Errorf("vips[%d] %s: id %d: must be below %d", i, v.Name, v.ID, p4.MaxVIPs)
		}
		if ids[v.ID] {
			return fmt.Errorf("vips[%d] %s: duplicate id %d", i, v.Name, v.ID)
		}
		ids[v.ID] = true
		if !maglev.IsPrime(v.TableSize) {
			return fmt.Errorf("vips[%d] %s: table_size %d is not a prime", i, v.Name, v.TableSize)
		}
		slots += v.TableSize
	}
	if slots > p4.MaxSlots {
		return fmt.Errorf("vips: %d maglev slots in all, the switch table holds %d", slots, p4.MaxSlots)
	}
	idx := map[int]bool{}
	eips := map[netip.Addr]bool{}
	for i := range c.EIPs {
		e := &c.EIPs[i]
		a, err := addr.Parse(e.Address)
		if err != nil || !a.Is4() {
			return fmt.Errorf("eips[%d]: address %q: want an IPv4 address", i, e.Address)
		}
		if eips[a] {
			return fmt.Errorf("eips[%d]: duplicate %s", i, a)
		}
		eips[a] = true
		e.addr = a
		e.dst, _ = addr.Embed(c.prefix, a)
		if names[e.VIP] == nil {
			return fmt.Errorf("eips[%d] %s: unknown vip %q", i, a, e.VIP)
		}
		if *e.Index < 0 || *e.Index >= p4.MaxEIPs || idx[*e.Index] {
			return fmt.Errorf("eips[%d] %s: index %d: duplicate or not below %d", i, a, *e.Index, p4.MaxEIPs)
		}
		idx[*e.Index] = true
		if e.SYNRate < 0 || e.SYNBurst < 0 {
			return fmt.Errorf("eips[%d] %s: negative syn_rate or syn_burst", i, a)
		}
	}
	if c.EIPSource != "" {
		u, err := url.Parse(c.EIPSource)
		if err != nil || u.Scheme != "consul" || u.Host == "" {
			return fmt.Errorf("eip_source %q: want consul://host:port/prefix", c.EIPSource)
		}
	}
	nhs := map[netip.Addr]bool{}
	for i := range c.Servers {
		s := &c.Servers[i]
		a, err := addr.Parse(s.NextHop)
		if err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
		if nhs[a] {
			return fmt.Errorf("servers[%d]: duplicate next hop %s", i, a)
		}
		nhs[a] = true
		s.nh = a
		if s.MAC != "" { // empty: the kernel's neighbour table
			hw, err := net.ParseMAC(s.MAC)
			if err != nil || len(hw) != 6 {
				return fmt.Errorf("servers[%d] %s: mac %q: want a 6-byte MAC", i, a, s.MAC)
			}
			copy(s.mac[:], hw)
		}
		if s.Port >= 512 {
			return fmt.Errorf("servers[%d] %s: port %d does not fit 9 bits", i, a, s.Port)
		}
	}
	return nil
}
