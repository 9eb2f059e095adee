package center

import (
	"slices"
	"strconv"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// groupInto over pooled groups gives what groupByRoom gives, and once the
// pool holds grown arrays a push's grouping allocates nothing.
func TestGroupIntoPooled(t *testing.T) {
	one := []push.Session{{UID: "a", Room: "r1", ConnID: 1, Apps: []uint32{1}}}
	two := []push.Session{
		{UID: "a", Room: "r1", ConnID: 1, Apps: []uint32{1}},
		{UID: "b", Room: "r2", ConnID: 2, Apps: []uint32{1}},
		{UID: "c", Room: "r1", ConnID: 3, Apps: []uint32{2}}, // another app: left out
		{UID: "d", Room: "r1", ConnID: 4, Apps: []uint32{1}},
	}
	tests := []struct {
		name     string
		sessions []push.Session
	}{
		{"one", one},
		{"two rooms", two},
		{"none", nil},
		{"one again", one},
	}
	gs := new(roomGroups)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := groupByRoom(tc.sessions, 1)
			gs.g = groupInto(gs.g, tc.sessions, 1)
			if len(gs.g) != len(want) {
				t.Fatalf("%d groups, want %d", len(gs.g), len(want))
			}
			for i := range want {
				if gs.g[i].room != want[i].room || !slices.Equal(gs.g[i].targets, want[i].targets) {
					t.Fatalf("group %d: %+v, want %+v", i, gs.g[i], want[i])
				}
			}
			g := gs.g
			gs.put()
			for _, x := range g[:cap(g)] {
				if x.room != "" || slices.ContainsFunc(x.targets[:cap(x.targets)], func(t push.Target) bool { return t.UID != "" }) {
					t.Fatalf("put kept %+v alive", x)
				}
			}
			gs = groupsPool.Get().(*roomGroups)
		})
	}
	// Over grown arrays (what the pool hands back; the pool itself drops
	// items at random under -race, so it is left out here).
	g := groupInto(nil, two, 1)
	if n := testing.AllocsPerRun(100, func() { g = groupInto(g, two, 1) }); n > 0 {
		t.Fatalf("%.1f allocations per grouping into grown arrays, want 0", n)
	}
}

func TestStatusCode(t *testing.T) {
	for _, code := range []int{0, 99, 200, 404, 599, 600, 1000, -1} {
		if got := statusCode(code); got != strconv.Itoa(code) {
			t.Fatalf("statusCode(%d) = %q", code, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = statusCode(200) }); n > 0 {
		t.Fatalf("%.1f allocations per statusCode(200), want 0", n)
	}
}
