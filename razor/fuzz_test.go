package razor

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw wire bytes to the query path: it must never
// panic, and whatever it answers must be a well-formed DNS message with
// the query's ID.
func FuzzServeDNS(f *testing.F) {
	for _, m := range []*dns.Msg{
		newQuery("route.v6pod.test", dns.TypeA),
		newQuery("shop.route.v6pod.test", dns.TypeAAAA),
		newQuery("blog.shard.v6pod.test", dns.TypeAAAA),
		newQuery("blog.customer.test", dns.TypeA),
		newQuery("www.customer.test", dns.TypeAAAA),
		newQuery("alias.v6pod.test", dns.TypeA),
		newQuery("x.wild.v6pod.test", dns.TypeTXT),
		newQuery("host.sub.v6pod.test", dns.TypeA),
		newQuery("nope.v6pod.test", dns.TypeA),
		newQuery("example.com", dns.TypeA),
		withEDNS(newQuery("route.v6pod.test", dns.TypeA), 1232, "0123456789abcdef"),
		withEDNS(newQuery("route.v6pod.test", dns.TypeAAAA), 512, "0123456789abcdef0100000000000000aaaaaaaaaaaaaaaa"),
	} {
		p, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p, false)
		f.Add(p, true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0xC0, 0x0C, 0, 1, 0, 1}, false)
	srv, _ := testServer(f, "")
	sc := newScratch() // the target runs serially within a process
	f.Fuzz(func(t *testing.T, p []byte, tcp bool) {
		out := srv.respond(sc, p, netip.MustParseAddrPort("[2001:db8::1]:53"), tcp)
		if out == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("answer does not unpack: %v\nquery %x\nanswer %x", err, p, out)
		}
		if len(p) >= 2 && r.Id != uint16(p[0])<<8|uint16(p[1]) {
			t.Fatalf("answer ID %d, query ID %x", r.Id, p[:2])
		}
		if !r.Response {
			t.Fatal("QR not set")
		}
		if !tcp && len(out) > 1232 {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
	})
}
