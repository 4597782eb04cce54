package lab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/v6pod/v6pod/internal/maglev"
	"github.com/v6pod/v6pod/p4"
)

// The NAT64 path: an IPv6-only client whose resolver is dns64 (in the ops
// namespace, upstream razor), the access tier (p4access and the access.p4
// simulator in the access namespace, one switch port per link), two nat64
// servers announcing the cluster VIP to p4access over BGP, and an IPv4-only
// origin. Forward traffic goes client → switch port 1 → Maglev slot → a
// server's port; everything else (BGP, the IPv4 side, the translated
// answers back to the client) is routed by the ToR.
//
//	v6client sw0 ──── sw-client (port 1) ┐
//	                                     ├ access: p4access sim + p4access
//	nat1 sw0 ─────── sw-nat1 (port 2) ───┤
//	nat2 sw0 ─────── sw-nat2 (port 3) ───┘
//	v6client, access, nat1, nat2, origin eth0 ──── ToR
const (
	nsAccess   = nsPrefix + "access"
	nsV6Client = nsPrefix + "v6client"
	nsOrigin   = nsPrefix + "origin"
)

func nsNAT(i int) string { return fmt.Sprintf("%snat%d", nsPrefix, i) }

// Link numbers of the NAT64 path (linkAddrs).
const (
	linkAccess   = 20
	linkNAT1     = 21 // nat i: 20+i
	linkOrigin   = 23
	linkV6Client = 24
)

// NAT64 addressing.
const (
	NAT64Servers   = 2
	NAT64Prefix    = "64:ff9b::/96"
	NAT64VIP       = "2001:db8:64::1" // the cluster VIP the servers announce
	OriginEIP      = "198.51.100.80"  // the IPv4-only origin, an EIP of the VIP
	OriginName     = "origin.v6pod.test"
	DNS64Addr      = "fd00:0:10::53" // dns64 in the ops namespace
	AccessASN      = 65100
	NAT64ASN       = 65064
	accessBGP      = "fd00:0:20::2" // p4access's BGP listener (access eth0)
	accessBGPPort  = 1790
	maglevSize     = 1021
	gatewayMAC     = "02:00:00:00:00:01" // the client's gateway: the switch port (any MAC)
	accessMetrics  = "127.0.0.1:9464"
	p4runtimeAddr  = "127.0.0.1:9559"
	v6ClientAddr   = "fd00:0:24::2"
	originEIPShort = "c633:6450" // 198.51.100.80 in hex, for the synthesized address
)

// natAddr6 is nat server i's address: its BGP session and next hop.
func natAddr6(i int) string { return linkPeer6(20 + i) }

// natMAC is the MAC of nat server i's switch-facing interface.
func natMAC(i int) string { return fmt.Sprintf("02:64:00:00:00:%02x", 0x20+i) }

// natPool4 is nat server i's pool4: 192.0.2.16/30 and 192.0.2.32/30.
func natPool4(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(16 * i)}), 30)
}

func natMetrics(i int) string { return fmt.Sprintf("[%s]:9164", natAddr6(i)) }

// OriginURL is what the IPv6-only client fetches.
var OriginURL = "http://" + OriginName + "/"

// OriginAddr6 is the origin's synthesized IPv6 address.
var OriginAddr6 = netip.MustParseAddr("64:ff9b::" + originEIPShort)

