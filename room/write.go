package room

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// The write path, all of it: frames are built on the loop's buffer
// (writeEmpty, writeError, writeKick, writePong, appendStored) or, for
// pushes, once per batch in the loop's flush arena; every byte a connection
// is sent then goes through put (send, sendv, sendWire), which hands frames
// to the connection's transport for their wire form and holds the
// connection to one output budget. Pushes are coalesced per loop (pushQueue): one
// flush gives each connection all of its frames in one write.
//
// gnet queues without bound what the socket does not take (one list node
// per write), so a client that never reads would otherwise make the room
// buffer gigabytes of replies.
//
// What happens once the unread output is past its budget depends on the
// kind of frame (docs/protocol.md, "Limits"):
//
//   - replies (PONG, AUTH_OK, BIND_OK, UNBIND_OK, UPSTREAM_OK, ERROR) answer
//     the client's own frames: past replyBudget the room stops reading the
//     connection (backpressure) until its output falls to half of it; a
//     client that keeps sending meanwhile is closed once its unread input
//     passes pausedInbound (closeInbound);
//   - pushes (PUSH, live or stored): past maxOutbound the connection is
//     closed as a slow consumer (closeSlow); QoS 1 messages stay stored and
//     come back at the next login;
//   - control frames (KICK, REDIRECT) are small and final: they are written
//     unless the output is already past maxOutbound, which closes it too;
//   - a load of stored messages starts only under maxOutbound and is then
//     written whole: it is bounded by the store's load limit (1,000
//     messages) times the app's max_payload.
//
// Both rules are counted (lcpush_room_backpressure_total, closes by reason).
type frameKind uint8

const (
	kindReply frameKind = iota
	kindPush
	kindControl
	// kindStored is the rest of one load of stored messages (AUTH, BIND),
	// whose first frames went as kindPush: a load is bounded by the store's
	// load limit, and is written whole so that it is not cut off at the
	// budget on every login.
	kindStored
)

const (
	// replyBudget is the unread output past which the room stops reading a
	// connection's frames.
	replyBudget = 64 << 10
	// maxOutbound is the unread output past which a connection is closed
	// as a slow consumer.
	maxOutbound = 1 << 20
)

// pausedInbound bounds the input a paused connection may pile up before it
// is closed: two maximum frames (a frame being read plus one more).
func pausedInbound(maxFrame int) int { return 2 * maxFrame }

// send writes frames (one or more whole frames, back to back) to s under
// its output budget and reports whether s is still open. A transport other
// than raw TCP gets them encoded to its wire form first (transport.go); raw
// TCP writes them as they are. Loop only.
func (r *Room) send(s *connState, kind frameKind, frames []byte) bool {
	return r.put(s, kind, frames, s.custom)
}

// sendWire writes b, bytes already in s's wire form (a handshake reply, a
// transport's close bytes), to s under its output budget, as send.
func (r *Room) sendWire(s *connState, kind frameKind, b []byte) bool {
	return r.put(s, kind, b, false)
}

// put is send and sendWire: encode tells it to have s's transport encode b
// first. A failed write makes gnet close the connection at once (OnClose
// runs inside Write), and a closed connection's descriptor may already
// belong to another client: nothing else in the room calls Write (loop
// only).
func (r *Room) put(s *connState, kind frameKind, b []byte, encode bool) bool {
	if s.state == stClosed {
		return false
	}
	if encode {
		l := s.loop
		l.wire = s.tr.appendWire(l.wire[:0], b)
		b = l.wire
	}
	if out := s.c.OutboundBuffered(); out > 0 && out+len(b) > maxOutbound && kind != kindStored {
		// Nothing is queued on top of a full budget: the frame would only
		// grow the backlog of a client that does not read.
		r.closeConn(s, closeSlow)
		return false
	}
	_, _ = s.c.Write(b)
	if s.state == stClosed {
		return false
	}
	if kind == kindReply && !s.paused && s.c.OutboundBuffered() > replyBudget {
		s.paused = true
		mBackpressure.Inc()
	}
	return true
}

