package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTransport() *Transport {
	return &Transport{
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxIdlePerHost: 4,
		IdleTimeout:    time.Minute,
	}
}

func do(t *testing.T, tr *Transport, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if hdr != nil {
		req.Header = hdr
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func TestKeepAliveReusesOneConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-A"))
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newTransport()
	for i := range 10 {
		resp, body := do(t, tr, "GET", srv.URL+fmt.Sprintf("/p?i=%d", i), http.Header{"X-A": {"v"}})
		if resp.StatusCode != 200 || body != fmt.Sprintf("GET /p?i=%d v", i) {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if resp, body := do(t, tr, "HEAD", srv.URL+"/", nil); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 11 sequential requests, want 1", n)
	}
}

func TestChunkedAndCloseResponses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		for i := range 3 {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	tr := newTransport()
	for _, p := range []string{"/", "/close", "/"} {
		if _, body := do(t, tr, "GET", srv.URL+p, nil); body != "chunk0;chunk1;chunk2;" {
			t.Fatalf("%s: %q", p, body)
		}
	}
}

// An upstream that closes idle connections: the stale connection is
// replaced without an error.
func TestStaleConnectionIsRetried(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.IdleTimeout = 50 * time.Millisecond
	srv.Start()
	defer srv.Close()
	tr := newTransport()
	for range 3 {
		if _, body := do(t, tr, "GET", srv.URL, nil); body != "ok" {
			t.Fatal(body)
		}
		time.Sleep(150 * time.Millisecond) // the server closes the idle connection
	}
}

func TestContextCancelUnblocks(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	tr := newTransport()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	_, err := tr.RoundTrip(req)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestCanHandle(t *testing.T) {
	get, _ := http.NewRequest("GET", "http://x/", nil)
	post, _ := http.NewRequest("POST", "http://x/", strings.NewReader("b"))
	up, _ := http.NewRequest("GET", "http://x/", nil)
	up.Header.Set("Upgrade", "websocket")
	if !CanHandle(get) || CanHandle(post) || CanHandle(up) {
		t.Fatal("CanHandle")
	}
}

func TestSweepForgetsIdleAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := newTransport()
	tr.IdleTimeout = time.Millisecond
	do(t, tr, "GET", srv.URL, nil)
	time.Sleep(5 * time.Millisecond)
	tr.Sweep()
	n := 0
	tr.pools.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d pools left after the sweep", n)
	}
	if _, body := do(t, tr, "GET", srv.URL, nil); body != "ok" {
		t.Fatal(body)
	}
}

// FuzzResponse feeds arbitrary upstream bytes to the transport: it must
// neither panic nor hang, and a connection is pooled again only after a
// complete, keep-alive answer.
func FuzzResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 Switching\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody until close"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		tr := &Transport{MaxIdlePerHost: 2, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			a, b := net.Pipe()
			go func() {
				defer b.Close()
				b.SetDeadline(time.Now().Add(time.Second))
				buf := make([]byte, 4096)
				b.Read(buf) // the request head
				b.Write(answer)
			}()
			return a, nil
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://up.test/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	})
}

