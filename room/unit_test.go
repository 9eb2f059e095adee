package room

import (
	"testing"
	"time"
	"unsafe"
)

func TestIndexSameUID(t *testing.T) {
	cases := []struct {
		name   string
		remove []int // positions (0 = oldest) removed in this order
		newest int   // expected newest left, -1 = none
	}{
		{"newest leaves", []int{2}, 1},
		{"oldest leaves", []int{0}, 2},
		{"middle leaves", []int{1}, 2},
		{"all leave", []int{1, 0, 2}, -1},
		{"removed twice", []int{1, 1}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var x index
			x.init()
			conns := []*connState{{id: 1, uid: "u"}, {id: 2, uid: "u"}, {id: 3, uid: "u"}, {id: 9, uid: "other"}}
			for _, s := range conns {
				x.add(s)
			}
			for _, i := range tc.remove {
				x.remove(conns[i])
			}
			for i, s := range conns[:3] {
				gone := false
				for _, j := range tc.remove {
					gone = gone || i == j
				}
				if got := x.get("u", s.id); (got == s) == gone {
					t.Fatalf("get(u, %d) = %v, removed=%v", s.id, got, gone)
				}
			}
			got := x.get("u", 0)
			if (tc.newest < 0 && got != nil) || (tc.newest >= 0 && got != conns[tc.newest]) {
				t.Fatalf("newest = %v, want #%d", got, tc.newest)
			}
			if x.get("other", 0) != conns[3] || x.get("u", 9) != nil {
				t.Fatal("other uid disturbed")
			}
		})
	}
}

func TestUpstreamBucket(t *testing.T) {
	s := &connState{upAt: 1000, upTokens: upstreamBurst}
	now := int64(1000)
	for i := 0; i < upstreamBurst; i++ {
		if !s.allowUpstream(now) {
			t.Fatalf("refused #%d within the burst", i)
		}
	}
	if s.allowUpstream(now) {
		t.Fatal("allowed past the burst")
	}
	// Calls every 5 ms must not lose the partial refill: 50/s over 1 s.
	allowed := 0
	for k := 0; k < 200; k++ {
		now += 5
		if s.allowUpstream(now) {
			allowed++
		}
	}
	if allowed < upstreamRate-1 || allowed > upstreamRate+1 {
		t.Fatalf("allowed %d in 1 s, want ~%d", allowed, upstreamRate)
	}
	// A long pause refills to the burst, not beyond.
	now += int64(time.Hour / time.Millisecond)
	n := 0
	for s.allowUpstream(now) {
		n++
	}
	if n != upstreamBurst {
		t.Fatalf("after a pause: %d, want %d", n, upstreamBurst)
	}
}

func TestConnStateIsSmall(t *testing.T) {
	// gnet's own conn is ~400 bytes; ours must stay in the same league.
	if sz := unsafe.Sizeof(connState{}); sz > 256 {
		t.Fatalf("connState is %d bytes", sz)
	}
}

func TestTickEvery(t *testing.T) {
	cases := []struct {
		auth, grace, want time.Duration
	}{
		{10 * time.Second, 10 * time.Second, time.Second},
		{400 * time.Millisecond, 10 * time.Second, 100 * time.Millisecond},
		{10 * time.Second, 200 * time.Millisecond, 100 * time.Millisecond},
		{time.Millisecond, time.Millisecond, 20 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := tickEvery(tc.auth, tc.grace); got != tc.want {
			t.Errorf("tickEvery(%s, %s) = %s, want %s", tc.auth, tc.grace, got, tc.want)
		}
	}
}
