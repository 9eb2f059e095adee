package coordinator

import (
	"container/heap"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

type kind uint8

const (
	kindUpstream kind = iota
	kindStatus
)

func (k kind) String() string {
	if k == kindStatus {
		return "status"
	}
	return "upstream"
}

// event is one callback event to deliver.
type event struct {
	kind kind
	app  uint32
	up   push.Upstream
	st   push.StatusEvent
	at   time.Time // when it was queued (for the linger)
}

// opts are the app's settings that apply to one event, read from the
// configuration when the event arrives.
type opts struct {
	url         string        // where it goes (the lane)
	limit       int           // callback_queue: events waiting for the app
	batch       int           // callback_batch: > 1 sends {"events":[...]}
	linger      time.Duration // callback_linger
	multi       bool          // the app has more than one URL (routes)
	debounce    time.Duration // status_debounce (status events only)
	debounceMax int           // status_debounce_max
}

// batch is what one POST carries: one event, or up to callback_batch of
// them for one app and URL. A failed batch is retried whole.
type batch struct {
	lane      *lane
	events    []*event
	batched   bool      // the body is {"events":[...]} even for one event
	attempt   int       // failed attempts so far
	notBefore time.Time // for the retry delay
	one       [1]*event // events' array when there is one
}

type laneKey struct {
	app uint32
	url string
}

// lane holds the callbacks of one app to one URL.
type lane struct {
	key      laneKey
	app      *appState
	items    fifo[*event] // ready to be cut into batches
	retries  fifo[*batch] // failed batches whose delay has passed
	inflight int          // batches being sent
	linked   bool         // in queue.ready
	batch    int          // callback_batch at the latest push
	linger   time.Duration
	multi    bool
	lingerAt time.Time // end of the linger of the oldest item (zero: none armed)
	timer    *timer    // the armed linger, until it fires
	due      bool      // the linger ended: send what there is
}

// appState is what the queue keeps per app.
type appState struct {
	id       uint32
	waiting  int // events queued, ready or delayed: what callback_queue bounds
	inflight int // batches being sent, all lanes
	lanes    []*lane
	pending  map[string]*pending // offline events held by status_debounce, by uid
}

// pending is an offline event held by the debounce window.
type pending struct {
	ev        *event
	o         opts
	deadline  time.Time
	timer     *timer
	cancelled bool
}

// timer is an entry of the delay heap: a retry (b), the end of a lane's
// linger (l) or of a debounce window (p). A cancelled window or a re-armed
// linger leaves the heap at once, so the heap holds at most one entry per
// retrying batch, lane and held offline.
type timer struct {
	at  time.Time
	b   *batch
	l   *lane
	p   *pending
	idx int // in the heap; -1 when out
}

const (
	running = iota
	draining
	stopped
)

// queue is the scheduler shared by the workers. Events wait in lanes, one
// per (app, URL) ever configured; a lane is ready when it holds a batch's
// worth, its linger has ended, or a retry is due. Ready lanes are served
// round-robin (a lane goes to the back of the ring after each take), with
// at most perApp batches in flight per app (and half that per lane when the
// app routes to several URLs, so that one slow URL leaves some for the
// others). One heap of timers holds retries, linger ends and debounce
// windows. One mutex guards it all; each operation is O(1) or O(log n).
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	perApp  int
	now     func() time.Time
	apps    map[uint32]*appState
	lanes   map[laneKey]*lane
	ready   fifo[*lane]
	timers  timerHeap
	wake    chan struct{} // tells runDelays that the earliest timer changed
	state   int
	nevents int // events held in lanes, retries and pending (the queued gauge)
}

