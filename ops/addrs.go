package ops

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/v6pod/v6pod/internal/addr"
	"github.com/v6pod/v6pod/internal/model"
)

// reserved are the special-purpose ranges (IANA IPv4 and IPv6
// special-purpose registries, RFC 6890 and successors) that an edge
// address handed out to the Internet must not come from. The
// documentation ranges are among them: examples and tests use them, with
// --allow-reserved.
var reserved = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private use"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space, CGN"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private use"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation, TEST-NET-1"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private use"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation, TEST-NET-2"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation, TEST-NET-3"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, and broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible, deprecated"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 well-known prefix"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing SIDs"},
	{netip.MustParsePrefix("fc00::/7"), "unique local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// reservedRange names the special-purpose range a holds, or "".
func reservedRange(a netip.Addr) string {
	for _, r := range reserved {
		if r.prefix.Contains(a) {
			return fmt.Sprintf("%s (%s)", r.prefix, r.what)
		}
	}
	return ""
}

// parseAddrs parses addresses given on the command line, in any textual
// form internal/addr accepts, naming the bad one.
func parseAddrs(what string, ss []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		a, err := addr.Parse(s)
		if err != nil {
			return nil, usagef("%s: %v", what, err)
		}
		out = append(out, a)
	}
	return out, noDup(what, out)
}

// noDup refuses an address given twice on the command line.
func noDup(what string, as []netip.Addr) error {
	seen := map[netip.Addr]bool{}
	for _, a := range as {
		if seen[a] {
			return usagef("%s: address %s given twice", what, a)
		}
		seen[a] = true
	}
	return nil
}

// checkNewAddr checks an address about to be added to pool: not from a
// reserved range (unless allowed), and in no pool already.
func checkNewAddr(d *model.Document, pool string, a netip.Addr, allowReserved bool) error {
	if r := reservedRange(a); r != "" && !allowReserved {
		return fmt.Errorf("pool %s: address %s is in the reserved range %s; pass --allow-reserved to use it anyway", pool, a, r)
	}
	for i := range d.Pools {
		p := &d.Pools[i]
		if slices.Contains(p.V4, a) || slices.Contains(p.V6, a) {
			if p.Name == pool {
				return fmt.Errorf("pool %s: address %s is already in the pool", pool, a)
			}
			return fmt.Errorf("pool %s: address %s is already in pool %s", pool, a, p.Name)
		}
	}
	return nil
}

// checkFamily checks that the addresses of a --v4 or --v6 list are of that
// family.
func checkFamily(pool, list string, as []netip.Addr) error {
	for _, a := range as {
		if a.Is4() != (list == "v4") {
			return usagef("pool %s: %s: %s is not an %s address", pool, list, a, map[bool]string{true: "IPv4", false: "IPv6"}[list == "v4"])
		}
	}
	return nil
}

// checkDocAddrs applies the reserved-range check to every address of a
// document (import).
func checkDocAddrs(d *model.Document, allowReserved bool) error {
	if allowReserved {
		return nil
	}
	var errs []error
	for _, p := range d.Pools {
		for _, a := range slices.Concat(p.V4, p.V6) {
			if r := reservedRange(a); r != "" {
				errs = append(errs, fmt.Errorf("pool %s: address %s is in the reserved range %s", p.Name, a, r))
			}
		}
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("pass --allow-reserved to import reserved addresses anyway"))
	}
	return errors.Join(errs...)
}

// inPool reports whether a is one of the pool's addresses.
func inPool(p *model.Pool, a netip.Addr) bool {
	return slices.Contains(p.V4, a) || slices.Contains(p.V6, a)
}

// addTo appends a to the pool's list of its family.
func addTo(p *model.Pool, a netip.Addr) {
	if a.Is4() {
		p.V4 = append(p.V4, a)
	} else {
		p.V6 = append(p.V6, a)
	}
}

// removeFrom removes a from every list of the pool.
func removeFrom(p *model.Pool, a netip.Addr) {
	del := func(l model.AddrList) model.AddrList {
		return slices.DeleteFunc(l, func(x netip.Addr) bool { return x == a })
	}
	p.V4, p.V6, p.Drain = del(p.V4), del(p.V6), del(p.Drain)
}
