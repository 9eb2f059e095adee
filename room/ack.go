package room

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// ACK: the client's batch ACK of QoS 1 messages. The loop parses it
// (handleAck) and queues its ids on the loop's ackQueue; one worker task
// drains a loop's queue into the store (drainAcks), retrying what the store
// refused, and Shutdown makes a last attempt (flushAcks).

// maxAckQueued bounds the ACKed ids waiting on one loop; past it an ACK is
// refused with ERROR overloaded (the client retries) instead of queueing
// without limit behind a slow store.
const maxAckQueued = 1 << 16

// ACKs the store refused are retried, not dropped: a dropped ACK comes back
// as a duplicate delivery at the next login. The retry is bounded per loop
// (maxAckRetained ids, the oldest dropped first) and in time (ackRetryFor),
// and both drops are counted (lcpush_room_acks_dropped_total): those ids are
// delivered again, which clients dedup by id.
const (
	maxAckRetained = 2 * maxAckQueued
	ackRetryFor    = 2 * time.Minute
	ackBackoffMin  = 50 * time.Millisecond
	ackBackoffMax  = 2 * time.Second
)

// ackParallel is how many store calls one drain makes at once: a cluster's
// saver is an RPC away, and a QoS 1 broadcast brings one ACK per connection.
// Each call is an AckMany of up to push.MaxAckEntries entries and
// push.MaxAckIDs ids (ackChunks), so a drained queue of a loop (at most
// maxAckQueued ids, maxAckRetained with retries) is a few calls, and the
// store commits it as a few transactions (Bolt: one fsync each, shared).
const ackParallel = 8

// ackQueue coalesces the ACKs read on one loop: the first one starts a
// worker task that drains the queue until it is empty, and the ACKs that
// arrive meanwhile ride along. A QoS 1 broadcast to every connection of a
// room thus costs a few pool tasks, not one per connection (which would
// overflow the pool's queue and refuse ACKs). ACKs the store refused go
// back to the head of the queue, in their order, and the drain waits
// (backoff) before it tries again.
type ackQueue struct {
	mu       sync.Mutex
	q        []ackEntry
	ids      int  // ids in q
	draining bool // a drain task (or its retry timer) owns the queue; q was empty when it was false
	backoff  time.Duration
	timer    *time.Timer // pending retry, nil when none
	closed   bool        // Shutdown: no more retry timers
}

// ackEntry is one ACK frame: its ids delete messages of the apps bound on
// the connection when it was read, never another app's (apps are tenants).
type ackEntry struct {
	uid   string
	apps  []uint32 // the connection's copy-on-write set: never modified
	ids   []uint64
	first int64 // unix nano of the first attempt, 0 before it
}

// handleAck parses an ACK on the loop and queues its ids for the store.
func (r *Room) handleAck(s *connState, f proto.Frame) gnet.Action {
	var want int
	if len(f.Body) >= 2 {
		want = int(binary.BigEndian.Uint16(f.Body))
	}
	ids, err := proto.ParseAck(make([]uint64, 0, want), f.Body)
	if err != nil {
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "bad ACK body")
	}
	if len(ids) == 0 {
		return gnet.None
	}
	mAcks.Add(float64(len(ids)))
	if !r.queueAck(s, ids) {
		// Dropping an ACK silently would make the client believe its
		// messages are gone while they would come back at next login.
		mPoolDropped.WithLabelValues("ack").Inc()
		r.writeError(s, f.Seq, proto.ErrCodeOverloaded, "ack not accepted, retry")
	}
	return gnet.None
}

// queueAck queues ids ACKed by s's uid (loop only). It reports false when
// the ACK was not accepted: the queue is full or the pool refused the drain.
func (r *Room) queueAck(s *connState, ids []uint64) bool {
	l := s.loop
	aq := &l.acks
	aq.mu.Lock()
	if aq.ids+len(ids) > maxAckQueued {
		aq.mu.Unlock()
		return false
	}
	aq.q = append(aq.q, ackEntry{uid: s.uid, apps: s.appList(), ids: ids})
	aq.ids += len(ids)
	start := !aq.draining
	aq.draining = true
	aq.mu.Unlock()
	if !start || r.submit(func() { r.drainAcks(aq) }) {
		return true
	}
	// No drain was running, so the queue holds only this ACK: take it back.
	aq.mu.Lock()
	aq.q, aq.ids, aq.draining = aq.q[:0], 0, false
	aq.mu.Unlock()
	return false
}

// drainAcks applies queued ACKs until the queue is empty or the store
// refuses some (a pool task).
func (r *Room) drainAcks(aq *ackQueue) {
	var batch []ackEntry
	for {
		aq.mu.Lock()
		if len(aq.q) == 0 {
			aq.draining = false
			aq.backoff = 0
			aq.mu.Unlock()
			return
		}
		batch, aq.q = aq.q, batch[:0]
		aq.ids = 0
		aq.mu.Unlock()
		failed := r.applyAcks(batch)
		if len(failed) > 0 {
			r.retryAcks(aq, failed)
			clear(batch)
			return
		}
		clear(batch)
	}
}

