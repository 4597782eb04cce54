package controller

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestServerMACFromNeighbors(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "127.0.0.1:1", freePort(t, "127.0.0.1"), 2)
	cfg.Servers[1].MAC = "" // 2001:db8:64::3 from the neighbour table
	known := true
	c, err := New(cfg, WithNeighbors(func(nh netip.Addr) ([6]byte, bool) {
		if nh == netip.MustParseAddr("2001:db8:64::3") && known {
			return [6]byte{0xaa, 0, 0, 0, 0, 3}, true
		}
		return [6]byte{}, false
	}))
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr(testVIP)
	routes := map[netip.Addr][]netip.Addr{vip: {netip.MustParseAddr("2001:db8:64::2"), netip.MustParseAddr("2001:db8:64::3"), netip.MustParseAddr("2001:db8:64::9")}}
	check := func() {
		t.Helper()
		st, cur, err := c.desiredState(routes, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cur["cluster-a"]) != 2 {
			t.Fatalf("servers %v: the unknown next hop must be ignored", cur)
		}
		seen := map[[6]byte]bool{}
		for _, tg := range st.maglev[1] {
			seen[tg.mac] = true
		}
		if !seen[[6]byte{0xaa, 0, 0, 0, 0, 3}] || !seen[serverMAC(2)] || len(seen) != 2 {
			t.Fatalf("MACs in the table: %v", seen)
		}
		if v := metric(t, c.Registry(), "p4access_unresolved_next_hops"); v != 1 {
			t.Fatalf("unresolved = %v", v)
		}
	}
	check()
	known = false // the kernel entry expired: the last MAC stays
	check()
}

// TestKernelNeighbor reads a permanent neighbour entry from the kernel, in
// a namespace of its own.
func TestKernelNeighbor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace)")
	}
	type result struct {
		mac       [6]byte
		ok, other bool
		err       error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- result{err: err}
			return
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nat64x"}, PeerName: "nat64y"}); err != nil {
			res <- result{err: err}
			return
		}
		l, _ := netlink.LinkByName("nat64x")
		netlink.LinkSetUp(l)
		hw, _ := net.ParseMAC("02:64:00:00:00:07")
		if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_INET6, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP("2001:db8:64::7"), HardwareAddr: hw}); err != nil {
			res <- result{err: err}
			return
		}
		mac, ok := kernelNeighbor(netip.MustParseAddr("2001:db8:64::7"))
		_, other := kernelNeighbor(netip.MustParseAddr("2001:db8:64::8"))
		res <- result{mac: mac, ok: ok, other: other}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.ok || r.mac != [6]byte{2, 0x64, 0, 0, 0, 7} || r.other {
		t.Fatalf("lookup: %x %v, unknown found %v", r.mac, r.ok, r.other)
	}
}

// TestKernelNeighborSolicits: a server the controller never talked to has
// no neighbour entry; the lookup misses but starts neighbour discovery, so
// a later lookup (the next sync) finds its MAC. Two namespaces joined by
// a veth pair.
func TestKernelNeighborSolicits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	a, b := fmt.Sprintf("p4nd-a-%d", os.Getpid()), fmt.Sprintf("p4nd-b-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", a).Run() })
	run("netns", "add", b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", b).Run() })
	run("-n", a, "link", "add", "ndx", "type", "veth", "peer", "name", "ndy", "netns", b)
	run("-n", b, "link", "set", "ndy", "address", "02:64:00:00:00:09")
	run("-n", a, "addr", "add", "2001:db8:64::1/64", "dev", "ndx", "nodad")
	run("-n", b, "addr", "add", "2001:db8:64::9/64", "dev", "ndy", "nodad")
	run("-n", a, "link", "set", "ndx", "up")
	run("-n", b, "link", "set", "ndy", "up")

	type result struct {
		first, later bool
		mac          [6]byte
		err          error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the namespace
		f, err := os.Open("/var/run/netns/" + a)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{err: err}
			return
		}
		nh := netip.MustParseAddr("2001:db8:64::9")
		_, first := kernelNeighbor(nh)
		var r result
		r.first = first
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if r.mac, r.later = kernelNeighbor(nh); r.later {
				break
			}
		}
		res <- r
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.first || !r.later || r.mac != [6]byte{2, 0x64, 0, 0, 0, 9} {
		t.Fatalf("first lookup %v, later %v %x", r.first, r.later, r.mac)
	}
}
