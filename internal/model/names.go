package model

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// CheckName checks the name of a pool, edge node or app: 1-63 characters of
// a-z, 0-9, '-', '_' and '.', starting with a letter or digit. Names become
// Consul keys and Redis keys, so nothing else is allowed.
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("%q: character %q at %d is not allowed (a-z, 0-9, and -_. after the first)", s, c, i+1)
		}
	}
	return nil
}

// CheckDomain checks a fully qualified, canonical DNS name of a route:
// labels of 1 to 63 letters, digits, hyphens and underscores (no hyphen at
// either end), at most 253 characters without the final dot.
func CheckDomain(s string) error {
	if s == "." || s == "" {
		return fmt.Errorf("%q: not a domain name", s)
	}
	if s != CanonicalName(s) {
		return fmt.Errorf("%q: not in canonical form (lower case, final dot)", s)
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return fmt.Errorf("%q: longer than 253 characters", s)
	}
	for _, label := range strings.Split(name, ".") {
		if err := checkLabel(label); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q: character %q is not allowed (letters, digits, - and _)", l, c)
		}
	}
	return nil
}

// CheckHost checks an HTTP host name as the edge matches it: lower case, no
// port, no final dot, optionally starting with "*." for a wildcard.
func CheckHost(s string) error {
	name := strings.TrimPrefix(s, "*.")
	if name == "" || strings.Contains(name, "*") {
		return fmt.Errorf("only a leading \"*.\" wildcard is allowed")
	}
	if s != CanonicalHost(s) {
		return fmt.Errorf("not in canonical form (lower case, no final dot)")
	}
	if strings.ContainsAny(name, ":/ ") {
		return fmt.Errorf("a host name has no port, path or spaces")
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return fmt.Errorf("not a valid host name")
	}
	return nil
}