// nat64Network builds the NAT64 path's namespaces, links, addresses and
// routes.
func (l *Lab) nat64Network() error {
	all := []string{nsAccess, nsV6Client, nsOrigin}
	for i := 1; i <= NAT64Servers; i++ {
		all = append(all, nsNAT(i))
	}
	for _, ns := range all {
		if err := addNS(ns); err != nil {
			return err
		}
	}
	// Routed links to the ToR: the access tier's BGP, the servers' IPv4
	// side and return path, the IPv4-only origin, the IPv6-only client.
	t, o := linkAddrs(linkAccess)
	if err := link(nsTOR, "access", t, nsAccess, "eth0", o); err != nil {
		return err
	}
	if err := defaultVia(nsAccess, linkAccess); err != nil {
		return err
	}
	for i := 1; i <= NAT64Servers; i++ {
		t, o := linkAddrs(20 + i)
		if err := link(nsTOR, fmt.Sprintf("nat%d", i), t, nsNAT(i), "eth0", o); err != nil {
			return err
		}
		if err := defaultVia(nsNAT(i), 20+i); err != nil {
			return err
		}
		if err := ip(nsTOR, "route", "add", natPool4(i).String(), "via", linkPeer4(20+i)); err != nil {
			return err
		}
		// The switch-facing link: no address; the switch rewrites the
		// destination MAC to this one.
		if err := link(nsAccess, fmt.Sprintf("sw-nat%d", i), nil, nsNAT(i), "sw0", nil); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"link", "set", "sw0", "down"},
			{"link", "set", "sw0", "address", natMAC(i)},
			{"link", "set", "sw0", "up"},
		} {
			if err := ip(nsNAT(i), args...); err != nil {
				return err
			}
		}
	}
	// The origin: IPv4 only, the EIP on lo.
	if err := link(nsTOR, "origin", []string{fmt.Sprintf("10.0.%d.1/24", linkOrigin)}, nsOrigin, "eth0", []string{linkPeer4(linkOrigin) + "/24"}); err != nil {
		return err
	}
	if _, err := inNS(nsOrigin, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"); err != nil {
		return err
	}
	if err := ip(nsOrigin, "route", "add", "default", "via", fmt.Sprintf("10.0.%d.1", linkOrigin)); err != nil {
		return err
	}
	if err := ip(nsOrigin, "addr", "add", OriginEIP+"/32", "dev", "lo"); err != nil {
		return err
	}
	if err := ip(nsTOR, "route", "add", OriginEIP+"/32", "via", linkPeer4(linkOrigin)); err != nil {
		return err
	}
	// The client: IPv6 only; the NAT64 prefix through the switch, the
	// rest (its resolver, the answers coming back) through the ToR.
	if err := link(nsTOR, "v6client", []string{fmt.Sprintf("fd00:0:%d::1/64", linkV6Client)}, nsV6Client, "eth0", []string{v6ClientAddr + "/64"}); err != nil {
		return err
	}
	if err := ip(nsV6Client, "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:0:%d::1", linkV6Client)); err != nil {
		return err
	}
	if err := link(nsAccess, "sw-client", nil, nsV6Client, "sw0", nil); err != nil {
		return err
	}
	// The client's link keeps transmit checksum and segmentation offload
	// on (the veth default): the switch simulator finishes the checksums
	// and cuts oversized TCP frames itself.
	for _, args := range [][]string{
		{"-6", "neigh", "add", "fe80::1", "lladdr", gatewayMAC, "dev", "sw0", "nud", "permanent"},
		{"-6", "route", "add", NAT64Prefix, "via", "fe80::1", "dev", "sw0", "src", v6ClientAddr},
	} {
		if err := ip(nsV6Client, args...); err != nil {
			return err
		}
	}
	// The switch ports carry frames only: no IP on them in the access
	// namespace, which does not route.
	for _, kv := range []string{"net.ipv6.conf.all.forwarding=0", "net.ipv4.ip_forward=0"} {
		if _, err := inNS(nsAccess, "sysctl", "-qw", kv); err != nil {
			return err
		}
	}
	ports := []string{"sw-client"}
	for i := 1; i <= NAT64Servers; i++ {
		ports = append(ports, fmt.Sprintf("sw-nat%d", i))
	}
	for _, p := range ports {
		if _, err := inNS(nsAccess, "sysctl", "-qw", "net.ipv6.conf."+p+".disable_ipv6=1"); err != nil {
			return err
		}
	}
	// dns64's own address in the ops namespace (razor has :53 on ::2).
	return ip(nsOps, "addr", "add", DNS64Addr+"/64", "dev", "eth0", "nodad")
}

// p4accessConfig: one VIP, the origin's EIP on it, the two servers as BGP
// peers (their sessions cross the ToR) with their static MACs and ports.
func p4accessConfig(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `device:
  address: %s
  device_id: 1
  election_id_file: %s
  resync: 2s
bgp:
  listen: "[%s]:%d"
  asn: %d
  router_id: 10.0.%d.2
  hold_time: 3s
  converge_time: 5s
  peers:
`, p4runtimeAddr, filepath.Join(dir, "p4access.election"), accessBGP, accessBGPPort, AccessASN, linkAccess)
	for i := 1; i <= NAT64Servers; i++ {
		fmt.Fprintf(&b, "    - {address: \"%s\", asn: %d}\n", natAddr6(i), NAT64ASN)
	}
	fmt.Fprintf(&b, `nat64_prefix: %s
vips:
  - {name: nat64-lab, address: "%s", id: 1, table_size: %d}
eips:
  - {address: %s, vip: nat64-lab}
servers:
`, NAT64Prefix, NAT64VIP, maglevSize, OriginEIP)
	for i := 1; i <= NAT64Servers; i++ {
		fmt.Fprintf(&b, "  - {next_hop: \"%s\", mac: \"%s\", port: %d}\n", natAddr6(i), natMAC(i), i+1)
	}
	fmt.Fprintf(&b, "metrics: %s\n", accessMetrics)
	return b.String()
}

