package nat64

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/v6pod/v6pod/edge/announce"
	"github.com/v6pod/v6pod/internal/testsvc"
)

// The README's example carries a valid bgp section.
func TestReadmeBGPExample(t *testing.T) {
	c, err := ParseConfig([]byte(readmeConfig(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP == nil {
		t.Fatal("README example has no bgp section")
	}
	if err := ValidateBGP(c.BGP); err != nil {
		t.Fatal(err)
	}
	if got := c.BGP.Prefixes(); len(got) != 1 || got[0] != netip.MustParsePrefix("2001:db8:feed::1/128") {
		t.Fatalf("vips %v", got)
	}
}

func TestValidateBGP(t *testing.T) {
	base := "pool6: 64:ff9b::/96\npool4: [198.51.100.0/28]\nbgp:\n  local_asn: 65001\n  router_id: 192.0.2.2\n  node: n1\n  peers: [{address: \"2001:db8:64::1\", asn: 65000, port: 1790}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{base + "  announce: {vips: [192.0.2.9]}\n", "IPv6 /128"},
		{base + "  announce: {vips: [\"2001:db8:feed::/64\"]}\n", "IPv6 /128"},
		{base + "  announce: {node_prefix: \"2001:db8:64::/64\"}\n", "the cluster VIP"},
		{base + "  announce: {vips: [\"2001:db8:feed::1\"]}\n  bogus: 1\n", "field bogus not found"},
	} {
		path := t.TempDir() + "/nat64.yaml"
		if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errb strings.Builder
		if code := Main(context.Background(), []string{"--config", path, "--check"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: code %d, stderr %q, want %q", tc.yaml, code, errb.String(), tc.want)
		}
	}
}

// A real gobgpd stands in for p4access: the translator announces its VIP
// once its workers run, and withdraws it before it stops (and at once
// when it fails).
func TestBGPAnnounce(t *testing.T) {
	requireRoot(t)
	n := os.Getpid()%200 + 20
	peerAddr, ownAddr := fmt.Sprintf("127.0.%d.64", n), fmt.Sprintf("127.0.%d.65", n)
	const vip, nextHop = "2001:db8:feed::1/128", "2001:db8:64::2"
	tor := testsvc.StartGoBGPD(t, testsvc.BGPPeerConfig{LocalAddr: peerAddr, ASN: 65000, HoldTime: 3,
		Neighbors: []testsvc.BGPNeighbor{{Addr: ownAddr, ASN: 65001, Passive: true}}})
	bgp := announce.Config{
		LocalASN: 65001, RouterID: "192.0.2.2", Node: "nat64-test",
		Peers: []announce.PeerConfig{{Address: peerAddr, ASN: 65000, Port: tor.Port(), LocalAddress: ownAddr,
			HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second}},
		// On a 127/8 session the IPv6 route needs an IPv6 next hop; in
		// the lab (an IPv6 session) the default is the session's address.
		Announce:             announce.AnnounceConfig{VIPs: []announce.PrefixConfig{{Prefix: "2001:db8:feed::1"}}, NextHopV6: nextHop},
		GracefulShutdownWait: 200 * time.Millisecond,
		HealthInterval:       100 * time.Millisecond,
		DeadmanIntervals:     10,
	}
	has := func() bool {
		rs, err := tor.Routes("ipv6")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Prefix.String() == vip && r.NextHop.String() == nextHop {
				return true
			}
		}
		return false
	}
	start := func(t *testing.T) (*NAT, *Announcer, context.CancelFunc, func() error) {
		tp := newTopo(t)
		cfg := Config{TUN: "nat64", Pool6: "64:ff9b::/96", Pool4: []string{"198.51.100.0/30"}, Queues: 1}
		var nat *NAT
		var err error
		inNS(t, tp.trans, func() { nat, err = New(cfg) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nat.Close() })
		a, err := NewAnnouncer(bgp, nat, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var runErr error
		go func() { runErr = a.Run(ctx); close(done) }()
		wait := func() error {
			select {
			case <-done:
				return runErr
			case <-time.After(10 * time.Second):
				return fmt.Errorf("Run did not return")
			}
		}
		t.Cleanup(func() { cancel(); wait() })
		tor.WaitEstablished(t, ownAddr, 15*time.Second)
		waitFor(t, "the VIP announced with the server's next hop", 10*time.Second, has)
		return nat, a, cancel, wait
	}

	t.Run("withdrawn before the translator stops", func(t *testing.T) {
		_, _, cancel, wait := start(t)
		cancel()
		waitFor(t, "the VIP withdrawn", 5*time.Second, func() bool { return !has() })
		if err := wait(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
	t.Run("never announced when the translator cannot run", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		tp := newTopo(t)
		// The metrics address is taken: Run fails before the workers start.
		cfg := Config{TUN: "nat64", Pool6: "64:ff9b::/96", Pool4: []string{"198.51.100.0/30"}, Queues: 1, Metrics: ln.Addr().String()}
		var nat *NAT
		inNS(t, tp.trans, func() { nat, err = New(cfg) })
		if err != nil {
			t.Fatal(err)
		}
		defer nat.Close()
		a, err := NewAnnouncer(bgp, nat, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "metrics") {
			t.Fatalf("Run: %v", err)
		}
		if has() {
			t.Fatal("VIP announced by a translator that never ran")
		}
	})
}
