package room

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestLingerDelay(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		name           string
		bound, lastDur time.Duration
		lastN, queued  int
		gap, age       time.Duration
		hasPrev        bool
		want           time.Duration
	}{
		{"off", 0, 10 * ms, 4, 4, 10 * time.Microsecond, 0, true, 0},
		{"nothing queued", 2 * ms, 10 * ms, 4, 0, 10 * time.Microsecond, 0, true, 0},
		{"first batch ever", 2 * ms, 10 * ms, 4, 1, 0, 0, false, 0},
		{"after idle: gap of a bound", 2 * ms, 10 * ms, 4, 3, 2 * ms, 0, true, 0},
		{"keeps up one by one", 2 * ms, 100 * time.Microsecond, 1, 1, ms, 0, true, 0},
		{"queue holds two", 2 * ms, 10 * ms, 1, 2, ms, 0, true, 2 * ms},
		{"flush slower than arrivals", 2 * ms, 10 * ms, 1, 1, ms, 0, true, 2 * ms},
		{"previous flush coalesced", 2 * ms, 10 * ms, 3, 1, ms, 0, true, 2 * ms},
		{"age counts", 2 * ms, 10 * ms, 3, 1, ms, 500 * time.Microsecond, true, 1500 * time.Microsecond},
		{"bounded by the last flush", 2 * ms, ms, 3, 2, 10 * time.Microsecond, 0, true, ms},
		{"cheap flushes: not worth a timer", 2 * ms, 20 * time.Microsecond, 3, 5, 10 * time.Microsecond, 0, true, 0},
		{"waited the bound already", 2 * ms, 10 * ms, 3, 5, 10 * time.Microsecond, 2 * ms, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := lingerDelay(tc.bound, tc.lastDur, tc.lastN, tc.queued, tc.gap, tc.age, tc.hasPrev)
			if got != tc.want {
				t.Fatalf("lingerDelay = %v, want %v", got, tc.want)
			}
			if got > tc.bound {
				t.Fatalf("lingerDelay %v beyond the bound %v", got, tc.bound)
			}
		})
	}
}

func histValue(t *testing.T) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := mFlushBatches.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func lingerHist(t *testing.T) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := mLinger.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// onLoopOf runs f on the loop that holds uid's connection.
func onLoopOf(t *testing.T, r *Room, uid string, f func(l *loopState)) {
	t.Helper()
	found := false
	r.onLoops(t.Context(), func(l *loopState) {
		l.each(func(s *connState) {
			if s.uid == uid && !found {
				found = true
				f(l)
			}
		})
	})
	if !found {
		t.Fatalf("no connection of %s", uid)
	}
}

// Under load (the loop's previous flush was slow and carried several
// batches, and batches arrive back to back), the flush waits for more, up
// to room.linger: pushes queued before and during the wait go out in one
// flush, in order, with a delay within the bound.
func TestLingerCoalescesUnderLoad(t *testing.T) {
	for _, kind := range []string{"unicast", "broadcast"} {
		t.Run(kind, func(t *testing.T) {
			bound := 40 * time.Millisecond
			e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.Linger = &bound }})
			c, _ := e.login(1, "u")
			onLoopOf(t, e.room, "u", func(l *loopState) {
				l.push.ls.lastDur, l.push.ls.lastN = time.Second, 4 // a heavy flush just before
			})
			send := func(id uint64) {
				msg := push.Message{ID: id, App: 1, Payload: []byte(fmt.Sprint("m", id))}
				if kind == "unicast" {
					if n, err := e.room.Push(t.Context(), msg, []push.Target{{UID: "u"}}); err != nil || n != 1 {
						t.Fatalf("Push = %d, %v", n, err)
					}
					return
				}
				msg.Broadcast = true
				_ = goBroadcast(t.Context(), e.room, msg, 0)
			}
			lingered := counterValue(mFlushLingered)
			lc, _ := lingerHist(t)
			release := holdLoops(t, e.room)
			for id := range uint64(2) {
				send(id + 1)
				if kind == "broadcast" { // queued, in order, while the loops are held
					waitQueued(t, e.room, int(id+1))
				}
			}
			start := time.Now()
			close(release)
			send(3) // lands while the flush lingers (or, at worst, in a flush of its own)
			for want := uint64(1); want <= 3; want++ {
				if id, _, _ := c.ExpectPush(); id != want {
					t.Fatalf("push %d, want %d", id, want)
				}
			}
			took := time.Since(start)
			if d := counterValue(mFlushLingered) - lingered; d < 1 {
				t.Fatalf("lingered flushes +%v, want at least 1", d)
			}
			n, sum := lingerHist(t)
			if n == lc {
				t.Fatal("no linger delay observed")
			}
			// The delay the linger added is at most the bound (plus the
			// timer's and a loaded machine's slack).
			if per := time.Duration(sum * 1e9 / float64(n)); per > bound+25*time.Millisecond {
				t.Fatalf("linger delays average %v, bound %v", per, bound)
			}
			if took < bound/2 {
				t.Fatalf("pushes out after %v: the flush did not wait (bound %v)", took, bound)
			}
			c.ExpectQuiet(0)
		})
	}
}

