package center

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestBroadcastRateShared(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wants []float64 // tasks of app 1 in arrival order, limit 100
		run   []bool    // which of them may start at once
	}{
		{"two at the app's rate: one waits", []float64{100, 100}, []bool{true, false}},
		{"halves run together", []float64{50, 50, 50}, []bool{true, true, false}},
		{"one alone runs even above the rate", []float64{150, 10}, []bool{true, false}},
		{"a smaller one fits beside", []float64{60, 60, 10}, []bool{true, false, true}},
		{"small ones fill up", []float64{30, 30, 40}, []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var br bcastRates
			var rels []func()
			for i, w := range tc.wants {
				rel, ok := br.tryAcquire(1, w, 100)
				if ok != tc.run[i] {
					t.Fatalf("task %d (rate %v) started %v, want %v", i, w, ok, tc.run[i])
				}
				if ok {
					rels = append(rels, rel)
				}
			}
			// Another app is never held by app 1's tasks.
			rel2, ok := br.tryAcquire(2, 100, 100)
			if !ok {
				t.Fatal("app 2 refused for app 1's rate")
			}
			rel2()
			for _, rel := range rels {
				rel()
				rel() // idempotent
			}
			if used := br.usage(1); used != 0 || len(br.apps) != 0 {
				t.Fatalf("after all: used %v, %d apps kept", used, len(br.apps))
			}
			// Once the running ones ended, every refused one fits.
			for i, w := range tc.wants {
				if tc.run[i] {
					continue
				}
				rel, ok := br.tryAcquire(1, w, 100)
				if !ok {
					t.Fatalf("task %d still refused after the others ended", i)
				}
				rel()
			}
		})
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
		used := e.svc.bcastRates.usage(1)
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
		return e.svc.bcastRates.usage(1) == 1000
	})
	close(block)
	waitJob(t, e, j3, key1)
	waitJob(t, e, j4, key1)
}
