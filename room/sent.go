package room

import (
	"context"
	"sync/atomic"

	"github.com/lcpush/lcpush/pkg/push"
)

// The "sent" count of the delivery status (GET /v1/messages/{id}): each
// loop notes the PUSH frames it wrote to sockets, on the loop without a
// lock, and its sweep hands them to the store in one Saver.AddSent per
// tick. A unicast or multicast write is noted with its uid (the uid's
// state becomes "sent"); a broadcast only counts. A broadcast task also
// notes, per loop, the connections it found when it started: a count-only
// delta with Targets, once per task (bcasttask.go). What a failed AddSent
// carried is lost: "sent" is a count for operators, never a delivery
// guarantee (the store's stored/acked counts are exact).

// maxSentUIDs bounds the per-uid notes of one loop between two sweeps;
// beyond it writes are only counted.
const maxSentUIDs = 16384

type sentKey struct {
	id  uint64
	app uint32
}

type sentLog struct {
	uids    []push.StatusDelta
	counts  map[sentKey]int64
	targets map[sentKey]int64 // broadcast targets, apart from the writes
	ends    endLog            // sessions ended on the loop (checkpoint.go), reported with the notes

	// free is the notes' slice the reporting worker gave back (putDeltas):
	// the loop and its reports swap two slices, so a push's note appends
	// into a grown array. A sync.Pool (before) is emptied by every other
	// GC, and GCs come every few ms under pushes: the notes re-grew their
	// slice from nil each tick (~90 B a push in BenchmarkUnicastE2E).
	free atomic.Pointer[[]push.StatusDelta]
}

// minFreeDeltas: a notes' slice up to this capacity is always kept for
// the next tick; a bigger one only while a quarter of it was used, so the
// array of a burst goes to the GC a tick or two after it.
const minFreeDeltas = 1024

// note records one write of msg to uid (loop only).
func (l *sentLog) note(msg *push.Message, uid string) {
	if !msg.Broadcast && len(l.uids) < maxSentUIDs {
		l.uids = append(l.uids, push.StatusDelta{MsgID: msg.ID, App: msg.App, UID: uid, Sent: 1})
		return
	}
	l.count(msg, 1)
}

// count records n writes of msg without their uids (loop only).
func (l *sentLog) count(msg *push.Message, n int64) {
	if l.counts == nil {
		l.counts = make(map[sentKey]int64)
	}
	l.counts[sentKey{msg.ID, msg.App}] += n
}

// target records n connections a broadcast task found here (loop only).
func (l *sentLog) target(msg *push.Message, n int64) {
	if n <= 0 {
		return
	}
	if l.targets == nil {
		l.targets = make(map[sentKey]int64)
	}
	l.targets[sentKey{msg.ID, msg.App}] += n
}

// take returns the notes since the last take (loop only); give the slice
// back with putDeltas.
func (l *sentLog) take() *[]push.StatusDelta {
	if len(l.uids) == 0 && len(l.counts) == 0 && len(l.targets) == 0 {
		return nil
	}
	out := l.uids
	for k, n := range l.counts {
		out = append(out, push.StatusDelta{MsgID: k.id, App: k.app, Sent: n})
	}
	for k, n := range l.targets {
		out = append(out, push.StatusDelta{MsgID: k.id, App: k.app, Targets: n})
	}
	next := l.free.Swap(nil)
	if next == nil {
		next = new([]push.StatusDelta)
	}
	l.uids = (*next)[:0]
	*next = out
	clear(l.counts)
	clear(l.targets)
	return next
}

func (l *sentLog) putDeltas(p *[]push.StatusDelta) {
	if c := cap(*p); c > minFreeDeltas && len(*p) < c/4 {
		return
	}
	clear(*p) // drop the uid strings
	*p = (*p)[:0]
	l.free.Store(p)
}

// reportSent hands the loop's notes to the store (sweep, loop only).
func (r *Room) reportSent(l *loopState) {
	r.reportCheckpoints(l)
	p := l.sent.take()
	if p == nil {
		return
	}
	if !r.submit(func() {
		defer l.sent.putDeltas(p)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := r.deps.Saver.AddSent(ctx, *p); err != nil {
			mSentLost.Add(float64(len(*p)))
			r.log.Debug("sent counts not stored", "deltas", len(*p), "err", err)
		}
	}) {
		mSentLost.Add(float64(len(*p)))
		l.sent.putDeltas(p)
	}
}
