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
	"github.com/lcpush/lcpush/pkg/token"
)

// drainFrames decodes and handles whole frames from s's input until the
// input runs short, the connection must close, or an AUTH is pending. The
// length is checked against MaxFrame before the frame is peeked, so a huge
// announced Len never makes gnet buffer it. Loop only.
func (r *Room) drainFrames(s *connState) gnet.Action {
	c := s.c
	maxLen := r.deps.Config.Load().Room.MaxFrame
	for s.state == stNew || s.state == stAuthed {
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
	if s.state == stAuthing && c.InboundBuffered() > authInboundSlop*maxLen {
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
func (r *Room) handleFrame(s *connState, f proto.Frame) gnet.Action {
	if s.state == stNew {
		if f.Op != proto.OpAuth {
			return r.protocolError(s, f.Seq, proto.ErrCodeAuthRequired, "the first frame must be AUTH")
		}
		return r.handleAuth(s, f)
	}
	switch f.Op {
	case proto.OpPing:
		r.writePong(s, f.Seq)
	case proto.OpAck:
		return r.handleAck(s, f)
	case proto.OpUpstream:
		return r.handleUpstream(s, f)
	case proto.OpBind:
		return r.handleBind(s, f)
	case proto.OpUnbind:
		r.handleUnbind(s, f)
	case proto.OpAuth:
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "already authenticated")
	default:
		return r.protocolError(s, f.Seq, proto.ErrCodeUnknownOp, "op not accepted from clients")
	}
	return gnet.None
}

// write sends b to s unless s is closed, and reports whether s is still
// open. A failed write makes gnet close the connection at once (OnClose runs
// inside Write), and a closed connection's descriptor may already belong to
// another client: every write goes through here (loop only).
func (r *Room) write(s *connState, b []byte) bool {
	if s.state == stClosed {
		return false
	}
	_, _ = s.c.Write(b)
	return s.state != stClosed
}

// writePong answers a PING. The common Seq 0 case writes the one shared PONG
// frame; otherwise the reply echoes Seq from the loop's scratch buffer.
func (r *Room) writePong(s *connState, seq uint32) {
	if seq == 0 {
		r.write(s, proto.PongFrame)
		return
	}
	r.writeEmpty(s, proto.OpPong, seq)
}

// writeEmpty writes a reply frame without body (loop only).
func (r *Room) writeEmpty(s *connState, op uint8, seq uint32) {
	l := s.loop
	l.outBuf = proto.AppendHeader(l.outBuf[:0], proto.Header{Op: op, Seq: seq}, 0)
	r.write(s, l.outBuf)
}

// writeError writes an ERROR frame answering seq (loop only).
func (r *Room) writeError(s *connState, seq uint32, code, msg string) {
	l := s.loop
	l.outBuf = proto.AppendError(l.outBuf[:0], seq, code, msg)
	r.write(s, l.outBuf)
	mErrorsSent.WithLabelValues(code).Inc()
}

// writeKick writes a KICK frame (loop only); the caller closes.
func (r *Room) writeKick(s *connState, code int, reason string) {
	l := s.loop
	l.outBuf = proto.AppendJSON(l.outBuf[:0], proto.Header{Op: proto.OpKick}, proto.Kick{Code: code, Reason: reason})
	r.write(s, l.outBuf)
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
	if !s.allowUpstream(r.now() / int64(time.Millisecond)) {
		r.writeError(s, f.Seq, proto.ErrCodeRateLimited, "too many upstream frames")
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
	cfg := r.deps.Config.Load()
	app, ok := cfg.App(f.App)
	if !ok || token.Verify([]byte(app.Secret), f.App, s.uid, b.Token, time.Now(), cfg.Room.TokenSkew) != nil {
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
