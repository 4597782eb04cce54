//go:build lab

package lab

import (
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
	_ = time.Second
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
