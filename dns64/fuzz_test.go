package dns64

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// zoneExchanger answers upstream queries from the test zone in-process
// (over TCP, so nothing is truncated), for fuzzing without sockets.
type zoneExchanger struct{ u *testUpstream }

func (z zoneExchanger) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	rec := &recorder{remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
	z.u.ServeDNS(rec, q.Copy())
	if rec.msg == nil {
		return nil, errors.New("no answer")
	}
	return rec.msg, nil
}

// fixedExchanger answers every upstream query with the same message.
type fixedExchanger struct{ m *dns.Msg }

func (f fixedExchanger) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	r := f.m.Copy()
	r.Id = q.Id
	return r, nil
}

func fuzzServer(tb testing.TB, e Exchanger) *Server {
	cfg := testConfig("127.0.0.1:53")
	cfg.Prefixes = []RangePrefix{{IPv4: "10.0.0.0/8", Prefix: "2001:db8:a00::/40"}}
	s, err := New(cfg, WithExchanger(e))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func seedQueries(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		do    bool
	}{
		{"v4only.test.", dns.TypeAAAA, false}, {"cname.test.", dns.TypeAAAA, true},
		{"mixed.test.", dns.TypeAAAA, false}, {"nx.test.", dns.TypeAAAA, false},
		{"4.0.3.0.2.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.", dns.TypePTR, false},
		{"big.test.", dns.TypeAAAA, false}, {"v4only.test.", dns.TypeA, true},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, q.do)
		b, _ := m.Pack()
		f.Add(b)
		m.Extra = nil
		b, _ = m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 28, 0, 1})
}

// checkAnswer asserts that what ServeDNS wrote is one well-formed answer
// to the request.
func checkAnswer(t *testing.T, req *dns.Msg, rec *recorder, udpMax int) {
	if req.Response {
		if rec.writes != 0 {
			t.Fatal("answered a response")
		}
		return
	}
	if rec.writes != 1 || rec.msg == nil {
		t.Fatalf("%d writes for one query: %v", rec.writes, rec.err)
	}
	if rec.msg.Id != req.Id || !rec.msg.Response {
		t.Fatalf("answer header %v", rec.msg.MsgHdr)
	}
	rec.msg.Compress = true
	if udpMax > 0 && rec.msg.Len() > udpMax {
		t.Fatalf("UDP answer of %d bytes, limit %d", rec.msg.Len(), udpMax)
	}
}

// FuzzQuery feeds arbitrary bytes through the query path as the dns.Server
// would: header check, unpack, ServeDNS.
func FuzzQuery(f *testing.F) {
	seedQueries(f)
	s := fuzzServer(f, zoneExchanger{newTestZone(f)})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return // the dns.Server answers FORMERR itself
		}
		if len(b) >= 12 {
			if acceptQuery(dns.Header{Bits: uint16(b[2])<<8 | uint16(b[3]), Qdcount: uint16(len(m.Question)),
				Ancount: uint16(len(m.Answer)), Nscount: uint16(len(m.Ns)), Arcount: uint16(len(m.Extra))}) != dns.MsgAccept {
				return
			}
		}
		rec := &recorder{}
		s.ServeDNS(rec, m)
		limit := 512
		if o := m.IsEdns0(); o != nil {
			limit = max(512, min(int(o.UDPSize()), s.cfg.UDPSize))
		}
		checkAnswer(t, m, rec, limit)
	})
}

// FuzzUpstreamAnswer feeds arbitrary upstream answers through the
// synthesis, PTR and cache paths.
func FuzzUpstreamAnswer(f *testing.F) {
	z := newTestZone(f)
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"cname.test.", dns.TypeA}, {"cname.test.", dns.TypeAAAA}, {"mixed.test.", dns.TypeAAAA},
		{"nx.test.", dns.TypeA}, {"nodata.test.", dns.TypeAAAA}, {"4.3.2.1.in-addr.arpa.", dns.TypePTR},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		r, _ := zoneExchanger{z}.Exchange(context.Background(), m)
		b, _ := r.Pack()
		f.Add(b, uint8(0))
		f.Add(b, uint8(3))
	}
	queries := []struct {
		name  string
		qtype uint16
	}{
		{"cname.test.", dns.TypeAAAA}, {"v4only.test.", dns.TypeAAAA}, {"x.test.", dns.TypeA},
		{"4.0.3.0.2.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.", dns.TypePTR},
	}
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		up := new(dns.Msg)
		if err := up.Unpack(b); err != nil {
			return
		}
		s := fuzzServer(t, fixedExchanger{up})
		q := queries[int(sel)%len(queries)]
		req := new(dns.Msg)
		req.SetQuestion(q.name, q.qtype)
		if sel&4 != 0 {
			req.SetEdns0(1232, sel&8 != 0)
		}
		req.CheckingDisabled = sel&16 != 0
		for range 2 { // the second one may come from the cache
			rec := &recorder{}
			s.ServeDNS(rec, req)
			limit := 512
			if sel&4 != 0 {
				limit = 1232
			}
			checkAnswer(t, req, rec, limit)
		}
	})
}

// FuzzWalkWire checks the cache's wire walker never reads out of bounds
// and only reports offsets inside the message.
func FuzzWalkWire(f *testing.F) {
	z := newTestZone(f)
	m := new(dns.Msg)
	m.SetQuestion("cname.test.", dns.TypeA)
	m.SetEdns0(1232, true)
	r, _ := zoneExchanger{z}.Exchange(context.Background(), m)
	b, _ := r.Pack()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		qEnd, offs, optOff, err := walkWire(b)
		if err != nil {
			return
		}
		if qEnd > len(b) || optOff >= len(b) {
			t.Fatalf("qEnd %d optOff %d len %d", qEnd, optOff, len(b))
		}
		for _, o := range offs {
			if int(o)+4 > len(b) {
				t.Fatalf("TTL offset %d beyond %d", o, len(b))
			}
		}
	})
}
