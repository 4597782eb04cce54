package model

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/internal/addr"
)

// AddrList is a list of addresses written in any form internal/addr accepts
// and kept in canonical form; a bad entry is an error naming it (and, in
// YAML, its line).
type AddrList []netip.Addr

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *AddrList) UnmarshalYAML(n *yaml.Node) error {
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	out := make(AddrList, 0, len(ss))
	for i, s := range ss {
		a, err := addr.Parse(s)
		if err != nil {
			line := n.Line
			if i < len(n.Content) {
				line = n.Content[i].Line
			}
			return fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, a)
	}
	*l = out
	return nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *AddrList) UnmarshalJSON(b []byte) error {
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	out := make(AddrList, 0, len(ss))
	for _, s := range ss {
		a, err := addr.Parse(s)
		if err != nil {
			return err
		}
		out = append(out, a)
	}
	*l = out
	return nil
}

// MarshalYAML writes the canonical forms, and [] rather than null.
func (l AddrList) MarshalYAML() (any, error) { return l.strings(), nil }

// MarshalJSON writes the canonical forms, and [] rather than null.
func (l AddrList) MarshalJSON() ([]byte, error) { return json.Marshal(l.strings()) }

func (l AddrList) strings() []string {
	ss := make([]string, len(l))
	for i, a := range l {
		ss[i] = a.String()
	}
	return ss
}

// EndpointList is a list of upstream endpoints ([2001:db8::1]:8080 and the
// other forms internal/addr accepts), kept in canonical form.
type EndpointList []netip.AddrPort

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *EndpointList) UnmarshalYAML(n *yaml.Node) error {
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	out := make(EndpointList, 0, len(ss))
	for i, s := range ss {
		ep, err := addr.ParseEndpoint(s)
		if err != nil {
			line := n.Line
			if i < len(n.Content) {
				line = n.Content[i].Line
			}
			return fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, ep)
	}
	*l = out
	return nil
}

// MarshalYAML writes the canonical forms.
func (l EndpointList) MarshalYAML() (any, error) {
	ss := make([]string, len(l))
	for i, ep := range l {
		ss[i] = ep.String()
	}
	return ss, nil
}
