package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParseYAML decodes a store document strictly (an unknown key is an error
// naming its line), fills defaults and validates it. name names the input
// in errors (a file path, "stdin").
func ParseYAML(name string, b []byte) (*Document, error) {
	var d Document
	if err := DecodeStrict(bytes.NewReader(b), &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d.Normalize()
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

// DecodeStrict decodes one YAML document into v, rejecting unknown keys.
// An empty input leaves v as it is.
func DecodeStrict(r io.Reader, v any) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return plainYAMLError(err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one YAML document")
	}
	return nil
}

var (
	unknownField = regexp.MustCompile(`field (.*) not found in type \S+`)
	goType       = regexp.MustCompile(` into (\S+)`)
)

// plainYAMLError rewrites yaml.v3's messages without Go type names: an
// operator reads `unknown key "bogus"`, not "field bogus not found in
// type model.Document".
func plainYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if sm := unknownField.FindStringSubmatchIndex(m); sm != nil {
			m = m[:sm[0]] + fmt.Sprintf("unknown key %q", m[sm[2]:sm[3]]) + m[sm[1]:]
		}
		m = goType.ReplaceAllStringFunc(m, func(s string) string {
			t := strings.TrimPrefix(s, " into ")
			switch {
			case strings.HasPrefix(t, "[]"):
				return " where a list is wanted"
			case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "model."):
				return " where a mapping is wanted"
			case strings.Contains(t, "int"):
				return " where a whole number is wanted"
			case t == "string", strings.HasSuffix(t, "State"):
				return " where a string is wanted"
			case t == "bool":
				return " where true or false is wanted"
			}
			return ""
		})
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "; "))
}

// MarshalYAML encodes a document the way the file store writes it.
func MarshalYAML(d *Document) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeJSONStrict decodes JSON (a Consul KV value), rejecting unknown
// fields.
func DecodeJSONStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// Canonical encodes a document's data without its version, so two
// documents can be compared: equal bytes, same data.
func Canonical(d *Document) ([]byte, error) {
	c := *d
	c.Version = 0
	return MarshalYAML(&c)
}

// Equal reports whether two documents hold the same data, versions aside.
// Both should be normalized (as read from a store, or after Normalize).
func Equal(a, b *Document) (bool, error) {
	if a == nil || b == nil {
		return a == b, nil
	}
	x, err := Canonical(a)
	if err != nil {
		return false, err
	}
	y, err := Canonical(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
