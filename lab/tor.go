package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// torConfig is BIRD's configuration for the ToR: one BGP session per edge
// over IPv6 carrying IPv4 and IPv6 routes, and kernel export with merged
// paths so the VIPs get ECMP routes. All edges share one ASN, so their
// paths are equal and BIRD merges them.
func torConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, `log stderr all;
router id 10.255.0.1;
protocol device { scan time 1; }
protocol kernel k4 { ipv4 { import none; export all; }; merge paths on limit 16; }
protocol kernel k6 { ipv6 { import none; export all; }; merge paths on limit 16; }
template bgp edge {
  local as %d;
  hold time 6;
  connect retry time 1;
  error wait time 1, 5;
  ipv4 { import all; export none; extended next hop on; };
  ipv6 { import all; export none; };
}
`, TORASN)
	for i := 1; i <= Edges; i++ {
		fmt.Fprintf(&b, "protocol bgp e%d from edge { neighbor %s as %d; source address fd00:0:%d::1; }\n", i, linkPeer6(i), EdgeASN, i)
	}
	return b.String()
}

// startTOR starts BIRD in the ToR namespace.
func (l *Lab) startTOR() error {
	conf := filepath.Join(l.Dir, "tor-bird.conf")
	if err := os.WriteFile(conf, []byte(torConfig()), 0o644); err != nil {
		return err
	}
	p, err := l.start("tor-bird", nsTOR, "bird", "-f", "-c", conf, "-s", l.birdSocket())
	if err != nil {
		return err
	}
	l.tor = p
	return waitFor(10*time.Second, "BIRD on the ToR answers", func() error {
		_, err := l.birdc("show", "status")
		return err
	})
}

func (l *Lab) birdSocket() string { return filepath.Join(l.Dir, "tor-bird.ctl") }

// birdc runs a birdc command against the ToR's BIRD.
func (l *Lab) birdc(args ...string) (string, error) {
	return run("birdc", append([]string{"-s", l.birdSocket()}, args...)...)
}

// TORRoutes returns the ToR kernel's routes to prefix (e.g. the VIP),
// with one "nexthop via" line per ECMP path.
func (l *Lab) TORRoutes(family, prefix string) (string, error) {
	return run("ip", "-n", nsTOR, family, "route", "show", prefix)
}

// EstablishedEdges returns how many of the ToR's BGP sessions are up.
func (l *Lab) EstablishedEdges() int {
	out, err := l.birdc("show", "protocols")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "e") && strings.Contains(line, "Established") {
			n++
		}
	}
	return n
}
