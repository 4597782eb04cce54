package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"

	"github.com/v6pod/v6pod/internal/model"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; the first row is the header.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// docDiff is a unified-style diff of the YAML of each object (pool, route,
// the hosts, the apps) that differs between two documents; "" when none.
func docDiff(a, b *model.Document) (string, error) {
	type obj struct{ kind, name string }
	objs := func(d *model.Document) (map[obj]string, error) {
		m := map[obj]string{}
		put := func(o obj, v any) error {
			y, err := yamlOf(v)
			m[o] = y
			return err
		}
		for i := range d.Pools {
			if err := put(obj{"pool", d.Pools[i].Name}, &d.Pools[i]); err != nil {
				return nil, err
			}
		}
		for i := range d.Routes {
			if err := put(obj{"route", d.Routes[i].Name}, &d.Routes[i]); err != nil {
				return nil, err
			}
		}
		if len(d.Hosts) > 0 {
			if err := put(obj{"hosts", ""}, d.Hosts); err != nil {
				return nil, err
			}
		}
		if len(d.Apps) > 0 {
			if err := put(obj{"apps", ""}, d.Apps); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	x, err := objs(a)
	if err != nil {
		return "", err
	}
	y, err := objs(b)
	if err != nil {
		return "", err
	}
	var keys []obj
	for k := range x {
		keys = append(keys, k)
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			keys = append(keys, k)
		}
	}
	rank := map[string]int{"pool": 0, "route": 1, "hosts": 2, "apps": 3}
	slices.SortFunc(keys, func(p, q obj) int {
		if rank[p.kind] != rank[q.kind] {
			return rank[p.kind] - rank[q.kind]
		}
		return strings.Compare(p.name, q.name)
	})
	var out bytes.Buffer
	for _, k := range keys {
		old, had := x[k]
		cur, has := y[k]
		if old == cur {
			continue
		}
		label := strings.TrimSpace(k.kind + " " + k.name)
		from, to := label, label
		if !had {
			from = "/dev/null"
		}
		if !has {
			to = "/dev/null"
		}
		fmt.Fprintf(&out, "--- %s\n+++ %s\n", from, to)
		out.WriteString(lineDiff(old, cur))
	}
	return out.String(), nil
}

func yamlOf(v any) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	enc.Close()
	return buf.String(), nil
}

// lineDiff is a unified diff of two texts by lines, with 3 lines of
// context and "@@" between hunks (no line numbers).
func lineDiff(a, b string) string {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		return strings.SplitAfter(s, "\n")[:strings.Count(s, "\n")]
	}
	x, y := split(a), split(b)
	// Longest common subsequence, table from the end.
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			lines = append(lines, line{' ', x[i]})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', x[i]})
			i++
		default:
			lines = append(lines, line{'+', y[j]})
			j++
		}
	}
	const ctx = 3
	show := make([]bool, len(lines))
	for k, l := range lines {
		if l.op != ' ' {
			for c := max(0, k-ctx); c <= min(len(lines)-1, k+ctx); c++ {
				show[c] = true
			}
		}
	}
	var out strings.Builder
	for k, l := range lines {
		if !show[k] {
			continue
		}
		if k == 0 || !show[k-1] {
			out.WriteString("@@\n")
		}
		out.WriteByte(l.op)
		out.WriteString(l.text)
	}
	return out.String()
}

// addrStrings formats addresses for tables.
func addrStrings[T interface{ String() string }](as []T) string {
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = a.String()
	}
	return strings.Join(ss, ",")
}

// sortDoc orders pools and routes by name, so views are the same whatever
// order the store keeps.
func sortDoc(d *model.Document) {
	slices.SortFunc(d.Pools, func(a, b model.Pool) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(d.Routes, func(a, b model.Route) int { return strings.Compare(a.Name, b.Name) })
}
