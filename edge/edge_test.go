package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRoutesByHostExactAndWildcard(t *testing.T) {
	t.Parallel()
	shop := startUpstream(t, "shop", nil)
	blog := startUpstream(t, "blog", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"www.shop.test": "shop", "*.blog.test": "blog", "only.test": "nothing"},
		map[string][]*upstream{"shop": {shop}, "blog": {blog}})
	s := startEdge(t, Config{Source: url})
	c := newClient()
	ea := s.Addrs()[0]
	for _, tc := range []struct {
		host string
		code int
		body string
	}{
		{"www.shop.test", 200, "shop"},
		{"WWW.Shop.Test:8080", 200, "shop"}, // port stripped, lower-cased
		{"www.shop.test.", 200, "shop"},
		{"a.blog.test", 200, "blog"},
		{"x.y.blog.test", 200, "blog"},
		{"blog.test", 421, ""},
		{"unknown.test", 421, ""},
		{"only.test", 503, ""}, // known host, app without upstreams
	} {
		code, body := get(t, c, ea, tc.host, "/")
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("Host %s: %d %q, want %d %q", tc.host, code, body, tc.code, tc.body)
		}
	}
	if v := counterValue(s.metrics.requests.WithLabelValues("shop", "200")); v != 3 {
		t.Errorf("edge_requests_total{app=shop,code=200} = %v, want 3", v)
	}
}

func TestForwardingHeadersAndHopByHop(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "up", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url})
	conn, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Raw request: hop-by-hop headers, including one named by Connection.
	fmt.Fprint(conn, "GET /p?q=1 HTTP/1.1\r\nHost: h.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade-Insecure-Requests: 1\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-End: e2e\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := up.lastRequest()
	for _, h := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection", "X-Real-Ip", "X-Forwarded-Port"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s reached the upstream: %q", h, v)
		}
	}
	if r.Header.Get("X-End") != "e2e" || r.Header.Get("Upgrade-Insecure-Requests") != "1" {
		t.Errorf("end-to-end headers lost: %v", r.Header)
	}
	if got := r.Header.Get("X-Forwarded-For"); got != "::1" {
		t.Errorf("X-Forwarded-For = %q, want ::1 (a client's own value is not trusted)", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := r.Header.Get("Forwarded"); got != `for="[::1]";proto=http;host="h.test"` {
		t.Errorf("Forwarded = %q", got)
	}
	if r.Host != "h.test" || r.URL.RequestURI() != "/p?q=1" {
		t.Errorf("upstream saw Host %q URI %q", r.Host, r.URL.RequestURI())
	}
}

func TestFileSourceChangeIsLive(t *testing.T) {
	t.Parallel()
	a, b := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {a}})
	s := startEdge(t, Config{Source: url})
	c := newClient()
	if _, body := get(t, c, s.Addrs()[0], "h.test", "/"); body != "a" {
		t.Fatalf("body %q", body)
	}
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {b}})
	waitFor(t, 5*time.Second, "the new list", func() bool {
		_, body := get(t, c, s.Addrs()[0], "h.test", "/")
		return body == "b"
	})
	// An invalid file keeps the last good lists.
	writeRaw(t, path, "version: 1\nhosts: {h.test: app}\napps: {app: [\"not-an-endpoint\"]}\n")
	time.Sleep(300 * time.Millisecond)
	if code, body := get(t, c, s.Addrs()[0], "h.test", "/"); code != 200 || body != "b" {
		t.Fatalf("after a bad file: %d %q", code, body)
	}
}

func TestKilledUpstreamIsEjectedAndIdempotentRequestsNeverFail(t *testing.T) {
	t.Parallel()
	for _, std := range []bool{false, true} {
		t.Run(map[bool]string{false: "h1", true: "stdlib"}[std], func(t *testing.T) { killedUpstream(t, std) })
	}
}