func newQueue(perApp int) *queue {
	q := &queue{
		perApp: perApp,
		now:    time.Now,
		apps:   make(map[uint32]*appState),
		lanes:  make(map[laneKey]*lane),
		wake:   make(chan struct{}, 1),
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state != running
}

func (q *queue) appState(id uint32) *appState {
	a := q.apps[id]
	if a == nil {
		a = &appState{id: id}
		q.apps[id] = a
	}
	return a
}

func (q *queue) lane(app uint32, o opts) *lane {
	k := laneKey{app, o.url}
	l := q.lanes[k]
	if l == nil {
		a := q.appState(app)
		l = &lane{key: k, app: a}
		q.lanes[k] = l
		a.lanes = append(a.lanes, l)
	}
	l.batch, l.linger, l.multi = o.batch, o.linger, o.multi
	return l
}

func (q *queue) count(d int) {
	q.nevents += d
	queued.Add(float64(d))
}

// push queues a new event unless its app already has o.limit waiting.
func (q *queue) push(ev *event, o opts) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != running {
		return push.ErrClosed
	}
	return q.pushLocked(ev, o)
}

func (q *queue) pushLocked(ev *event, o opts) error {
	a := q.appState(ev.app)
	if a.waiting >= max(o.limit, 1) {
		return push.ErrOverloaded
	}
	l := q.lane(ev.app, o)
	ev.at = q.now()
	l.items.push(ev)
	a.waiting++
	q.count(1)
	if l.batch > 1 && !l.due && l.lingerAt.IsZero() {
		q.arm(l, ev.at.Add(l.linger))
	}
	q.link(l)
	return nil
}

// status queues a status event through the app's debounce window: an
// offline is held for o.debounce, and an online of the same uid within it
// cancels both. When o.debounceMax offlines are held, a new one is queued
// at once.
func (q *queue) status(ev *event, o opts) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != running {
		return push.ErrClosed
	}
	if o.debounce <= 0 {
		return q.pushLocked(ev, o)
	}
	a := q.appState(ev.app)
	now := q.now()
	uid := ev.st.UID
	p := a.pending[uid]
	if p != nil && !now.Before(p.deadline) {
		// Its window is over (the timer has not fired yet): send it first.
		q.release(a, p, "")
		p = nil
	}
	switch ev.st.Event {
	case push.EventOnline:
		if p != nil {
			q.unhold(a, p)
			debounced.WithLabelValues(appLabel(ev.app)).Add(2)
			return nil
		}
	case push.EventOffline:
		if p != nil {
			// Two offlines in a row: the first is real news, send it.
			q.release(a, p, "")
		}
		if len(a.pending) >= o.debounceMax {
			debounceFull.WithLabelValues(appLabel(ev.app)).Inc()
			break
		}
		if a.pending == nil {
			a.pending = make(map[string]*pending)
		}
		p = &pending{ev: ev, o: o, deadline: now.Add(o.debounce)}
		p.timer = &timer{at: p.deadline, p: p}
		a.pending[uid] = p
		q.count(1)
		q.addTimer(p.timer)
		return nil
	}
	return q.pushLocked(ev, o)
}

// unhold forgets a held offline.
func (q *queue) unhold(a *appState, p *pending) {
	p.cancelled = true
	q.removeTimer(p.timer)
	delete(a.pending, p.ev.st.UID)
	q.count(-1)
}

// release moves a held offline to its lane; a full queue drops it, counted
// under dropReason (empty: "queue_full").
func (q *queue) release(a *appState, p *pending, dropReason string) {
	q.unhold(a, p)
	if err := q.pushLocked(p.ev, p.o); err != nil {
		if dropReason == "" {
			dropReason = "queue_full"
		}
		drops.WithLabelValues(appLabel(a.id), dropReason).Inc()
	}
}

// arm starts l's linger, to end at at (at once when that has passed, or
// when the queue is draining).
func (q *queue) arm(l *lane, at time.Time) {
	l.lingerAt = at
	if !at.After(q.now()) || q.state != running {
		l.due = true
		return
	}
	q.removeTimer(l.timer)
	l.timer = &timer{at: at, l: l}
	q.addTimer(l.timer)
}