// sendv writes several frames to s with one writev under the same budget
// as send (kindPush); it reports whether s is still open.
func (r *Room) sendv(s *connState, frames [][]byte) bool {
	if s.state == stClosed {
		return false
	}
	if s.custom {
		l := s.loop
		l.wire = l.wire[:0]
		for _, f := range frames {
			l.wire = s.tr.appendWire(l.wire, f)
		}
		return r.put(s, kindPush, l.wire, false)
	}
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	if out := s.c.OutboundBuffered(); out+total > maxOutbound && out > 0 {
		r.closeConn(s, closeSlow)
		return false
	}
	for len(frames) > 0 && s.state != stClosed {
		k := min(len(frames), maxIOV)
		_, _ = s.c.Writev(frames[:k])
		frames = frames[k:]
	}
	return s.state != stClosed
}

// resumable reports whether a paused connection's output has drained enough
// to read its frames again, and clears the pause if so (loop only).
func (r *Room) resumable(s *connState) bool {
	if !s.paused {
		return true
	}
	if s.c.OutboundBuffered() > replyBudget/2 {
		return false
	}
	s.paused = false
	return true
}

// writePong answers a PING. The common Seq 0 case writes the one shared PONG
// frame; otherwise the reply echoes Seq from the loop's scratch buffer.
func (r *Room) writePong(s *connState, seq uint32) {
	if seq == 0 {
		r.send(s, kindReply, proto.PongFrame)
		return
	}
	r.writeEmpty(s, proto.OpPong, seq)
}

// writeEmpty writes a reply frame without body (loop only).
func (r *Room) writeEmpty(s *connState, op uint8, seq uint32) {
	l := s.loop
	l.outBuf = proto.AppendHeader(l.outBuf[:0], proto.Header{Op: op, Seq: seq}, 0)
	r.send(s, kindReply, l.outBuf)
}

// writeError writes an ERROR frame answering seq (loop only). ERROR replies
// are limited per connection (room.limits.errors): a client that keeps making the
// room refuse its frames gets one last ERROR rate_limited and is closed, so
// refusals cannot become a flood of their own.
func (r *Room) writeError(s *connState, seq uint32, code, msg string) {
	if s.state == stClosed {
		return
	}
	if !s.extra().errs.allow(limitOf(r.deps.Config.Load().Room.Limits.Errors), r.nowMS()) {
		l := s.loop
		l.outBuf = proto.AppendError(l.outBuf[:0], seq, proto.ErrCodeRateLimited, "too many refused frames")
		r.send(s, kindReply, l.outBuf)
		mErrorsSent.WithLabelValues(proto.ErrCodeRateLimited).Inc()
		r.lingerClose(s, closeErrors, proto.ErrCodeRateLimited)
		return
	}
	l := s.loop
	l.outBuf = proto.AppendError(l.outBuf[:0], seq, code, msg)
	r.send(s, kindReply, l.outBuf)
	mErrorsSent.WithLabelValues(code).Inc()
}

// writeKick writes a KICK frame (loop only); the caller closes.
func (r *Room) writeKick(s *connState, code int, reason string) {
	l := s.loop
	l.outBuf = proto.AppendJSON(l.outBuf[:0], proto.Header{Op: proto.OpKick}, proto.Kick{Code: code, Reason: reason})
	r.send(s, kindControl, l.outBuf)
}

// appendStored appends PUSH frames of stored messages, flushing to s every
// 64 KiB so the loop's buffer stays small (loop only). One load is written
// whole (kindStored): it is bounded by the store's load limit.
func (r *Room) appendStored(s *connState, buf []byte, msgs []push.Message) ([]byte, int) {
	t := time.Now()
	now := t.Unix()
	n := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Expired(now) || !s.hasApp(m.App) || s.loop.cover.skipLoad(s, m, t) {
			continue
		}
		buf = proto.AppendPush(buf, m.App, true, m.ID, m.Payload)
		mPushes.Inc()
		s.loop.sent.note(m, s.uid)
		n++
		if len(buf) >= 64<<10 {
			r.send(s, kindStored, buf) // a closed s ignores the writes that follow
			buf = buf[:0]
		}
	}
	return buf, n
}

