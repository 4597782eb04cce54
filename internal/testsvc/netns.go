package testsvc

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// NewNetns creates a network namespace for one test with lo up and addrs
// (bare addresses or prefixes) on lo, and deletes it when the test ends.
// It returns the namespace name, for BGPPeerConfig.Netns or `ip netns
// exec`. It needs root (RequireRoot rules apply).
func NewNetns(t testing.TB, addrs ...string) string {
	t.Helper()
	RequireRoot(t)
	ip := Require(t, "ip")
	name := "tsvc-" + randHex(4)
	run := ipRunner(ip)
	if err := run("netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("netns", "delete", name) })
	if err := run("-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pf, err := netip.ParsePrefix(a)
		if err != nil {
			ad, err2 := netip.ParseAddr(a)
			if err2 != nil {
				t.Fatalf("testsvc: netns address %q: %v", a, err)
			}
			pf = netip.PrefixFrom(ad, ad.BitLen())
		}
		args := []string{"-n", name, "addr", "add", pf.String(), "dev", "lo"}
		if pf.Addr().Is6() {
			args = append(args, "nodad")
		}
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func ipRunner(ip string) func(args ...string) error {
	return func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("testsvc: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
}

// NetnsLink joins the namespace ns (from NewNetns) to the test's own
// namespace with a veth pair on a random ULA /64 and returns the addresses:
// hostAddr (::1) on this side, and n addresses (::2, ::3, ...) inside ns,
// so a speaker in the test process can hold IPv6 sessions with n peers in
// ns. The pair is deleted when the test ends. It needs root.
func NetnsLink(t testing.TB, ns string, n int) (hostAddr string, nsAddrs []string) {
	t.Helper()
	RequireRoot(t)
	run := ipRunner(Require(t, "ip"))
	id := randHex(4)
	hostIf, nsIf := "tsv"+id, "tsp"+id
	if err := run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("link", "delete", hostIf) })
	var b [7]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	var a16 [16]byte
	a16[0] = 0xfd
	copy(a16[1:8], b[:])
	a16[15] = 1
	h := netip.AddrFrom16(a16)
	steps := [][]string{
		{"link", "set", nsIf, "netns", ns},
		{"addr", "add", h.String() + "/64", "dev", hostIf, "nodad"},
		{"link", "set", hostIf, "up"},
	}
	if n < 1 || n > 200 {
		t.Fatalf("testsvc: NetnsLink wants 1 to 200 addresses, not %d", n)
	}
	for i := range n {
		a16[15] = byte(2 + i)
		a := netip.AddrFrom16(a16).String()
		nsAddrs = append(nsAddrs, a)
		steps = append(steps, []string{"-n", ns, "addr", "add", a + "/64", "dev", nsIf, "nodad"})
	}
	steps = append(steps, []string{"-n", ns, "link", "set", nsIf, "up"})
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatal(err)
		}
	}
	return h.String(), nsAddrs
}
