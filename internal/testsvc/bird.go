package testsvc

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartBIRD runs BIRD 2 as a top-of-rack peer with cfg: its own config
// file and control socket under t.TempDir, listening on LocalAddr:Port
// (strict bind), importing everything from every neighbor and exporting
// nothing. It waits until the control socket answers, and stops BIRD when
// the test ends.
func StartBIRD(t testing.TB, cfg BGPPeerConfig) *BGPPeer {
	t.Helper()
	bin := Require(t, "bird")
	pickedPort := cfg.Port == 0
	p := newBGPPeer(t, "bird", cfg)
	p.ctlSock = filepath.Join(shortDir(t, p.dir), "bird.ctl")
	conf := filepath.Join(p.dir, "bird.conf")
	p.launch(t, pickedPort, func() error {
		if err := os.WriteFile(conf, []byte(p.birdConfig()), 0o644); err != nil {
			return fmt.Errorf("testsvc: bird config: %w", err)
		}
		p.argv = p.wrapNetns([]string{bin, "-f", "-c", conf, "-s", p.ctlSock,
			"-P", filepath.Join(p.dir, "bird.pid")})
		return nil
	})
	return p
}

// birdProto names the BGP protocol of a neighbor.
func birdProto(a string) string {
	return "n_" + strings.NewReplacer(".", "_", ":", "_").Replace(a)
}

func (p *BGPPeer) birdConfig() string {
	c := p.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "# written by internal/testsvc\nrouter id %s;\n", c.RouterID)
	fmt.Fprintf(&b, "log %q all;\n", p.logPath())
	b.WriteString("timeformat protocol iso long;\ntimeformat route iso long;\n")
	b.WriteString("protocol device { scan time 10; }\n")
	addPaths := ""
	if c.AddPaths {
		addPaths = " add paths rx;"
	}
	keep := c.HoldTime / 3
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, "protocol bgp %s {\n", birdProto(n.Addr))
		fmt.Fprintf(&b, "  local %s port %d as %d;\n", c.LocalAddr, c.Port, c.ASN)
		fmt.Fprintf(&b, "  neighbor %s port %d as %d;\n", n.Addr, n.Port, n.ASN)
		b.WriteString("  strict bind yes;\n  multihop;\n")
		fmt.Fprintf(&b, "  hold time %d;\n  keepalive time %d;\n", c.HoldTime, keep)
		fmt.Fprintf(&b, "  connect retry time %d;\n  connect delay time 1;\n  error wait time 1, 4;\n", c.ConnectRetry)
		if n.Passive {
			b.WriteString("  passive on;\n")
		}
		if n.Password != "" {
			fmt.Fprintf(&b, "  password %q;\n", n.Password)
		}
		fmt.Fprintf(&b, "  ipv4 { import all; export none; extended next hop on;%s };\n", addPaths)
		fmt.Fprintf(&b, "  ipv6 { import all; export none;%s };\n", addPaths)
		b.WriteString("}\n")
	}
	return b.String()
}

// birdLine is one line of a BIRD control-socket reply.
type birdLine struct {
	code int
	text string
}

// birdCmd runs one command on the control socket and returns its reply
// lines (continuation lines carry the code of the line before them).
func (p *BGPPeer) birdCmd(cmd string) ([]birdLine, error) {
	c, err := net.DialTimeout("unix", p.ctlSock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := readBirdReply(r); err != nil { // the greeting
		return nil, fmt.Errorf("bird greeting: %w", err)
	}
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		return nil, err
	}
	return readBirdReply(r)
}

// readBirdReply reads lines until a final one ("NNNN text", a space after
// the code).
func readBirdReply(r *bufio.Reader) ([]birdLine, error) {
	var out []birdLine
	code := 0
	for {
		s, err := r.ReadString('\n')
		if err != nil {
			return out, err
		}
		s = strings.TrimRight(s, "\n")
		if strings.HasPrefix(s, " ") { // continuation of the previous code
			out = append(out, birdLine{code, s[1:]})
			continue
		}
		if len(s) < 5 {
			return out, fmt.Errorf("bird: malformed reply line %q", s)
		}
		n, err := strconv.Atoi(s[:4])
		if err != nil {
			return out, fmt.Errorf("bird: malformed reply line %q", s)
		}
		code = n
		out = append(out, birdLine{code, s[5:]})
		if s[4] == ' ' {
			if code >= 8000 {
				return out, fmt.Errorf("bird: %s", s[5:])
			}
			return out, nil
		}
	}
}

// birdReady: the control socket answers and no protocol failed to bind.
func (p *BGPPeer) birdReady() error {
	if _, err := p.birdCmd("show status"); err != nil {
		return err
	}
	if logSays(p.logPath(), "Address already in use") {
		return fmt.Errorf("listening socket: %w", errAddrInUse)
	}
	return nil
}