// Push coalescing and the loop's flush.

// maxIOV bounds the frames given to one writev(2): Linux refuses more than
// IOV_MAX (1024) with EINVAL, which gnet would turn into a close.
const maxIOV = 1024

// maxCopyWrite is the most bytes of frames for one connection that a flush
// copies into one buffer for a plain write(2); larger lists go by writev,
// whose iovec array x/sys allocates on every call.
const maxCopyWrite = 64 << 10

// A flush writes the queue in segments of at most maxFlushRefs (batch,
// connection) pairs and about maxFlushBytes of frames, so that a full
// backlog (maxLoopBacklog broadcasts to every connection of the loop) needs
// bounded scratch memory; order is kept, each segment being written in turn.
const (
	maxFlushRefs  = 1 << 19
	maxFlushBytes = 1 << 20
)

// maxArenaKeep is the largest frame arena a loop keeps between flushes; a
// burst that needed more gives its memory back.
const maxArenaKeep = 4 << 20

// pushQueue coalesces the pushes for one loop. Push appends batches under mu
// and schedules one flush on the loop unless one is already scheduled; the
// flush takes everything queued so far, so under a stream each connection
// gets one write per loop wake-up carrying all its frames, while a lone push
// on an idle loop still goes out at once. Under load the flush may first
// linger, up to room.linger, for more batches (linger.go).
type pushQueue struct {
	mu        sync.Mutex
	q         []*pushBatch // guarded by mu
	scheduled atomic.Bool  // a flush is queued on the loop (or lingering) and has not started yet
	ls        lingerState

	// Loop-only scratch of the flush, reused from one flush to the next.
	spare  []*pushBatch
	arena  []byte
	frames [][]byte
	slot   map[*connState]int32 // connection -> index in groups
	groups []connFrames
	refs   []frameRef
	sel    []int32
	hit    []int32 // frames of sel one connection gets (deliver)
	iov    [][]byte
	wbuf   []byte // one connection's frames, copied for a single write
}

// connFrames is one connection touched by a flush: a linked list in refs of
// the frames it gets, in queue order.
type connFrames struct {
	s          *connState
	head, tail int32
}

type frameRef struct {
	frame, next int32
}

// pushFlush is the loop's flush task (gnet.Runnable), one per loop.
type pushFlush struct {
	r *Room
	l *loopState
}

// enqueue queues b on l and makes sure a flush will run after it. It
// reports false when the loop no longer runs tasks (b is dropped then).
func (r *Room) enqueue(l *loopState, b *pushBatch) bool {
	pq := &l.push
	now := r.now()
	pq.mu.Lock()
	pq.ls.noteArrival(now, len(pq.q) == 0)
	pq.q = append(pq.q, b)
	pq.mu.Unlock()
	// A failed CAS means a flush is scheduled (or lingering) and has not
	// cleared the flag yet: it clears it before taking the queue, so it
	// will see b.
	if !pq.scheduled.CompareAndSwap(false, true) {
		return true
	}
	if err := l.el.Execute(context.Background(), l.flusher); err != nil {
		r.dropQueued(l)
		return false
	}
	return true
}

// Run takes the loop's queued batches and writes them; under load it first
// lingers (linger.go): it arms the loop's timer, whose Execute calls Run
// again, and returns with the flush still scheduled.
func (f *pushFlush) Run(context.Context) error {
	r, l := f.r, f.l
	pq := &l.push
	lingered := pq.ls.lingering
	if lingered {
		pq.ls.lingering = false
	} else if d := r.lingerFor(l); d > 0 {
		r.armLinger(l, d)
		return nil
	}
	pq.scheduled.Store(false) // before the swap: see enqueue
	pq.mu.Lock()
	q := pq.q
	pq.q = pq.spare[:0]
	pq.mu.Unlock()
	if len(q) == 0 {
		pq.spare = q
		return nil
	}
	start := r.now()
	if lingered {
		mFlushLingered.Inc()
		mLinger.Observe(time.Duration(start - pq.ls.armedAt).Seconds())
	}
	mFlushBatches.Observe(float64(len(q)))
	for _, b := range q {
		l.backlog.Add(-b.cost)
	}
	for rest := q; len(rest) > 0; {
		k := segment(rest, l.n)
		r.flushBatches(l, rest[:k])
		rest = rest[k:]
	}
	pq.ls.lastDur, pq.ls.lastN = time.Duration(r.now()-start), len(q)
	for i, b := range q {
		if b.wide && b.sent > 0 {
			l.sent.count(&b.msg, int64(b.sent))
		}
		b.release()
		q[i] = nil
	}
	pq.spare = q[:0]
	return nil
}

