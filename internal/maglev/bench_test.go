package maglev

import (
	"fmt"
	"testing"
)

// BenchmarkBuild measures a full table build with reused buffers, as a
// controller rebuilding a VIP's table does.
func BenchmarkBuild(b *testing.B) {
	for _, m := range []uint64{1021, 65537, 655373} {
		for _, n := range []int{4, 16, 100, 1000} {
			b.Run(fmt.Sprintf("M=%d/N=%d", m, n), func(b *testing.B) {
				bs := names(n)
				var bld Builder
				var t Table
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

func BenchmarkLookup(b *testing.B) {
	t, _ := Build(names(100), 65537)
	b.ReportAllocs()
	h := uint64(0x9e3779b97f4a7c15)
	var sink *Backend
	for b.Loop() {
		h = h*6364136223846793005 + 1442695040888963407
		sink = t.Lookup(h)
	}
	_ = sink
}

func BenchmarkDiff(b *testing.B) {
	bs := names(100)
	old, _ := Build(bs, 65537)
	nw, _ := Build(bs[1:], 65537)
	b.ReportAllocs()
	for b.Loop() {
		Diff(old, nw)
	}
}
