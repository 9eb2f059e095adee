package room

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/push"
)

// Session ends for the store's broadcast cursors (Saver.Checkpoint): a
// broadcast ACK lives in the saver's hot copy (Redis) only, and reaches its
// durable copy (MySQL) when the session ends, as one row per (uid, app)
// whatever the number of broadcasts ACKed. Each loop notes the (uid, bound
// apps) of the sessions that end on it, on the loop without a lock, beside
// its sent notes (sentLog.ends), and its sweep hands them to the store in
// one call per tick. An app unbound or kicked off a session that goes on
// ends there too (connState.removeApp). A session held for the reconnect
// window ends when the hold expires or is kicked (holds.ends, reported by
// the tick), not when a new login takes it over. Shutdown reports the ends
// of the sessions it closes before it unregisters them.
//
// A report carries at most maxCheckpointEnds ends; what a loop noted
// beyond waits for its next ticks, and the ends of a report the store
// failed (or the pool refused) are given back and go with the next one.
// Both waits are bounded (maxEndsQueued): what is dropped past them costs
// nothing now: the hot copy keeps the ACKs, and only a loss of it as well
// brings those broadcasts back, once (docs/storage.md "Recovery").

const (
	// maxCheckpointEnds bounds the session ends of one report (one
	// Saver.Checkpoint call).
	maxCheckpointEnds = 16384
	// maxEndsQueued bounds the ends one loop (or the held sessions) keeps
	// waiting for its reports, and those kept for a retry after a failed
	// report; past it ends are dropped and counted. A mass logout (a room
	// restart, a network cut) of 64k sessions per loop thus reaches the
	// store over four ticks instead of being dropped.
	maxEndsQueued = 4 * maxCheckpointEnds
)

var mCheckpointsDropped = promauto.NewCounter(prometheus.CounterOpts{
	Name: "lcpush_room_checkpoints_dropped_total",
	Help: "Session ends not reported to the store for its broadcast cursors (past the bound of those waiting for a report or a retry, or failing at shutdown): their ACKs stay in the hot store only.",
})

var mCheckpointRetries = promauto.NewCounter(prometheus.CounterOpts{
	Name: "lcpush_room_checkpoint_retries_total",
	Help: "Session ends given back for the next report because the store failed or the worker pool was full.",
})

// endLog is a batch of session ends; its owner serialises access (a loop,
// or holds.mu).
type endLog struct {
	ends []push.SessionEnd
	all  bool // Shutdown: keep every end, the bound no longer applies
}

// note records that uid's session ended with apps bound; apps must never
// be modified afterwards (a connection's copy-on-write set).
func (l *endLog) note(uid string, apps []uint32) {
	if len(apps) == 0 {
		return
	}
	if len(l.ends) >= maxEndsQueued && !l.all {
		mCheckpointsDropped.Inc()
		return
	}
	l.ends = append(l.ends, push.SessionEnd{UID: uid, Apps: apps})
}

// endPool recycles the ends' slices between a loop and the worker that
// reports them (the sent notes keep theirs on the loop: sentLog.free).
var endPool = sync.Pool{New: func() any { return new([]push.SessionEnd) }}

// take returns the oldest ends, at most maxCheckpointEnds of them unless
// all is set, nil when none; give the slice back with putEnds.
func (l *endLog) take() *[]push.SessionEnd {
	if len(l.ends) == 0 {
		return nil
	}
	p := endPool.Get().(*[]push.SessionEnd)
	rest, out := (*p)[:0], l.ends
	if len(out) > maxCheckpointEnds && !l.all { // the rest waits for the next report
		rest = append(rest, out[maxCheckpointEnds:]...)
		clear(out[maxCheckpointEnds:])
		out = out[:maxCheckpointEnds]
	}
	l.ends, *p = rest, out
	return p
}

// endRetry keeps the ends of failed reports for the next one.
type endRetry struct {
	mu     sync.Mutex
	log    endLog
	closed bool // Shutdown took the last of them: no report follows
}

// give keeps ends for a retry, within maxEndsQueued; after Shutdown's last
// take they are dropped and counted.
func (e *endRetry) give(ends []push.SessionEnd) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		mCheckpointsDropped.Add(float64(len(ends)))
		return
	}
	for _, x := range ends {
		e.log.note(x.UID, x.Apps)
	}
}

// take returns ends to report again (as endLog.take), nil when none; all
// is Shutdown's last take.
func (e *endRetry) take(all bool) *[]push.SessionEnd {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log.all = all
	e.closed = e.closed || all
	defer func() { e.log.all = false }()
	return e.log.take()
}

func putEnds(p *[]push.SessionEnd) {
	clear(*p) // drop the uid strings
	*p = (*p)[:0]
	endPool.Put(p)
}

// reportCheckpoints hands the loop's session ends to the store (sweep,
// loop only).
func (r *Room) reportCheckpoints(l *loopState) {
	r.reportEnds(l.sent.ends.take())
	r.reportEnds(r.endRetry.take(false))
}

// reportEnds makes one Saver.Checkpoint of p on a worker, then recycles p.
func (r *Room) reportEnds(p *[]push.SessionEnd) {
	if p == nil {
		return
	}
	if !r.submit(func() {
		defer putEnds(p)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := r.deps.Saver.Checkpoint(ctx, *p); err != nil {
			mCheckpointRetries.Add(float64(len(*p)))
			r.endRetry.give(*p)
			r.log.Debug("session ends not checkpointed, kept for the next report", "ends", len(*p), "err", err)
		}
	}) {
		mCheckpointRetries.Add(float64(len(*p)))
		r.endRetry.give(*p)
		putEnds(p)
	}
}

// checkpointAll reports ends at shutdown, on the caller's goroutine, in
// calls of at most maxCheckpointEnds, bounded by ctx.
func (r *Room) checkpointAll(ctx context.Context, ends []push.SessionEnd) {
	for len(ends) > 0 {
		n := min(len(ends), maxCheckpointEnds)
		if err := ctx.Err(); err != nil {
			mCheckpointsDropped.Add(float64(len(ends)))
			return
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := r.deps.Saver.Checkpoint(cctx, ends[:n])
		cancel()
		if err != nil {
			mCheckpointsDropped.Add(float64(n))
			r.log.Warn("session ends not checkpointed at shutdown", "ends", n, "err", err)
		}
		ends = ends[n:]
	}
}
