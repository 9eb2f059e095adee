package idgen

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestNewNodeRange(t *testing.T) {
	tests := []struct {
		node int
		ok   bool
	}{
		{-1, false}, {0, true}, {1, true}, {1023, true}, {1024, false}, {1 << 20, false},
	}
	for _, tt := range tests {
		g, err := New(tt.node)
		if tt.ok != (err == nil) || tt.ok != (g != nil) {
			t.Errorf("New(%d) = %v, %v; want ok=%v", tt.node, g, err, tt.ok)
		}
	}
}

// fakeClock is a settable clock for one generator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newFake(t *testing.T, node int, start time.Time) (*Generator, *fakeClock) {
	t.Helper()
	g, err := New(node)
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{t: start}
	g.now = c.now
	return g, c
}

func TestLayout(t *testing.T) {
	start := time.UnixMilli(Epoch + 123456789)
	g, _ := newFake(t, 5, start)
	id := g.Next()
	if want := uint64(123456789)<<22 | 5<<12; id != want {
		t.Fatalf("first id %#x; want %#x", id, want)
	}
	if id2 := g.Next(); id2 != id+1 {
		t.Fatalf("second id in the same ms %#x; want %#x", id2, id+1)
	}
}

func TestTimeRoundTrip(t *testing.T) {
	for _, ms := range []int64{Epoch, Epoch + 1, time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC).UnixMilli(), Epoch + 1<<41 - 1} {
		g, _ := newFake(t, 1023, time.UnixMilli(ms))
		id := g.Next()
		if got := Time(id); !got.Equal(time.UnixMilli(ms)) {
			t.Errorf("Time(Next at %d) = %v; want %v", ms, got, time.UnixMilli(ms))
		}
	}
	g, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Millisecond)
	got := Time(g.Next())
	if got.Before(before) || got.After(time.Now()) {
		t.Fatalf("Time = %v, not within the call", got)
	}
}

func TestClockStepsBack(t *testing.T) {
	start := time.UnixMilli(Epoch + 10_000)
	g, c := newFake(t, 3, start)
	a := g.Next()
	c.set(start.Add(-5 * time.Second))
	b := g.Next()
	c.set(start.Add(-time.Hour))
	d := g.Next()
	if !(a < b && b < d) {
		t.Fatalf("ids after clock step back not increasing: %d %d %d", a, b, d)
	}
	c.set(start.Add(time.Millisecond))
	e := g.Next()
	if e <= d || Time(e) != start.Add(time.Millisecond) {
		t.Fatalf("id after clock recovers: %d (%v)", e, Time(e))
	}
}

func TestMoreThan4096PerMillisecond(t *testing.T) {
	start := time.UnixMilli(Epoch + 1_000)
	g, _ := newFake(t, 9, start)
	const n = 3*4096 + 17
	prev := g.Next()
	for i := 1; i < n; i++ {
		id := g.Next()
		if id <= prev {
			t.Fatalf("id %d: %d <= %d", i, id, prev)
		}
		if node := id >> 12 & 1023; node != 9 {
			t.Fatalf("id %d: node bits %d", i, node)
		}
		prev = id
	}
	// The frozen clock forced the generator to borrow the next milliseconds.
	if got := Time(prev); got != start.Add(3*time.Millisecond) {
		t.Fatalf("last id time %v; want %v", got, start.Add(3*time.Millisecond))
	}
}

func TestConcurrentStrictlyIncreasing(t *testing.T) {
	g, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 5000
	out := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]uint64, per)
			for i := range ids {
				ids[i] = g.Next()
			}
			out[w] = ids
		}()
	}
	wg.Wait()
	var all []uint64
	for _, ids := range out {
		// Each goroutine sees its own ids strictly increase.
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("goroutine saw %d after %d", ids[i], ids[i-1])
			}
		}
		all = append(all, ids...)
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != workers*per {
		t.Fatal("duplicate ids under concurrency")
	}
}

func BenchmarkNext(b *testing.B) {
	g, err := New(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Next()
		}
	})
}