// segment returns how many batches at the head of q one flushBatches takes:
// at least one, and no more than the flush bounds allow; an app-wide batch
// counts as conns references (the loop's connections).
func segment(q []*pushBatch, conns int) int {
	refs, size := 0, 0
	for i, b := range q {
		if b.all {
			refs += conns
		} else {
			refs += len(b.conns)
		}
		size += len(b.msg.Payload) + proto.HeaderSize + 8
		if i > 0 && (refs > maxFlushRefs || size > maxFlushBytes) {
			return i
		}
	}
	return len(q)
}

// flushBatches builds each batch's frame once and gives every connection
// all of its frames in one write, in queue order (loop only).
func (r *Room) flushBatches(l *loopState, q []*pushBatch) {
	pq := &l.push
	pq.arena = pq.arena[:0]
	pq.frames = pq.frames[:0]
	start := 0
	ends := pq.sel[:0] // frame ends first, then reused for selections
	for _, b := range q {
		pq.arena = proto.AppendPush(pq.arena, b.msg.App, b.msg.QoS == push.QoS1, b.msg.ID, b.msg.Payload)
		ends = append(ends, int32(len(pq.arena)))
	}
	for _, e := range ends {
		pq.frames = append(pq.frames, pq.arena[start:e:e])
		start = int(e)
	}
	pq.sel = ends[:0]
	liveCover(l, q)

	written := 0
	if allWide(q) {
		written = r.deliverAll(l, q)
	} else if len(q) == 1 { // the lone push: no grouping needed
		pq.sel = append(pq.sel, 0)
		for _, s := range q[0].conns {
			written += r.deliver(s, q, pq.sel)
		}
	} else {
		written = r.deliverGrouped(l, q)
	}
	if written > 0 {
		mPushes.Add(float64(written))
	}
	clear(pq.frames)
	pq.frames = pq.frames[:0]
	if cap(pq.arena) > maxArenaKeep {
		pq.arena = nil
	}
}

// liveCover records that the stored broadcasts of q's app-wide batches go
// live on l now, and gives each the connections a load reached first, which
// the flush skips (cover.go; loop only). Paced batches are covered at their
// task's snapshot, marked live when their last batch is written
// (broadcastPaced).
func liveCover(l *loopState, q []*pushBatch) {
	var now time.Time
	for _, b := range q {
		if (b.all && b.msg.QoS == push.QoS1) || b.coverAt != 0 {
			if now.IsZero() {
				now = time.Now()
			}
			if b.all {
				b.had = l.cover.goLive(b.msg.ID, now, l.cover.seq)
			} else {
				l.cover.goLive(b.msg.ID, now, b.coverAt-1)
			}
		}
	}
}

// allWide reports whether every batch of q is app-wide.
func allWide(q []*pushBatch) bool {
	for _, b := range q {
		if !b.all {
			return false
		}
	}
	return true
}

// deliverAll writes app-wide batches: one walk over the loop's connections,
// each authenticated one getting the frames of the apps it has bound with
// one write (loop only). Connections still authenticating are skipped: they
// load stored (QoS 1) broadcasts when their AUTH completes.
func (r *Room) deliverAll(l *loopState, q []*pushBatch) int {
	pq := &l.push
	pq.sel = pq.sel[:0]
	for i := range q {
		pq.sel = append(pq.sel, int32(i))
	}
	written := 0
	l.each(func(s *connState) {
		if s.state == stAuthed {
			written += r.deliver(s, q, pq.sel)
		}
	})
	return written
}

