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

// event is one callback to deliver.
type event struct {
	kind      kind
	app       uint32
	up        push.Upstream
	st        push.StatusEvent
	attempt   int       // failed attempts so far
	notBefore time.Time // for the delay queue
}

// appQueue holds the callbacks of one app.
type appQueue struct {
	app      uint32
	items    fifo[*event] // ready to send
	waiting  int          // queued + delayed: what the app's callback_queue bounds
	inflight int          // being sent by workers
	linked   bool         // in queue.ready
}

const (
	running = iota
	draining
	stopped
)

// queue is the scheduler shared by the workers: per-app FIFOs (one per app
// id ever seen, a number bounded by the app registry) served
// round-robin (an app with work goes to the back of the ready ring after each
// take), a per-app cap on concurrent sends, and a delay heap for retries. One
// mutex guards it; each operation is O(1) or O(log n) on the heap.
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	perApp  int
	apps    map[uint32]*appQueue
	ready   fifo[*appQueue]
	delayed delayHeap
	wake    chan struct{} // tells runDelays that the earliest retry changed
	state   int
}

func newQueue(perApp int) *queue {
	q := &queue{perApp: perApp, apps: make(map[uint32]*appQueue), wake: make(chan struct{}, 1)}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state != running
}

// push queues a new event unless its app already has limit waiting.
func (q *queue) push(ev *event, limit int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != running {
		return push.ErrClosed
	}
	aq := q.apps[ev.app]
	if aq == nil {
		aq = &appQueue{app: ev.app}
		q.apps[ev.app] = aq
	}
	if aq.waiting >= max(limit, 1) {
		return push.ErrOverloaded
	}
	aq.items.push(ev)
	aq.waiting++
	queued.Inc()
	q.link(aq)
	return nil
}

// link puts aq on the ready ring when it has work and room for a worker.
func (q *queue) link(aq *appQueue) {
	if !aq.linked && aq.items.len() > 0 && aq.inflight < q.perApp {
		aq.linked = true
		q.ready.push(aq)
		q.cond.Signal()
	}
}

// next blocks until an event is ready and returns it, or nil when the
// worker should exit: at stop, or while draining once nothing is ready.
func (q *queue) next() *event {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.state == stopped {
			return nil
		}
		if q.ready.len() > 0 {
			aq := q.ready.pop()
			aq.linked = false
			ev := aq.items.pop()
			aq.waiting--
			aq.inflight++
			queued.Dec()
			q.link(aq) // to the back of the ring: round-robin over apps
			return ev
		}
		if q.state == draining {
			return nil
		}
		q.cond.Wait()
	}
}

// done ends a send. With retry, ev comes back after its notBefore; a retry
// is not refused by a full queue (it was already admitted), which lets the
// app's waiting count exceed its limit by at most the in-flight sends.
func (q *queue) done(ev *event, retry bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	aq := q.apps[ev.app]
	aq.inflight--
	if retry && q.state == running {
		aq.waiting++
		queued.Inc()
		heap.Push(&q.delayed, ev)
		if q.delayed[0] == ev {
			select {
			case q.wake <- struct{}{}:
			default:
			}
		}
	} else if retry {
		drops.WithLabelValues(appLabel(ev.app), "shutdown").Inc()
	}
	q.link(aq)
}

// runDelays moves retries whose time has come back to their app queues,
// until the queue leaves the running state.
func (q *queue) runDelays() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		if q.state != running {
			q.mu.Unlock()
			return
		}
		now := time.Now()
		for len(q.delayed) > 0 && !q.delayed[0].notBefore.After(now) {
			ev := heap.Pop(&q.delayed).(*event)
			aq := q.apps[ev.app]
			aq.items.push(ev)
			q.link(aq)
		}
		wait := time.Hour
		if len(q.delayed) > 0 {
			wait = q.delayed[0].notBefore.Sub(now)
		}
		q.mu.Unlock()
		t.Reset(wait)
		select {
		case <-t.C:
		case <-q.wake:
		}
	}
}

// drain refuses new events and drops the delayed ones; workers keep
// taking ready events and exit when there are none.
func (q *queue) drain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != running {
		return
	}
	q.state = draining
	for _, ev := range q.delayed {
		q.apps[ev.app].waiting--
		queued.Dec()
		drops.WithLabelValues(appLabel(ev.app), "shutdown").Inc()
	}
	q.delayed = nil
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
	for _, aq := range q.apps {
		for aq.items.len() > 0 {
			drops.WithLabelValues(appLabel(aq.app), reason).Inc()
			queued.Dec()
			aq.items.pop()
		}
		aq.waiting, aq.linked = 0, false
	}
	for _, ev := range q.delayed {
		drops.WithLabelValues(appLabel(ev.app), reason).Inc()
		queued.Dec()
	}
	q.delayed, q.ready = nil, fifo[*appQueue]{}
}

// fifo is a queue that reuses its backing array once drained.
type fifo[T any] struct {
	buf  []T
	head int
}

func (f *fifo[T]) len() int { return len(f.buf) - f.head }
func (f *fifo[T]) push(v T) { f.buf = append(f.buf, v) }

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

// delayHeap orders retries by notBefore.
type delayHeap []*event

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].notBefore.Before(h[j].notBefore) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(*event)) }
func (h *delayHeap) Pop() any {
	old := *h
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ev
}
