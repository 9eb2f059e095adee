package room

import (
	"context"
	"encoding/binary"
	"slices"
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

	// What the drain task reuses from one drain to the next, so that an
	// ACK costs no slice of its own (the drain task owns them: draining).
	drain    func()     // r.drainAcks(aq), built once
	spare    []ackEntry // the drained batch's array, cleared
	scratch  ackScratch
	idBuf    []uint64 // the ids of q's new entries, back to back (theirs are capped sub-slices)
	spareIDs []uint64 // the drained batch's idBuf, once every entry of it is applied

	// parse is handleAck's parse buffer (loop only: no lock); queueAck
	// copies the ids into idBuf.
	parse []uint64
}

// ackScratch is applyAcks' working memory, reused by the drain task.
type ackScratch struct {
	reqs   []push.AckReq
	chunks [][2]int
	ok     []bool
}

// maxAckSpare bounds the entries of the arrays a drain keeps for the next
// one: past it they go to the GC (a QoS 1 broadcast's burst of ACKs).
const maxAckSpare = 1024

// maxAckSpareIDs likewise bounds the id arrays kept (parse, spareIDs).
const maxAckSpareIDs = 8192

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
	aq := &s.loop.acks
	ids, err := proto.ParseAck(slices.Grow(aq.parse[:0], want), f.Body)
	if cap(ids) <= maxAckSpareIDs {
		aq.parse = ids[:0] // queueAck copies what it keeps
	}
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
	n := len(aq.idBuf)
	aq.idBuf = append(aq.idBuf, ids...)
	aq.q = append(aq.q, ackEntry{uid: s.uid, apps: s.appList(), ids: aq.idBuf[n:len(aq.idBuf):len(aq.idBuf)]})
	aq.ids += len(ids)
	start := !aq.draining
	aq.draining = true
	if start && aq.drain == nil {
		aq.drain = func() { r.drainAcks(aq) }
	}
	drain := aq.drain
	aq.mu.Unlock()
	if !start || r.submit(drain) {
		return true
	}
	// No drain was running, so the queue holds only this ACK: take it back.
	aq.mu.Lock()
	aq.q, aq.ids, aq.draining = aq.q[:0], 0, false
	aq.idBuf = aq.idBuf[:0]
	aq.mu.Unlock()
	return false
}

// drainAcks applies queued ACKs until the queue is empty or the store
// refuses some (a pool task).
func (r *Room) drainAcks(aq *ackQueue) {
	// batch and ids are arrays no queued entry refers to: the spares, then
	// what the last batch, all applied, held. A batch the store refused
	// keeps its arrays (retryAcks queues its entries again).
	aq.mu.Lock()
	batch, ids := aq.spare, aq.spareIDs
	aq.spare, aq.spareIDs = nil, nil
	aq.mu.Unlock()
	for {
		aq.mu.Lock()
		if len(aq.q) == 0 {
			aq.draining = false
			aq.backoff = 0
			if cap(batch) <= maxAckSpare {
				aq.spare = batch[:0]
			}
			if cap(ids) <= maxAckSpareIDs {
				aq.spareIDs = ids[:0]
			}
			aq.mu.Unlock()
			return
		}
		batch, aq.q = aq.q, batch[:0]
		ids, aq.idBuf = aq.idBuf, ids[:0]
		aq.ids = 0
		aq.mu.Unlock()
		failed := r.applyAcks(batch, &aq.scratch)
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
// sc, when not nil, is working memory the caller owns (the drain task's):
// the store calls do not keep what they are given.
func (r *Room) applyAcks(batch []ackEntry, sc *ackScratch) []ackEntry {
	if len(batch) == 0 {
		return nil
	}
	if sc == nil {
		sc = new(ackScratch)
	}
	now := time.Now().UnixNano()
	reqs := sc.reqs[:0]
	for i := range batch {
		e := &batch[i]
		if e.first == 0 {
			e.first = now
		}
		reqs = append(reqs, push.AckReq{UID: e.uid, Apps: e.apps, IDs: e.ids})
	}
	chunks := ackChunks(sc.chunks[:0], reqs)
	ok := append(sc.ok[:0], make([]bool, len(chunks))...)
	// One shared deadline context (callCtx), not one of its own per call:
	// WithTimeout was a context, a timer and a cancel func per ACK drain.
	ctx := callCtx()
	if len(chunks) == 1 {
		ok[0] = r.ackChunk(ctx, reqs[chunks[0][0]:chunks[0][1]])
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, ackParallel)
		rq := reqs // captured by value: reqs, reassigned above, would move to the heap
		for c := range chunks {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ok[c] = r.ackChunk(ctx, rq[chunks[c][0]:chunks[c][1]])
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
	clear(reqs) // the scratch keeps no uid or ids alive
	if cap(reqs) <= maxAckSpare {
		sc.reqs, sc.chunks, sc.ok = reqs[:0], chunks[:0], ok[:0]
	} else {
		*sc = ackScratch{}
	}
	return failed
}

// ackChunk makes one AckMany call and reports whether the store took it.
func (r *Room) ackChunk(ctx context.Context, reqs []push.AckReq) bool {
	if _, err := r.deps.Saver.AckMany(ctx, reqs); err != nil {
		r.log.Debug("ack failed, will retry", "entries", len(reqs), "first_uid", reqs[0].UID, "err", err)
		return false
	}
	return true
}

// ackChunks cuts reqs into the [lo, hi) ranges of AckMany calls within
// push.CheckAckBatch's bounds, in order (an ACK frame holds at most 65,535
// ids and a connection binds at most maxApps apps, so every entry fits a
// call of its own).
func ackChunks(out [][2]int, reqs []push.AckReq) [][2]int {
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
		aq.idBuf = nil // q's ids: no later ACK may reuse the array
		aq.mu.Unlock()
		if len(q) == 0 || ctx.Err() != nil {
			dropAcks(q, "shutdown")
			continue
		}
		dropAcks(r.applyAcks(q, nil), "shutdown")
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
