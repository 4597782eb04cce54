package testsvc

import (
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
	run := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("testsvc: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
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
