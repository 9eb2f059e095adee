package center

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// acquireAsync starts an acquire and returns a channel that gets its
// release (nil on error).
func acquireAsync(ctx context.Context, br *bcastRates, app uint32, want, limit float64) <-chan func() {
	ch := make(chan func(), 1)
	go func() {
		rel, err := br.acquire(ctx, app, want, limit)
		if err != nil {
			rel = nil
		}
		ch <- rel
	}()
	return ch
}

func granted(ch <-chan func(), within time.Duration) (func(), bool) {
	select {
	case rel := <-ch:
		return rel, true
	case <-time.After(within):
		return nil, false
	}
}

func TestBroadcastRateShared(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		wants []float64 // jobs of app 1 in arrival order, limit 100
		run   []bool    // which of them run at once
	}{
		{"two at the app's rate: one waits", []float64{100, 100}, []bool{true, false}},
		{"halves run together", []float64{50, 50, 50}, []bool{true, true, false}},
		{"first come first served", []float64{60, 60, 10}, []bool{true, false, false}},
		{"small ones fill up", []float64{30, 30, 40}, []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var br bcastRates
			var chans []<-chan func()
			for i, w := range tc.wants {
				chans = append(chans, acquireAsync(ctx, &br, 1, w, 100))
				// Arrival order: each has run or joined the line before the next.
				testkit.WaitFor(t, "arrival", 5*time.Second, func() bool { return br.arrived(1) == i+1 })
			}
			var rels []func()
			for i, ch := range chans {
				rel, ok := granted(ch, 50*time.Millisecond)
				if ok != tc.run[i] {
					t.Fatalf("job %d (rate %v) running %v, want %v", i, tc.wants[i], ok, tc.run[i])
				}
				if ok {
					rels = append(rels, rel)
				}
			}
			// Another app is never held by app 1's jobs.
			if _, ok := granted(acquireAsync(ctx, &br, 2, 100, 100), time.Second); !ok {
				t.Fatal("app 2 waits for app 1's rate")
			}
			// Releasing the running ones lets every waiting one run.
			for _, rel := range rels {
				rel()
				rel() // idempotent
			}
			for i, ch := range chans {
				if tc.run[i] {
					continue
				}
				rel, ok := granted(ch, time.Second)
				if !ok {
					t.Fatalf("job %d still waits after the others ended", i)
				}
				rel()
			}
			if used, waiting := br.usage(1); used != 0 || waiting != 0 {
				t.Fatalf("after all: used %v waiting %d", used, waiting)
			}
		})
	}
}

func TestBroadcastRateWaitEnds(t *testing.T) {
	var br bcastRates
	rel, err := br.acquire(context.Background(), 1, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := br.acquire(ctx, 1, 100, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v", err)
	}
	if _, waiting := br.usage(1); waiting != 0 {
		t.Fatalf("%d still in line after its deadline", waiting)
	}
	rel()
	if _, ok := br.apps[1]; ok {
		t.Fatal("app state kept after its last job")
	}
}

// TestBroadcastJobsShareAppRate: two broadcasts of one app at its
// broadcast_rate run one after the other (each at the full rate); two at
// half of it run together.
func TestBroadcastJobsShareAppRate(t *testing.T) {
	e := newEnv(t, Config{}, func(c *config.Config) { c.Apps[0].BroadcastRate = 1000 })
	e.reg.add(session("u1", "room-1", 1, 1))
	block := make(chan struct{})
	e.rooms.mu.Lock()
	e.rooms.block = block
	e.rooms.mu.Unlock()
	j1, _ := startBroadcast(t, e, "1", key1, `{"text":"a","qos":0}`)
	j2, _ := startBroadcast(t, e, "1", key1, `{"text":"b","qos":0}`)
	// Job 2 waits for app 1's rate with its task pending: it holds no
	// worker meanwhile.
	testkit.WaitFor(t, "job 1 running, job 2 pending for app 1's rate", 5*time.Second, func() bool {
		used, _ := e.svc.bcastRates.usage(1)
		_, t1 := boardTasks(t, e, j1)
		_, t2 := boardTasks(t, e, j2)
		return used == 1000 && allHeld(t1) && t2[0].State == push.TaskPending
	})
	close(block)
	waitJob(t, e, j1, key1)
	waitJob(t, e, j2, key1)
	for _, b := range e.rooms.broadcasted() {
		if b.perSec != 1000 {
			t.Fatalf("a job ran at %v per second, want the app's 1000 (alone)", b.perSec)
		}
	}
	// At half the rate, both run at once.
	block = make(chan struct{})
	e.rooms.mu.Lock()
	e.rooms.block = block
	e.rooms.mu.Unlock()
	j3, _ := startBroadcast(t, e, "1", key1, `{"text":"c","qos":0,"rate":500}`)
	j4, _ := startBroadcast(t, e, "1", key1, `{"text":"d","qos":0,"rate":500}`)
	testkit.WaitFor(t, "both half-rate jobs running", 5*time.Second, func() bool {
		used, waiting := e.svc.bcastRates.usage(1)
		return used == 1000 && waiting == 0
	})
	close(block)
	waitJob(t, e, j3, key1)
	waitJob(t, e, j4, key1)
}

// arrived counts app's jobs running or waiting for their rate.
func (br *bcastRates) arrived(app uint32) int {
	br.mu.Lock()
	defer br.mu.Unlock()
	a := br.apps[app]
	if a == nil {
		return 0
	}
	return a.jobs + len(a.line)
}
