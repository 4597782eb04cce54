package controller

import (
	"net/netip"
	"testing"
	"time"

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

// TestFlapHoldDown: a withdrawal takes effect at once; a server that
// re-announces within flap_hold_down of its last withdrawal stays out
// (each withdrawal restarts the wait), so a flapping server causes no
// rewrites until it has been stable; a new server and a server down
// longer than the hold-down join at once; negative disables.
func TestFlapHoldDown(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1", freePort(t, "127.0.0.1"), 0)
	cfg.BGP.FlapHoldDown = 10 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr(testVIP)
	a, b, n := netip.MustParseAddr("2001:db8:64::a"), netip.MustParseAddr("2001:db8:64::b"), netip.MustParseAddr("2001:db8:64::c")
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, wantChanged bool, want []netip.Addr, hops ...netip.Addr) {
		t.Helper()
		changed := c.setRoutes(map[netip.Addr][]netip.Addr{vip: hops}, t0.Add(at))
		c.mu.Lock()
		got := c.routes[vip]
		c.mu.Unlock()
		if changed != wantChanged || !sameRoutes(map[netip.Addr][]netip.Addr{vip: got}, map[netip.Addr][]netip.Addr{vip: want}) {
			t.Fatalf("at %v: changed %v routes %v, want %v %v", at, changed, got, wantChanged, want)
		}
	}
	step(0, true, []netip.Addr{a, b}, a, b)
	step(time.Second, true, []netip.Addr{a}, a)                        // b withdraws: out at once
	step(2*time.Second, false, []netip.Addr{a}, a, b)                  // b back within 10s: held
	step(3*time.Second, false, []netip.Addr{a}, a)                     // flaps again: the wait restarts
	step(12*time.Second, true, []netip.Addr{a, n}, a, b, n)            // b held (9s), new server n joins
	step(13500*time.Millisecond, true, []netip.Addr{a, b, n}, a, b, n) // stable 10.5s: b returns
	step(14*time.Second, true, []netip.Addr{b, n}, b, n)               // a withdraws
	step(30*time.Second, true, []netip.Addr{a, b, n}, a, b, n)         // down 16s: back at once

	c.cfg.BGP.FlapHoldDown = -1
	step(31*time.Second, true, []netip.Addr{a, n}, a, n)
	step(32*time.Second, true, []netip.Addr{a, b, n}, a, b, n)
}
