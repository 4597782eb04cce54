package sim

import (
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/protobuf/proto"

	"github.com/v6pod/v6pod/p4"
)

// FuzzWrite stages arbitrary write requests (a controller's bytes) against
// the pipeline: validation must reject or canonicalise, never panic.
func FuzzWrite(f *testing.F) {
	seed := &p4v1.WriteRequest{Updates: []*p4v1.Update{
		update(p4v1.Update_INSERT, eipEntry(eip, 1, 1021, 0)),
		update(p4v1.Update_MODIFY, slotEntry(1, 5, [6]byte{2}, 3)),
		{Type: p4v1.Update_MODIFY, Entity: &p4v1.Entity{Entity: &p4v1.Entity_MeterEntry{MeterEntry: &p4v1.MeterEntry{
			MeterId: p4.MeterSYN, Index: &p4v1.Index{Index: 2}, Config: &p4v1.MeterConfig{Cir: 1, Pir: 2}}}}},
	}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	s := New()
	info, _ := p4.P4Info()
	pi, _ := checkPipeline(&p4v1.ForwardingPipelineConfig{P4Info: info})
	s.install(&p4v1.ForwardingPipelineConfig{P4Info: info}, pi, false)
	lookup := func(uint32, string) (*p4v1.TableEntry, bool) { return nil, false }
	size := func(uint32) int { return 0 }
	f.Fuzz(func(t *testing.T, b []byte) {
		var req p4v1.WriteRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		for _, u := range req.Updates {
			ch, err := s.stage(u, lookup, size)
			if err != nil || ch.entry == nil {
				continue
			}
			for _, m := range ch.entry.Match {
				if v := m.GetExact().GetValue(); len(v) == 0 || (len(v) > 1 && v[0] == 0) {
					t.Fatalf("stored value %x not canonical", v)
				}
			}
		}
	})
}
