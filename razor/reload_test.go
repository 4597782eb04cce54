package razor

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// SIGHUP reloads the zone files; a broken file keeps the running zones.
func TestReloadZones(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zf := filepath.Join(dir, "v6pod.test.zone")
	b, _ := os.ReadFile("testdata/v6pod.test.zone")
	os.WriteFile(zf, b, 0o644)
	s, _ := testServer(t, "", func(c *Config) {
		c.Zones = []ZoneConfig{{Origin: "v6pod.test", File: zf}, {Origin: "customer.test", File: "testdata/customer.test.zone"}}
	})
	if r := ask(t, s, newQuery("new.v6pod.test", dns.TypeA), false); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before: %s", r)
	}
	os.WriteFile(zf, append(b, []byte("new 60 IN A 192.0.2.7\n")...), 0o644)
	if err := s.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, s, newQuery("new.v6pod.test", dns.TypeA), false); len(r.Answer) != 1 {
		t.Fatalf("after reload: %s", r)
	}
	os.WriteFile(zf, []byte("garbage"), 0o644)
	if err := s.Reload(t.Context()); err == nil {
		t.Fatal("broken zone reloaded")
	}
	if r := ask(t, s, newQuery("new.v6pod.test", dns.TypeA), false); len(r.Answer) != 1 {
		t.Fatalf("after a failed reload: %s", r)
	}
	// Dropping the zone a route lives in is refused too.
	os.WriteFile(zf, append(b, []byte("new 60 IN A 192.0.2.7\n")...), 0o644)
	s.cfg.Zones = s.cfg.Zones[1:]
	if err := s.Reload(t.Context()); err == nil {
		t.Fatal("reload without the routes' zone accepted")
	}
}

// Several queries pipelined on one TCP connection are all answered, in
// order (RFC 7766 §6.2.1.1).
func TestTCPPipelining(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	c, err := net.DialTimeout("tcp", s.TCPAddrs()[0].String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &dns.Conn{Conn: c}
	names := []string{"route.v6pod.test", "ns1.v6pod.test", "nope.v6pod.test"}
	for i, n := range names {
		m := newQuery(n, dns.TypeA)
		m.Id = uint16(100 + i)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range names {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != uint16(100+i) {
			t.Fatalf("answer %d has ID %d", i, r.Id)
		}
	}
}
