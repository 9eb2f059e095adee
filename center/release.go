package center

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// The running part of the send queues (sendqueue.go): one scheduler
// goroutine takes the due releases round-robin over the apps and hands
// them to releaseWorkers resident workers, which look the recipients up
// and push through their rooms. Both start with the first queued push and
// stop at Shutdown; what is still queued then is dropped (QoS 1 messages
// stay stored and reach their users at the next login).

// releaseWorkers is how many releases are delivered at once (each is one
// app's, and an app has at most one in flight).
const releaseWorkers = 8

var (
	queueDepth = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lcpush_center_push_queue_depth",
		Help: "Recipients waiting in the app's send queue (push_rate exceeded), by app.",
	}, []string{"app"})
	queueWait = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "lcpush_center_push_queue_wait_seconds",
		Help:    "How long queued pushes waited in their app's send queue before release (one observation per released part of a push; all apps).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10), // 10 ms .. ~38 s
	})
	queueEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_push_queue_total",
		Help: "Send queue recipients by event: queued, released, refused_full (429), refused_never (400: over push_queue and push_burst), expired (ttl passed while queued), unanswered_qos0 (register could not answer; QoS 1 goes to the lookup retry queue), dropped_shutdown.",
	}, []string{"event"})
)

// sendQueue is the service's send queues and their goroutines.
type sendQueue struct {
	mu      sync.Mutex
	q       *sendQueues
	running bool
	wake    chan struct{} // cap 1: a commit or a finished release
	work    chan releaseBatch
}

func newSendQueue() *sendQueue {
	return &sendQueue{q: newSendQueues(), wake: make(chan struct{}, 1), work: make(chan releaseBatch)}
}

// limitsOf reads app's queue limits from its configuration, for one of n
// live centers: push_rate, push_burst and the queue bounds are the app's
// across the cluster, so each center takes 1/n of them (API.md "Send
// queues"; pushes spread over the centers by a load balancer).
func limitsOf(app *config.App, n int) queueLimits {
	n = max(n, 1)
	l := queueLimits{
		rate:       app.PushRate / float64(n),
		burst:      max(float64(app.PushBurst)/float64(n), 1),
		bound:      app.PushQueue,
		boundBytes: app.PushQueueBytes,
	}
	if l.bound > 0 {
		l.bound = max((l.bound+n-1)/n, 1)
	}
	if l.boundBytes > 0 {
		l.boundBytes = max((l.boundBytes+int64(n)-1)/int64(n), 1)
	}
	return l
}

// liveCenters is how many centers share the apps' rates (at least 1).
func (s *Service) liveCenters() int {
	if s.centers == nil {
		return 1
	}
	return max(s.centers(), 1)
}

func appLabel(app uint32) string { return strconv.FormatUint(uint64(app), 10) }

// admitPush decides what becomes of a push of msg to uids (see
// sendQueues.admit).
func (s *Service) admitPush(app *config.App, msg push.Message, uids []string) admission {
	sq := s.sendq
	sq.mu.Lock()
	defer sq.mu.Unlock()
	a := sq.q.admit(time.Now(), app.ID, limitsOf(app, s.liveCenters()), len(uids), pushCost(msg, uids))
	switch a.kind {
	case admitQueued:
		queueDepth.WithLabelValues(appLabel(app.ID)).Set(float64(a.queued))
	case admitFull:
		queueEvents.WithLabelValues("refused_full").Add(float64(len(uids)))
	case admitNever:
		queueEvents.WithLabelValues("refused_never").Add(float64(len(uids)))
	}
	return a
}

// cancelPush gives back a queued admission whose message was not stored.
func (s *Service) cancelPush(a admission) {
	sq := s.sendq
	sq.mu.Lock()
	defer sq.mu.Unlock()
	sq.q.cancel(a)
	queueDepth.WithLabelValues(appLabel(a.app)).Set(float64(sq.q.stat(a.app, time.Now()).Depth))
}

// commitPush queues msg for uids under a, starting the scheduler on first
// use; false when the service is shut down (the reservation is given back).
func (s *Service) commitPush(a admission, msg push.Message, uids []string) bool {
	sq := s.sendq
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.cancelPush(a)
		return false
	}
	sq.mu.Lock()
	sq.q.commit(time.Now(), a, msg, uids)
	start := !sq.running
	sq.running = true
	sq.mu.Unlock()
	queueEvents.WithLabelValues("queued").Add(float64(len(uids)))
	s.startReleasing(start)
	return true
}

// requeue puts a journaled push back in its app's queue, past the bounds
// (it was admitted once already): a restart or a takeover (journal.go).
func (s *Service) requeue(app *config.App, msg push.Message, uids []string, at time.Time) {
	sq := s.sendq
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	sq.mu.Lock()
	sq.q.requeue(time.Now(), app.ID, limitsOf(app, s.liveCenters()), msg, uids, at, pushCost(msg, uids))
	start := !sq.running
	sq.running = true
	sq.mu.Unlock()
	queueEvents.WithLabelValues("queued").Add(float64(len(uids)))
	s.startReleasing(start)
}