// waitQueued waits until every loop holds want app-wide batches queued.
func waitQueued(t *testing.T, r *Room, want int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%d broadcasts queued on every loop", want), 5*time.Second, func() bool {
		for _, l := range r.allLoops() {
			n := 0
			l.push.mu.Lock()
			for _, b := range l.push.q {
				if b.all {
					n++
				}
			}
			l.push.mu.Unlock()
			if n < want {
				return false
			}
		}
		return true
	})
}

// An idle loop writes at once: the first push ever, and one after a pause
// of a bound or more, even right after a heavy flush; with room.linger 0s
// nothing ever waits.
func TestLingerIdleWritesAtOnce(t *testing.T) {
	bound := 50 * time.Millisecond
	off := time.Duration(0)
	cases := []struct {
		name  string
		bound *time.Duration
		prev  bool // an arrival a bound ago, after a heavy flush
		burst bool // two pushes queued back to back behind held loops
	}{
		{"first push", &bound, false, false},
		{"after a pause", &bound, true, false},
		{"off under load", &off, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.Linger = tc.bound }})
			c, _ := e.login(1, "u")
			onLoopOf(t, e.room, "u", func(l *loopState) {
				l.push.ls.lastDur, l.push.ls.lastN = time.Second, 4
				if tc.prev {
					l.push.mu.Lock()
					l.push.ls.lastAt = e.room.now() - int64(bound)
					l.push.mu.Unlock()
				}
			})
			lingered := counterValue(mFlushLingered)
			var release chan struct{}
			if tc.burst {
				release = holdLoops(t, e.room)
			}
			ids := []uint64{1}
			if tc.burst {
				ids = append(ids, 2)
			}
			start := time.Now()
			for _, id := range ids {
				if n, err := e.room.Push(context.Background(), push.Message{ID: id, App: 1, Payload: []byte("x")}, []push.Target{{UID: "u"}}); err != nil || n != 1 {
					t.Fatalf("Push = %d, %v", n, err)
				}
			}
			if release != nil {
				close(release)
			}
			for _, want := range ids {
				if id, _, _ := c.ExpectPush(); id != want {
					t.Fatalf("push %d, want %d", id, want)
				}
			}
			if d := counterValue(mFlushLingered) - lingered; d != 0 {
				t.Fatalf("lingered flushes +%v after %v, want none", d, time.Since(start))
			}
		})
	}
}

// BenchmarkFlushRun is BenchmarkFlushDeliver through the flush task: the
// linger decision, the flush's bookkeeping and metrics, then an app-wide
// batch written to 1,000 connections. It must not allocate.
func BenchmarkFlushRun(b *testing.B) {
	r := benchRoom(b)
	l := &loopState{}
	l.flusher = &pushFlush{r: r, l: l}
	apps := []uint32{1}
	for range 1000 {
		s := benchConn(&memConn{}, l)
		s.state = stAuthed
		s.apps.Store(&apps)
		l.link(s)
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		bt := batchPool.Get().(*pushBatch)
		bt.msg, bt.all = push.Message{ID: 1, App: 1, Payload: payload}, true
		pq := &l.push
		pq.mu.Lock()
		// An arrival after a pause: the decision runs and says "at once"
		// (a linger would need the loop's gnet engine for its timer).
		pq.ls.lastAt = r.now() - int64(time.Second)
		pq.ls.noteArrival(r.now(), true)
		pq.q = append(pq.q, bt)
		pq.mu.Unlock()
		pq.scheduled.Store(true)
		if err := l.flusher.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
