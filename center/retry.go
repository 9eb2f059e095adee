package center

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/push"
)

// A lookup that fails is not "offline". When the register cannot say
// whether some recipients of a QoS 1 push are online (their register is
// down, restarting or still being re-filled), handlePush retries the
// lookup of those uids for up to Config.LookupRetry, then hands them to the
// retry queue: a bounded in-memory queue per app, drained by one goroutine
// of the service, that keeps looking them up and pushing until the register
// answers or the message expires. The message is stored before any of
// this, so a drop (queue full, shutdown, expiry) only means it waits for
// the user's next login or the room's redelivery after a refill.
const (
	// DefaultLookupRetry is Config.LookupRetry's default: how long a push
	// request retries the lookup of unanswered uids before queueing them.
	DefaultLookupRetry = 2 * time.Second
	// DefaultRetryQueue is Config.RetryQueue's default: queued messages
	// per app.
	DefaultRetryQueue = 10000

	lookupRetryFirst = 50 * time.Millisecond  // first wait of the in-request retries
	lookupRetryMax   = 500 * time.Millisecond // their longest wait
	retryFirst       = 200 * time.Millisecond // first wait in the queue
	retryMax         = 5 * time.Second        // longest wait in the queue
	retryBatchUIDs   = 1000                   // uids per lookup of the drainer
)

var (
	retryEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_lookup_retry_total",
		Help: "Queued deliveries of QoS 1 pushes whose recipients the registry could not answer for, by event: queued, answered (every recipient answered and was pushed), expired, dropped_full (the app's queue was full), dropped_shutdown. Dropped and expired messages stay stored.",
	}, []string{"event"})
	retryQueueLen = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_center_lookup_retry_queue",
		Help: "Messages waiting in the retry queue.",
	})
)

// unanswered is how a Register's Lookup names the uids it could not answer
// next to the sessions it found (remote.LookupError has it). Any other
// error leaves every uid unanswered.
type unanswered interface{ Unanswered() []string }

// lookup returns the sessions of uids that the register found, and the uids
// it could not answer for (with the error).
func (s *Service) lookup(ctx context.Context, uids []string) ([]push.Session, []string, error) {
	sessions, err := s.reg.Lookup(ctx, uids)
	if err == nil {
		return sessions, nil, nil
	}
	var u unanswered
	if errors.As(err, &u) {
		return sessions, u.Unanswered(), err
	}
	return nil, uids, err
}

// deliverSessions pushes msg to the sessions that have its app bound and
// returns how many the rooms reported connected.
func (s *Service) deliverSessions(base context.Context, msg push.Message, sessions []push.Session, kind string) int {
	if len(sessions) == 0 {
		return 0
	}
	ctx, cancel := s.callCtx(base)
	defer cancel()
	return s.deliver(ctx, msg, groupByRoom(sessions, msg.App), kind)
}

// retryLookup looks up pending again with a short backoff for at most
// cfg.LookupRetry, pushing to what is found, and returns how many the rooms
// reported connected and the uids still unanswered.
func (s *Service) retryLookup(base context.Context, msg push.Message, pending []string) (int, []string) {
	deadline := time.Now().Add(s.cfg.LookupRetry)
	wait, online := lookupRetryFirst, 0
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-s.jobCtx.Done(): // shutting down: queueing refuses, the message stays stored
			t.Stop()
			return online, pending
		case <-t.C:
		}
		ctx, cancel := context.WithDeadline(base, deadline.Add(s.cfg.CallTimeout/10))
		found, still, err := s.lookup(ctx, pending)
		cancel()
		if err != nil {
			depErrors.WithLabelValues("lookup").Inc()
		}
		online += s.deliverSessions(base, msg, found, "push")
		pending = still
		wait = min(2*wait, lookupRetryMax)
	}
	return online, pending
}

// retryItem is one queued message and the recipients still unanswered.
type retryItem struct {
	msg  push.Message
	uids []string
	next time.Time
	wait time.Duration
	done bool
}

// retryQueue holds the queued messages. enqueue appends; only the drainer
// reads or changes items and removes them.
type retryQueue struct {
	mu      sync.Mutex
	items   []*retryItem
	perApp  map[uint32]int
	running bool          // the drainer was started
	wake    chan struct{} // cap 1

	// Counts since start (also in retryEvents), for tests and operators.
	queued, answered, expired, droppedFull, droppedShutdown atomic.Uint64
}

func newRetryQueue() *retryQueue {
	return &retryQueue{perApp: make(map[uint32]int), wake: make(chan struct{}, 1)}
}

