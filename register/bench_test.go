package register

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchUIDs(n int) []string {
	uids := make([]string, n)
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
	}
	return uids
}

// BenchmarkRegister measures Register of fresh and returning uids from many
// goroutines (a login storm after a room restart looks like this).
func BenchmarkRegister(b *testing.B) {
	s := newTest(b, DefaultShards)
	uids := benchUIDs(1 << 20)
	apps := []uint32{1, 2}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := next.Add(1)
			se := sess(uids[i%uint64(len(uids))], "room-1", i, apps...)
			if _, err := s.Register(ctx, se); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLookup measures batch lookups of 100 uids (a multicast), half online.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	s := newTest(b, DefaultShards)
	uids := benchUIDs(200_000)
	for i, uid := range uids {
		if i%2 == 0 {
			if _, err := s.Register(ctx, sess(uid, "room-1", uint64(i), 1)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(100)) % (len(uids) - 100)
			got, err := s.Lookup(ctx, uids[i:i+100])
			if err != nil || len(got) != 50 {
				b.Fatalf("lookup: %d sessions, %v", len(got), err)
			}
		}
	})
}

// BenchmarkCounts1M checks that Counts stays cheap with a million sessions
// over 50 apps and 20 rooms (a stats request must take well under 100 ms).
func BenchmarkCounts1M(b *testing.B) {
	ctx := context.Background()
	s := newTest(b, DefaultShards)
	for i := range 1_000_000 {
		se := sess("u"+strconv.Itoa(i), fmt.Sprint("room-", i%20), uint64(i), uint32(i%50), 100)
		if _, err := s.Register(ctx, se); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		c, err := s.Counts(ctx)
		if err != nil || c.Total != 1_000_000 {
			b.Fatalf("counts %d %v", c.Total, err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/counts")
}
