package razor

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var testClient = netip.MustParseAddrPort("192.0.2.10:5300")

// testServer starts razor on loopback with the example zones and a copy
// of the example pods file (or pods, when given), and runs it until the
// test ends. It returns the server and the pods file path.
func testServer(t testing.TB, pods string, mod ...any) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	if pods == "" {
		b, err := os.ReadFile("testdata/pods.yaml")
		if err != nil {
			t.Fatal(err)
		}
		pods = string(b)
	}
	path := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(path, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Listen: []string{"127.0.0.1:0"},
		Zones: []ZoneConfig{
			{Origin: "v6pod.test", File: "testdata/v6pod.test.zone"},
			{Origin: "customer.test", File: "testdata/customer.test.zone"},
		},
		Store:      "file://" + path,
		UDPWorkers: 1,
	}
	var opts []Option
	for _, m := range mod {
		switch m := m.(type) {
		case func(*Config):
			m(&cfg)
		case Option:
			opts = append(opts, m)
		default:
			t.Fatalf("testServer: %T", m)
		}
	}
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("razor did not shut down within 10s")
		}
	})
	return s, path
}

// ask sends m through the query path in-process (as UDP from testClient,
// or TCP) and unpacks the answer; nil when razor sends nothing.
func ask(t testing.TB, s *Server, m *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	p, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := s.Handle(p, testClient, tcp)
	if out == nil {
		return nil
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("razor's answer does not unpack: %v\n%x", err, out)
	}
	return r
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	return m
}

// addrsOf returns the A/AAAA addresses of a section.
func addrsOf(rrs []dns.RR) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(v.A.To4())
			out = append(out, a)
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(v.AAAA)
			out = append(out, a)
		}
	}
	return out
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
