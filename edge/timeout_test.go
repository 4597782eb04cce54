package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/v6pod/v6pod/edge/balance"
	"github.com/v6pod/v6pod/edge/route"
)

// An upstream that stops in the middle of a body: the read timeout cuts
// the download (the client sees a truncated body) and counts against the
// upstream, through edge/h1 (GET) and net/http.Transport (POST).
func TestUpstreamBodyStallTimesOutAndCounts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stall := rawUpstream(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		<-release
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {stall}})
	s := startEdge(t, Config{Source: url, Upstream: Upstream{ReadTimeout: 200 * time.Millisecond}})
	c := newClient()
	for i, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, "http://"+s.Addrs()[0].String()+"/", body)
		req.Host = "h.test"
		// The head may or may not have reached the client before the
		// cut; either way the answer must not look complete.
		resp, err := c.Do(req)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("%s: a stalled body read to the end: %q", method, b)
			}
		}
		if v := counterValue(s.metrics.upstreamErrs.WithLabelValues("app", "timeout")); v != float64(i+1) {
			t.Fatalf("%s: edge_upstream_errors_total{kind=timeout} = %v, want %d", method, v, i+1)
		}
	}
}

// A client that stops sending its body is cut after client.read_timeout
// (499); one that stops reading a download is cut after
// client.write_timeout, and the upstream connection is released.
func TestClientStallsTimeOut(t *testing.T) {
	t.Parallel()
	var upWriteErr atomic.Bool
	big := startUpstream(t, "big", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.Copy(io.Discard, r.Body)
			return
		}
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 1 << 14 { // 1 GiB, never read by the client
			if _, err := w.Write(chunk); err != nil {
				upWriteErr.Store(true)
				return
			}
		}
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {big}})
	s := startEdge(t, Config{Source: url, Client: Client{ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}})
	c, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: h.test\r\nContent-Length: 100\r\n\r\nonly ten b")
	waitFor(t, 10*time.Second, "a 499 for the stalled upload", func() bool {
		return counterValue(s.metrics.requests.WithLabelValues("app", "499")) == 1
	})
	d, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	io.WriteString(d, "GET /big HTTP/1.1\r\nHost: h.test\r\n\r\n")
	waitFor(t, 20*time.Second, "the upstream's download cut", upWriteErr.Load)
}

// The header and idle timeouts of client connections come from the
// configuration; response_timeout has a default, and a negative value
// turns a timeout off.
func TestTimeoutDefaultsAndConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.Upstream.ResponseTimeout != 60*time.Second || c.Upstream.ReadTimeout != 60*time.Second ||
		c.Client.HeaderTimeout != 10*time.Second || c.Client.IdleTimeout != 120*time.Second {
		t.Fatalf("defaults: %+v %+v", c.Upstream, c.Client)
	}
	s, err := New(Config{Source: "file:///nonexistent.yaml", Node: "n", Listen: []Listener{{Addr: "[::1]:0"}},
		Client: Client{HeaderTimeout: 3 * time.Second, IdleTimeout: -1}, Upstream: Upstream{ResponseTimeout: -1}})
	if err != nil {
		t.Fatal(err)
	}
	hs := s.newHTTPServer(Listener{})
	if hs.ReadHeaderTimeout != 3*time.Second || hs.IdleTimeout != 0 {
		t.Fatalf("http.Server: header %v idle %v", hs.ReadHeaderTimeout, hs.IdleTimeout)
	}
	if s.transport.pooled.ResponseHeaderTimeout != 0 || s.transport.fast.ResponseHeaderTimeout != 0 {
		t.Fatal("response_timeout -1 did not turn the timeout off")
	}
}

// Answers cut after their head was sent are counted and logged: by the
// upstream (it died mid-body) and by the client (it left mid-download).
func TestAbortedRequestsAreRecorded(t *testing.T) {
	t.Parallel()
	cut := rawUpstream(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("y", 40000))
	})
	big := startUpstream(t, "big", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 1 << 14 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"cut.test": "cut", "big.test": "big"},
		map[string][]*upstream{"cut": {cut}, "big": {big}})
	s := startEdge(t, Config{Source: url, AccessLog: AccessLog{Enabled: true}})
	c := newClient()
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, "http://"+s.Addrs()[0].String()+"/", body)
		req.Host = "cut.test"
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	waitFor(t, 10*time.Second, "two aborts by the upstream", func() bool {
		return counterValue(s.metrics.aborted.WithLabelValues("cut", "upstream")) == 2
	})
	if v := counterValue(s.metrics.requests.WithLabelValues("cut", "200")); v != 2 {
		t.Errorf("edge_requests_total{app=cut,code=200} = %v, want 2", v)
	}
	if v := counterValue(s.metrics.upstreamErrs.WithLabelValues("cut", "body")); v != 2 {
		t.Errorf("edge_upstream_errors_total{kind=body} = %v, want 2", v)
	}
	d, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "GET / HTTP/1.1\r\nHost: big.test\r\n\r\n")
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(d, buf); err != nil {
		t.Fatal(err)
	}
	d.Close()
	waitFor(t, 10*time.Second, "an abort by the client", func() bool {
		return counterValue(s.metrics.aborted.WithLabelValues("big", "client")) == 1
	})
	if v := counterValue(s.metrics.upstreamErrs.WithLabelValues("big", "body")); v != 0 {
		t.Errorf("a client abort counted against the upstream: %v", v)
	}
}

// A response with a Content-Length whose body comes slowly reaches the
// client as it comes (the flush interval), not when the buffer fills.
func TestLengthResponseStreams(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := startUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "-last")
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url})
	c, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 1024)
	for !strings.HasSuffix(string(got), "first") {
		n, err := c.Read(buf)
		if err != nil {
			close(release)
			t.Fatalf("before the rest was sent: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
	close(release)
}

// An HTTP check answered 101 (or anything outside 2xx/3xx) is a failed
// check; check times of removed apps are forgotten.
func TestProbeWantsTwoOrThreeHundred(t *testing.T) {
	t.Parallel()
	sw := rawUpstream(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\n\r\n") })
	ok := startUpstream(t, "ok", nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	chk := &Check{Type: "http", Path: "/", Timeout: 5 * time.Second}
	if probe(context.Background(), client, chk, balance.NewUpstream(sw.ap)) {
		t.Error("a 101 answer passed the check")
	}
	if !probe(context.Background(), client, chk, balance.NewUpstream(ok.ap)) {
		t.Error("a 200 answer failed the check")
	}
	tab := route.New(nil)
	tab.SetApp("kept", []netip.AddrPort{ok.ap})
	last := map[string]time.Time{"kept": time.Now(), "gone": time.Now()}
	pruneChecked(last, tab)
	if _, ok := last["gone"]; ok || len(last) != 1 {
		t.Errorf("after pruning: %v", last)
	}
}

// The write deadline of one answer does not outlive it: after the
// connection idled past client.write_timeout, an answer the edge writes
// itself (421 for an unknown host) still goes out.
func TestWriteDeadlineRenewedPerRequest(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "up", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url, Client: Client{WriteTimeout: 100 * time.Millisecond}})
	c := newClient()
	if code, _ := get(t, c, s.Addrs()[0], "h.test", "/"); code != 200 {
		t.Fatalf("first: %d", code)
	}
	time.Sleep(300 * time.Millisecond) // idle past the first answer's deadline
	if code, _ := get(t, c, s.Addrs()[0], "unknown.test", "/"); code != 421 {
		t.Fatalf("second, on the same connection: %d", code)
	}
}