// natConfig is nat server i's configuration: its own pool4, the binding
// log, metrics, and the cluster VIP announced to p4access.
func natConfig(i int, dir string) string {
	return fmt.Sprintf(`tun: nat64
pool6: %s
pool4: [%s]
queues: 1
binding_log: %s
metrics: "%s"
bgp:
  local_asn: %d
  router_id: 10.0.%d.2
  node: nat%d
  peers:
    - {address: "%s", port: %d, asn: %d, hold_time: 3s, connect_retry: 1s, multihop: 8}
  announce:
    vips: ["%s"]
  graceful_shutdown_wait: 300ms
  health_interval: 200ms
  deadman_intervals: 10
`, NAT64Prefix, natPool4(i), filepath.Join(dir, fmt.Sprintf("nat%d-bindings.log", i)), natMetrics(i),
		NAT64ASN, 20+i, i, accessBGP, accessBGPPort, AccessASN, NAT64VIP)
}

const dns64Config = `listen: "[%s]:53"
upstreams: ["%s:53"]
upstream_timeout: 1s
prefix: %s
allow_non_global_wkp: true
cache:
  max_ttl: 5s
`

// startNAT64 builds and starts the NAT64 path and waits until the client
// reaches the origin through it.
func (l *Lab) startNAT64() error {
	if err := l.nat64Network(); err != nil {
		return err
	}
	write := func(name, content string) (string, error) {
		path := filepath.Join(l.Dir, name)
		return path, os.WriteFile(path, []byte(content), 0o644)
	}
	// The origin.
	if _, err := l.start("origin", nsOrigin, l.bin("appserver"), "--listen", OriginEIP+":80"); err != nil {
		return err
	}
	// dns64, upstream razor.
	path, err := write("dns64.yaml", fmt.Sprintf(dns64Config, DNS64Addr, RazorAddr4, NAT64Prefix))
	if err != nil {
		return err
	}
	dns, err := l.start("dns64", nsOps, l.bin("dns64"), "--config", path)
	if err != nil {
		return err
	}
	if err := setResolver(nsV6Client, DNS64Addr); err != nil {
		return err
	}
	// The access tier: the simulator first (p4access connects to it),
	// then the controller (the servers' BGP sessions go to it).
	args := []string{"sim", "--listen", p4runtimeAddr, "--device-id", "1", "--port", "1=sw-client"}
	for i := 1; i <= NAT64Servers; i++ {
		args = append(args, "--port", fmt.Sprintf("%d=sw-nat%d", i+1, i))
	}
	sim, err := l.start("p4sim", nsAccess, l.bin("p4access"), args...)
	if err != nil {
		return err
	}
	if err := waitFor(10*time.Second, "the simulator listens", func() error {
		if _, err := inNS(nsAccess, "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(p4runtimeAddr, ":", "/", 1)); err != nil {
			return fmt.Errorf("%v\n%s", err, sim.tail())
		}
		return nil
	}); err != nil {
		return err
	}
	if path, err = write("p4access.yaml", p4accessConfig(l.Dir)); err != nil {
		return err
	}
	ctl, err := l.start("p4access", nsAccess, l.bin("p4access"), "--config", path)
	if err != nil {
		return err
	}
	l.nat64 = map[int]*proc{}
	for i := 1; i <= NAT64Servers; i++ {
		if path, err = write(fmt.Sprintf("nat%d.yaml", i), natConfig(i, l.Dir)); err != nil {
			return err
		}
		p, err := l.start(fmt.Sprintf("nat%d", i), nsNAT(i), l.bin("nat64"), "--config", path)
		if err != nil {
			return err
		}
		l.nat64[i] = p
	}
	if err := waitFor(30*time.Second, "p4access programs both NAT64 servers", func() error {
		n, err := l.AccessServers()
		if err != nil || n != NAT64Servers {
			return fmt.Errorf("servers %d, %v\n%s", n, err, ctl.tail())
		}
		return nil
	}); err != nil {
		return err
	}
	return waitFor(15*time.Second, "the IPv6-only client reaches the origin", func() error {
		body, err := l.CurlV6("-6", OriginURL)
		if err != nil || !strings.Contains(body, OriginEIP) {
			return fmt.Errorf("%q %v\n%s", body, err, dns.tail())
		}
		return nil
	})
}

// CurlV6 runs curl in the IPv6-only client namespace.
func (l *Lab) CurlV6(args ...string) (string, error) {
	return inNS(nsV6Client, "curl", append([]string{"-sS", "-m", "3"}, args...)...)
}

