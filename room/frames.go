package room

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// drainFrames decodes and handles whole frames from s's input until the
// input runs short, the connection must close, an AUTH is pending, or its
// unread output is past the reply budget (write.go). The length is checked
// against the limit before the frame is peeked — MaxAuthFrame until the
// connection authenticated, MaxFrame after — so a huge announced Len never
// makes gnet buffer it. Loop only.
func (r *Room) drainFrames(s *connState) gnet.Action {
	c := s.c
	rc := &r.deps.Config.Load().Room
	for s.state == stNew || s.state == stAuthed {
		if !r.resumable(s) {
			// Backpressure: the client does not read its replies, so its
			// frames wait; what it may pile up meanwhile is bounded.
			if c.InboundBuffered() > pausedInbound(rc.MaxFrame) {
				r.markClose(s, closeInbound)
				return gnet.Close
			}
			return gnet.None
		}
		maxLen := rc.MaxFrame
		if s.state == stNew {
			maxLen = rc.MaxAuthFrame
		}
		hdr, err := c.Peek(proto.LenSize)
		if err != nil {
			return gnet.None // fewer than 4 bytes so far
		}
		n, err := proto.FrameLen(hdr, maxLen)
		if err != nil {
			return r.protocolError(s, 0, proto.Code(err), err.Error())
		}
		buf, err := c.Peek(n)
		if err != nil {
			return gnet.None // the rest of the frame has not arrived
		}
		f, _, err := proto.Parse(buf, maxLen)
		if err != nil {
			return r.protocolError(s, f.Seq, proto.Code(err), err.Error())
		}
		framesIn[f.Op].Inc()
		s.active = r.now()
		// f.Body aliases gnet's read buffer: handlers copy what they keep.
		act := r.handleFrame(s, f)
		_, _ = c.Discard(n)
		if act != gnet.None {
			return act
		}
	}
	// An AUTH is in the workers' hands: later frames wait in gnet's inbound
	// buffer and are handled right after AUTH_OK. Bound what a client may
	// pile up meanwhile.
	if s.state == stAuthing && c.InboundBuffered() > authInboundSlop*rc.MaxFrame {
		r.markClose(s, closeInbound)
		return gnet.Close
	}
	return gnet.None
}

// protocolError answers a malformed or illegal frame and closes the
// connection once the client had a chance to read the ERROR (lingerClose).
// It returns gnet.None: the connection lingers rather than closing now.
func (r *Room) protocolError(s *connState, seq uint32, code, msg string) gnet.Action {
	r.writeError(s, seq, code, msg)
	r.lingerClose(s, closeProtocol)
	return gnet.None
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
		if !s.up.allow(limitOf(lim.Upstream), now) {
			r.refuseRate(s, f, "upstream")
			return gnet.None
		}
		return r.handleUpstream(s, f)
	case proto.OpBind, proto.OpUnbind:
		if !s.bind.allow(limitOf(lim.Bind), now) {
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

func (r *Room) handleUpstream(s *connState, f proto.Frame) gnet.Action {
	typ, payload, err := proto.ParseUpstream(f.Body)
	if err != nil {
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "bad UPSTREAM body")
	}
	if !s.hasApp(f.App) {
		r.writeError(s, f.Seq, proto.ErrCodeNotBound, "app not bound on this connection")
		return gnet.None
	}
	up := push.Upstream{App: f.App, UID: s.uid, Type: typ, Data: bytes.Clone(payload), TS: time.Now().UnixMilli()}
	seq, want := f.Seq, f.Flags&proto.FlagReplyWanted != 0
	ok := r.submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		err := r.deps.Coordinator.Upstream(ctx, up)
		switch {
		case err == nil:
			if want {
				r.onLoop(s, func() { r.writeEmpty(s, proto.OpUpstreamOK, seq) })
			}
		case errors.Is(err, push.ErrOverloaded):
			r.onLoop(s, func() { r.writeError(s, seq, proto.ErrCodeOverloaded, "upstream queue full, retry") })
		default:
			r.log.Warn("upstream failed", "uid", up.UID, "app", up.App, "err", err)
			r.onLoop(s, func() { r.writeError(s, seq, proto.ErrCodeInternal, "upstream not accepted") })
		}
	})
	if !ok {
		mPoolDropped.WithLabelValues("upstream").Inc()
		r.writeError(s, f.Seq, proto.ErrCodeOverloaded, "upstream not accepted, retry")
	}
	return gnet.None
}

func (r *Room) handleBind(s *connState, f proto.Frame) gnet.Action {
	var b proto.Bind
	if err := proto.DecodeJSON(f.Body, &b); err != nil {
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "bad BIND body")
	}
	if !verifyToken(r.deps.Config.Load(), f.App, s.uid, b.Token) {
		// A bad BIND is no reason to drop the session.
		r.writeError(s, f.Seq, proto.ErrCodeBadToken, "bad token for this app")
		return gnet.None
	}
	if s.hasApp(f.App) {
		r.writeEmpty(s, proto.OpBindOK, f.Seq)
		return gnet.None
	}
	if len(s.appList()) >= maxApps {
		r.writeError(s, f.Seq, proto.ErrCodeRateLimited, "too many apps bound on this connection")
		return gnet.None
	}
	// Bound at once, so that pushes for the app are delivered from now on.
	s.addApp(f.App)
	if !r.submit(func() { r.bindTask(s, f.App, f.Seq) }) {
		s.removeApp(f.App)
		mPoolDropped.WithLabelValues("bind").Inc()
		r.writeError(s, f.Seq, proto.ErrCodeOverloaded, "bind not accepted, retry")
	}
	return gnet.None
}

func (r *Room) handleUnbind(s *connState, f proto.Frame) {
	if s.removeApp(f.App) {
		r.syncApps(s, f.App, true)
	}
	r.writeEmpty(s, proto.OpUnbindOK, f.Seq)
}

// onLoop runs f on s's loop if s is still open when it gets there; f may
// write to s. An error means the engine is stopping and f will not run.
func (r *Room) onLoop(s *connState, f func()) error {
	return s.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if s.state != stClosed {
			f()
		}
		return nil
	}))
}
