package p4

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
)

// TestNamesMatchP4Info checks every ID the controller and simulator use
// against the checked-in P4Info, and that the P4Info holds nothing else.
func TestNamesMatchP4Info(t *testing.T) {
	info, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, tb := range info.Tables {
		got[tb.Preamble.Name] = tb.Preamble.Id
		for _, mf := range tb.MatchFields {
			got[tb.Preamble.Name+"/"+mf.Name] = mf.Id
		}
	}
	for _, a := range info.Actions {
		got[a.Preamble.Name] = a.Preamble.Id
		for _, p := range a.Params {
			got[a.Preamble.Name+"/"+p.Name] = p.Id
		}
	}
	for _, c := range info.Counters {
		got[c.Preamble.Name] = c.Preamble.Id
	}
	for _, m := range info.Meters {
		got[m.Preamble.Name] = m.Preamble.Id
	}
	for name, id := range Names {
		if got[name] != id {
			t.Errorf("%s: P4Info id %#x, code uses %#x", name, got[name], id)
		}
	}
	for name := range got {
		if _, ok := Names[name]; !ok {
			t.Errorf("P4Info has %s, unknown to the code", name)
		}
	}
	// ID prefixes of the P4Runtime spec (p4info.proto, P4Ids.Prefix).
	for _, tb := range info.Tables {
		if tb.Preamble.Id>>24 != uint32(p4configv1.P4Ids_TABLE) {
			t.Errorf("table %s id prefix", tb.Preamble.Name)
		}
	}
	for _, a := range info.Actions {
		if a.Preamble.Id>>24 != uint32(p4configv1.P4Ids_ACTION) {
			t.Errorf("action %s id prefix", a.Preamble.Name)
		}
	}
}

// TestP4SourceAnnotations checks that access.p4's @id annotations carry the
// P4Info's IDs (the file is compiled elsewhere; here we check the text).
func TestP4SourceAnnotations(t *testing.T) {
	src := string(Program())
	info, _ := P4Info()
	check := func(id uint32, decl string) {
		t.Helper()
		want := "@id(0x" + strings.ToUpper(strings.TrimLeft(hex8(id), "")) + ")"
		i := strings.Index(strings.ToUpper(src), strings.ToUpper(want))
		if i < 0 {
			t.Errorf("%s: no %s in access.p4", decl, want)
			return
		}
		line := src[i:]
		if j := strings.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		if !strings.Contains(line, decl) {
			t.Errorf("%s sits on %q, not on %s", want, line, decl)
		}
	}
	for _, tb := range info.Tables {
		check(tb.Preamble.Id, "table "+tb.Preamble.Alias)
		for _, mf := range tb.MatchFields {
			if !strings.Contains(src, strings.TrimPrefix(mf.Name, "")+":") {
				t.Errorf("match field %s not in access.p4", mf.Name)
			}
		}
	}
	for _, a := range info.Actions {
		check(a.Preamble.Id, "action "+a.Preamble.Alias+"(")
	}
	for _, c := range info.Counters {
		check(c.Preamble.Id, ") "+c.Preamble.Alias)
	}
	for _, m := range info.Meters {
		check(m.Preamble.Id, ") "+m.Preamble.Alias)
	}
}

func hex8(v uint32) string {
	const d = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = d[v&15]
		v >>= 4
	}
	return string(b)
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte{0, 0, 0, 0, 0, 2}, []byte{2}},
		{[]byte{0, 0}, []byte{0}},
		{nil, []byte{0}},
		{[]byte{1, 0}, []byte{1, 0}},
		{[]byte{0, 0x80, 0}, []byte{0x80, 0}},
	} {
		if got := Canonical(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("Canonical(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
	if !bytes.Equal(MAC([6]byte{0, 0, 0, 0, 0, 2}), []byte{2}) {
		t.Error("MAC 00:00:00:00:00:02 is not 0x02")
	}
	if !bytes.Equal(Uint(0x1ff), []byte{1, 0xff}) {
		t.Error("Uint")
	}
	a := Addr(netip.MustParseAddr("64:ff9b::c000:201"))
	if len(a) != 15 || a[0] != 0x64 {
		t.Errorf("Addr %x", a)
	}
	if v, err := ToUint([]byte{0, 0, 1, 2}); err != nil || v != 0x102 {
		t.Errorf("ToUint: %v %v", v, err)
	}
	for _, tc := range []struct {
		b    []byte
		bits int32
		ok   bool
	}{
		{[]byte{1, 0xff}, 9, true}, {[]byte{2, 0}, 9, false}, {[]byte{0, 0, 0xff}, 8, true},
		{[]byte{0}, 1, true}, {[]byte{0xff, 0xff}, 16, true}, {[]byte{1, 0, 0}, 16, false},
	} {
		if FitsBits(tc.b, tc.bits) != tc.ok {
			t.Errorf("FitsBits(%x, %d) != %v", tc.b, tc.bits, tc.ok)
		}
	}
}

func TestFlowHashIsCRC32(t *testing.T) {
	s := netip.MustParseAddr("2001:db8::1").As16()
	d := netip.MustParseAddr("64:ff9b::c000:201").As16()
	// Known answer from Python's zlib.crc32 over the same 37 bytes.
	if got := FlowHash(s, d, 6, 40000, 80); got != uint32(0xb25d763e) {
		t.Fatalf("FlowHash = %#x, want %#x", got, uint32(0xb25d763e))
	}
	if FlowHash(s, d, 6, 1000, 80) == FlowHash(s, d, 6, 1001, 80) {
		t.Fatal("ports do not change the hash")
	}
}
