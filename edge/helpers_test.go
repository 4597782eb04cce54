package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstream is a real HTTP server on [::1] that answers with its name.
type upstream struct {
	name string
	ap   netip.AddrPort
	srv  *http.Server
	l    net.Listener

	mu   sync.Mutex
	last *http.Request // last request seen (headers)
	hits int
}

func startUpstream(t *testing.T, name string, h http.HandlerFunc) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{name: name, l: l, ap: l.Addr().(*net.TCPAddr).AddrPort()}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, name)
		}
	}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.hits++
		u.mu.Unlock()
		h(w, r)
	})}
	go u.srv.Serve(l)
	t.Cleanup(u.kill)
	return u
}

// kill stops the upstream at once: connections are refused afterwards.
func (u *upstream) kill() { u.srv.Close() }

func (u *upstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// writePods writes a file-store document with hosts and apps.
func writePods(t *testing.T, path string, hosts map[string]string, apps map[string][]*upstream) {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: 1\nhosts:\n")
	keys := make([]string, 0, len(hosts))
	for h := range hosts {
		keys = append(keys, h)
	}
	sort.Strings(keys)
	for _, h := range keys {
		fmt.Fprintf(&b, "  %q: %s\n", h, hosts[h])
	}
	b.WriteString("apps:\n")
	for a, ups := range apps {
		var eps []string
		for _, u := range ups {
			eps = append(eps, fmt.Sprintf("%q", u.ap.String()))
		}
		fmt.Fprintf(&b, "  %s: [%s]\n", a, strings.Join(eps, ", "))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startEdge runs an edge until the test ends and waits until it is ready.
func startEdge(t *testing.T, cfg Config, opts ...Option) *Server {
	t.Helper()
	return startEdgeN(t, len(cfg.Listen), cfg, opts...)
}

// startEdgeN is startEdge waiting for n bound listeners.
func startEdgeN(t *testing.T, n int, cfg Config, opts ...Option) *Server {
	t.Helper()
	if len(cfg.Listen) == 0 {
		cfg.Listen = []Listener{{Addr: "[::1]:0"}}
	}
	if cfg.Node == "" {
		cfg.Node = "edge-test"
	}
	s, err := New(cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "edge ready", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return s.Ready() && len(s.Addrs()) >= max(n, 1)
	})
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get sends GET http://<edge>/path with Host host and returns status and
// body.
func get(t *testing.T, c *http.Client, edgeAddr netip.AddrPort, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+edgeAddr.String()+path, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s %s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
}

func filePath(t *testing.T) (string, string) {
	p := filepath.Join(t.TempDir(), "pods.yaml")
	return p, "file://" + p
}

func writeRaw(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (u *upstream) hitCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

// Benchmark variants of the helpers.

func startUpstreamB(b *testing.B) netip.AddrPort {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func filePathB(b *testing.B) (string, string) {
	p := filepath.Join(b.TempDir(), "pods.yaml")
	return p, "file://" + p
}

func writePodsB(b *testing.B, path string, up netip.AddrPort) {
	doc := fmt.Sprintf("version: 1\nhosts: {www.shop.test: shop}\napps: {shop: [%q]}\n", up.String())
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}
}

func startEdgeB(b *testing.B, cfg Config) *Server {
	cfg.Listen = []Listener{{Addr: "[::1]:0"}}
	cfg.Node = "bench"
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	go s.Run(context.Background())
	b.Cleanup(func() { s.Close() })
	for !s.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	return s
}
