package room

import (
	"github.com/lcpush/lcpush/pkg/proto"
)

// The write path: every byte a connection is sent goes through send, which
// holds the connection to one output budget. gnet queues without bound what
// the socket does not take (one list node per write), so a client that never
// reads would otherwise make the room buffer gigabytes of replies.
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

// send writes b to s under its output budget and reports whether s is still
// open. A failed write makes gnet close the connection at once (OnClose runs
// inside Write), and a closed connection's descriptor may already belong to
// another client: nothing else in the room calls Write (loop only).
func (r *Room) send(s *connState, kind frameKind, b []byte) bool {
	if s.state == stClosed {
		return false
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
	if !s.errs.allow(limitOf(r.deps.Config.Load().Room.Limits.Errors), r.nowMS()) {
		l := s.loop
		l.outBuf = proto.AppendError(l.outBuf[:0], seq, proto.ErrCodeRateLimited, "too many refused frames")
		r.send(s, kindReply, l.outBuf)
		mErrorsSent.WithLabelValues(proto.ErrCodeRateLimited).Inc()
		r.lingerClose(s, closeErrors)
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
