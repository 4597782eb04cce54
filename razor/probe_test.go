package razor

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Razor's own probe: a pool whose target stops accepting connections is
// taken out after `fall` failures and back after `rise` successes.
func TestProbeTCP(t *testing.T) {
	t.Parallel()
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return l
	}
	la, lb := listen(), listen()
	defer lb.Close()
	s, _ := testServer(t, podsDoc(1, "route.v6pod.test.", 4, "none", "edge-a 100 active 4", "edge-b 100 active 4"),
		func(c *Config) {
			c.Probe = ProbeConfig{Type: "tcp", Port: 1, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
				Rise: 2, Fall: 2, Targets: map[string]string{"edge-a": la.Addr().String(), "edge-b": lb.Addr().String()}}
		})
	eventually(t, 5*time.Second, "both pools", func() bool { m := poolsSeen(t, s); return m["1"] && m["2"] })
	la.Close()
	eventually(t, 5*time.Second, "pool a out after its listener closed", func() bool { m := poolsSeen(t, s); return !m["1"] && m["2"] })
	if h, _ := s.PoolHealthy("edge-a"); h {
		t.Fatal("edge-a reported healthy")
	}
	lb.Close()
	eventually(t, 5*time.Second, "all down: fail open to both", func() bool {
		h, _ := s.PoolHealthy("edge-b")
		m := poolsSeen(t, s)
		return !h && m["1"] && m["2"]
	})
}

func TestProbeHTTP(t *testing.T) {
	t.Parallel()
	up := make(chan bool, 1)
	up <- true
	state := true
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case state = <-up:
		default:
		}
		if r.URL.Path != "/readyz" || !state {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer hs.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	s, _ := testServer(t, podsDoc(1, "route.v6pod.test.", 4, "none", "edge-a 100 active 4", "edge-b 100 active 4"),
		func(c *Config) {
			c.Probe = ProbeConfig{Type: "http", Port: 1, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
				Targets: map[string]string{"edge-a": hs.Listener.Addr().String(), "edge-b": ok.Listener.Addr().String()}}
		})
	eventually(t, 5*time.Second, "both pools", func() bool { m := poolsSeen(t, s); return m["1"] && m["2"] })
	up <- false
	eventually(t, 5*time.Second, "pool a out after its /readyz fails", func() bool { m := poolsSeen(t, s); return !m["1"] && m["2"] })
	up <- true
	eventually(t, 5*time.Second, "pool a back", func() bool { m := poolsSeen(t, s); return m["1"] && m["2"] })
}
