package appset

import (
	"slices"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []uint32
		want []uint32
	}{
		{"empty", nil, nil},
		{"one", []uint32{7}, []uint32{7}},
		{"order kept", []uint32{3, 1, 2}, []uint32{3, 1, 2}},
		{"long", make([]uint32, maxKeyApps+5), make([]uint32, maxKeyApps+5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Of(tc.in)
			if tc.want == nil {
				if p != nil {
					t.Fatalf("Of(%v) = %v, want nil", tc.in, *p)
				}
				return
			}
			if !slices.Equal(*p, tc.want) {
				t.Fatalf("Of(%v) = %v", tc.in, *p)
			}
			if q := Of(slices.Clone(tc.in)); q != p {
				t.Fatal("the same set twice gave two copies")
			}
		})
	}
	in := []uint32{9, 8}
	p := Of(in)
	in[0] = 1 // the caller's slice is copied, not kept
	if !slices.Equal(*p, []uint32{9, 8}) {
		t.Fatalf("set changed with the caller's slice: %v", *p)
	}
	if Of([]uint32{8, 9}) == p {
		t.Fatal("sets in another order must differ")
	}
	if One(9) != One(9) || !slices.Equal(*One(9), []uint32{9}) {
		t.Fatal("One is not shared")
	}
}

func TestOfAllocatesNothingWhenKnown(t *testing.T) {
	One(42)
	two := []uint32{42, 43}
	Of(two)
	if n := testing.AllocsPerRun(100, func() { One(42); Of(two) }); n != 0 {
		t.Fatalf("%v allocations per lookup of known sets", n)
	}
}

func TestBounded(t *testing.T) {
	for i := range MaxSets + 100 {
		p := Of([]uint32{1 << 20, uint32(i)})
		if (*p)[1] != uint32(i) {
			t.Fatal("wrong set")
		}
	}
	table.mu.RLock()
	n := len(table.m)
	table.mu.RUnlock()
	if n > MaxSets {
		t.Fatalf("%d sets kept, bound %d", n, MaxSets)
	}
	past := []uint32{1 << 21, 1}
	if p := Of(past); p == nil || !slices.Equal(*p, past) {
		t.Fatal("past the bound a private copy is still correct")
	}
	// A full table of multi-app sets leaves the single-app sets shared.
	if One(1<<22) != One(1<<22) || Of([]uint32{1 << 22}) != One(1<<22) {
		t.Fatal("a single-app set is not shared once the multi-app table is full")
	}
}
