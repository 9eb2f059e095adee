package room

import (
	"context"
	"fmt"
	"sync"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// Push: delivery of a message to listed connections. Push finds them in
// the index and queues one batch per loop; the loop's flush (write.go)
// writes them. Broadcast (broadcast.go) queues app-wide batches instead.

// pushBatch is one message for the connections of one loop. Push queues it
// on the loop (pushQueue); the loop's flush writes every batch queued since
// its previous flush with one write per connection.
type pushBatch struct {
	msg   push.Message
	conns []*connState
	// all: the batch is for every authenticated connection of the loop that
	// has msg.App bound when the flush runs (conns is unused): an app-wide
	// broadcast costs no per-connection bookkeeping until it is written.
	all  bool
	cost int64 // bytes charged to the loop's backlog
	// wait, when set, is told how many frames of the batch were written
	// (sent, loop only) once the batch is released.
	wait *bcastWait
	sent int
	// wide: queued app-wide (all), even after a mixed flush expanded it;
	// its writes are counted, not noted per uid (sent.go).
	wide bool
	// had: connections a load gave this stored broadcast before it went
	// live on the loop (cover.go); the flush skips them. Loop only.
	had map[uint64]struct{}
	// coverAt, on a paced task's last batch for a loop: 1 + the loop's
	// cover counter at the task's snapshot, recorded as the broadcast's
	// live mark once the batch is written (cover.go). 0: none.
	coverAt uint64
}

// skips reports whether the flush must not write b to s (cover.go).
func (b *pushBatch) skips(s *connState) bool {
	if b.had == nil {
		return false
	}
	_, ok := b.had[s.id]
	return ok
}

var batchPool = sync.Pool{New: func() any { return &pushBatch{conns: make([]*connState, 0, 8)} }}

func (b *pushBatch) release() {
	if b.wait != nil {
		b.wait.done(b.sent)
	}
	clear(b.conns)
	b.conns = b.conns[:0]
	b.had, b.coverAt = nil, 0
	b.msg = push.Message{}
	b.all, b.cost, b.wait, b.sent, b.wide = false, 0, nil, 0, false
	batchPool.Put(b)
}

// batchOverhead is what a queued batch costs besides its payload and
// connection list: the struct, its queue slot and the frame header.
const batchOverhead = 96 + proto.HeaderSize

// admit charges b to l's backlog, or drops it (released, counted) when the
// loop already has maxLoopBacklog bytes of work queued: a loop that cannot
// keep up must not make the room's memory grow without limit. QoS 1
// messages stay stored and reach their users at the next login.
func (l *loopState) admit(b *pushBatch) bool {
	b.cost = int64(len(b.msg.Payload) + batchOverhead + 8*len(b.conns))
	if l.backlog.Add(b.cost) > maxLoopBacklog {
		l.backlog.Add(-b.cost)
		if b.all {
			mPushDropped.WithLabelValues("loop_backlog_broadcast").Inc()
		} else {
			mPushDropped.WithLabelValues("loop_backlog").Add(float64(len(b.conns)))
		}
		b.release()
		return false
	}
	return true
}

// Push delivers msg to the targets connected here and returns how many of
// them are (right uid and connID, msg.App bound). It never blocks: the
// frames are written later by the connections' loops. msg.Payload is shared
// with the loops and must not be modified afterwards.
func (r *Room) Push(_ context.Context, msg push.Message, targets []push.Target) (int, error) {
	if r.isClosing() {
		return 0, fmt.Errorf("room push: %w", push.ErrClosed)
	}
	type loopBatch struct {
		l *loopState
		b *pushBatch
	}
	var local [8]loopBatch
	batches := local[:0]
	for _, t := range targets {
		s := r.idx.get(t.UID, t.ConnID)
		if s == nil || !s.hasApp(msg.App) {
			continue
		}
		var b *pushBatch
		for _, x := range batches {
			if x.l == s.loop {
				b = x.b
				break
			}
		}
		if b == nil {
			b = batchPool.Get().(*pushBatch)
			b.msg = msg
			batches = append(batches, loopBatch{s.loop, b})
		}
		b.conns = append(b.conns, s)
	}
	found := 0
	for _, x := range batches {
		n := len(x.b.conns)
		if !x.l.admit(x.b) {
			continue
		}
		if r.enqueue(x.l, x.b) {
			found += n
		}
	}
	return found, nil
}
