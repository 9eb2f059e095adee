package room

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast tasks. A broadcast sub-task is claimed by a center, which calls
// Broadcast; when that center dies mid-call, another one claims the
// sub-task after its lease lapses and calls again for the same message.
// So the room, not the caller, owns each delivery: one task per message id,
// which outlives its caller, is joined by a later call while it runs, and
// answers later calls with its count once finished: a repeated call writes
// the message to no connection again while the table holds its task (until
// the task's deadline plus bcastKeep, or its eviction from a full table).

const (
	// maxBcastTasks bounds the running tasks of the table.
	maxBcastTasks = 1024
	// maxBcastFinished bounds its finished tasks: each is kept at least
	// bcastMinKeep, so this bounds the broadcasts a room takes per
	// bcastMinKeep (65,536 per 30 s: 2,184/s sustained, any burst of up
	// to 65,536 broadcasts), at about 170 B each once finished (the
	// compact copy of finish; 11 MiB when full, as 32,768 full tasks
	// of ~400 B were).
	maxBcastFinished = 1 << 16
	// bcastKeep is how long after its deadline a finished task still
	// answers: a resume arrives only after the dead center's lease lapsed.
	bcastKeep = 10 * time.Minute
	// bcastMinKeep is how long a finished task is kept even in a full
	// table: a resume comes after the dead caller's lease lapsed, and a
	// task evicted before it would be delivered again. The center's lease
	// is 6 s, renewed every 2 s, and the board is scanned every 100 ms: a
	// resume comes at most ~7 s after the task finished, a quarter of
	// this. (It was 2 minutes with half the table: a stream of more than
	// 273 broadcasts/s was refused after two minutes.)
	bcastMinKeep = 30 * time.Second
	// maxBcastRun bounds a task whose caller set no deadline; it is
	// remote.MaxBroadcastCall, the bound of the RPC call (a test checks).
	maxBcastRun = time.Hour
)

// ErrBroadcastsFull means maxBcastTasks broadcasts are running here, or
// maxBcastFinished finished ones are all too young to evict: the call is
// refused, and may be retried later.
var ErrBroadcastsFull = fmt.Errorf("room: broadcast task table full (%d running, or %d finished that a resume may still ask for): %w",
	maxBcastTasks, maxBcastFinished, push.ErrUnavailable)

// Results of a Broadcast call (lcpush_room_broadcast_calls_total).
const (
	callStarted  = "started"
	callJoined   = "joined"
	callFinished = "finished"
	callRefused  = "refused"
)

// bcastTask is one message's delivery by this room.
type bcastTask struct {
	id   uint64
	w    bcastWait // frames written so far (the count a leaving caller gets)
	keep time.Time // a finished task is kept until then (deadline + bcastKeep)
	at   time.Time // when it finished (guarded by bcastTasks.mu)
	done chan struct{}

	// Set before done is closed, read after it.
	n   int
	err error

	// Guarded by bcastTasks.mu.
	over bool
	gone bool // left the table
}

// bcastTasks is the room's task table. Its goroutines run under ctx, which
// stopBcasts cancels (room shutdown).
type bcastTasks struct {
	mu      sync.Mutex
	m       map[uint64]*bcastTask
	fin     []*bcastTask // finished tasks, oldest first (some maybe gone)
	running int
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// bcastDeadline is the end of a task: the caller's deadline (maxBcastRun
// when it has none) or the message's expiry, whichever is sooner.
func bcastDeadline(ctx context.Context, msg *push.Message, now time.Time) time.Time {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = now.Add(maxBcastRun)
	}
	if msg.Expire != 0 {
		if e := time.Unix(msg.Expire, 0); e.Before(dl) {
			dl = e
		}
	}
	return dl
}

