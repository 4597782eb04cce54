package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/v6pod/v6pod/edge/proxyproto"
)

func TestProxyProtocolV2ToUpstream(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	headers := make(chan proxyproto.Header, 4)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				b, _ := br.Peek(16)
				if len(b) < 16 {
					return
				}
				b, _ = br.Peek(16 + int(b[14])<<8 + int(b[15]))
				h, n, err := proxyproto.Parse(b)
				if err != nil {
					t.Errorf("upstream: %v", err)
					return
				}
				br.Discard(n)
				headers <- h
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}()
		}
	}()
	up := &upstream{name: "pp", ap: l.Addr().(*net.TCPAddr).AddrPort()}
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "legacy"}, map[string][]*upstream{"legacy": {up}})
	s := startEdge(t, Config{Source: url, Apps: map[string]App{"legacy": {ProxyProtocol: true}}})
	c := newClient()
	for range 2 {
		code, body := get(t, c, s.Addrs()[0], "h.test", "/")
		if code != 200 || body != "ok" {
			t.Fatalf("%d %q", code, body)
		}
		h := <-headers
		if h.Source.Addr().String() != "::1" || h.Dst != s.Addrs()[0] {
			t.Fatalf("PROXY header %+v, want source ::1 and destination %s", h, s.Addrs()[0])
		}
	}
}

func TestActiveHealthCheckTakesUpstreamOut(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	healthy := map[string]bool{"a": true, "b": true}
	mk := func(name string) *upstream {
		return startUpstream(t, name, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				mu.Lock()
				ok := healthy[name]
				mu.Unlock()
				if !ok {
					http.Error(w, "sick", 503)
				}
				return
			}
			fmt.Fprint(w, name)
		})
	}
	a, b := mk("a"), mk("b")
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {a, b}})
	s := startEdge(t, Config{Source: url, Apps: map[string]App{"app": {Check: &Check{Path: "/healthz", Interval: 100 * time.Millisecond}}}})
	mu.Lock()
	healthy["b"] = false
	mu.Unlock()
	waitFor(t, 5*time.Second, "b to be checked down", func() bool {
		for _, u := range s.Table().Pool("app").Upstreams() {
			if u.Addr == b.ap {
				return u.ActiveDown()
			}
		}
		return false
	})
	c := newClient()
	for range 20 {
		if _, body := get(t, c, s.Addrs()[0], "h.test", "/"); body != "a" {
			t.Fatalf("served by %q while b fails its check", body)
		}
	}
}
