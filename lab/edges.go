package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// edgeMetrics is where edge i serves /metrics and /readyz (the Consul
// check of its v6pod-edge registration goes there).
func edgeMetrics(i int) string { return fmt.Sprintf("[%s]:9100", linkPeer6(i)) }

// edgeConfig: listeners on every VIP, upstreams from the local Redis
// replica, registration in Consul, and one IPv6 BGP session to the ToR
// carrying the VIPs of both families and the node's /64.
func edgeConfig(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: e%d\nlisten:\n", i)
	for _, v := range VIP4s {
		fmt.Fprintf(&b, "  - addr: \"%s:80\"\n", v)
	}
	for _, v := range VIP6s {
		fmt.Fprintf(&b, "  - addr: \"[%s]:80\"\n", v)
	}
	fmt.Fprintf(&b, `source: redis://127.0.0.1:%d/0
resync: 10s
metrics: "%s"
consul:
  address: %s
  register: true
  check_interval: 1s
drain:
  timeout: 8s
defaults:
  retries: 2
bgp:
  local_asn: %d
  router_id: 10.0.%d.2
  consul: %s
  peers:
    - address: "%s"
      asn: %d
      hold_time: 6s
      connect_retry: 1s
  announce:
    vips: [%s]
    node_prefix: 2001:db8:e%d::/64
    communities: ["%d:100"]
  graceful_shutdown_wait: 2s
  health_interval: 500ms
`, RedisPort, edgeMetrics(i), ConsulHTTP, EdgeASN, i, StoreURL, fmt.Sprintf("fd00:0:%d::1", i), TORASN,
		quoteAll(append(append([]string{}, VIP4s...), VIP6s...)), i, EdgeASN)
	return b.String()
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = `"` + s + `"`
	}
	return strings.Join(q, ", ")
}

// seedUpstreams writes the shop app's containers and its host into the
// Redis master; the replicas carry them to every edge.
func (l *Lab) seedUpstreams() error {
	for _, c := range Containers[:2] {
		if _, err := l.RedisMaster("SADD", "v6pod:app:shop:upstreams", fmt.Sprintf("[%s]:%d", c, containerPort)); err != nil {
			return err
		}
	}
	_, err := l.RedisMaster("SET", "v6pod:host:www.customer.test", "shop")
	return err
}

// startEdge starts the edge of namespace i and waits until it is ready.
func (l *Lab) startEdge(i int) (*proc, error) {
	path := filepath.Join(l.Dir, fmt.Sprintf("edge-e%d.yaml", i))
	if err := os.WriteFile(path, []byte(edgeConfig(i)), 0o644); err != nil {
		return nil, err
	}
	p, err := l.start(fmt.Sprintf("edge-e%d", i), nsEdge(i), l.bin("edge"), "--config", path)
	if err != nil {
		return nil, err
	}
	err = waitFor(15*time.Second, fmt.Sprintf("edge e%d ready", i), func() error {
		if _, err := inNS(nsEdge(i), "curl", "-sf", "-m", "1", "http://"+edgeMetrics(i)+"/readyz"); err != nil {
			return fmt.Errorf("%v\n%s", err, p.tail())
		}
		return nil
	})
	return p, err
}

// EdgeRequests returns how many requests edge i has served, from its
// metrics.
func (l *Lab) EdgeRequests(i int) (int, error) {
	out, err := inNS(nsEdge(i), "curl", "-sf", "-m", "2", "http://"+edgeMetrics(i)+"/metrics")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "edge_requests_total{") {
			var n float64
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &n)
			total += int(n)
		}
	}
	return total, nil
}

// startEdges starts every edge.
func (l *Lab) startEdges() error {
	l.edges = map[int]*proc{}
	for i := 1; i <= Edges; i++ {
		p, err := l.startEdge(i)
		if err != nil {
			return err
		}
		l.edges[i] = p
	}
	return nil
}
