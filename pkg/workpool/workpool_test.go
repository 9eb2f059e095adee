package workpool

import (
	"github.com/lcpush/lcpush/internal/testkit"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrySubmitFull(t *testing.T) {
	tests := []struct {
		name           string
		workers, queue int
	}{
		{"one worker one slot", 1, 1},
		{"two workers four slots", 2, 4},
		{"unbuffered", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(tt.workers, tt.queue)
			release := make(chan struct{})
			var started atomic.Int32
			block := func() { started.Add(1); <-release }
			for i := 0; i < tt.workers; i++ {
				testkit.WaitFor(t, "an idle worker", 5*time.Second, func() bool { return p.TrySubmit(block) })
			}
			testkit.WaitFor(t, "every worker busy", 5*time.Second, func() bool { return started.Load() == int32(tt.workers) })
			for i := 0; i < tt.queue; i++ {
				if !p.TrySubmit(func() {}) {
					t.Fatalf("submit %d of %d queue slots refused", i+1, tt.queue)
				}
			}
			if p.Len() != tt.queue {
				t.Fatalf("Len = %d; want %d", p.Len(), tt.queue)
			}
			if p.TrySubmit(func() {}) {
				t.Fatal("TrySubmit accepted a task with every worker busy and the queue full")
			}
			close(release)
			testkit.WaitFor(t, "queue drained", 5*time.Second, func() bool { return p.Len() == 0 })
			p.Close()
		})
	}
}

func TestCloseRunsQueuedAndWaits(t *testing.T) {
	p := New(2, 100)
	var ran atomic.Int32
	for i := 0; i < 100; i++ {
		if !p.TrySubmit(func() { time.Sleep(100 * time.Microsecond); ran.Add(1) }) {
			t.Fatalf("task %d refused", i)
		}
	}
	p.Close()
	if got := ran.Load(); got != 100 {
		t.Fatalf("Close returned after %d of 100 tasks", got)
	}
	if p.TrySubmit(func() {}) {
		t.Fatal("TrySubmit accepted after Close")
	}
	p.Close() // idempotent
}

func TestNormalizesArguments(t *testing.T) {
	p := New(0, -5)
	done := make(chan struct{})
	testkit.WaitFor(t, "a worker", 5*time.Second, func() bool { return p.TrySubmit(func() { close(done) }) })
	<-done
	p.Close()
}

func TestSubmitDuringClose(t *testing.T) {
	p := New(4, 16)
	stop := make(chan struct{})
	var submitted atomic.Int32
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				if p.TrySubmit(func() {}) {
					submitted.Add(1)
				}
			}
		}
	}()
	testkit.WaitFor(t, "some submissions", 5*time.Second, func() bool { return submitted.Load() > 10 })
	p.Close() // must not panic with a send on a closed channel
	close(stop)
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 10; i++ {
		p := New(8, 8)
		for j := 0; j < 8; j++ {
			p.TrySubmit(func() {})
		}
		p.Close()
	}
	testkit.WaitFor(t, "workers to exit", 5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}

func BenchmarkTrySubmit(b *testing.B) {
	p := New(runtime.NumCPU(), 1024)
	defer p.Close()
	f := func() {}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.TrySubmit(f)
		}
	})
}