// len returns how many messages wait.
func (q *retryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// enqueue queues msg for uids, starting the drainer on first use. It
// returns false when the app's queue is full or the service is shut down
// (counted; the message stays stored).
func (s *Service) enqueue(msg push.Message, uids []string) bool {
	q := s.retry
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		q.droppedShutdown.Add(1)
		retryEvents.WithLabelValues("dropped_shutdown").Inc()
		return false
	}
	q.mu.Lock()
	if s.cfg.RetryQueue < 0 || q.perApp[msg.App] >= s.cfg.RetryQueue {
		q.mu.Unlock()
		q.droppedFull.Add(1)
		retryEvents.WithLabelValues("dropped_full").Inc()
		s.log.Warn("center push: retry queue full, message stays stored", "app", msg.App, "msg", msg.ID, "uids", len(uids))
		return false
	}
	q.items = append(q.items, &retryItem{msg: msg, uids: slices.Clone(uids), next: time.Now().Add(retryFirst), wait: retryFirst})
	q.perApp[msg.App]++
	start := !q.running
	q.running = true
	q.mu.Unlock()
	q.queued.Add(1)
	retryEvents.WithLabelValues("queued").Inc()
	retryQueueLen.Inc()
	if start {
		s.jobWG.Add(1)
		go func() {
			defer s.jobWG.Done()
			s.drainRetries(s.jobCtx)
		}()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// drainRetries is the drainer: it looks up the due items' recipients
// (several items per lookup), pushes to what is found, and reschedules
// what is still unanswered with backoff, until ctx ends (Shutdown).
func (s *Service) drainRetries(ctx context.Context) {
	q := s.retry
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		due, next := q.due(time.Now())
		if len(due) > 0 {
			s.retryRound(ctx, due)
			q.sweep()
			continue
		}
		if !next.IsZero() {
			t.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			q.dropAll()
			return
		case <-q.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// due returns the items due at now, up to retryBatchUIDs recipients (at
// least one item), and when the next of the others is due (zero: none).
func (q *retryQueue) due(now time.Time) ([]*retryItem, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*retryItem
	var next time.Time
	n := 0
	for _, it := range q.items {
		if it.next.After(now) || (n > 0 && n+len(it.uids) > retryBatchUIDs) {
			if next.IsZero() || it.next.Before(next) {
				next = it.next
			}
			continue
		}
		out = append(out, it)
		n += len(it.uids)
	}
	return out, next
}

// retryRound handles due items with one lookup of their recipients.
func (s *Service) retryRound(ctx context.Context, due []*retryItem) {
	q := s.retry
	now := time.Now()
	var union []string
	seen := make(map[string]bool)
	live := due[:0:0]
	for _, it := range due {
		if now.Unix() >= it.msg.Expire {
			it.done = true
			q.expired.Add(1)
			retryEvents.WithLabelValues("expired").Inc()
			continue
		}
		live = append(live, it)
		for _, u := range it.uids {
			if !seen[u] {
				seen[u] = true
				union = append(union, u)
			}
		}
	}
	if len(live) == 0 {
		return
	}
	cctx, cancel := s.callCtx(ctx)
	sessions, pending, err := s.lookup(cctx, union)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("lookup").Inc()
	}
	still := make(map[string]bool, len(pending))
	for _, u := range pending {
		still[u] = true
	}
	byUID := make(map[string][]push.Session, len(sessions))
	for _, ss := range sessions {
		byUID[ss.UID] = append(byUID[ss.UID], ss)
	}
	for _, it := range live {
		var found []push.Session
		left := it.uids[:0]
		for _, u := range it.uids {
			if still[u] {
				left = append(left, u)
			} else {
				found = append(found, byUID[u]...)
			}
		}
		it.uids = left
		s.deliverSessions(ctx, it.msg, found, "retry")
		if len(left) == 0 {
			it.done = true
			q.answered.Add(1)
			retryEvents.WithLabelValues("answered").Inc()
			continue
		}
		it.wait = min(2*it.wait, retryMax)
		it.next = time.Now().Add(it.wait)
	}
}

// sweep removes the items that are done.
func (q *retryQueue) sweep() {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items[:0]
	for _, it := range q.items {
		if it.done {
			q.perApp[it.msg.App]--
			if q.perApp[it.msg.App] <= 0 {
				delete(q.perApp, it.msg.App)
			}
			retryQueueLen.Dec()
			continue
		}
		out = append(out, it)
	}
	clear(q.items[len(out):])
	q.items = out
}

// dropAll empties the queue at shutdown (the messages stay stored).
func (q *retryQueue) dropAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.items)
	q.droppedShutdown.Add(uint64(n))
	retryEvents.WithLabelValues("dropped_shutdown").Add(float64(n))
	retryQueueLen.Sub(float64(n))
	clear(q.items)
	q.items = nil
	clear(q.perApp)
}