// retryAcks puts failed entries back at the head of the queue, drops what
// is past the bounds, and schedules the next drain after a backoff.
func (r *Room) retryAcks(aq *ackQueue, failed []ackEntry) {
	now := time.Now().UnixNano()
	keep := failed[:0]
	for _, e := range failed {
		if now-e.first > int64(ackRetryFor) {
			mAcksDropped.WithLabelValues("retry_time").Add(float64(len(e.ids)))
			continue
		}
		keep = append(keep, e)
	}
	aq.mu.Lock()
	defer aq.mu.Unlock()
	aq.q = append(keep, aq.q...)
	n := 0
	for _, e := range aq.q {
		n += len(e.ids)
	}
	for n > maxAckRetained && len(aq.q) > 0 { // the oldest go first
		n -= len(aq.q[0].ids)
		mAcksDropped.WithLabelValues("retry_bound").Add(float64(len(aq.q[0].ids)))
		aq.q = aq.q[1:]
	}
	aq.ids = n
	if aq.closed {
		dropAcks(aq.q, "shutdown")
		aq.q, aq.ids = nil, 0
	}
	if len(aq.q) == 0 {
		aq.draining = false
		return
	}
	aq.backoff = min(max(2*aq.backoff, ackBackoffMin), ackBackoffMax)
	mAckRetries.Inc()
	aq.timer = time.AfterFunc(aq.backoff, func() {
		aq.mu.Lock()
		aq.timer = nil
		closed := aq.closed
		aq.mu.Unlock()
		if closed || !r.submit(func() { r.drainAcks(aq) }) {
			// The pool is full or closed: try again later, or give up on
			// Shutdown (flushAcks takes what is left).
			r.retryAcks(aq, nil)
		}
	})
}

// applyAcks sends the batch to the store as AckMany calls (ackChunks),
// ackParallel at once, and returns the entries of the calls the store did
// not take (in batch order): they are retried whole, ACKs are idempotent.
func (r *Room) applyAcks(batch []ackEntry) []ackEntry {
	if len(batch) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	reqs := make([]push.AckReq, len(batch))
	for i := range batch {
		e := &batch[i]
		if e.first == 0 {
			e.first = now
		}
		reqs[i] = push.AckReq{UID: e.uid, Apps: e.apps, IDs: e.ids}
	}
	chunks := ackChunks(reqs)
	ok := make([]bool, len(chunks))
	ack := func(c int) {
		lo, hi := chunks[c][0], chunks[c][1]
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		_, err := r.deps.Saver.AckMany(ctx, reqs[lo:hi])
		cancel()
		if err != nil {
			r.log.Debug("ack failed, will retry", "entries", hi-lo, "first_uid", reqs[lo].UID, "err", err)
			return
		}
		ok[c] = true
	}
	if len(chunks) == 1 {
		ack(0)
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, ackParallel)
		for c := range chunks {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ack(c)
			})
		}
		wg.Wait()
	}
	var failed []ackEntry
	for c, done := range ok {
		if !done {
			failed = append(failed, batch[chunks[c][0]:chunks[c][1]]...)
		}
	}
	if len(failed) > 0 {
		r.log.Warn("acks not taken by the store, retrying", "entries", len(failed))
	}
	return failed
}

// ackChunks cuts reqs into the [lo, hi) ranges of AckMany calls within
// push.CheckAckBatch's bounds, in order (an ACK frame holds at most 65,535
// ids and a connection binds at most maxApps apps, so every entry fits a
// call of its own).
func ackChunks(reqs []push.AckReq) [][2]int {
	var out [][2]int
	lo, ids := 0, 0
	for i := range reqs {
		n := len(reqs[i].IDs)
		if i > lo && (i-lo == push.MaxAckEntries || ids+n > push.MaxAckIDs) {
			out = append(out, [2]int{lo, i})
			lo, ids = i, 0
		}
		ids += n
	}
	return append(out, [2]int{lo, len(reqs)})
}

// flushAcks stops the retry timers and makes one last attempt at every
// loop's queued ACKs, bounded by ctx (Shutdown); what still fails is
// dropped and counted.
func (r *Room) flushAcks(ctx context.Context) {
	for _, l := range r.allLoops() {
		aq := &l.acks
		aq.mu.Lock()
		aq.closed = true
		if aq.timer != nil && aq.timer.Stop() {
			aq.timer = nil
			aq.draining = false
		}
		// A drain task still running finishes the batch it holds; what
		// it fails to apply is counted by retryAcks.
		q := aq.q
		aq.q, aq.ids = nil, 0
		aq.mu.Unlock()
		if len(q) == 0 || ctx.Err() != nil {
			dropAcks(q, "shutdown")
			continue
		}
		dropAcks(r.applyAcks(q), "shutdown")
	}
}

func dropAcks(q []ackEntry, reason string) {
	n := 0
	for _, e := range q {
		n += len(e.ids)
	}
	if n > 0 {
		mAcksDropped.WithLabelValues(reason).Add(float64(n))
	}
}
