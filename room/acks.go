package room

import (
	"context"
	"sync"
)

// maxAckQueued bounds the ACKed ids waiting on one loop; past it an ACK is
// refused with ERROR overloaded (the client retries) instead of queueing
// without limit behind a slow store.
const maxAckQueued = 1 << 16

// ackParallel is how many store calls one drain makes at once: a cluster's
// saver is an RPC away, and a QoS 1 broadcast brings one ACK per connection.
const ackParallel = 8

// ackQueue coalesces the ACKs read on one loop: the first one starts a
// worker task that drains the queue until it is empty, and the ACKs that
// arrive meanwhile ride along. A QoS 1 broadcast to every connection of a
// room thus costs a few pool tasks, not one per connection (which would
// overflow the pool's queue and refuse ACKs).
type ackQueue struct {
	mu       sync.Mutex
	q        []ackEntry
	ids      int  // ids in q
	draining bool // a drain task owns the queue; q was empty when it was false
}

// ackEntry is one ACK frame: its ids delete messages of the apps bound on
// the connection when it was read, never another app's (apps are tenants).
type ackEntry struct {
	uid  string
	apps []uint32 // the connection's copy-on-write set: never modified
	ids  []uint64
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

// drainAcks applies queued ACKs until the queue is empty (a pool task).
func (r *Room) drainAcks(aq *ackQueue) {
	var batch []ackEntry
	for {
		aq.mu.Lock()
		if len(aq.q) == 0 {
			aq.draining = false
			aq.mu.Unlock()
			return
		}
		batch, aq.q = aq.q, batch[:0]
		aq.ids = 0
		aq.mu.Unlock()
		r.applyAcks(batch)
		clear(batch)
	}
}

func (r *Room) applyAcks(batch []ackEntry) {
	ack := func(part []ackEntry) {
		for _, e := range part {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			if _, err := r.deps.Inbox.Ack(ctx, e.uid, e.apps, e.ids); err != nil {
				r.log.Warn("ack failed", "uid", e.uid, "ids", len(e.ids), "err", err)
			}
			cancel()
		}
	}
	if len(batch) < 2*ackParallel {
		ack(batch)
		return
	}
	var wg sync.WaitGroup
	per := (len(batch) + ackParallel - 1) / ackParallel
	for i := 0; i < len(batch); i += per {
		part := batch[i:min(i+per, len(batch))]
		wg.Go(func() { ack(part) })
	}
	wg.Wait()
}
