package route

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/v6pod/v6pod/edge/balance"
)

func ep(app, i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(app >> 16), 9: byte(app >> 8), 10: byte(app), 14: byte(i >> 8), 15: byte(i)}), 8080)
}

func list(app, n, shift int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = ep(app, i+shift)
	}
	return out
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"WWW.Shop.Test":      "www.shop.test",
		"www.shop.test:8080": "www.shop.test",
		"www.shop.test.":     "www.shop.test",
		"[2001:db8::1]:443":  "2001:db8::1",
		"[2001:db8::1]":      "2001:db8::1",
		"":                   "",
	} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLookupExactThenNearestWildcard(t *testing.T) {
	tb := New(nil)
	tb.SetHost("www.shop.test", "shop")
	tb.SetHost("*.shop.test", "shop-wild")
	tb.SetHost("*.test", "catchall")
	for host, want := range map[string]string{
		"www.shop.test":   "shop",
		"api.shop.test":   "shop-wild",
		"a.b.shop.test":   "shop-wild",
		"other.test":      "catchall",
		"SHOP.TEST:80":    "catchall",
		"nothing.example": "",
	} {
		got, _ := tb.App(HostName(host))
		if got != want {
			t.Errorf("App(%s) = %q, want %q", host, got, want)
		}
	}
	tb.DeleteHost("*.test")
	if _, ok := tb.App("other.test"); ok || tb.Hosts() != 2 {
		t.Errorf("after delete: %v, %d hosts", ok, tb.Hosts())
	}
}

// Updating one app leaves every other app's pool and list untouched.
func TestSetAppTouchesOnlyThatApp(t *testing.T) {
	tb := New(nil)
	for a := range 50 {
		tb.SetApp(fmt.Sprint("app", a), list(a, 10, 0))
	}
	before := map[string]any{}
	tb.RangePools(func(app string, p *balance.Pool) bool { before[app] = &p.Upstreams()[0]; return true })
	if changed, err := tb.SetApp("app7", list(7, 10, 1)); !changed || err != nil {
		t.Fatal(changed, err)
	}
	tb.RangePools(func(app string, p *balance.Pool) bool {
		if app != "app7" && before[app] != &p.Upstreams()[0] {
			t.Errorf("%s's list was rebuilt", app)
		}
		return true
	})
	if n, _ := tb.Replace(nil, nil); n != 50 || tb.Apps() != 0 {
		t.Errorf("Replace with nothing: %d changes, %d apps left", n, tb.Apps())
	}
}

// BenchmarkUpdateOneApp measures the cost of changing one app (one
// upstream in, one out) among N apps of 1000 upstreams each; the cost must
// not grow with N. Run with -benchtime=200x (setting up 10 000 apps takes
// several seconds and about 2 GB).
func BenchmarkUpdateOneApp(b *testing.B) {
	for _, apps := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("apps=%d/upstreams=1000", apps), func(b *testing.B) {
			tb := New(nil)
			for a := range apps {
				tb.SetApp(fmt.Sprint("app", a), list(a, 1000, 0))
			}
			l0, l1 := list(42, 1000, 0), list(42, 1000, 1)
			runtime.GC() // the set-up's garbage is not the update's cost
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					tb.SetApp("app42", l1)
				} else {
					tb.SetApp("app42", l0)
				}
				i++
			}
		})
	}
}

// BenchmarkLookup is the per-request cost of Host → app → pool.
func BenchmarkLookup(b *testing.B) {
	tb := New(nil)
	for a := range 10_000 {
		tb.SetHost(fmt.Sprintf("www.app%d.test", a), fmt.Sprint("app", a))
		tb.SetApp(fmt.Sprint("app", a), list(a, 4, 0))
	}
	tb.SetHost("*.wild.test", "app1")
	b.Run("exact", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tb.Lookup("www.app5000.test:8080")
		}
	})
	b.Run("wildcard", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tb.Lookup("x.wild.test")
		}
	})
}

// FuzzHostName feeds untrusted Host headers through the lookup.
func FuzzHostName(f *testing.F) {
	tb := New(nil)
	tb.SetHost("www.shop.test", "shop")
	tb.SetHost("*.blog.test", "blog")
	for _, s := range []string{"www.shop.test", "WWW.SHOP.TEST:443", "[2001:db8::1]:80", "a.b.blog.test.", "", ":", "[", "]", "..", ".blog.test", "*.blog.test", "\xeaA" /* crasher: ToLower grew invalid UTF-8 */} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n := HostName(h)
		if len(n) > len(h) {
			t.Fatalf("HostName(%q) = %q grew", h, n)
		}
		for i := 0; i < len(n); i++ {
			if c := n[i]; c >= 'A' && c <= 'Z' {
				t.Fatalf("HostName(%q) = %q has upper case", h, n)
			}
		}
		app, ok := tb.App(n)
		if ok && app != "shop" && app != "blog" {
			t.Fatalf("App(%q) = %q", n, app)
		}
		if HostName(n) != n && !strings.Contains(n, ":") {
			t.Fatalf("HostName is not idempotent on %q: %q", n, HostName(n))
		}
	})
}

// The per-request lookup allocates nothing (exact names and wildcards
// alike).
func TestLookupDoesNotAllocate(t *testing.T) {
	tb := New(nil)
	tb.SetHost("www.shop.test", "shop")
	tb.SetHost("*.blog.test", "blog")
	tb.SetApp("shop", list(1, 4, 0))
	tb.SetApp("blog", list(2, 4, 0))
	for _, h := range []string{"www.shop.test:8080", "a.blog.test", "nothing.test"} {
		if n := testing.AllocsPerRun(100, func() { tb.Lookup(h) }); n != 0 {
			t.Errorf("Lookup(%q): %v allocations", h, n)
		}
	}
}
