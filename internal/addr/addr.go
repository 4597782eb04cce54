// Package addr parses the textual forms of IP addresses and endpoints met in
// the wild, and embeds IPv4 addresses in IPv6 prefixes per RFC 6052.
package addr

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Error reports an input that is not an address, quoting it.
type Error struct {
	Input string // the text as given
	What  string // what is wrong with it
}

func (e *Error) Error() string { return fmt.Sprintf("address %q: %s", e.Input, e.What) }

func errorf(input, format string, args ...any) error {
	return &Error{Input: input, What: fmt.Sprintf(format, args...)}
}

// Options change how Parse treats some forms.
type Options struct {
	// KeepMapped keeps ::ffff:a.b.c.d as an IPv6 address; by default it
	// becomes the IPv4 address it maps.
	KeepMapped bool
	// KeepZone keeps a %zone suffix; by default it is dropped.
	KeepZone bool
}

// Parse parses one address in any of the forms 2001:db8::1, [2001:db8::1],
// 2001:db8::1%eth0, ::ffff:192.0.2.1 and 192.0.2.1, in any letter case and
// with surrounding spaces. A port is an error: use ParseEndpoint for those.
func Parse(s string) (netip.Addr, error) { return ParseWith(s, Options{}) }

// ParseWith is Parse with options.
func ParseWith(s string, o Options) (netip.Addr, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, errorf(in, "empty")
	}
	if strings.HasPrefix(s, "[") {
		if !strings.HasSuffix(s, "]") {
			if strings.Contains(s, "]:") {
				return netip.Addr{}, errorf(in, "has a port; an address alone was expected")
			}
			return netip.Addr{}, errorf(in, "unclosed '['")
		}
		s = s[1 : len(s)-1]
		if !strings.Contains(s, ":") {
			return netip.Addr{}, errorf(in, "brackets are for IPv6 addresses only")
		}
	} else if strings.Count(s, ":") == 1 {
		return netip.Addr{}, errorf(in, "has a port; an address alone was expected")
	}
	return parseBare(in, s, o)
}

func parseBare(in, s string, o Options) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errorf(in, "not an IPv4 or IPv6 address")
	}
	if !o.KeepZone {
		a = a.WithZone("")
	}
	if !o.KeepMapped {
		a = a.Unmap()
	}
	return a, nil
}

// ParseEndpoint parses an address with a port: [2001:db8::1]:8080,
// 192.0.2.1:80, and the mapped, zoned and spaced variants Parse accepts.
// The port must be 1-65535.
func ParseEndpoint(s string) (netip.AddrPort, error) { return ParseEndpointWith(s, Options{}) }

// ParseEndpointWith is ParseEndpoint with options.
func ParseEndpointWith(s string, o Options) (netip.AddrPort, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.AddrPort{}, errorf(in, "empty")
	}
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.LastIndex(s, "]")
		if end < 0 {
			return netip.AddrPort{}, errorf(in, "unclosed '['")
		}
		host, port = s[1:end], s[end+1:]
		if port == "" {
			return netip.AddrPort{}, errorf(in, "missing port")
		}
		if !strings.HasPrefix(port, ":") {
			return netip.AddrPort{}, errorf(in, "junk %q after ']'", port)
		}
		port = port[1:]
		if !strings.Contains(host, ":") {
			return netip.AddrPort{}, errorf(in, "brackets are for IPv6 addresses only")
		}
	} else {
		i := strings.LastIndex(s, ":")
		if i < 0 {
			return netip.AddrPort{}, errorf(in, "missing port")
		}
		if strings.Count(s, ":") > 1 {
			return netip.AddrPort{}, errorf(in, "an IPv6 address with a port needs brackets, as in [2001:db8::1]:80")
		}
		host, port = s[:i], s[i+1:]
	}
	a, err := parseBare(in, host, o)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := ParsePort(port)
	if err != nil {
		return netip.AddrPort{}, errorf(in, "%v", err)
	}
	return netip.AddrPortFrom(a, p), nil
}

// ParsePort parses a decimal port 1-65535.
func ParsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("missing port")
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if n == 0 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return uint16(n), nil
}

// FormatEndpoint writes an endpoint in its canonical form: [v6]:port or v4:port.
func FormatEndpoint(ap netip.AddrPort) string { return ap.String() }