// bcastTask returns msg's task, starting it when the room has none (or
// only one past its keep time), and how the call was answered.
func (r *Room) bcastTask(ctx context.Context, msg push.Message, perSec float64) (*bcastTask, string, error) {
	ts := &r.bcasts
	now := time.Now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.stopped {
		return nil, "", push.ErrClosed
	}
	if ts.m == nil {
		ts.m = make(map[uint64]*bcastTask)
		ts.ctx, ts.cancel = context.WithCancel(context.Background())
	}
	if t := ts.m[msg.ID]; t != nil {
		switch {
		case !t.over:
			return t, callJoined, nil
		case now.Before(t.keep):
			return t, callFinished, nil
		}
		ts.drop(t)
	}
	if !ts.evict(now) {
		return nil, callRefused, ErrBroadcastsFull
	}
	dl := bcastDeadline(ctx, &msg, now)
	t := &bcastTask{id: msg.ID, keep: dl.Add(bcastKeep), done: make(chan struct{})}
	t.w.init()
	ts.m[msg.ID] = t
	ts.running++
	mBcastRunning.Inc()
	tctx, cancel := context.WithDeadline(ts.ctx, dl)
	ts.wg.Add(1) // under mu, before stop can have seen stopped
	go func() {
		defer ts.wg.Done()
		defer cancel()
		n, err := r.runBcast(tctx, msg, perSec, &t.w)
		ts.finish(t, n, err)
	}()
	return t, callStarted, nil
}

// finish records t's outcome and wakes its callers.
func (ts *bcastTasks) finish(t *bcastTask, n int, err error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t.n, t.err, t.over, t.at = n, err, true, time.Now()
	ts.running--
	mBcastRunning.Dec()
	mBcastFinished.Inc()
	close(t.done)
	// The table keeps a compact copy: no channels of its own (170 B
	// with its map entry, against ~400). Callers that joined t keep t
	// until they have read it.
	f := &bcastTask{id: t.id, keep: t.keep, at: t.at, done: closedDone, n: n, err: err, over: true}
	f.w.sent.Store(t.w.sent.Load())
	if ts.m[t.id] == t {
		ts.m[t.id] = f
		t = f
	}
	ts.fin = append(ts.fin, t)
}

// closedDone is the done channel of every compact finished task.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// drop removes the finished task t (mu held).
func (ts *bcastTasks) drop(t *bcastTask) {
	delete(ts.m, t.id)
	t.gone = true
	mBcastFinished.Dec()
}

// evict makes room in a full table (mu held) by dropping the tasks that
// finished first, but none that finished less than bcastMinKeep ago (a
// resume may still come for it); false when no room could be made. The
// oldest finished ones past their keep time go at any call, so that they
// do not linger.
func (ts *bcastTasks) evict(now time.Time) bool {
	for len(ts.fin) > 0 {
		t := ts.fin[0]
		full := len(ts.m)-ts.running >= maxBcastFinished
		if !t.gone && now.Before(t.keep) && (!full || now.Sub(t.at) < bcastMinKeep) {
			break
		}
		ts.fin[0] = nil
		ts.fin = ts.fin[1:]
		if !t.gone {
			ts.drop(t)
		}
	}
	if len(ts.fin) == 0 && cap(ts.fin) > 1024 {
		ts.fin = nil // the slice's head moved on: give back its array
	}
	return ts.running < maxBcastTasks && len(ts.m)-ts.running < maxBcastFinished
}

// stopBcasts cancels the running broadcast tasks and waits for their
// goroutines (bounded by ctx); no task starts afterwards (Shutdown).
func (r *Room) stopBcasts(ctx context.Context) {
	ts := &r.bcasts
	ts.mu.Lock()
	ts.stopped = true
	cancel := ts.cancel
	ts.mu.Unlock()
	if cancel == nil {
		return // no task ever started
	}
	cancel()
	// Cancelled tasks end promptly (they only wait on their ctx), so this
	// waiter outlives a ctx that ends first by little.
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		r.log.Warn("broadcast tasks still stopping at shutdown", "err", ctx.Err())
	}
}