func (p *BGPPeer) birdState(a netip.Addr) (string, error) {
	lines, err := p.birdCmd("show protocols all " + birdProto(a.String()))
	if err != nil {
		return "", fmt.Errorf("testsvc: bird state of %s: %w", a, err)
	}
	for _, l := range lines {
		t := strings.TrimSpace(l.text)
		if v, ok := strings.CutPrefix(t, "BGP state:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	// A protocol that is down prints no BGP state line.
	for _, l := range lines {
		if l.code == 1002 {
			f := strings.Fields(l.text)
			if len(f) >= 4 && f[0] == birdProto(a.String()) {
				if f[3] == "down" {
					return "Down", nil
				}
				return f[3], nil
			}
		}
	}
	return "", fmt.Errorf("testsvc: bird has no session to %s", a)
}

func (p *BGPPeer) birdRoutes(family string) ([]Route, error) {
	table := "master4"
	if family == "ipv6" {
		table = "master6"
	}
	lines, err := p.birdCmd("show route all table " + table)
	if err != nil {
		return nil, fmt.Errorf("testsvc: bird routes: %w", err)
	}
	proto := map[string]netip.Addr{}
	for _, n := range p.cfg.Neighbors {
		proto[birdProto(n.Addr)] = netip.MustParseAddr(n.Addr)
	}
	return parseBirdRoutes(lines, proto)
}

// parseBirdRoutes reads `show route all` output: a 1007 line starts each
// route (the prefix is omitted for further routes of the same prefix), and
// 1008/1012 lines carry its attributes.
func parseBirdRoutes(lines []birdLine, proto map[string]netip.Addr) ([]Route, error) {
	var out []Route
	var cur *Route
	var prefix netip.Prefix
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	for _, l := range lines {
		switch l.code {
		case 1007:
			flush()
			text := l.text
			if strings.HasPrefix(text, "Table ") {
				prefix = netip.Prefix{}
				continue
			}
			if !strings.HasPrefix(text, " ") && !strings.HasPrefix(text, "\t") {
				f := strings.Fields(text)
				if len(f) == 0 {
					continue
				}
				pf, err := netip.ParsePrefix(f[0])
				if err != nil {
					return nil, fmt.Errorf("testsvc: bird route line %q: %w", text, err)
				}
				prefix = pf
			}
			if !prefix.IsValid() {
				return nil, fmt.Errorf("testsvc: bird route line %q before any prefix", text)
			}
			r := Route{Prefix: prefix}
			if i := strings.IndexByte(text, '['); i >= 0 {
				f := strings.Fields(text[i+1:])
				if len(f) > 0 {
					r.From = proto[f[0]]
				}
				if j := strings.Index(text, " from "); j >= 0 && !r.From.IsValid() {
					if a, err := netip.ParseAddr(strings.TrimRight(strings.Fields(text[j+6:])[0], "]")); err == nil {
						r.From = a
					}
				}
			}
			cur = &r
		case 1008, 1012:
			if cur == nil {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimSpace(l.text), ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "BGP.next_hop":
				if f := strings.Fields(v); len(f) > 0 {
					if a, err := netip.ParseAddr(f[0]); err == nil {
						cur.NextHop = a
					}
				}
			case "BGP.as_path":
				for _, f := range strings.Fields(strings.NewReplacer("{", " ", "}", " ", "(", " ", ")", " ").Replace(v)) {
					if n, err := strconv.ParseUint(f, 10, 32); err == nil {
						cur.ASPath = append(cur.ASPath, uint32(n))
					}
				}
			case "BGP.med":
				if n, err := strconv.ParseUint(v, 10, 32); err == nil {
					cur.MED, cur.HasMED = uint32(n), true
				}
			case "BGP.local_pref":
				if n, err := strconv.ParseUint(v, 10, 32); err == nil {
					cur.LocalPref = uint32(n)
				}
			case "BGP.community":
				for _, c := range birdTuples(v) {
					cur.Communities = append(cur.Communities, strings.Join(c, ":"))
				}
			case "BGP.large_community":
				for _, c := range birdTuples(v) {
					cur.LargeCommunities = append(cur.LargeCommunities, strings.Join(c, ":"))
				}
			}
		}
	}
	flush()
	return out, nil
}

// birdTuples splits "(65535,0) (65000, 1)" into [[65535 0] [65000 1]].
func birdTuples(v string) [][]string {
	var out [][]string
	for _, part := range strings.Split(v, ")") {
		part = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "("))
		if part == "" {
			continue
		}
		var t []string
		for _, x := range strings.Split(part, ",") {
			t = append(t, strings.TrimSpace(x))
		}
		out = append(out, t)
	}
	return out
}
