package testsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// StartGoBGPD runs gobgpd as a top-of-rack peer with cfg: its own TOML
// config under t.TempDir, the gRPC API on a Unix socket there (no TCP port,
// reachable from outside a namespace), pprof off, listening on
// LocalAddr:Port, accepting everything from every neighbor and announcing
// nothing (default export policy reject). It waits until the API reports
// the configured neighbors, and stops gobgpd when the test ends.
func StartGoBGPD(t testing.TB, cfg BGPPeerConfig) *BGPPeer {
	t.Helper()
	bin := Require(t, "gobgpd")
	pickedPort := cfg.Port == 0
	p := newBGPPeer(t, "gobgpd", cfg)
	p.apiSock = filepath.Join(shortDir(t, p.dir), "gobgp.sock")
	conn, err := grpc.NewClient("unix://"+p.apiSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("testsvc: gobgpd API client: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	p.conn = conn
	p.client = api.NewGobgpApiClient(conn)
	conf := filepath.Join(p.dir, "gobgpd.toml")
	p.launch(t, pickedPort, func() error {
		if err := os.WriteFile(conf, []byte(p.gobgpConfig()), 0o644); err != nil {
			return fmt.Errorf("testsvc: gobgpd config: %w", err)
		}
		_ = os.Remove(p.apiSock)
		p.argv = p.wrapNetns([]string{bin, "-f", conf, "-t", "toml",
			"--api-hosts", "unix://" + p.apiSock, "--pprof-disable",
			"-p", "-l", "info"})
		return nil
	})
	return p
}

func (p *BGPPeer) gobgpConfig() string {
	c := p.cfg
	var b strings.Builder
	b.WriteString("# written by internal/testsvc\n[global.config]\n")
	fmt.Fprintf(&b, "  as = %d\n  router-id = %q\n  port = %d\n  local-address-list = [%q]\n", c.ASN, c.RouterID, c.Port, c.LocalAddr)
	b.WriteString("[global.apply-policy.config]\n  default-import-policy = \"accept-route\"\n  default-export-policy = \"reject-route\"\n")
	for _, n := range c.Neighbors {
		b.WriteString("\n[[neighbors]]\n  [neighbors.config]\n")
		fmt.Fprintf(&b, "    neighbor-address = %q\n    peer-as = %d\n", n.Addr, n.ASN)
		if n.Password != "" {
			fmt.Fprintf(&b, "    auth-password = %q\n", n.Password)
		}
		b.WriteString("  [neighbors.transport.config]\n")
		fmt.Fprintf(&b, "    remote-port = %d\n    local-address = %q\n    passive-mode = %v\n", n.Port, c.LocalAddr, n.Passive)
		b.WriteString("  [neighbors.timers.config]\n")
		fmt.Fprintf(&b, "    hold-time = %d\n    keepalive-interval = %d\n    connect-retry = %d\n    idle-hold-time-after-reset = 1\n",
			c.HoldTime, c.HoldTime/3, c.ConnectRetry)
		if n.ASN != c.ASN {
			b.WriteString("  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 8\n")
		}
		for _, fam := range []string{"ipv4-unicast", "ipv6-unicast"} {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", fam)
			if c.AddPaths {
				b.WriteString("    [neighbors.afi-safis.add-paths.config]\n      receive = true\n")
			}
		}
	}
	return b.String()
}

func (p *BGPPeer) gobgpReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, err := p.client.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return err
	}
	if g.GetGlobal().GetAsn() != p.cfg.ASN {
		return errors.New("global config not loaded yet")
	}
	st, err := p.client.ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		return err
	}
	n := 0
	for {
		_, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n != len(p.cfg.Neighbors) {
		return fmt.Errorf("%d of %d neighbors configured", n, len(p.cfg.Neighbors))
	}
	return nil
}

var gobgpStates = map[api.PeerState_SessionState]string{
	api.PeerState_UNKNOWN:     "Unknown",
	api.PeerState_IDLE:        "Idle",
	api.PeerState_CONNECT:     "Connect",
	api.PeerState_ACTIVE:      "Active",
	api.PeerState_OPENSENT:    "OpenSent",
	api.PeerState_OPENCONFIRM: "OpenConfirm",
	api.PeerState_ESTABLISHED: "Established",
}

func (p *BGPPeer) gobgpState(a netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.client.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()})
	if err != nil {
		return "", fmt.Errorf("testsvc: gobgpd state of %s: %w", a, err)
	}
	for {
		res, err := st.Recv()
		if err == io.EOF {
			return "", fmt.Errorf("testsvc: gobgpd has no session to %s", a)
		}
		if err != nil {
			return "", fmt.Errorf("testsvc: gobgpd state of %s: %w", a, err)
		}
		peer := res.GetPeer()
		na, err := netip.ParseAddr(peer.GetState().GetNeighborAddress())
		if err != nil {
			na, _ = netip.ParseAddr(peer.GetConf().GetNeighborAddress())
		}
		if na == a {
			return gobgpStates[peer.GetState().GetSessionState()], nil
		}
	}
}

func (p *BGPPeer) gobgpRoutes(family string) ([]Route, error) {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if family == "ipv6" {
		fam.Afi = api.Family_AFI_IP6
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.client.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam})
	if err != nil {
		return nil, fmt.Errorf("testsvc: gobgpd routes: %w", err)
	}
	var out []Route
	for {
		res, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("testsvc: gobgpd routes: %w", err)
		}
		d := res.GetDestination()
		pf, err := netip.ParsePrefix(d.GetPrefix())
		if err != nil {
			return nil, fmt.Errorf("testsvc: gobgpd prefix %q: %w", d.GetPrefix(), err)
		}
		for _, path := range d.GetPaths() {
			if path.GetIsWithdraw() {
				continue
			}
			r, err := gobgpRoute(pf, path)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
}

// gobgpRoute converts one API path.
func gobgpRoute(pf netip.Prefix, path *api.Path) (Route, error) {
	r := Route{Prefix: pf}
	if a, err := netip.ParseAddr(path.GetNeighborIp()); err == nil {
		r.From = a
	}
	for _, anyAttr := range path.GetPattrs() {
		m, err := anyAttr.UnmarshalNew()
		if err != nil {
			return r, fmt.Errorf("testsvc: gobgpd path attribute %s: %w", anyAttr.GetTypeUrl(), err)
		}
		switch a := m.(type) {
		case *api.NextHopAttribute:
			r.NextHop, _ = netip.ParseAddr(a.GetNextHop())
		case *api.MpReachNLRIAttribute:
			if nh := a.GetNextHops(); len(nh) > 0 {
				r.NextHop, _ = netip.ParseAddr(nh[0])
			}
		case *api.AsPathAttribute:
			for _, s := range a.GetSegments() {
				r.ASPath = append(r.ASPath, s.GetNumbers()...)
			}
		case *api.MultiExitDiscAttribute:
			r.MED, r.HasMED = a.GetMed(), true
		case *api.LocalPrefAttribute:
			r.LocalPref = a.GetLocalPref()
		case *api.CommunitiesAttribute:
			for _, c := range a.GetCommunities() {
				r.Communities = append(r.Communities, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
		case *api.LargeCommunitiesAttribute:
			for _, c := range a.GetCommunities() {
				r.LargeCommunities = append(r.LargeCommunities,
					fmt.Sprintf("%d:%d:%d", c.GetGlobalAdmin(), c.GetLocalData1(), c.GetLocalData2()))
			}
		}
	}
	return r, nil
}