func killedUpstream(t *testing.T, std bool) {
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil)}
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": ups})
	s := startEdge(t, Config{Source: url, Defaults: App{MaxFails: 2, EjectBase: time.Minute, MaxEjected: 0.7}, Upstream: Upstream{StdlibOnly: std}})
	c := newClient()
	// Traffic first, so that pooled connections to every upstream exist
	// when two of them die.
	for range 30 {
		if code, _ := get(t, c, s.Addrs()[0], "h.test", "/"); code != 200 {
			t.Fatal(code)
		}
	}
	ups[1].kill()
	ups[2].kill()
	for i := range 200 {
		code, body := get(t, c, s.Addrs()[0], "h.test", "/")
		if code != 200 || body != "a" {
			t.Fatalf("request %d: %d %q (a healthy upstream remains, so no idempotent request may fail)", i, code, body)
		}
	}
	if n := s.Table().Pool("app").Ejected(); n != 2 {
		t.Errorf("ejected %d upstreams, want 2", n)
	}
	if v := counterValue(s.metrics.ejections.WithLabelValues("app")); v != 2 {
		t.Errorf("edge_upstream_ejections_total = %v, want 2", v)
	}
	// A POST without a replayable body is not retried... but ejected
	// upstreams are not picked, so it succeeds too.
	req, _ := http.NewRequest("POST", "http://"+s.Addrs()[0].String()+"/", strings.NewReader("x"))
	req.Host = "h.test"
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestEjectionNeverExceedsShare(t *testing.T) {
	t.Parallel()
	ups := []*upstream{startUpstream(t, "a", nil), startUpstream(t, "b", nil), startUpstream(t, "c", nil), startUpstream(t, "d", nil)}
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": ups})
	s := startEdge(t, Config{Source: url, Defaults: App{MaxFails: 1, EjectBase: time.Minute, MaxEjected: 0.5, Retries: 3}})
	for _, u := range ups {
		u.kill()
	}
	c := newClient()
	for range 20 {
		get(t, c, s.Addrs()[0], "h.test", "/")
	}
	if n := s.Table().Pool("app").Ejected(); n != 2 {
		t.Errorf("ejected %d of 4 with max_ejected 0.5, want 2", n)
	}
}

func TestStreamingBothWays(t *testing.T) {
	t.Parallel()
	gotFirst := make(chan string, 1)
	release := make(chan struct{})
	up := startUpstream(t, "s", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			br := bufio.NewReader(r.Body)
			line, _ := br.ReadString('\n')
			gotFirst <- line // before the client has sent the rest
			io.Copy(io.Discard, br)
			return
		}
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second\n")
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url})
	c := newClient()

	req, _ := http.NewRequest("GET", "http://"+s.Addrs()[0].String()+"/", nil)
	req.Host = "h.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first chunk: %q %v", line, err)
	}
	close(release)
	if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
		t.Fatalf("rest %q", rest)
	}
	resp.Body.Close()

	pr, pw := io.Pipe()
	req, _ = http.NewRequest("POST", "http://"+s.Addrs()[0].String()+"/", pr)
	req.Host = "h.test"
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	fmt.Fprint(pw, "hello\n")
	select {
	case line := <-gotFirst:
		if line != "hello\n" {
			t.Fatalf("upstream got %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request body was not streamed: the upstream saw nothing before the client finished")
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	s := startEdge(t, Config{Source: url})
	conn, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: h.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, msg := range []string{"ping 1\n", "ping 2\n"} {
		fmt.Fprint(conn, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
}

// Clients from 64 addresses (127.0.0.0/8 is all loopback) each stay on
// their upstream; removing two upstreams moves (almost) only their clients:
// Maglev's promise is minimal disruption, proven at scale in package
// balance.
func TestMaglevKeepsClientOnItsUpstream(t *testing.T) {
	t.Parallel()
	var ups []*upstream
	for i := range 8 {
		ups = append(ups, startUpstream(t, fmt.Sprintf("u%d", i), nil))
	}
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": ups})
	s := startEdge(t, Config{Source: url, Listen: []Listener{{Addr: "127.0.0.1:0"}}, Apps: map[string]App{"app": {Balance: "maglev"}}})
	const nClients = 64
	clients := make([]*http.Client, nClients)
	for i := range clients {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}
		clients[i] = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: src}).DialContext}}
	}
	before := make([]string, nClients)
	for i, c := range clients {
		_, before[i] = get(t, c, s.Addrs()[0], "h.test", "/")
		for range 3 {
			if _, b := get(t, c, s.Addrs()[0], "h.test", "/"); b != before[i] {
				t.Fatalf("client %d moved from %s to %s with no change at all", i, before[i], b)
			}
		}
	}
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": ups[2:]})
	waitFor(t, 5*time.Second, "the shorter list", func() bool { return s.Table().Pool("app").Len() == 6 })
	moved, unrelated := 0, 0
	for i, c := range clients {
		_, after := get(t, c, s.Addrs()[0], "h.test", "/")
		if before[i] == "u0" || before[i] == "u1" {
			continue
		}
		unrelated++
		if after != before[i] {
			moved++
		}
	}
	if moved*10 > unrelated {
		t.Fatalf("%d of %d clients of unrelated upstreams moved", moved, unrelated)
	}
	t.Logf("%d of %d clients of unrelated upstreams moved", moved, unrelated)
}