// rawUpstream accepts connections on [::1] and answers every request head
// with what answer writes.
func rawUpstream(t *testing.T, answer func(c net.Conn)) string {
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
				buf := make([]byte, 4096)
				c.Read(buf) // the request head
				answer(c)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// An upstream sending an endless header is cut off at the limit: the
// transport reads no more than MaxResponseHeaderBytes (plus one buffer).
func TestResponseHeaderLimit(t *testing.T) {
	url := rawUpstream(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := []byte(strings.Repeat("a", 16<<10))
		for i := 0; i < 64<<10; i++ { // up to 1 GiB, never reached
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	tr := newTransport()
	req, _ := http.NewRequest("GET", url+"/", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, ErrResponseHeaderTooLarge) {
		t.Fatalf("err %v, want ErrResponseHeaderTooLarge", err)
	}
	// A head that fits passes, also with a configured limit.
	ok := rawUpstream(t, func(c net.Conn) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("b", 30<<10))
	})
	if _, body := do(t, tr, "GET", ok+"/", nil); body != "ok" {
		t.Fatalf("body %q", body)
	}
	tr.MaxResponseHeaderBytes = 16 << 10
	req, _ = http.NewRequest("GET", ok+"/", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrResponseHeaderTooLarge) {
		t.Fatalf("16 KiB limit: err %v", err)
	}
}

// Up to 5 interim responses are skipped; a sixth is an error, not a loop.
func TestInterimResponsesCapped(t *testing.T) {
	for _, n := range []int{5, 6, 1000} {
		url := rawUpstream(t, func(c net.Conn) {
			for range n {
				if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"); err != nil {
					return
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		})
		tr := newTransport()
		tr.MaxResponseHeaderBytes = 1 << 20
		req, _ := http.NewRequest("GET", url+"/", nil)
		resp, err := tr.RoundTrip(req)
		if n <= 5 {
			if err != nil {
				t.Fatalf("%d interim: %v", n, err)
			}
			resp.Body.Close()
			continue
		}
		if !errors.Is(err, ErrTooManyInterim) {
			t.Fatalf("%d interim: err %v, want ErrTooManyInterim", n, err)
		}
	}
}

// keepAliveThenDrop answers the first request of every connection
// (keep-alive) and closes the connection after reading the second without
// answering, counting the requests it read.
func keepAliveThenDrop(t *testing.T, hits *atomic.Int32) string {
	return rawUpstream(t, func(c net.Conn) {
		hits.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		buf := make([]byte, 4096)
		if n, _ := c.Read(buf); n > 0 {
			hits.Add(1) // read, then dropped unanswered
		}
	})
}

// On a pooled connection the upstream closes without answering, a GET is
// sent again on a fresh connection, a POST (not idempotent) never is.
func TestStaleRetryOnlyIdempotent(t *testing.T) {
	for _, tc := range []struct {
		method string
		hdr    http.Header
		retry  bool
	}{
		{"GET", nil, true},
		{"DELETE", nil, true},
		{"POST", nil, false},
		{"PATCH", nil, false},
		{"POST", http.Header{"Idempotency-Key": {"k1"}}, true},
	} {
		var hits atomic.Int32
		url := keepAliveThenDrop(t, &hits)
		tr := newTransport()
		do(t, tr, "GET", url+"/", nil) // a pooled connection
		req, _ := http.NewRequest(tc.method, url+"/", nil)
		if tc.hdr != nil {
			req.Header = tc.hdr
		}
		resp, err := tr.RoundTrip(req)
		if tc.retry {
			if err != nil {
				t.Fatalf("%s: %v", tc.method, err)
			}
			resp.Body.Close()
			continue
		}
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: answered after a retry (%d requests reached the upstream)", tc.method, hits.Load())
		}
		if n := hits.Load(); n != 2 {
			t.Fatalf("%s: the upstream read %d requests, want 2 (no resend)", tc.method, n)
		}
		if !NoResponse(err) {
			t.Fatalf("%s: err %v: want NoResponse", tc.method, err)
		}
	}
}

// A response timeout is not a stale connection: the request is not sent
// again (the upstream may be working on it), and the error is a timeout.
func TestResponseTimeoutIsNotRetried(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	defer close(release)
	url := rawUpstream(t, func(c net.Conn) {
		hits.Add(1)
		<-release
	})
	tr := newTransport()
	tr.ResponseHeaderTimeout = 100 * time.Millisecond
	req, _ := http.NewRequest("GET", url+"/", nil)
	_, err := tr.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v: want a timeout", err)
	}
	if NoResponse(err) {
		t.Fatalf("a timeout counted as NoResponse")
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d requests reached the upstream, want 1", n)
	}
}

// A POST after the upstream closed the pooled connection goes on a fresh
// connection (the closed one is noticed before sending), once.
func TestPostAvoidsClosedPooledConnection(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	srv.Config.IdleTimeout = 50 * time.Millisecond
	srv.Start()
	defer srv.Close()
	tr := newTransport()
	do(t, tr, "GET", srv.URL, nil)
	time.Sleep(150 * time.Millisecond) // the server closes the idle connection
	if _, body := do(t, tr, "POST", srv.URL, nil); body != "ok" {
		t.Fatal(body)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d requests reached the upstream, want 2", n)
	}
}