// sendable reports whether a worker may take a batch of l now.
func (q *queue) sendable(l *lane) bool {
	capLane := q.perApp
	if l.multi {
		capLane = max(1, q.perApp/2)
	}
	if l.inflight >= capLane || l.app.inflight >= q.perApp {
		return false
	}
	if l.retries.len() > 0 {
		return true
	}
	n := l.items.len()
	return n > 0 && (l.batch <= 1 || n >= l.batch || l.due || q.state != running)
}

// link puts l on the ready ring when a worker may take from it.
func (q *queue) link(l *lane) {
	if !l.linked && q.sendable(l) {
		l.linked = true
		q.ready.push(l)
		q.cond.Signal()
	}
}

// take returns the next batch to send, or nil when none is ready. A lane
// on the ring that can no longer send (its app reached its cap through
// another lane) leaves the ring; done links it again.
func (q *queue) take() *batch {
	for q.ready.len() > 0 {
		l := q.ready.pop()
		l.linked = false
		if !q.sendable(l) {
			continue
		}
		b := q.cut(l)
		l.inflight++
		l.app.inflight++
		q.link(l) // to the back of the ring: round-robin
		return b
	}
	return nil
}

// cut takes the next batch of l: a due retry, else up to l.batch events.
func (q *queue) cut(l *lane) *batch {
	if l.retries.len() > 0 {
		b := l.retries.pop()
		l.app.waiting -= len(b.events)
		q.count(-len(b.events))
		return b
	}
	n := 1
	if l.batch > 1 {
		n = min(l.items.len(), l.batch)
	}
	b := &batch{lane: l, batched: l.batch > 1}
	if n == 1 {
		b.events = b.one[:] // one allocation for an unbatched callback
	} else {
		b.events = make([]*event, n)
	}
	for i := range b.events {
		b.events[i] = l.items.pop()
	}
	l.app.waiting -= n
	q.count(-n)
	if l.batch > 1 {
		// The linger starts again from the oldest event left.
		l.due, l.lingerAt = false, time.Time{}
		q.removeTimer(l.timer)
		l.timer = nil
		if l.items.len() > 0 {
			q.arm(l, l.items.peek().at.Add(l.linger))
		}
	}
	return b
}

// next blocks until a batch is ready and returns it, or nil when the
// worker should exit: at stop, or while draining once nothing is ready.
func (q *queue) next() *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.state == stopped {
			return nil
		}
		if b := q.take(); b != nil {
			return b
		}
		if q.state == draining {
			return nil
		}
		q.cond.Wait()
	}
}

// done ends a send. With retry, b comes back after its notBefore; a retry
// is not refused by a full queue (it was already admitted), which lets the
// app's waiting count exceed its limit by at most the in-flight batches.
func (q *queue) done(b *batch, retry bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := b.lane
	l.inflight--
	l.app.inflight--
	if retry && len(b.events) > 0 && q.state == running {
		l.app.waiting += len(b.events)
		q.count(len(b.events))
		q.addTimer(&timer{at: b.notBefore, b: b})
	} else if retry {
		drops.WithLabelValues(appLabel(l.key.app), "shutdown").Add(float64(len(b.events)))
	}
	for _, o := range l.app.lanes { // the app's cap may have held any of them
		q.link(o)
	}
}

// removeTimer takes t out of the heap if it is there.
func (q *queue) removeTimer(t *timer) {
	if t != nil && t.idx >= 0 {
		heap.Remove(&q.timers, t.idx)
	}
}

