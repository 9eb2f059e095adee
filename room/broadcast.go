package room

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

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
	w := &bcastWait{ch: make(chan struct{})}
	w.refs.Store(1)
	return w
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
// at most perSec connections per second (<= 0, NaN or +Inf: no pacing), and returns how
// many got it once their frames are written (or dropped). Unlike Push it
// needs no target list: the room walks its own connections, so an app-wide
// broadcast costs the platform no register scan. A connection that
// authenticates while it runs may get the message both live and from the
// store (at-least-once; clients drop duplicate msg ids).
func (r *Room) Broadcast(ctx context.Context, msg push.Message, perSec float64) (int, error) {
	if r.isClosing() {
		return 0, fmt.Errorf("room broadcast: %w", push.ErrClosed)
	}
	w := newBcastWait()
	var err error
	if !(perSec > 0) || math.IsInf(perSec, 1) || float64(r.onl.Load()) <= perSec*burstWindow {
		for _, l := range r.allLoops() {
			b := batchPool.Get().(*pushBatch)
			b.msg, b.all, b.wide, b.wait = msg, true, true, w
			w.hold()
			if l.admit(b) {
				r.enqueue(l, b)
			}
		}
	} else {
		err = r.broadcastPaced(ctx, msg, perSec, w)
	}
	n, werr := w.wait(ctx)
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, fmt.Errorf("room broadcast: %w", err)
	}
	return n, nil
}

// broadcastPaced snapshots, per loop, the connections that have msg.App
// bound, then hands them to their loops in steps of perSec*burstWindow,
// taking the loops in turn so that they work side by side.
func (r *Room) broadcastPaced(ctx context.Context, msg push.Message, perSec float64, w *bcastWait) error {
	loops := r.allLoops()
	snap := make([][]*connState, len(loops))
	r.onLoops(ctx, func(l *loopState) {
		var ss []*connState
		l.each(func(s *connState) {
			if s.state == stAuthed && s.hasApp(msg.App) {
				ss = append(ss, s)
			}
		})
		if l.idx < len(snap) { // a loop born after allLoops has no connection to miss
			snap[l.idx] = ss // each loop writes its own slot
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
