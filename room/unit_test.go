package room

import (
	"github.com/lcpush/lcpush/pkg/config"
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

func TestBucket(t *testing.T) {
	d := config.Defaults().Room.Limits
	for _, l := range []opLimit{limitOf(d.Ping), limitOf(d.Ack), limitOf(d.Bind), limitOf(d.Upstream), limitOf(d.Errors)} {
		var b bucket
		now := uint32(1000)
		for i := 0; i < int(l.burst); i++ {
			if !b.allow(l, now) {
				t.Fatalf("%+v: refused #%d within the burst", l, i)
			}
		}
		if b.allow(l, now) {
			t.Fatalf("%+v: allowed past the burst", l)
		}
		// Calls every few ms must not lose the partial refill: the rate over 10 s.
		allowed, step := 0, max(l.msPerToken/4, 1)
		for t0 := now; now-t0 < 10_000; {
			now += step
			if b.allow(l, now) {
				allowed++
			}
		}
		if want := int(10_000 / l.msPerToken); allowed < want-1 || allowed > want+1 {
			t.Fatalf("%+v: allowed %d in 10 s, want ~%d", l, allowed, want)
		}
		// A long pause refills to the burst, not beyond, across the 32-bit wrap too.
		now += 1<<32 - 5_000_000
		n := 0
		for b.allow(l, now) {
			n++
		}
		if n != int(l.burst) {
			t.Fatalf("%+v: after a pause: %d, want %d", l, n, l.burst)
		}
	}
}

func TestConnStateIsSmall(t *testing.T) {
	// gnet's own conn and its addresses are ~380 bytes; ours is one
	// 160-byte size class (docs/benchmarks.md, "Idle memory per
	// connection"): a field more needs one out, or into connExtra.
	if sz := unsafe.Sizeof(connState{}); sz > 160 {
		t.Fatalf("connState is %d bytes, want at most 160", sz)
	}
	if sz := unsafe.Sizeof(connExtra{}); sz > 80 {
		t.Fatalf("connExtra is %d bytes, want at most 80", sz)
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