// expandAll turns the app-wide batches of q into lists of the loop's
// connections that have the app bound, for a flush that mixes them with
// targeted pushes (loop only).
func expandAll(l *loopState, q []*pushBatch) {
	for _, b := range q {
		if !b.all {
			continue
		}
		b.all = false
		l.each(func(s *connState) {
			if s.state == stAuthed && s.hasApp(b.msg.App) && !b.skips(s) {
				b.conns = append(b.conns, s)
			}
		})
	}
}

// deliverGrouped collects, per connection, the frames of every batch that
// targets it, then delivers each connection's list (loop only).
func (r *Room) deliverGrouped(l *loopState, q []*pushBatch) int {
	pq := &l.push
	if pq.slot == nil {
		pq.slot = make(map[*connState]int32)
	}
	expandAll(l, q)
	for i, b := range q {
		for _, s := range b.conns {
			ref := int32(len(pq.refs))
			pq.refs = append(pq.refs, frameRef{frame: int32(i), next: -1})
			g, ok := pq.slot[s]
			if !ok {
				pq.slot[s] = int32(len(pq.groups))
				pq.groups = append(pq.groups, connFrames{s: s, head: ref, tail: ref})
				continue
			}
			pq.refs[pq.groups[g].tail].next = ref
			pq.groups[g].tail = ref
		}
	}
	written := 0
	for _, g := range pq.groups {
		pq.sel = pq.sel[:0]
		for i := g.head; i >= 0; i = pq.refs[i].next {
			pq.sel = append(pq.sel, pq.refs[i].frame)
		}
		written += r.deliver(g.s, q, pq.sel)
	}
	clear(pq.slot)
	clear(pq.groups)
	pq.groups = pq.groups[:0]
	pq.refs = pq.refs[:0]
	return written
}

// deliver writes to s the frames sel (indices into q and the flush's
// frames) whose app s still has bound, with one write or writev, and
// returns how many it wrote (loop only).
func (r *Room) deliver(s *connState, q []*pushBatch, sel []int32) int {
	pq := &s.loop.push
	switch s.state {
	case stAuthed:
		pq.iov = pq.iov[:0]
		pq.hit = pq.hit[:0]
		for _, i := range sel {
			if s.hasApp(q[i].msg.App) && !q[i].skips(s) { // unbound since Push looked; a load gave it
				pq.iov = append(pq.iov, pq.frames[i])
				pq.hit = append(pq.hit, i)
			}
		}
		n := len(pq.iov)
		if n == 0 || !r.writeFrames(s, pq.iov) {
			clear(pq.iov)
			return 0
		}
		clear(pq.iov)
		for _, i := range pq.hit {
			q[i].sent++
			if !q[i].wide {
				s.loop.sent.note(&q[i].msg, s.uid)
			}
		}
		if s.c.OutboundBuffered() > maxOutbound {
			// QoS 1 messages stay stored; the client gets them at its
			// next login, from a room that is not drowning in its backlog.
			r.closeConn(s, closeSlow)
		}
		return n
	case stAuthing:
		maxPending := r.deps.Config.Load().Room.MaxPending
		for _, i := range sel {
			if !s.hasApp(q[i].msg.App) {
				continue
			}
			if x := s.extra(); len(x.pending) < maxPending {
				x.pending = append(x.pending, bytes.Clone(pq.frames[i]))
			} else {
				mPushDropped.WithLabelValues("pending_full").Inc()
			}
		}
	}
	return 0
}

// writeFrames writes frames to s with one syscall where it can: a single
// frame as is, a few small ones copied into one buffer, large lists by
// writev in chunks of at most maxIOV. gnet keeps what the socket does not
// take in the outbound buffer. It reports whether s is still open (loop only).
func (r *Room) writeFrames(s *connState, frames [][]byte) bool {
	if len(frames) == 1 {
		return r.send(s, kindPush, frames[0])
	}
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	if total <= maxCopyWrite {
		pq := &s.loop.push
		pq.wbuf = pq.wbuf[:0]
		for _, f := range frames {
			pq.wbuf = append(pq.wbuf, f...)
		}
		return r.send(s, kindPush, pq.wbuf)
	}
	return r.sendv(s, frames)
}
