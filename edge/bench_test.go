package edge

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeHTTP is the edge's per-request work between the client
// side (a recorder here) and a real upstream on [::1].
func BenchmarkServeHTTP(b *testing.B) {
	up := startUpstreamB(b)
	path, url := filePathB(b)
	writePodsB(b, path, up)
	for _, std := range []bool{false, true} {
		name := "h1"
		if std {
			name = "stdlib"
		}
		b.Run(name, func(b *testing.B) {
			s := startEdgeB(b, Config{Source: url, Upstream: Upstream{StdlibOnly: std}})
			req := httptest.NewRequest("GET", "http://www.shop.test/", nil)
			req.RemoteAddr = "[2001:db8::1]:40000"
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
