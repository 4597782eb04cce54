// Package maglevbench compares internal/maglev's table builds with Cilium
// v1.10.0's pkg/maglev. It is a module of its own so that the main go.mod
// never sees Cilium.
package maglevbench

import (
	"fmt"
	"testing"

	cilium "github.com/cilium/cilium/pkg/maglev"
	"github.com/v6pod/v6pod/internal/maglev"
)

// Only M up to 65537: Cilium v1.10.0's Init preallocates (M/100)*M words
// on machines with more than 8 GB.
var (
	sizes  = []uint64{1021, 65537}
	counts = []int{4, 16, 100, 1000}
)

func BenchmarkV6pod(b *testing.B) {
	for _, m := range sizes {
		for _, n := range counts {
			b.Run(fmt.Sprintf("M=%d/N=%d", m, n), func(b *testing.B) {
				bs := make([]maglev.Backend, n)
				for i := range bs {
					bs[i].Name = fmt.Sprintf("backend-%d", i)
				}
				var bld maglev.Builder
				var t maglev.Table
				b.ReportAllocs()
				for b.Loop() {
					if err := bld.BuildInto(&t, bs, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkCilium(b *testing.B) {
	for _, m := range sizes {
		for _, n := range counts {
			b.Run(fmt.Sprintf("M=%d/N=%d", m, n), func(b *testing.B) {
				if err := cilium.Init(cilium.DefaultHashSeed, m); err != nil {
					b.Fatal(err)
				}
				bs := make([]string, n)
				for i := range bs {
					bs[i] = fmt.Sprintf("backend-%d", i)
				}
				b.ReportAllocs()
				for b.Loop() {
					if t := cilium.GetLookupTable(bs, m); len(t) != int(m) {
						b.Fatal("short table")
					}
				}
			})
		}
	}
}

// TestSameBalance checks that both builds balance equally (a sanity check
// that the two are doing the same job).
func TestSameBalance(t *testing.T) {
	const m, n = 1021, 16
	if err := cilium.Init(cilium.DefaultHashSeed, m); err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	bs := make([]maglev.Backend, n)
	for i := range bs {
		names[i] = fmt.Sprintf("backend-%d", i)
		bs[i].Name = names[i]
	}
	ct := cilium.GetLookupTable(names, m)
	ours, err := maglev.Build(bs, m)
	if err != nil {
		t.Fatal(err)
	}
	cc := make([]int, n)
	for _, i := range ct {
		cc[i]++
	}
	oc := map[string]int{}
	for i, c := range ours.Counts() {
		oc[ours.Backends()[i].Name] = c
	}
	for i := range n {
		if d := cc[i] - oc[names[i]]; d > 1 || d < -1 {
			t.Fatalf("backend %d: cilium %d slots, ours %d", i, cc[i], oc[names[i]])
		}
	}
}
