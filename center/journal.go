package center

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/push"
)

// The send queue journal (API.md "Send queues": a queued message never
// waits for its recipient's next login). Each queued push is journaled in
// the store, under this center's member id, before its 202 and forgotten
// once its last recipients are released. A center that starts re-queues
// what the journal holds under its id (a restart), and the live center
// with the lowest id claims the pushes of a center that has been gone from
// membership for two checks in a row and queues them itself. A push taken
// over may reach a recipient twice (released just before the crash): QoS 1
// clients deduplicate by message id; that is the at-least-once side.

var journalEvents = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "lcpush_center_queue_journal_total",
	Help: "Send queue journal events: written, failed (a push queued without its journal entry), recovered (re-queued at start), claimed (taken over from a gone center).",
}, []string{"event"})

const (
	journalEvery = 2 * time.Second // membership checks for gone centers
	journalBatch = 1000            // pushes read per Queued call
)

// journal writes q's entry; a failure leaves the push queued in memory
// only (counted).
func (s *Service) journal(ctx context.Context, msg push.Message, uids []string) {
	if s.id == "" {
		return
	}
	s.mine(msg.ID) // before the write: a recovery reading meanwhile must skip it
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.store.Enqueue(ctx, push.QueuedPush{Msg: msg, UIDs: uids, Owner: s.id, At: time.Now().UnixMilli()}); err != nil {
		s.forget(msg.ID)
		journalEvents.WithLabelValues("failed").Inc()
		s.log.Warn("center send queue: journal", "msg", msg.ID, "err", err)
		return
	}
	journalEvents.WithLabelValues("written").Inc()
}

// unjournal forgets released pushes (release worker).
func (s *Service) unjournal(ctx context.Context, ids []uint64) {
	if s.id == "" || len(ids) == 0 {
		return
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.store.Dequeue(ctx, ids); err != nil {
		s.log.Debug("center send queue: journal dequeue", "ids", len(ids), "err", err)
	}
	s.forget(ids...)
}

// mine adds id to the pushes this center journaled, and reports whether
// it was not among them already.
func (s *Service) mine(id uint64) bool {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if _, ok := s.journaled[id]; ok {
		return false
	}
	if s.journaled == nil {
		s.journaled = make(map[uint64]struct{})
	}
	s.journaled[id] = struct{}{}
	return true
}

// forget removes ids from the pushes this center journaled.
func (s *Service) forget(ids ...uint64) {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	for _, id := range ids {
		delete(s.journaled, id)
	}
}

// recoverJournal queues what the journal holds under this center's id and
// this center did not journal or queue itself; it returns how many pushes
// it queued. Its own pushes are told apart by id (mine), not by a look at
// the queue: a push journaled while the journal is read is not in the
// queue yet, and one released is out of it before its entry is deleted;
// either was queued twice (a restart's recovery running while the first
// pushes arrived).
func (s *Service) recoverJournal(ctx context.Context) int {
	n := 0
	cctx, cancel := s.callCtx(ctx)
	list, err := s.store.Queued(cctx, s.id, journalBatch)
	cancel()
	if err != nil {
		s.log.Warn("center send queue: journal read", "err", err)
		return 0
	}
	cfg := s.conf.Load()
	for _, e := range list {
		app, ok := cfg.App(e.Msg.App)
		if !ok || len(e.UIDs) == 0 || !s.mine(e.Msg.ID) {
			continue
		}
		s.requeue(app, e.Msg, e.UIDs, time.UnixMilli(e.At))
		n++
	}
	return n
}

// watchJournal re-queues this center's journal at start, then takes over
// the journals of centers that left membership, until ctx ends.
func (s *Service) watchJournal(ctx context.Context) {
	if n := s.recoverJournal(ctx); n > 0 {
		journalEvents.WithLabelValues("recovered").Add(float64(n))
		s.log.Info("center send queue: re-queued from the journal", "pushes", n)
	}
	if s.centerIDs == nil {
		return
	}
	t := time.NewTicker(journalEvery)
	defer t.Stop()
	missing := map[string]int{} // owner -> checks in a row it was not live
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		live := s.centerIDs()
		if len(live) == 0 || slices.Min(live) != s.id {
			clear(missing)
			continue // the lowest live id takes over; nobody else
		}
		cctx, cancel := s.callCtx(ctx)
		owners, err := s.store.QueueOwners(cctx)
		cancel()
		if err != nil {
			continue
		}
		for o := range missing {
			if !slices.Contains(owners, o) {
				delete(missing, o)
			}
		}
		claimed := 0
		for _, o := range owners {
			if o == s.id || slices.Contains(live, o) {
				delete(missing, o)
				continue
			}
			if missing[o]++; missing[o] < 2 {
				continue // gone for one check: it may be restarting
			}
			cctx, cancel := s.callCtx(ctx)
			n, err := s.store.Claim(cctx, o, s.id)
			cancel()
			if err != nil {
				s.log.Warn("center send queue: claim", "from", o, "err", err)
				continue
			}
			claimed += n
			delete(missing, o)
		}
		if claimed > 0 {
			journalEvents.WithLabelValues("claimed").Add(float64(claimed))
			n := s.recoverJournal(ctx)
			s.log.Info("center send queue: took over a gone center's queue", "pushes", n)
		}
	}
}
