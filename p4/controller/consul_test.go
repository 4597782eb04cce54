package controller

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/v6pod/v6pod/internal/testsvc"
	"github.com/v6pod/v6pod/p4"
)

// TestEIPsFromConsul: EIPs under <prefix>/nat64/eips/ come and go on the
// device as the keys do; a key naming an unknown VIP is ignored.
func TestEIPsFromConsul(t *testing.T) {
	t.Parallel()
	consul := testsvc.StartConsul(t)
	kv := consul.Client().KV()
	put := func(k, v string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "v6pod/nat64/eips/" + k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("192.0.2.7", "cluster-a")
	put("192.0.2.8", `{"vip": "cluster-a", "syn_rate": 7, "index": 9}`)
	put("192.0.2.9", "no-such-vip")

	s, dev := startSim(t)
	cfg := noPeers(t, dev)
	cfg.EIPSource = consul.URL("v6pod")
	ctrl := runController(t, cfg)

	eipOn := func(a string) bool {
		dst := netip.MustParseAddr(a)
		for _, e := range s.Entries(p4.TableEIPToVIP) {
			b := e.Match[0].GetExact().Value
			var x [16]byte
			copy(x[16-len(b):], b)
			if netip.AddrFrom16(x) == dst {
				return true
			}
		}
		return false
	}
	waitFor(t, "the Consul EIPs on the device", 20*time.Second, func() bool {
		return eipOn("64:ff9b::c000:201") && eipOn("64:ff9b::c000:207") && eipOn("64:ff9b::c000:208")
	})
	if eipOn("64:ff9b::c000:209") {
		t.Fatal("EIP of an unknown VIP installed")
	}
	if m := s.MeterConfig(p4.MeterSYN, 9); m.GetCir() != 7 {
		t.Fatalf("meter cell 9: %v", m)
	}
	if _, err := kv.Delete("v6pod/nat64/eips/192.0.2.7", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted EIP to go", 20*time.Second, func() bool {
		return !eipOn("64:ff9b::c000:207") && eipOn("64:ff9b::c000:208") && eipOn("64:ff9b::c000:201")
	})
	ctrl.stop()
}

func TestParseConsulEIPs(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "127.0.0.1:1", freePort(t, "127.0.0.1"), 0) // config EIP 192.0.2.1, index 0
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := "v6pod/nat64/eips/"
	pairs := api.KVPairs{
		{Key: p + "192.0.2.1", Value: []byte("cluster-a")}, // in the config: config wins
		{Key: p + "192.0.2.20", Value: []byte(" cluster-a\n")},
		{Key: p + "192.0.2.21", Value: []byte(`{"vip":"cluster-a","index":0}`)}, // index taken
		{Key: p + "192.0.2.22", Value: []byte(`{"vip":"cluster-a","bogus":1}`)},
		{Key: p + "2001:db8::1", Value: []byte("cluster-a")},
		{Key: p + "192.0.2.23", Value: []byte(`{"vip":"cluster-a","index":5,"syn_rate":10}`)},
	}
	eips, bad := c.parseConsulEIPs(pairs, p)
	if len(eips) != 2 || len(bad) != 3 {
		t.Fatalf("eips %+v, problems %q", eips, bad)
	}
	for _, e := range eips {
		switch e.Address {
		case "192.0.2.20":
			if *e.Index == 0 || *e.Index == 5 || e.SYNRate != p4.DefaultSYNRate || e.dst.String() != "64:ff9b::c000:214" {
				t.Fatalf("hashed EIP %+v", e)
			}
		case "192.0.2.23":
			if *e.Index != 5 || e.SYNRate != 10 || e.SYNBurst != 10 {
				t.Fatalf("explicit EIP %+v", e)
			}
		default:
			t.Fatalf("unexpected %s", e.Address)
		}
	}
	// The same keys give the same cells (two controllers agree).
	again, _ := c.parseConsulEIPs(pairs, p)
	if *again[0].Index != *eips[0].Index {
		t.Fatal("cell assignment not deterministic")
	}
}