// startReleasing starts the scheduler and the workers the first time
// something is queued (s.mu held).
func (s *Service) startReleasing(start bool) {
	sq := s.sendq
	if start {
		s.jobWG.Add(1 + releaseWorkers)
		go func() {
			defer s.jobWG.Done()
			s.scheduleReleases(s.jobCtx)
		}()
		for range releaseWorkers {
			go func() {
				defer s.jobWG.Done()
				s.releaseWorker(s.jobCtx)
			}()
		}
	}
	sq.poke()
}

func (sq *sendQueue) poke() {
	select {
	case sq.wake <- struct{}{}:
	default:
	}
}

// scheduleReleases hands every due release to a worker and sleeps until
// the next is due or a commit or a finished release wakes it; at the end
// of ctx it drops what is queued.
func (s *Service) scheduleReleases(ctx context.Context) {
	sq := s.sendq
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var seen *config.Config
	seenN := 0
	for {
		cfg, n := s.conf.Load(), s.liveCenters()
		sq.mu.Lock()
		if cfg != seen || n != seenN { // a reload or a center more or less: new rates apply to what waits
			seen, seenN = cfg, n
			sq.q.reconfigure(time.Now(), func(id uint32) (queueLimits, bool) {
				if a, ok := cfg.App(id); ok {
					return limitsOf(a, n), true
				}
				return queueLimits{}, false
			})
		}
		b, ok, wait := sq.q.next(time.Now())
		if ok {
			queueDepth.WithLabelValues(appLabel(b.app)).Set(float64(sq.q.stat(b.app, time.Now()).Depth))
		}
		sq.mu.Unlock()
		if ok {
			select {
			case sq.work <- b:
			case <-ctx.Done():
				s.dropQueued()
				return
			}
			continue
		}
		if wait < 0 {
			wait = time.Hour
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			s.dropQueued()
			return
		case <-sq.wake:
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

func (s *Service) dropQueued() {
	sq := s.sendq
	sq.mu.Lock()
	defer sq.mu.Unlock()
	n, items := sq.q.dropAll()
	queueEvents.WithLabelValues("dropped_shutdown").Add(float64(n))
	for id := range sq.q.apps {
		queueDepth.WithLabelValues(appLabel(id)).Set(float64(sq.q.stat(id, time.Now()).Depth))
	}
	if n > 0 {
		s.log.Warn("center: send queue dropped at shutdown (QoS 1 messages stay stored)", "recipients", n, "pushes", items)
	}
}

// releaseWorker delivers releases until ctx ends.
func (s *Service) releaseWorker(ctx context.Context) {
	sq := s.sendq
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-sq.work:
			s.release(ctx, b)
			var gone []uint64
			for _, p := range b.parts {
				if p.last {
					gone = append(gone, p.msg.ID)
				}
			}
			s.unjournal(ctx, gone)
			sq.mu.Lock()
			sq.q.done(b.app)
			sq.mu.Unlock()
			sq.poke()
		}
	}
}

// release delivers one release: one lookup of all its recipients, then
// each message to its recipients' rooms. Recipients the register could
// not answer for go to the lookup retry queue (QoS 1; retry.go).
func (s *Service) release(ctx context.Context, b releaseBatch) {
	now := time.Now()
	uids := make([]string, 0, b.n)
	seen := make(map[string]struct{}, b.n)
	live := b.parts[:0:0]
	for _, p := range b.parts {
		queueWait.Observe(now.Sub(p.at).Seconds())
		if now.Unix() >= p.msg.Expire {
			queueEvents.WithLabelValues("expired").Add(float64(len(p.uids)))
			continue
		}
		live = append(live, p)
		for _, u := range p.uids {
			if _, ok := seen[u]; !ok {
				seen[u] = struct{}{}
				uids = append(uids, u)
			}
		}
	}
	queueEvents.WithLabelValues("released").Add(float64(b.n))
	if len(live) == 0 {
		return
	}
	cctx, cancel := s.callCtx(ctx)
	sessions, pending, err := s.lookup(cctx, uids)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("lookup").Inc()
		s.log.Warn("center send queue: lookup", "app", b.app, "unanswered", len(pending), "err", err)
	}
	still := make(map[string]struct{}, len(pending))
	for _, u := range pending {
		still[u] = struct{}{}
	}
	byUID := make(map[string][]push.Session, len(sessions))
	for _, ss := range sessions {
		byUID[ss.UID] = append(byUID[ss.UID], ss)
	}
	for _, p := range live {
		var found []push.Session
		var left []string
		for _, u := range p.uids {
			if _, ok := still[u]; ok {
				left = append(left, u)
				continue
			}
			found = append(found, byUID[u]...)
		}
		s.deliverSessions(ctx, p.msg, found, "queue")
		switch {
		case len(left) == 0:
		case p.msg.QoS == push.QoS1:
			s.enqueue(p.msg, left)
		default:
			queueEvents.WithLabelValues("unanswered_qos0").Add(float64(len(left)))
		}
	}
}

// queueStats returns the send queues of every app for /v1/stats.
func (s *Service) queueStats() map[uint32]queueStat {
	sq := s.sendq
	sq.mu.Lock()
	defer sq.mu.Unlock()
	return sq.q.stats(time.Now())
}

// queueStat returns app's send queue; its bound is the app's push_queue.
func (s *Service) queueStat(app *config.App) queueStat {
	sq := s.sendq
	sq.mu.Lock()
	st := sq.q.stat(app.ID, time.Now())
	sq.mu.Unlock()
	st.Bound = app.PushQueue
	return st
}
