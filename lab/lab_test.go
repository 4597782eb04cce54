//go:build lab

package lab

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The lab's end-to-end test; `make lab-test` runs it (root, built binaries).
func TestPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root")
	}
	l, err := New(t.TempDir(), "../bin", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
		if left := listNS(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	if err := l.Network(); err != nil {
		t.Fatal(err)
	}
	if err := l.startTOR(); err != nil {
		t.Fatal(err)
	}
	if err := l.startApps(); err != nil {
		t.Fatal(err)
	}
	if err := l.startRedis(); err != nil {
		t.Fatal(err)
	}
	if err := l.startConsul(); err != nil {
		t.Fatal(err)
	}
	if err := l.startRazor(); err != nil {
		t.Fatal(err)
	}
	if err := l.seedUpstreams(); err != nil {
		t.Fatal(err)
	}
	edges := map[int]*proc{}
	for i := 1; i <= Edges; i++ {
		p, err := l.startEdge(i)
		if err != nil {
			t.Fatal(err)
		}
		edges[i] = p
	}
	t.Run("client reaches a container through the ToR", func(t *testing.T) {
		body, err := l.Curl(ContainerURL(0))
		if err != nil || !strings.Contains(body, Containers[0]) {
			t.Fatalf("curl: %q, %v", body, err)
		}
	})
	t.Run("razor answers the customer name with the route's VIPs", func(t *testing.T) {
		got, err := l.Dig("www.customer.test", "A")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1+len(VIP4s) || got[0] != "shop.route.v6pod.test." {
			t.Fatalf("dig www.customer.test A = %v", got)
		}
	})
	t.Run("the ToR has an ECMP route with every edge for each VIP", func(t *testing.T) {
		err := waitFor(20*time.Second, "three BGP sessions and ECMP routes", func() error {
			for _, v := range append(append([]string{}, VIP4s...), VIP6s...) {
				fam := "-4"
				if strings.Contains(v, ":") {
					fam = "-6"
				}
				out, err := l.TORRoutes(fam, v)
				if err != nil {
					return err
				}
				if n := strings.Count(out, "nexthop"); n != Edges {
					return fmt.Errorf("VIP %s: %d paths: %s", v, n, out)
				}
			}
			return nil
		})
		if err != nil {
			out, _ := l.birdc("show", "route", "all")
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("requests succeed through every edge and ECMP spreads them", func(t *testing.T) {
		before := make([]int, Edges+1)
		for i := 1; i <= Edges; i++ {
			before[i], _ = l.EdgeRequests(i)
		}
		for n := 0; n < 60; n++ {
			flag := "-4"
			if n%2 == 1 {
				flag = "-6"
			}
			body, err := l.Curl(flag, "http://www.customer.test/")
			if err != nil || !strings.Contains(body, "container") {
				t.Fatalf("request %d (%s): %q, %v", n, flag, body, err)
			}
		}
		for i := 1; i <= Edges; i++ {
			after, err := l.EdgeRequests(i)
			if err != nil {
				t.Fatal(err)
			}
			if after-before[i] == 0 {
				t.Errorf("edge e%d served no request: ECMP does not spread flows", i)
			}
			t.Logf("edge e%d served %d of 60", i, after-before[i])
		}
	})
	_ = edges
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
