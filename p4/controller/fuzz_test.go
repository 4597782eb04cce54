package controller

import (
	"net/netip"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzParseInstalled feeds arbitrary read responses (what a device sends)
// to the read-back decoder: it must not panic, and whatever it accepts
// must survive a diff against an empty desired state.
func FuzzParseInstalled(f *testing.F) {
	seed := &p4v1.ReadResponse{Entities: []*p4v1.Entity{
		{Entity: &p4v1.Entity_TableEntry{TableEntry: slotEntry(1, 5, &target{mac: [6]byte{0, 0, 0, 0, 0, 2}, port: 3})}},
		{Entity: &p4v1.Entity_TableEntry{TableEntry: eipEntry(mustAddr("64:ff9b::c000:201"), &eipVal{vip: 1, size: 1021})}},
	}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r p4v1.ReadResponse
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		var eips, slots []*p4v1.TableEntry
		var meters []*p4v1.MeterEntry
		for _, e := range r.Entities {
			if te := e.GetTableEntry(); te != nil {
				eips = append(eips, te)
				slots = append(slots, te)
			}
			if me := e.GetMeterEntry(); me != nil {
				meters = append(meters, me)
			}
		}
		st := parseInstalled(eips, slots, meters)
		p := diff(st, newState())
		if p.updates() < len(st.eips) {
			t.Fatal("installed EIPs not deleted by an empty desired state")
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
