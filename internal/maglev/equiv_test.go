package maglev

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// referenceFill is the algorithm as the paper states it (section 3.4,
// pseudocode 1), with weights as turns per round: each claim walks the
// backend's permutation from where it stopped to the first free slot.
func referenceFill(bs []Backend, m uint64) []string {
	sorted := slices.Clone(bs)
	slices.SortFunc(sorted, func(a, b Backend) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	n := len(sorted)
	off, skip, next, w := make([]uint64, n), make([]uint64, n), make([]uint64, n), make([]uint32, n)
	var g uint32
	for i, b := range sorted {
		off[i], skip[i], _ = Permutation(b, m)
		w[i] = max(b.Weight, 1)
		g = gcd(g, w[i])
	}
	entry := make([]int, m)
	for i := range entry {
		entry[i] = -1
	}
	filled := uint64(0)
	for {
		for i := range sorted {
			for range w[i] / g {
				c := (off[i] + next[i]*skip[i]) % m
				for entry[c] >= 0 {
					next[i]++
					c = (off[i] + next[i]*skip[i]) % m
				}
				entry[c] = i
				next[i]++
				if filled++; filled == m {
					out := make([]string, m)
					for k, e := range entry {
						out[k] = sorted[e].Name
					}
					return out
				}
			}
		}
	}
}

// TestFillMatchesReference: the bitmap walk plus free-list tail gives
// exactly the paper's table, for many sizes, counts and weights.
func TestFillMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	sizes := []uint64{2, 3, 7, 13, 251, 1021, 4093, 65537}
	for trial := range 60 {
		m := sizes[trial%len(sizes)]
		n := 1 + r.IntN(int(min(m, 300)))
		bs := make([]Backend, n)
		for i := range bs {
			bs[i].Name = fmt.Sprintf("b%d-%d", trial, i)
			if trial%3 == 0 {
				bs[i].Weight = uint32(r.IntN(4))
			}
		}
		tab, err := Build(bs, m)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceFill(bs, m); !slices.Equal(tab.Names(), want) {
			t.Fatalf("m=%d n=%d: table differs from the reference", m, n)
		}
	}
}
