package saver

import (
	"slices"
	"testing"
)

// bseqs.live, once some of an app's broadcasts expired, computes the
// unexpired seqs once per second and shares them: an ACK of a stream of
// broadcasts with a TTL allocates nothing for it.
func TestBseqsLiveAfterExpiry(t *testing.T) {
	x := newBseqs()
	for i := uint64(1); i <= 600; i++ {
		x.put(bref{id: i, seq: i, app: 1, expire: int64(1000 + i)})
	}
	for _, tc := range []struct {
		name string
		now  int64
		want int // live seqs
	}{
		{"none expired", 1000, 600},
		{"some expired", 1100, 500},
		{"same second", 1100, 500},
		{"next second", 1101, 499},
		{"all expired", 2000, 0},
	} {
		got := x.live(1, tc.now)
		if len(got) != tc.want || !slices.IsSorted(got) || (len(got) > 0 && got[0] != uint64(tc.now-1000+1)) && tc.now > 1000 {
			t.Fatalf("%s: %d live seqs from %v, want %d", tc.name, len(got), got[:min(1, len(got))], tc.want)
		}
		if allocs := testing.AllocsPerRun(100, func() { x.live(1, tc.now) }); allocs != 0 {
			t.Errorf("%s: live allocates %.0f times per call", tc.name, allocs)
		}
	}
	// A change of the app's broadcasts is seen at once.
	x.drop(200)
	if got := x.live(1, 1100); len(got) != 499 || slices.Contains(got, 200) {
		t.Fatalf("after a drop: %d live seqs", len(got))
	}
}
