package center

import (
	"math"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Send queues (API.md "Send queues"). An app's push_rate counts recipients
// per second (a unicast is one, a multicast of n is n). A push the app's
// bucket can pay for at once, while nothing of the app waits, is sent by
// the request (200). Otherwise it is queued (202) in the app's own FIFO,
// bounded by push_queue recipients and push_queue_bytes, and released at
// the app's rate by one scheduler that round-robins the apps with work and
// hands each release to a small fixed pool of workers (release.go), at most
// one release per app at a time: one app's backlog never takes another
// app's rate, nor more than one worker. When the queue is full the push is
// refused (429, Retry-After from the depth and the rate).
//
// sendQueues is the pure part: admission, the buckets and the
// round-robin, driven by the caller's clock (every method takes now), so
// tests use a fake clock. It is not safe for concurrent use; release.go
// guards it with one mutex.

const (
	// releaseStep is the pacing granularity of a release: one release of
	// an app takes up to rate*releaseStep recipients (at least one), so a
	// backlog moves in steps of about 20 ms whatever the burst.
	releaseStep = 20 * time.Millisecond
	// maxRelease bounds the recipients of one release (one lookup call).
	maxRelease = 1000
	// catchUp is how much rate a backlog may bank while its releases are
	// slower than the pacing (a slow lookup, a busy CPU): up to this much
	// of the rate is released at once afterwards, so the queue keeps its
	// rate on average. An empty queue banks only its burst.
	catchUp = 250 * time.Millisecond
	// itemOverhead is the bytes a queued push is charged beyond its
	// payload and uids (the item, its slices).
	itemOverhead = 160
	// uidOverhead is charged per uid beyond its bytes (the string header).
	uidOverhead = 16
)

// queueLimits are one app's limits, read from its configuration at each
// admission (hot reload changes them for the queue that exists).
type queueLimits struct {
	rate       float64 // recipients per second, > 0
	burst      float64 // bucket size, >= 1
	bound      int     // recipients the queue may hold; <= 0: no queue
	boundBytes int64   // bytes the queue may hold
}

// Admission outcomes.
const (
	admitNow    = iota // send from the request (200)
	admitQueued        // reserved in the queue: store, then commit or cancel (202)
	admitFull          // refused for now (429 with Retry-After)
	admitNever         // can never pass the app's limits (400)
)

// admission is the answer of admit. A queued admission is a reservation:
// the caller stores the message and then commits or cancels it.
type admission struct {
	kind   int
	queued int           // admitQueued: recipients waiting, this push included
	retry  time.Duration // admitFull: when to try again
	app    uint32
	n      int
	cost   int64
}

// queuedPush is one queued message and its recipients; uids[:off] are
// released.
type queuedPush struct {
	msg  push.Message
	uids []string
	off  int
	at   time.Time // when it was queued
	cost int64
}

// appQueue is one app's bucket and queue.
type appQueue struct {
	app    uint32
	lim    queueLimits
	tokens float64 // may go below 0: a release takes a whole step
	last   time.Time

	items    []*queuedPush // committed, FIFO
	ready    int           // recipients of items not yet released
	depth    int           // recipients waiting: ready + reserved
	bytes    int64         // bytes charged: committed + reserved
	inflight bool          // a release of this app is being delivered
	inRing   bool
}

// capacity is how many tokens the bucket banks: the burst, or while
// recipients wait, at least catchUp of the rate.
func (q *appQueue) capacity() float64 {
	if q.depth == 0 {
		return q.lim.burst
	}
	return math.Max(q.lim.burst, math.Min(q.lim.rate*catchUp.Seconds(), maxRelease))
}

// refill adds the tokens earned since the last call, up to the capacity.
func (q *appQueue) refill(now time.Time) {
	if q.last.IsZero() {
		q.tokens, q.last = q.lim.burst, now
		return
	}
	if dt := now.Sub(q.last); dt > 0 {
		q.tokens = math.Min(q.capacity(), q.tokens+dt.Seconds()*q.lim.rate)
		q.last = now
	}
}

// after is how long until the bucket holds want tokens (0: now).
func (q *appQueue) after(want float64) time.Duration {
	if q.tokens >= want {
		return 0
	}
	return time.Duration((want - q.tokens) / q.lim.rate * float64(time.Second))
}

// drain is how long the queue needs to release what waits now.
func (q *appQueue) drain() time.Duration {
	return q.after(1) + time.Duration(float64(q.depth)/q.lim.rate*float64(time.Second))
}

// releaseBatch is one release: parts of one app's queued pushes, in queue
// order.
type releaseBatch struct {
	app   uint32
	parts []releasePart
	n     int // recipients
}

type releasePart struct {
	msg  push.Message
	uids []string
	at   time.Time // when the push was queued
	last bool      // the push's last recipients: its journal entry goes after them
}

// sendQueues are the queues of every app, and the round-robin over those
// with work.
type sendQueues struct {
	apps   map[uint32]*appQueue
	ring   []*appQueue // apps with work or a release in flight
	cursor int
}

func newSendQueues() *sendQueues {
	return &sendQueues{apps: make(map[uint32]*appQueue)}
}

func (sq *sendQueues) get(app uint32, lim queueLimits, now time.Time) *appQueue {
	q := sq.apps[app]
	if q == nil {
		q = &appQueue{app: app, lim: lim}
		sq.apps[app] = q
	}
	q.refill(now) // at the old rate, up to now
	q.lim = lim
	q.tokens = math.Min(q.tokens, q.capacity())
	return q
}

// reconfigure applies a new configuration to the queues that exist:
// limitsOf returns an app's limits, false when the app is gone (its queue
// keeps its last limits until it is empty, then is forgotten).
func (sq *sendQueues) reconfigure(now time.Time, limitsOf func(app uint32) (queueLimits, bool)) {
	for id, q := range sq.apps {
		l, ok := limitsOf(id)
		if !ok {
			if q.depth == 0 && !q.inflight && !q.inRing {
				delete(sq.apps, id)
			}
			continue
		}
		sq.get(id, l, now)
	}
}

// pushCost is what a queued push of msg to uids is charged in bytes.
func pushCost(msg push.Message, uids []string) int64 {
	c := int64(itemOverhead + len(msg.Payload))
	for _, u := range uids {
		c += int64(len(u) + uidOverhead)
	}
	return c
}

// admit decides what becomes of a push of n recipients costing cost bytes.
func (sq *sendQueues) admit(now time.Time, app uint32, lim queueLimits, n int, cost int64) admission {
	q := sq.get(app, lim, now)
	a := admission{app: app, n: n, cost: cost}
	// Nothing of the app waits or is being released, and the bucket pays:
	// send at once. Never overtake the queue: a user's messages of one app
	// keep their order, and the backlog is not starved by newcomers.
	if q.depth == 0 && !q.inflight && q.tokens >= float64(n) {
		q.tokens -= float64(n)
		a.kind = admitNow
		sq.forget(q)
		return a
	}
	fitsQueue := lim.bound > 0 && n <= lim.bound && cost <= lim.boundBytes
	if !fitsQueue && float64(n) > lim.burst {
		a.kind = admitNever
		sq.forget(q)
		return a
	}
	if !fitsQueue {
		// Only an empty queue and a full enough bucket let it pass.
		a.kind, a.retry = admitFull, retrySecs(q.drain()+time.Duration((float64(n)-1)/lim.rate*float64(time.Second)))
		sq.forget(q)
		return a
	}
	if q.depth+n > lim.bound || q.bytes+cost > lim.boundBytes {
		// Room for n frees as the queue drains at the rate.
		need := float64(q.depth + n - lim.bound)
		if q.bytes+cost > lim.boundBytes && q.depth > 0 {
			perRecipient := float64(q.bytes) / float64(q.depth)
			need = math.Max(need, math.Ceil(float64(q.bytes+cost-lim.boundBytes)/perRecipient))
		}
		a.kind, a.retry = admitFull, retrySecs(q.after(1)+time.Duration(need/lim.rate*float64(time.Second)))
		return a
	}
	q.depth += n
	q.bytes += cost
	a.kind, a.queued = admitQueued, q.depth
	return a
}

// retrySecs rounds a wait up to whole seconds, at least one (Retry-After).
func retrySecs(d time.Duration) time.Duration {
	s := math.Ceil(d.Seconds())
	return time.Duration(math.Max(1, s)) * time.Second
}

// commit queues msg for uids under the reservation a (admitQueued).
func (sq *sendQueues) commit(now time.Time, a admission, msg push.Message, uids []string) {
	q := sq.apps[a.app]
	if q == nil { // cannot happen: the reservation keeps the queue
		return
	}
	q.items = append(q.items, &queuedPush{msg: msg, uids: uids, at: now, cost: a.cost})
	q.ready += len(uids)
	if !q.inRing {
		q.inRing = true
		sq.ring = append(sq.ring, q)
	}
}

// requeue appends a push taken from the journal to app's queue, beyond
// the bounds (it was admitted once).
func (sq *sendQueues) requeue(now time.Time, app uint32, lim queueLimits, msg push.Message, uids []string, at time.Time, cost int64) {
	q := sq.get(app, lim, now)
	q.items = append(q.items, &queuedPush{msg: msg, uids: uids, at: at, cost: cost})
	q.ready += len(uids)
	q.depth += len(uids)
	q.bytes += cost
	if !q.inRing {
		q.inRing = true
		sq.ring = append(sq.ring, q)
	}
}

// cancel gives back the reservation a (the message could not be stored).
func (sq *sendQueues) cancel(a admission) {
	q := sq.apps[a.app]
	if q == nil {
		return
	}
	q.depth -= a.n
	q.bytes -= a.cost
	sq.forget(q)
}

// forget drops the state of an app that has nothing queued, reserved or in
// flight and a full bucket: it would behave the same when made anew.
func (sq *sendQueues) forget(q *appQueue) {
	if q.depth == 0 && !q.inflight && !q.inRing && q.tokens >= q.lim.burst {
		delete(sq.apps, q.app)
	}
}

// next returns the next release due at now, going round the apps with
// work from where the last release left off (ok false: none is due). wait
// is then how long until one could be due (negative: only a commit or a
// finished release can make one).
func (sq *sendQueues) next(now time.Time) (b releaseBatch, ok bool, wait time.Duration) {
	wait = -1
	for i := 0; i < len(sq.ring); i++ {
		idx := (sq.cursor + i) % len(sq.ring)
		q := sq.ring[idx]
		if q.inflight || q.ready == 0 {
			continue
		}
		q.refill(now)
		if d := q.after(1); d > 0 {
			if wait < 0 || d < wait {
				wait = d
			}
			continue
		}
		step := math.Max(1, math.Floor(q.lim.rate*releaseStep.Seconds()))
		k := min(q.ready, maxRelease, int(math.Max(step, math.Floor(q.tokens))))
		q.tokens -= float64(k)
		b = sq.take(q, k, now)
		q.inflight = true
		sq.cursor = idx + 1
		return b, true, 0
	}
	return releaseBatch{}, false, wait
}

// take removes the first k ready recipients of q.
func (sq *sendQueues) take(q *appQueue, k int, now time.Time) releaseBatch {
	b := releaseBatch{app: q.app, n: k}
	for k > 0 {
		it := q.items[0]
		m := min(k, len(it.uids)-it.off)
		it.off += m
		b.parts = append(b.parts, releasePart{msg: it.msg, uids: it.uids[it.off-m : it.off], at: it.at, last: it.off == len(it.uids)})
		k -= m
		if it.off == len(it.uids) {
			q.bytes -= it.cost
			q.items[0] = nil
			q.items = q.items[1:]
		}
	}
	q.ready -= b.n
	q.depth -= b.n
	if q.depth == 0 { // empty again: bank only the burst
		q.tokens = math.Min(q.tokens, q.lim.burst)
	}
	if len(q.items) == 0 {
		q.items = nil // let the backing array go
	}
	return b
}

// done marks the release of app delivered: the app may release again.
func (sq *sendQueues) done(app uint32) {
	q := sq.apps[app]
	if q == nil {
		return
	}
	q.inflight = false
	if q.ready > 0 {
		return
	}
	// Out of the ring until its next commit.
	for i, r := range sq.ring {
		if r == q {
			sq.ring = append(sq.ring[:i], sq.ring[i+1:]...)
			if sq.cursor > i {
				sq.cursor--
			}
			break
		}
	}
	q.inRing = false
	if len(sq.ring) == 0 {
		sq.cursor = 0
	}
}

// dropAll empties every queue (shutdown) and returns the recipients and
// pushes dropped. Reservations stay counted until their requests commit or
// cancel.
func (sq *sendQueues) dropAll() (recipients, items int) {
	for _, q := range sq.apps {
		recipients += q.ready
		items += len(q.items)
		q.depth -= q.ready
		for _, it := range q.items {
			q.bytes -= it.cost
		}
		q.items, q.ready, q.inRing = nil, 0, false
	}
	sq.ring, sq.cursor = nil, 0
	return recipients, items
}

// queueStat is one app's queue as /v1/stats and GET /v1/apps/{app}/queue
// show it.
type queueStat struct {
	Depth   int   `json:"depth"`    // recipients waiting (reserved included)
	WaitMS  int64 `json:"wait_ms"`  // how long the oldest waiting push has waited
	DrainMS int64 `json:"drain_ms"` // estimated time to release what waits, at the rate
	Bound   int   `json:"bound"`    // push_queue
	Bytes   int64 `json:"bytes"`    // bytes charged against push_queue_bytes
}

func (q *appQueue) stat(now time.Time) queueStat {
	st := queueStat{Depth: q.depth, Bound: q.lim.bound, Bytes: q.bytes}
	if len(q.items) > 0 {
		st.WaitMS = now.Sub(q.items[0].at).Milliseconds()
	}
	if q.depth > 0 {
		q.refill(now)
		st.DrainMS = q.drain().Milliseconds()
	}
	return st
}

// stat returns app's queue (zero when it has none).
func (sq *sendQueues) stat(app uint32, now time.Time) queueStat {
	if q := sq.apps[app]; q != nil {
		return q.stat(now)
	}
	return queueStat{}
}

// stats returns the queues of the apps that have something waiting.
func (sq *sendQueues) stats(now time.Time) map[uint32]queueStat {
	out := make(map[uint32]queueStat)
	for id, q := range sq.apps {
		if q.depth > 0 {
			out[id] = q.stat(now)
		}
	}
	return out
}
