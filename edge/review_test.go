package edge

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
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
