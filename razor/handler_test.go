package razor

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	remote net.Addr
	msg    *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.msg = m
	return nil
}
func (r *recorder) Write(b []byte) (int, error) {
	r.msg = new(dns.Msg)
	return len(b), r.msg.Unpack(b)
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

var _ dns.Handler = (*Server)(nil)

// The query path behind dns.Handler, driven by a recorder as in CoreDNS.
func TestServeDNSRecorder(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, "")
	for _, remote := range []net.Addr{
		&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5300},
		&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5300},
	} {
		w := &recorder{remote: remote}
		s.ServeDNS(w, newQuery("www.customer.test", dns.TypeAAAA))
		if w.msg == nil || len(w.msg.Answer) != 5 || !w.msg.Authoritative {
			t.Fatalf("%s: %v", remote, w.msg)
		}
	}
}
