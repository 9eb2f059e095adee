package room

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/time/rate"

	"github.com/lcpush/lcpush/pkg/push"
)

// burstWindow is how much of a broadcast's rate one step may deliver: a
// room whose connections fit in it gets the message in one app-wide batch
// per loop; a larger one is paced in steps of rate*burstWindow connections.
const burstWindow = 0.05 // seconds

// bcastWait collects the outcome of one Broadcast: the frames written by its
// batches and the moment the last of them is released.
type bcastWait struct {
	sent atomic.Int64
	refs atomic.Int64 // batches not yet released, +1 for the caller
	ch   chan struct{}
}

func newBcastWait() *bcastWait {
	w := new(bcastWait)
	w.init()
	return w
}

func (w *bcastWait) init() {
	w.ch = make(chan struct{})
	w.refs.Store(1)
}

func (w *bcastWait) hold() { w.refs.Add(1) }

func (w *bcastWait) done(sent int) {
	w.sent.Add(int64(sent))
	if w.refs.Add(-1) == 0 {
		close(w.ch)
	}
}

// wait drops the caller's reference and waits until every batch is written
// or dropped (or ctx ends); it returns the frames written.
func (w *bcastWait) wait(ctx context.Context) (int, error) {
	w.done(0)
	select {
	case <-w.ch:
		return int(w.sent.Load()), nil
	case <-ctx.Done():
		return int(w.sent.Load()), ctx.Err()
	}
}

// Broadcast delivers msg to every connection here that has msg.App bound,
// at most perSec connections per second (<= 0, NaN or +Inf: no pacing), and
// returns how many got it once their frames are written (or dropped). Unlike
// Push it needs no target list: the room walks its own connections, so an
// app-wide broadcast costs the platform no register scan. A connection that
// authenticates while it runs may get the message both live and from the
// store (at-least-once; clients drop duplicate msg ids).
//
// The delivery is a task the room owns, one per msg.ID (bcasttask.go), so
// that a sub-task resumed by another center never writes the message twice:
//   - the first call starts it, bounded by ctx's deadline (none: one hour)
//     or msg.Expire, whichever is sooner, and waits for it;
//   - a caller whose ctx ends first (its center died, its RPC connection
//     dropped) gets the count so far and ctx's error, and the task goes on;
//   - a call for a running task joins it (its perSec is ignored) and returns
//     the task's count; one for a finished task returns that count (and
//     error) at once, until deadline + 10 minutes;
//   - with maxBcastTasks tasks running, it fails with ErrBroadcastsFull
//     (push.ErrUnavailable).
//
// When a task starts, it reports the connections it found (Targets) to the
// delivery status, once.
func (r *Room) Broadcast(ctx context.Context, msg push.Message, perSec float64) (int, error) {
	if r.isClosing() {
		return 0, fmt.Errorf("room broadcast: %w", push.ErrClosed)
	}
	if err := ctx.Err(); err != nil { // a caller already gone starts nothing
		return 0, fmt.Errorf("room broadcast: %w", err)
	}
	t, how, err := r.bcastTask(ctx, msg, perSec)
	if c := mBcastCallsBy[how]; c != nil {
		c.Inc()
	}
	if err != nil {
		return 0, fmt.Errorf("room broadcast %d: %w", msg.ID, err)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		select {
		case <-t.done: // both: the outcome is the better answer
		default:
			return int(t.w.sent.Load()), fmt.Errorf("room broadcast: %w", ctx.Err())
		}
	}
	if t.err != nil {
		return t.n, fmt.Errorf("room broadcast: %w", t.err)
	}
	return t.n, nil
}

// runBcast is a task's delivery, under the task's ctx; w counts its writes.
func (r *Room) runBcast(ctx context.Context, msg push.Message, perSec float64, w *bcastWait) (int, error) {
	if err := ctx.Err(); err != nil { // expired before it began
		return 0, err
	}
	var err error
	if !(perSec > 0) || math.IsInf(perSec, 1) || float64(r.onl.Load()) <= perSec*burstWindow {
		r.broadcastAll(msg, w)
	} else {
		err = r.broadcastPaced(ctx, msg, perSec, w)
	}
	n, werr := w.wait(ctx)
	if err == nil {
		err = werr
	}
	return n, err
}

// broadcastAll queues one app-wide batch per loop: the flush walks the
// loop's connections, with no per-connection bookkeeping before. Each loop
// then counts its targets in a walk of its own, after the flush queued
// here when the loop was idle.
func (r *Room) broadcastAll(msg push.Message, w *bcastWait) {
	for _, l := range r.allLoops() {
		b := batchPool.Get().(*pushBatch)
		b.msg, b.all, b.wide, b.wait = msg, true, true, w
		w.hold()
		if l.admit(b) {
			r.enqueue(l, b)
		}
		// A loop that no longer runs tasks has no connection left to count.
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			n := 0
			l.each(func(s *connState) {
				if s.state == stAuthed && s.hasApp(msg.App) {
					n++
				}
			})
			l.sent.target(&msg, int64(n))
			return nil
		}))
	}
}

// broadcastPaced snapshots, per loop, the connections that have msg.App
// bound, then hands them to their loops in steps of perSec*burstWindow,
// taking the loops in turn so that they work side by side.
func (r *Room) broadcastPaced(ctx context.Context, msg push.Message, perSec float64, w *bcastWait) error {
	loops := r.allLoops()
	snap := make([][]*connState, len(loops))
	at := make([]uint64, len(loops)) // each loop's cover counter at its snapshot (cover.go)
	r.onLoops(ctx, func(l *loopState) {
		var ss []*connState
		var had map[uint64]struct{}
		if msg.QoS == push.QoS1 {
			had = l.cover.takeLoaded(msg.ID)
		}
		l.each(func(s *connState) {
			if _, got := had[s.id]; !got && s.state == stAuthed && s.hasApp(msg.App) {
				ss = append(ss, s)
			}
		})
		if l.idx < len(snap) { // a loop born after allLoops has no connection to miss
			snap[l.idx] = ss // each loop writes its own slot
			at[l.idx] = l.cover.seq
			l.sent.target(&msg, int64(len(ss)))
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	step := max(1, int(perSec*burstWindow))
	pace := rate.NewLimiter(rate.Limit(perSec), step)
	for left := true; left; {
		left = false
		for i, ss := range snap {
			if len(ss) == 0 {
				continue
			}
			n := min(step, len(ss))
			if err := pace.WaitN(ctx, n); err != nil {
				if ctx.Err() == nil { // the limiter saw the deadline coming
					return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
				}
				return err
			}
			b := batchPool.Get().(*pushBatch)
			b.msg, b.wait = msg, w
			b.conns = append(b.conns, ss[:n]...)
			if n == len(ss) && msg.QoS == push.QoS1 {
				// The loop's last step: once written, every connection
				// of the snapshot had it, and loads skip it for them.
				b.coverAt = at[i] + 1
			}
			w.hold()
			if l := loops[i]; l.admit(b) {
				r.enqueue(l, b)
			}
			snap[i] = ss[n:]
			left = left || len(snap[i]) > 0
		}
	}
	return nil
}