// metric sums the samples of a Prometheus metric (name{labels...} or a
// bare name) in a /metrics text.
func metric(text, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// AccessServers returns how many servers p4access has in the VIP's table
// (0 until the device is connected).
func (l *Lab) AccessServers() (int, error) {
	out, err := inNS(nsAccess, "curl", "-sf", "-m", "2", "http://"+accessMetrics+"/metrics")
	if err != nil {
		return 0, err
	}
	if c, _ := metric(out, "p4access_device_connected"); c != 1 {
		return 0, fmt.Errorf("device not connected")
	}
	n, _ := metric(out, `p4access_vip_servers{vip="nat64-lab"}`)
	return int(n), nil
}

// AccessMetric returns the sum of a p4access metric's samples.
func (l *Lab) AccessMetric(name string) (float64, error) {
	out, err := inNS(nsAccess, "curl", "-sf", "-m", "2", "http://"+accessMetrics+"/metrics")
	if err != nil {
		return 0, err
	}
	v, _ := metric(out, name)
	return v, nil
}

// NATMetrics returns nat server i's /metrics text.
func (l *Lab) NATMetrics(i int) (string, error) {
	return inNS(nsNAT(i), "curl", "-sf", "-m", "2", "http://"+natMetrics(i)+"/metrics")
}

// Flow is one long-lived TCP connection from the IPv6-only client to the
// origin through the NAT64 path.
type Flow struct {
	conn  net.Conn
	br    *bufio.Reader
	Sport uint16
}

// DialFlows opens n TCP connections from the IPv6-only client namespace
// to the origin's synthesized address, port 80. The sockets are made on a
// thread switched into the namespace; they keep working from any thread.
func DialFlows(n int, timeout time.Duration) ([]*Flow, error) {
	var flows []*Flow
	err := inNetns(nsV6Client, func() error {
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(OriginAddr6, 80).String(), timeout)
			if err != nil {
				return fmt.Errorf("flow %d: %w", i, err)
			}
			flows = append(flows, &Flow{conn: c, br: bufio.NewReader(c), Sport: uint16(c.LocalAddr().(*net.TCPAddr).Port)})
		}
		return nil
	})
	if err != nil {
		CloseFlows(flows)
		return nil, err
	}
	return flows, nil
}

// inNetns runs f on a thread switched into namespace ns. Sockets made
// there stay in ns.
func inNetns(ns string, f func() error) error {
	var ferr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ferr = err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ferr = err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ferr = err
			return
		}
		ferr = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // else the thread stays locked and dies with the goroutine
		}
	}()
	<-done
	return ferr
}

// CloseFlows closes every flow.
func CloseFlows(flows []*Flow) {
	for _, f := range flows {
		f.conn.Close()
	}
}

// Get sends one keep-alive request on the flow and returns the NAT64
// server that carried it (1 or 2, from the pool4 address the origin saw).
func (f *Flow) Get(timeout time.Duration) (int, error) {
	f.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(f.conn, "GET / HTTP/1.1\r\nHost: "+OriginName+"\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(f.br, nil)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	// "container 198.51.100.80:80 host ... via 192.0.2.17:40000 xff ..."
	_, rest, ok := strings.Cut(string(body), " via ")
	if !ok {
		return 0, fmt.Errorf("answer %q", body)
	}
	via, _, _ := strings.Cut(rest, " ")
	ap, err := netip.ParseAddrPort(via)
	if err != nil {
		return 0, fmt.Errorf("answer %q: %v", body, err)
	}
	for i := 1; i <= NAT64Servers; i++ {
		if natPool4(i).Contains(ap.Addr()) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("answer from %s: no server's pool4", ap.Addr())
}

// ExpectedServer is the server internal/maglev and access.p4's flow hash
// put a flow on, with these servers up (as p4access builds the table:
// backends named by their next hop).
func ExpectedServer(sport uint16, up []int) (int, error) {
	t, err := maglevTable(up)
	if err != nil {
		return 0, err
	}
	h := p4.FlowHash(netip.MustParseAddr(v6ClientAddr).As16(), OriginAddr6.As16(), 6, sport, 80)
	name := t.Slot(int(h % maglevSize)).Name
	for _, i := range up {
		if netip.MustParseAddr(natAddr6(i)).String() == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("maglev picked unknown backend %s", name)
}

// maglevTable is the VIP's table over these servers, as p4access builds it.
func maglevTable(up []int) (*maglev.Table, error) {
	var bs []maglev.Backend
	for _, i := range up {
		bs = append(bs, maglev.Backend{Name: netip.MustParseAddr(natAddr6(i)).String()})
	}
	slices.SortFunc(bs, func(a, b maglev.Backend) int { return strings.Compare(a.Name, b.Name) })
	return maglev.Build(bs, maglevSize)
}

// MaglevSlots returns how many slots server i owns with these servers up.
func MaglevSlots(i int, up []int) (int, error) {
	t, err := maglevTable(up)
	if err != nil {
		return 0, err
	}
	name := netip.MustParseAddr(natAddr6(i)).String()
	for k, b := range t.Backends() {
		if b.Name == name {
			return t.Counts()[k], nil
		}
	}
	return 0, nil
}

// StopNAT stops NAT64 server i with SIGTERM (it withdraws its VIP first).
func (l *Lab) StopNAT(i int) { l.nat64[i].stop(syscall.SIGTERM, 10*time.Second) }
