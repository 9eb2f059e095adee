package room

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Adaptive linger (issue 16). The flush writes everything queued at one
// loop wake-up (write.go), but a stream of broadcasts whose jobs arrive
// one by one, each a little after the loop began its previous flush,
// still finds one message per wake-up: every delivery its own write. So
// when pushes arrive faster than the loop flushes them one by one, the
// flush waits a little (the linger) for the next ones, and each connection
// gets them all in one write or writev.
//
// The loop is under load when the latest two arrivals came closer together
// than the linger bound (room.linger, 10ms by default) and
//   - more than one batch is queued, or
//   - the previous flush took longer than the gap between those arrivals,
//     or carried more than one batch.
//
// An idle loop writes at once: the first batch after a gap of a bound or
// more never waits. The wait is at most the bound and at most the previous
// flush's duration (a loop whose flushes are cheap, say a few unicasts,
// has nothing to save by waiting), counted from the arrival of the oldest
// queued batch; waits shorter than minLinger are not made (a timer cannot
// keep them). It applies to every batch alike: app-wide broadcasts of
// several jobs, paced broadcast steps and unicast pushes.
//
// The wait is one timer per loop, made once and re-armed (no goroutine of
// its own: the runtime's timer calls Execute, which runs the flush on the
// loop); while it runs, the flush stays scheduled, so enqueue adds to the
// queue without waking the loop.

// minLinger is the shortest wait worth a timer.
const minLinger = 100 * time.Microsecond

var (
	mLinger = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "lcpush_room_flush_linger_seconds",
		Help:    "Delay the adaptive linger added to a flush: from the moment it chose to wait to the flush (flushes that lingered only; room.linger bounds the wait asked, a busy loop or a late timer add to it).",
		Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05},
	})
	mFlushBatches = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "lcpush_room_flush_batches",
		Help:    "Push batches (one message, or one step of a broadcast, for one loop) written by one loop flush.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	mFlushLingered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_flush_lingered_total",
		Help: "Loop flushes that waited for more batches (adaptive linger).",
	})
)

// lingerState is a loop's linger bookkeeping (part of pushQueue).
type lingerState struct {
	// Guarded by pushQueue.mu (enqueue).
	firstAt int64 // arrival of the oldest queued batch (Room.now)
	lastAt  int64 // arrival of the latest batch
	prevAt  int64 // arrival of the one before it

	// Loop only.
	lastDur   time.Duration // how long the previous flush took
	lastN     int           // batches it wrote
	lingering bool          // Run armed the timer: its next call flushes
	armedAt   int64         // when it did (Room.now)
	timer     *time.Timer   // made once, re-armed per linger
}

// noteArrival records a batch's arrival (pushQueue.mu held).
func (ls *lingerState) noteArrival(now int64, empty bool) {
	if empty {
		ls.firstAt = now
	}
	ls.prevAt, ls.lastAt = ls.lastAt, now
}

// lingerDelay is the linger decision: how long a flush should still wait,
// 0 for at once. bound is room.linger; lastDur and lastN describe the
// previous flush; queued is the batches waiting, gap the time between the
// two latest arrivals (hasPrev: there were two), age how long the oldest
// has waited.
func lingerDelay(bound, lastDur time.Duration, lastN, queued int, gap, age time.Duration, hasPrev bool) time.Duration {
	if bound <= 0 || queued == 0 || !hasPrev || gap >= bound {
		return 0 // off, nothing queued, or the loop was idle
	}
	if queued < 2 && gap >= lastDur && lastN < 2 {
		return 0 // the loop keeps up one by one
	}
	d := min(bound, lastDur) - age
	if d < minLinger {
		return 0
	}
	return d
}

// lingerFor returns how long l's flush should wait (loop only).
func (r *Room) lingerFor(l *loopState) time.Duration {
	pq := &l.push
	bound := r.deps.Config.Load().Room.LingerBound()
	if bound <= 0 {
		return 0
	}
	pq.mu.Lock()
	first, last, prev, n := pq.ls.firstAt, pq.ls.lastAt, pq.ls.prevAt, len(pq.q)
	pq.mu.Unlock()
	now := r.now()
	return lingerDelay(bound, pq.ls.lastDur, pq.ls.lastN, n, time.Duration(last-prev), time.Duration(now-first), prev > 0)
}

// armLinger has l's flush run again after d (loop only); the flush stays
// scheduled meanwhile.
func (r *Room) armLinger(l *loopState, d time.Duration) {
	pq := &l.push
	pq.ls.lingering, pq.ls.armedAt = true, r.now()
	if pq.ls.timer == nil {
		pq.ls.timer = time.AfterFunc(d, func() { r.lingerDone(l) })
		return
	}
	pq.ls.timer.Reset(d)
}

// lingerDone runs on the timer: it queues the flush on the loop, or, when
// the loop no longer runs tasks (shutdown), drops the queue as enqueue
// does.
func (r *Room) lingerDone(l *loopState) {
	if err := l.el.Execute(context.Background(), l.flusher); err != nil {
		r.dropQueued(l)
	}
}

// dropQueued releases every queued batch of l and clears its schedule (the
// loop no longer runs tasks).
func (r *Room) dropQueued(l *loopState) {
	pq := &l.push
	pq.scheduled.Store(false)
	pq.mu.Lock()
	q := pq.q
	pq.q = nil
	pq.mu.Unlock()
	for _, x := range q {
		l.backlog.Add(-x.cost)
		x.release()
	}
}
