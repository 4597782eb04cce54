package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is an upstream on [::1] that reads a request head and lets
// answer write whatever bytes it likes.
func rawUpstream(t *testing.T, answer func(c net.Conn)) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				c.Read(buf)
				answer(c)
			}()
		}
	}()
	return &upstream{name: "raw", ap: l.Addr().(*net.TCPAddr).AddrPort(), l: l}
}

// An upstream with an endless response header or endless 1xx answers
// gets the client a 502 (through edge/h1 and through net/http.Transport),
// instead of growing the edge's memory.
func TestUpstreamHugeHeaderAnd1xxLoopAre502(t *testing.T) {
	t.Parallel()
	huge := rawUpstream(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := []byte(strings.Repeat("a", 16<<10))
		for range 64 << 10 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	loop := rawUpstream(t, func(c net.Conn) {
		for range 1 << 20 {
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"); err != nil {
				return
			}
		}
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"huge.test": "huge", "loop.test": "loop"},
		map[string][]*upstream{"huge": {huge}, "loop": {loop}})
	s := startEdge(t, Config{Source: url, Defaults: App{Retries: -1}})
	c := newClient()
	for _, host := range []string{"huge.test", "loop.test"} {
		for _, method := range []string{"GET", "POST"} {
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("x") // a body: net/http.Transport
			}
			req, _ := http.NewRequest(method, "http://"+s.Addrs()[0].String()+"/", body)
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, host, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s %s: %d, want 502", method, host, resp.StatusCode)
			}
		}
	}
}

// A client that sends a malformed chunked body gets 400, one that aborts
// its body is recorded as 499, and neither counts against the upstream:
// with max_fails 1 it is never ejected, and no upstream error is counted.
func TestClientBodyErrorsDoNotEjectUpstreams(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "up", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url, Defaults: App{MaxFails: 1, MaxEjected: 1}})
	ea := s.Addrs()[0].String()
	for i := range 3 {
		c, err := net.Dial("tcp", ea)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /m HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz-not-hex\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("malformed #%d: %v", i, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed chunked body #%d: %d, want 400", i, resp.StatusCode)
		}
	}
	for range 3 {
		c, err := net.Dial("tcp", ea)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /a HTTP/1.1\r\nHost: h.test\r\nContent-Length: 100000\r\n\r\nonly a little")
		time.Sleep(20 * time.Millisecond) // let the request reach the upstream
		c.Close()
	}
	waitFor(t, 10*time.Second, "three 499s", func() bool {
		return counterValue(s.metrics.requests.WithLabelValues("app", "499")) == 3
	})
	if v := counterValue(s.metrics.upstreamErrs.WithLabelValues("app", "other")); v != 0 {
		t.Errorf("edge_upstream_errors_total{kind=other} = %v, want 0", v)
	}
	if n := s.Table().Pool("app").Ejected(); n != 0 {
		t.Errorf("%d upstreams ejected by client errors", n)
	}
	if code, body := get(t, newClient(), s.Addrs()[0], "h.test", "/"); code != 200 || body != "up" {
		t.Fatalf("after client errors: %d %q", code, body)
	}
}

// The upstream sees the client's request-target byte for byte: query
// order, ";" and lone "%" kept, the path not re-escaped; through edge/h1
// (GET) and net/http.Transport (POST).
func TestRequestTargetVerbatim(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "up", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url})
	targets := []string{
		"/p?z=1&a=2&c=x;y",
		"/p?q=100%",
		"/p?a=1;b=2",
		"/a%2Fb/%7e/x\"y/[z]?",
		"/sp%20ace/%E2%82%AC?b=%zz&a",
		"/",
	}
	for _, method := range []string{"GET", "POST"} {
		for _, target := range targets {
			c, err := net.Dial("tcp", s.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			body := ""
			if method == "POST" {
				body = "Content-Length: 1\r\n\r\nx"
			} else {
				body = "\r\n"
			}
			io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: h.test\r\n"+body)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil {
				t.Fatalf("%s %s: %v", method, target, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", method, target, resp.StatusCode)
			}
			if got := up.lastRequest().RequestURI; got != target {
				t.Errorf("%s %s: upstream saw %s", method, target, got)
			}
		}
	}
}

// A hung upstream: the response timeout answers 504 (not 503 after
// retries), and the request is not sent to a second upstream. A POST
// whose pooled connection the upstream drops unanswered is not re-sent
// either (502).
func TestNoResendAfterTimeoutOrForPost(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var hungHits atomic.Int32
	hang := func(c net.Conn) { hungHits.Add(1); <-release }
	h1, h2 := rawUpstream(t, hang), rawUpstream(t, hang)
	t.Cleanup(func() { close(release) })
	var dropHits atomic.Int32
	drop := func(c net.Conn) {
		dropHits.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		buf := make([]byte, 4096)
		if n, _ := c.Read(buf); n > 0 {
			dropHits.Add(1)
		}
	}
	d1 := rawUpstream(t, drop)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"hung.test": "hung", "drop.test": "drop"},
		map[string][]*upstream{"hung": {h1, h2}, "drop": {d1}})
	s := startEdge(t, Config{Source: url, Defaults: App{MaxFails: 1}, Upstream: Upstream{ResponseTimeout: 200 * time.Millisecond}})
	c := newClient()
	if code, _ := get(t, c, s.Addrs()[0], "hung.test", "/"); code != http.StatusGatewayTimeout {
		t.Errorf("hung upstreams: %d, want 504", code)
	}
	if n := hungHits.Load(); n != 1 {
		t.Errorf("the timed-out GET reached %d upstreams, want 1", n)
	}
	if v := counterValue(s.metrics.upstreamErrs.WithLabelValues("hung", "timeout")); v != 1 {
		t.Errorf("edge_upstream_errors_total{app=hung,kind=timeout} = %v, want 1", v)
	}
	if v := counterValue(s.metrics.ejections.WithLabelValues("hung")); v != 1 {
		t.Errorf("the hung upstream was not ejected (max_fails 1): %v ejections", v)
	}
	// Pool one connection to the dropping upstream, then POST.
	if code, _ := get(t, c, s.Addrs()[0], "drop.test", "/"); code != 200 {
		t.Fatalf("first GET: %d", code)
	}
	before := dropHits.Load()
	req, _ := http.NewRequest("POST", "http://"+s.Addrs()[0].String()+"/", nil)
	req.Host = "drop.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST on a dropped connection: %d, want 502", resp.StatusCode)
	}
	if n := dropHits.Load() - before; n != 1 {
		t.Errorf("the POST reached upstreams %d times, want 1", n)
	}
}
