package saver

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// The memory store's delivery status records at the unicast bench's size:
// 5k/s QoS 1 unicasts kept for a 60 s TTL are ~300k records over 10,000
// uids. Each uid string is a fresh allocation, as one decoded from a
// request is.
const (
	benchStatusRecords = 300_000
	benchStatusUIDs    = 10_000
)

func benchStatusUID(i int) string { return "user-" + strconv.Itoa(i%benchStatusUIDs) }

// openBenchStatus opens n unicast records, ids 1..n, on m.
func openBenchStatus(tb testing.TB, m *Memory, n int) {
	tb.Helper()
	exp := time.Now().Add(time.Hour).Unix()
	for i := 1; i <= n; i++ {
		st := push.MessageStatus{MsgID: uint64(i), App: 1, Kind: push.KindUnicast, Created: exp - 3600, Expires: exp}
		if err := m.OpenStatus(bg, st, []string{benchStatusUID(i)}); err != nil {
			tb.Fatalf("open status %d: %v", i, err)
		}
	}
}

// BenchmarkMemoryStatusHeap reports the live heap per unicast status
// record (B/record) and what a full GC cycle costs with 300k of them live
// (gc-ms: runtime.GC's wall time, mostly the mark phase).
func BenchmarkMemoryStatusHeap(b *testing.B) {
	var perRec, gcMS float64
	for range b.N {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMemory()
		b.StartTimer()
		openBenchStatus(b, m, benchStatusRecords)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perRec = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchStatusRecords
		const cycles = 5
		t0 := time.Now()
		for range cycles {
			runtime.GC()
		}
		gcMS = float64(time.Since(t0).Microseconds()) / 1000 / cycles
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perRec, "B/record")
	b.ReportMetric(gcMS, "gc-ms")
}

// BenchmarkMemoryAddSent is the room's once-a-second report at 5k/s: one
// AddSent of 5,000 unicast deltas (one per message, with its uid) on a
// store holding 300k records, with a waiter (benchWaiter) measuring how
// long an API call is held up meanwhile.
func BenchmarkMemoryAddSent(b *testing.B) {
	const batch = 5000
	m := NewMemory()
	openBenchStatus(b, m, benchStatusRecords)
	deltas := make([]push.StatusDelta, batch)
	for i := range deltas {
		id := benchStatusRecords - batch + 1 + i
		deltas[i] = push.StatusDelta{MsgID: uint64(id), App: 1, UID: benchStatusUID(id), Sent: 1}
	}
	benchWaiter(b, m, func() error { return m.AddSent(bg, deltas) })
}

// BenchmarkMemoryExpire is the sweeper's periodic Expire on a store with
// nothing due, holding 300k status records or 300k unACKed inbox entries
// over 10,000 uids.
func BenchmarkMemoryExpire(b *testing.B) {
	exp := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name string
		fill func(b *testing.B, m *Memory)
	}{
		{"status", func(b *testing.B, m *Memory) { openBenchStatus(b, m, benchStatusRecords) }},
		{"inbox", func(b *testing.B, m *Memory) {
			for i := 1; i <= benchStatusRecords; i++ {
				msg := push.Message{ID: uint64(i), App: 1, Expire: exp, Payload: []byte("x")}
				if err := m.Save(bg, msg, []string{benchStatusUID(i)}); err != nil {
					b.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			m := NewMemory()
			tt.fill(b, m)
			now := time.Now()
			benchWaiter(b, m, func() error {
				_, err := m.Expire(bg, now)
				return err
			})
		})
	}
}

// benchWaiter runs op b.N times with GOMAXPROCS=1 (the bench's server)
// while another goroutine, woken by a timer as a request would be, calls
// Status; p99-wait-ms and max-wait-ms are how late those calls were. An op
// that holds m.mu and the P for all its work makes every API call wait
// for all of it; one that yields between chunks, for one chunk.
func benchWaiter(b *testing.B, m *Memory, op func() error) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		waits = make([]time.Duration, 0, 1<<16) // no allocation while timed
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			const nap = 200 * time.Microsecond
			t0 := time.Now()
			time.Sleep(nap)
			if _, _, err := m.Status(bg, 1, 1); err != nil {
				b.Error(err)
				return
			}
			if len(waits) < cap(waits) {
				waits = append(waits, time.Since(t0)-nap)
			}
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := op(); err != nil {
			b.Fatal(err)
		}
		runtime.Gosched() // the server does other work between calls
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	if len(waits) > 0 {
		slices.Sort(waits)
		b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds())/1000, "p99-wait-ms")
		b.ReportMetric(float64(waits[len(waits)-1].Microseconds())/1000, "max-wait-ms")
	}
}
