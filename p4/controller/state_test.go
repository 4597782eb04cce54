package controller

import (
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/v6pod/v6pod/p4"
)

// TestUnconfiguredMeterCells: a device that returns every meter cell,
// unconfigured ones with no config or an all-zero config, plans no writes
// for them; only the configured cell that differs is written.
func TestUnconfiguredMeterCells(t *testing.T) {
	var cells []*p4v1.MeterEntry
	for i := int64(0); i < p4.MaxEIPs; i++ {
		me := &p4v1.MeterEntry{MeterId: p4.MeterSYN, Index: &p4v1.Index{Index: i}}
		switch {
		case i == 3:
			me.Config = &p4v1.MeterConfig{Cir: 5, Cburst: 5, Pir: 5, Pburst: 5}
		case i%2 == 0:
			me.Config = &p4v1.MeterConfig{}
		}
		cells = append(cells, me)
	}
	installed := parseInstalled(nil, nil, cells)
	if len(installed.meters) != 1 {
		t.Fatalf("configured cells %d, want 1", len(installed.meters))
	}
	desired := newState()
	desired.meters[0] = meterVal{100, 100, 100, 100}
	p := diff(installed, desired)
	if p.updates() != 2 { // cell 0 set, cell 3 reset
		t.Fatalf("updates %d, want 2", p.updates())
	}
}
