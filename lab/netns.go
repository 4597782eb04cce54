package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nsPrefix marks every namespace the lab makes, so Down can find them all,
// even those of a run that crashed.
const nsPrefix = "v6lab-"

// run runs a command and returns its combined output, with the command line
// in the error.
func run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// inNS runs a command inside namespace ns.
func inNS(ns string, name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// ip runs an ip(8) command inside namespace ns.
func ip(ns string, args ...string) error {
	_, err := run("ip", append([]string{"-n", ns}, args...)...)
	return err
}

// addNS creates a namespace with loopback up, forwarding on, and the
// multipath hash over L4 ports (ECMP per flow, not per host pair).
func addNS(name string) error {
	if _, err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	if err := ip(name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for _, kv := range []string{
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv6.fib_multipath_hash_policy=1",
		"net.ipv6.conf.all.accept_dad=0",
		"net.ipv6.conf.default.accept_dad=0",
		"net.ipv4.ip_nonlocal_bind=1",
		"net.ipv6.ip_nonlocal_bind=1",
	} {
		if _, err := inNS(name, "sysctl", "-qw", kv); err != nil {
			return err
		}
	}
	return nil
}

// link joins namespaces a and b with a veth pair named after them, each
// end given its addresses.
func link(a, aIf string, aAddrs []string, b, bIf string, bAddrs []string) error {
	tmpA, tmpB := "v6l"+randSuffix(), "v6l"+randSuffix()
	if _, err := run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return err
	}
	for _, end := range []struct {
		tmp, ns, ifname string
		addrs           []string
	}{{tmpA, a, aIf, aAddrs}, {tmpB, b, bIf, bAddrs}} {
		if _, err := run("ip", "link", "set", end.tmp, "netns", end.ns); err != nil {
			return err
		}
		if err := ip(end.ns, "link", "set", end.tmp, "name", end.ifname); err != nil {
			return err
		}
		for _, a := range end.addrs {
			if err := ip(end.ns, "addr", "add", a, "dev", end.ifname, "nodad"); err != nil && !strings.Contains(a, ".") {
				return err
			} else if err != nil {
				if err := ip(end.ns, "addr", "add", a, "dev", end.ifname); err != nil {
					return err
				}
			}
		}
		if err := ip(end.ns, "link", "set", end.ifname, "up"); err != nil {
			return err
		}
	}
	return nil
}

var suffix int

func randSuffix() string {
	suffix++
	return fmt.Sprintf("%d%d", os.Getpid()%100000, suffix)
}

// listNS returns the lab's namespaces that exist now.
func listNS() []string {
	out, _ := run("ip", "netns", "list")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// deleteNS kills every process left in a namespace and deletes it, with the
// per-namespace /etc/netns folder ip-netns-exec reads resolv.conf from.
func deleteNS(name string) error {
	if out, _ := run("ip", "netns", "pids", name); strings.TrimSpace(out) != "" {
		for _, pid := range strings.Fields(out) {
			run("kill", "-9", pid)
		}
	}
	os.RemoveAll(filepath.Join("/etc/netns", name))
	_, err := run("ip", "netns", "delete", name)
	return err
}

// setResolver makes `ip netns exec ns` processes use server as resolver.
func setResolver(ns, server string) error {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+server+"\noptions timeout:1 attempts:2\n"), 0o644)
}