func TestDrainSequence(t *testing.T) {
	t.Parallel()
	slow := make(chan struct{})
	up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		fmt.Fprint(w, "a")
	})
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	var events []string
	var mu sync.Mutex
	note := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	var s *Server
	var hookSawDraining, hookServed atomic.Bool
	c := newClient()
	s, err := New(Config{Source: url, Node: "n1", Listen: []Listener{{Addr: "[::1]:0"}}, Metrics: "[::1]:0"},
		WithListenerState(func(ap netip.AddrPort, up bool) { note(fmt.Sprintf("listener up=%v", up)) }),
		WithBeforeClose(func(ctx context.Context) error {
			note("before-close")
			hookSawDraining.Store(s.Draining() && !s.Ready())
			// Listeners still serve while the hook runs (BGP withdrawal).
			code, _ := get(t, c, s.Addrs()[0], "h.test", "/")
			hookServed.Store(code == 200)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	waitFor(t, 5*time.Second, "ready", s.Ready)
	mc := newClient()
	readyz := func() int {
		resp, err := mc.Get("http://" + s.MetricsAddr().String() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	// An in-flight request finishes during the drain.
	slowDone := make(chan int, 1)
	go func() {
		code, _ := get(t, newClient(), s.Addrs()[0], "h.test", "/slow")
		slowDone <- code
	}()
	waitFor(t, 5*time.Second, "slow request in flight", func() bool { return up.hitCount() >= 1 })
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	waitFor(t, 5*time.Second, "draining", s.Draining)
	time.Sleep(100 * time.Millisecond)
	close(slow)
	if code := <-slowDone; code != 200 {
		t.Errorf("in-flight request got %d during the drain", code)
	}
	<-closed
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(events, ", ")
	mu.Unlock()
	if got != "listener up=true, before-close, listener up=false" {
		t.Errorf("events: %s", got)
	}
	if !hookSawDraining.Load() || !hookServed.Load() {
		t.Errorf("hook: saw draining %v, served %v", hookSawDraining.Load(), hookServed.Load())
	}
}

func TestReadyzDuringDrainAndMetricsEndpoint(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	hold := make(chan struct{})
	var s *Server
	readyzInHook := make(chan int, 1)
	s = startEdge(t, Config{Source: url, Metrics: "[::1]:0"}, WithBeforeClose(func(ctx context.Context) error {
		resp, err := http.Get("http://" + s.MetricsAddr().String() + "/readyz")
		if err == nil {
			resp.Body.Close()
			readyzInHook <- resp.StatusCode
		}
		<-hold
		return nil
	}))
	c := newClient()
	get(t, c, s.Addrs()[0], "h.test", "/")
	resp, err := c.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`edge_requests_total{app="app",code="200"} 1`, "edge_upstream_duration_seconds_bucket",
		"edge_source_staleness_seconds", "edge_active_connections", "edge_upstream_ejections_total", "edge_ready 1"} {
		if want == "edge_upstream_ejections_total" {
			continue // a counter vector appears once used
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	go s.Close()
	if code := <-readyzInHook; code != 503 {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
	close(hold)
}

func TestUnknownHostPage(t *testing.T) {
	t.Parallel()
	path, url := filePath(t)
	up := startUpstream(t, "up", nil) // an edge without apps is not ready
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	page := path + ".html"
	writeRaw(t, page, "<h1>not here</h1>")
	s := startEdge(t, Config{Source: url, UnknownHost: UnknownHost{Status: 404, Page: page}})
	code, body := get(t, newClient(), s.Addrs()[0], "nope.test", "/")
	if code != 404 || body != "<h1>not here</h1>" {
		t.Fatalf("%d %q", code, body)
	}
}

func counterValue(c prometheus.Collector) float64 {
	m, ok := c.(prometheus.Metric)
	if !ok {
		return -1
	}
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// A listener whose address is not on this host is retried, not fatal; the
// others serve. With freebind it binds before the address exists (an
// anycast VIP that BGP brings later).
func TestListenerOnMissingAddressAndFreebind(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "a", nil)
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": {up}})
	var mu sync.Mutex
	states := map[netip.AddrPort]bool{}
	s := startEdgeN(t, 2, Config{Source: url, Listen: []Listener{
		{Addr: "[::1]:0"},
		{Addr: "[2001:db8:ffff::99]:18080"},                 // not on this host: retried
		{Addr: "[2001:db8:ffff::98]:18080", Freebind: true}, // bound anyway
	}}, WithListenerState(func(ap netip.AddrPort, up bool) {
		mu.Lock()
		states[ap] = up
		mu.Unlock()
	}))
	if !s.Ready() {
		t.Fatal("not ready with one listener up")
	}
	mu.Lock()
	defer mu.Unlock()
	if !states[netip.MustParseAddrPort("[2001:db8:ffff::98]:18080")] {
		t.Errorf("the freebind listener did not come up: %v", states)
	}
	if _, ok := states[netip.MustParseAddrPort("[2001:db8:ffff::99]:18080")]; ok {
		t.Errorf("the listener on a missing address reported a state: %v", states)
	}
}

// Upstreams die under concurrent load: requests in flight on them are
// retried elsewhere (idempotent, nothing answered yet), so none fails.
func TestUpstreamsDyingUnderLoad(t *testing.T) {
	t.Parallel()
	slowish := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Millisecond)
			fmt.Fprint(w, name)
		}
	}
	ups := []*upstream{startUpstream(t, "a", slowish("a")), startUpstream(t, "b", slowish("b")), startUpstream(t, "c", slowish("c"))}
	path, url := filePath(t)
	writePods(t, path, map[string]string{"h.test": "app"}, map[string][]*upstream{"app": ups})
	s := startEdge(t, Config{Source: url, Defaults: App{MaxFails: 2, EjectBase: time.Minute, MaxEjected: 0.7}})
	var stop atomic.Bool
	var failed, sent atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", "http://"+s.Addrs()[0].String()+"/", nil)
				req.Host = "h.test"
				resp, err := c.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	ups[1].kill()
	time.Sleep(100 * time.Millisecond)
	ups[2].kill()
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed while upstreams died (one stayed healthy)", failed.Load(), sent.Load())
	}
	t.Logf("%d requests, none failed", sent.Load())
}
