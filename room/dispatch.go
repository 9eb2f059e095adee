package room

import (
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
)

// The session side of the transport seam: frames come in decoded from the
// connection's transport (transport.go) and go to their op's handler, each
// in the file of its feature (auth.go, bind.go, ack.go, upstream.go); PING
// is answered here.

// drainFrames decodes and handles whole frames from s's input until the
// input runs short, the connection must close, an AUTH is pending, or its
// unread output is past the reply budget (write.go). Raw TCP is read
// inline (rawNext's steps), other transports through their next; either way
// each frame's size is checked against the limit before it is buffered —
// MaxAuthFrame until the connection authenticated, MaxFrame after — so a
// huge announced size never makes gnet buffer it. Loop only.
func (r *Room) drainFrames(s *connState) gnet.Action {
	c := s.c
	rc := &r.deps.Config.Load().Room
	for s.state == stNew || s.state == stAuthed {
		if !r.resumable(s) {
			// Backpressure: the client does not read its replies, so its
			// frames wait; what it may pile up meanwhile is bounded.
			if c.InboundBuffered() > pausedInbound(rc.MaxFrame) {
				r.markClose(s, closeInbound, "")
				return gnet.Close
			}
			return gnet.None
		}
		maxLen := rc.MaxFrame
		if s.state == stNew {
			maxLen = rc.MaxAuthFrame
		}
		var buf []byte
		var n int
		if s.custom {
			var err error
			if buf, n, err = s.tr.next(c, maxLen); err != nil {
				return r.transportError(s, err)
			}
			if n == 0 {
				return gnet.None // no whole frame yet
			}
		} else { // raw TCP, inline: rawNext
			hdr, err := c.Peek(proto.LenSize)
			if err != nil {
				return gnet.None // fewer than 4 bytes so far
			}
			if n, err = proto.FrameLen(hdr, maxLen); err != nil {
				return r.protocolError(s, 0, proto.Code(err), err.Error())
			}
			if buf, err = c.Peek(n); err != nil {
				return gnet.None // the rest of the frame has not arrived
			}
		}
		f, _, err := proto.Parse(buf, maxLen)
		if err != nil {
			return r.protocolError(s, f.Seq, proto.Code(err), err.Error())
		}
		framesIn[f.Op].Inc()
		s.active = r.now()
		// f.Body aliases gnet's read buffer: handlers copy what they keep.
		act := r.handleFrame(s, f)
		if s.custom {
			s.tr.done(c, n)
		} else {
			_, _ = c.Discard(n)
		}
		if act != gnet.None {
			return act
		}
	}
	// An AUTH is in the workers' hands: later frames wait in gnet's inbound
	// buffer and are handled right after AUTH_OK. Bound what a client may
	// pile up meanwhile.
	if s.state == stAuthing && c.InboundBuffered() > authInboundSlop*rc.MaxFrame {
		r.markClose(s, closeInbound, "")
		return gnet.Close
	}
	return gnet.None
}

// protocolError answers a malformed or illegal frame and closes the
// connection once the client had a chance to read the ERROR (lingerClose).
// It returns gnet.None: the connection lingers rather than closing now.
func (r *Room) protocolError(s *connState, seq uint32, code, msg string) gnet.Action {
	r.writeError(s, seq, code, msg)
	r.lingerClose(s, closeProtocol, code)
	return gnet.None
}

// transportError ends s after its transport's next failed: a closeError
// (a WebSocket protocol error, the client's close) closes it without an
// ERROR, any other error is a malformed frame (protocolError). It returns
// gnet.None: the connection lingers.
func (r *Room) transportError(s *connState, err error) gnet.Action {
	var ce *closeError
	if errors.As(err, &ce) {
		r.log.Debug("transport closed the connection", "conn", s.id, "ip", s.ip(), "err", err)
		r.lingerClose(s, ce.reason, "")
		return gnet.None
	}
	return r.protocolError(s, 0, proto.Code(err), err.Error())
}

// handleFrame applies one frame to the session state machine (loop only).
// Every op a client can repeat is rate-limited first (limits.go).
func (r *Room) handleFrame(s *connState, f proto.Frame) gnet.Action {
	if s.state == stNew {
		if f.Op != proto.OpAuth {
			return r.protocolError(s, f.Seq, proto.ErrCodeAuthRequired, "the first frame must be AUTH")
		}
		return r.handleAuth(s, f)
	}
	now, lim := r.nowMS(), &r.deps.Config.Load().Room.Limits
	switch f.Op {
	case proto.OpPing:
		if !s.ping.allow(limitOf(lim.Ping), now) {
			r.refuseRate(s, f, "ping")
			return gnet.None
		}
		r.writePong(s, f.Seq)
	case proto.OpAck:
		if !s.ack.allow(limitOf(lim.Ack), now) {
			r.refuseRate(s, f, "ack")
			return gnet.None
		}
		return r.handleAck(s, f)
	case proto.OpUpstream:
		if !s.extra().up.allow(limitOf(lim.Upstream), now) {
			r.refuseRate(s, f, "upstream")
			return gnet.None
		}
		return r.handleUpstream(s, f)
	case proto.OpBind, proto.OpUnbind:
		if !s.extra().bind.allow(limitOf(lim.Bind), now) {
			r.refuseRate(s, f, "bind")
			return gnet.None
		}
		if f.Op == proto.OpBind {
			return r.handleBind(s, f)
		}
		r.handleUnbind(s, f)
	case proto.OpAuth:
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "already authenticated")
	default:
		return r.protocolError(s, f.Seq, proto.ErrCodeUnknownOp, "op not accepted from clients")
	}
	return gnet.None
}

// refuseRate answers a frame over its op's limit (loop only).
func (r *Room) refuseRate(s *connState, f proto.Frame, op string) {
	mRateLimited.WithLabelValues(op).Inc()
	r.writeError(s, f.Seq, proto.ErrCodeRateLimited, "too many "+op+" frames")
}
