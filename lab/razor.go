package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Razor listens on port 53 of the ops namespace; the client's resolver.
var RazorAddr4 = opsAddr4

// StoreURL is the lab's store: Consul KV in the ops namespace.
var StoreURL = "consul://" + ConsulHTTP + "/v6pod"

// podYAML holds the lab's pools (one per edge, owning one VIP of each
// family), its route, and the host → app map the edges serve.
func podYAML() string {
	var b strings.Builder
	b.WriteString("version: 1\npools:\n")
	for i := 1; i <= Edges; i++ {
		fmt.Fprintf(&b, "  - {name: pool-e%d, edge: e%d, site: lab, weight: 100, state: active, v4: [%s], v6: [\"%s\"]}\n",
			i, i, VIP4s[i-1], VIP6s[i-1])
	}
	b.WriteString("routes:\n  - {name: route.v6pod.test., pools: [")
	for i := 1; i <= Edges; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "pool-e%d", i)
	}
	b.WriteString("], answers: 3, ttl: 5}\n")
	b.WriteString("hosts:\n  www.customer.test: shop\n")
	return b.String()
}

const v6podZone = `$ORIGIN v6pod.test.
$TTL 300
@    IN SOA ns1.v6pod.test. hostmaster.v6pod.test. 1 7200 900 1209600 5
     IN NS  ns1.v6pod.test.
ns1  IN A   10.0.10.2
origin IN A 198.51.100.80 ; the IPv4-only origin of the NAT64 path (nat64.go)
`

const customerZone = `$ORIGIN customer.test.
$TTL 300
@    IN SOA ns1.v6pod.test. hostmaster.v6pod.test. 1 7200 900 1209600 5
     IN NS  ns1.v6pod.test.
www  IN CNAME shop.route.v6pod.test.
`

// startRazor loads the pod into Consul with ops and starts razor on it,
// registered in Consul and judging edges by their v6pod-edge checks.
func (l *Lab) startRazor() error {
	files := map[string]string{"pod.yaml": podYAML(), "v6pod.test.zone": v6podZone, "customer.test.zone": customerZone}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(l.Dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if out, err := l.Ops("import", "--allow-reserved", filepath.Join(l.Dir, "pod.yaml")); err != nil {
		return fmt.Errorf("lab: ops import: %v: %s", err, out)
	}
	conf := fmt.Sprintf(`listen: ["%s:53", "[%s]:53"]
zones:
  - {origin: v6pod.test., file: %s}
  - {origin: customer.test., file: %s}
store: %s
metrics: "%s:9153"
consul:
  address: %s
  register: true
  health: true
`, opsAddr4, opsAddr6, filepath.Join(l.Dir, "v6pod.test.zone"), filepath.Join(l.Dir, "customer.test.zone"), StoreURL, opsAddr4, ConsulHTTP)
	path := filepath.Join(l.Dir, "razor.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := l.start("razor", nsOps, l.bin("razor"), "--config", path)
	if err != nil {
		return err
	}
	if err := setResolver(nsClient, opsAddr4); err != nil {
		return err
	}
	return waitFor(15*time.Second, "razor answers", func() error {
		out, err := inNS(nsClient, "dig", "+short", "+time=1", "+tries=1", "@"+opsAddr4, "ns1.v6pod.test", "A")
		if err != nil || !strings.Contains(out, "10.0.10.2") {
			return fmt.Errorf("%q %v\n%s", out, err, p.tail())
		}
		return nil
	})
}

// Ops runs the ops command line against the lab's store, from the ops
// namespace.
func (l *Lab) Ops(args ...string) (string, error) {
	return inNS(nsOps, l.bin("ops"), append([]string{"--store", StoreURL}, args...)...)
}

// Dig asks razor from the client namespace and returns the answer lines.
func (l *Lab) Dig(name, qtype string) ([]string, error) {
	out, err := inNS(nsClient, "dig", "+short", "+time=1", "+tries=2", "@"+opsAddr4, name, qtype)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}