func (q *queue) addTimer(t *timer) {
	heap.Push(&q.timers, t)
	if q.timers[0] == t {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// advance fires the timers due at the queue's now and returns how long
// until the next one (an hour when there is none).
func (q *queue) advance() time.Duration {
	now := q.now()
	for len(q.timers) > 0 && !q.timers[0].at.After(now) {
		t := heap.Pop(&q.timers).(*timer)
		switch {
		case t.b != nil:
			t.b.lane.retries.push(t.b)
			q.link(t.b.lane)
		case t.l != nil:
			l := t.l
			l.timer = nil
			if !l.due && l.items.len() > 0 {
				l.due = true
				q.link(l)
			}
		case t.p != nil:
			if !t.p.cancelled {
				q.release(q.apps[t.p.ev.app], t.p, "")
			}
		}
	}
	if len(q.timers) == 0 {
		return time.Hour
	}
	return q.timers[0].at.Sub(now)
}

// runDelays fires the timers at their time, until the queue leaves the
// running state.
func (q *queue) runDelays() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		if q.state != running {
			q.mu.Unlock()
			return
		}
		wait := q.advance()
		q.mu.Unlock()
		t.Reset(wait)
		select {
		case <-t.C:
		case <-q.wake:
		}
	}
}

// drain refuses new events, sends the held offlines without waiting for
// their window, drops the batches waiting for a retry, and cuts every
// linger short; workers keep taking ready batches and exit when there are
// none.
func (q *queue) drain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != running {
		return
	}
	q.state = draining // from here no timer is armed (arm)
	timers := q.timers
	q.timers = nil
	for _, t := range timers {
		t.idx = -1
	}
	for _, t := range timers {
		switch {
		case t.b != nil:
			n := len(t.b.events)
			t.b.lane.app.waiting -= n
			q.count(-n)
			drops.WithLabelValues(appLabel(t.b.lane.key.app), "shutdown").Add(float64(n))
		case t.p != nil && !t.p.cancelled:
			q.release(q.apps[t.p.ev.app], t.p, "shutdown")
		}
	}
	for _, l := range q.lanes {
		q.link(l)
	}
	q.cond.Broadcast()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// stop makes every worker exit at its next take.
func (q *queue) stop() {
	q.mu.Lock()
	q.state = stopped
	q.cond.Broadcast()
	q.mu.Unlock()
}

// dropAll discards every queued event, counting it under reason.
func (q *queue) dropAll(reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped := make(map[uint32]int)
	for _, l := range q.lanes {
		for l.items.len() > 0 {
			l.items.pop()
			dropped[l.key.app]++
		}
		for l.retries.len() > 0 {
			dropped[l.key.app] += len(l.retries.pop().events)
		}
		l.linked, l.due, l.lingerAt, l.timer = false, false, time.Time{}, nil
	}
	for _, t := range q.timers {
		switch {
		case t.b != nil:
			dropped[t.b.lane.key.app] += len(t.b.events)
		case t.p != nil && !t.p.cancelled:
			dropped[t.p.ev.app]++
		}
	}
	for _, a := range q.apps {
		a.waiting, a.pending = 0, nil
	}
	for app, n := range dropped {
		drops.WithLabelValues(appLabel(app), reason).Add(float64(n))
	}
	q.count(-q.nevents)
	q.timers, q.ready = nil, fifo[*lane]{}
}

// fifo is a queue that reuses its backing array once drained.
type fifo[T any] struct {
	buf  []T
	head int
}

func (f *fifo[T]) len() int { return len(f.buf) - f.head }
func (f *fifo[T]) peek() T  { return f.buf[f.head] }

func (f *fifo[T]) push(v T) {
	if len(f.buf) == cap(f.buf) && f.head > 0 && f.head >= len(f.buf)/2 {
		// Reuse the consumed half rather than grow: a queue that never
		// empties keeps a bounded array.
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf, f.head = f.buf[:n], 0
	}
	f.buf = append(f.buf, v)
}

func (f *fifo[T]) pop() T {
	var zero T
	v := f.buf[f.head]
	f.buf[f.head] = zero
	f.head++
	if f.head == len(f.buf) {
		f.buf, f.head = f.buf[:0], 0
	}
	return v
}

// timerHeap orders timers by time.
type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.idx = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.idx = -1
	*h = old[:len(old)-1]
	return t
}
