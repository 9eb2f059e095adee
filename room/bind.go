package room

import (
	"context"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// BIND and UNBIND: the app set of an authenticated connection. A BIND is
// checked offline and bound at once on the loop (handleBind); a worker
// tells the register, takes the app from the uid's other connections and
// loads its stored messages (bindTask); BIND_OK and those messages are
// written back on the loop (finishBind). UNBIND is answered at once and
// the register told in the background (syncApps).

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
	s.cover = s.loop.cover.bump()
	app, seq := f.App, f.Seq
	if !r.submit(func() { r.bindTask(s, app, seq) }) {
		s.removeApp(f.App)
		mPoolDropped.WithLabelValues("bind").Inc()
		r.writeError(s, f.Seq, proto.ErrCodeOverloaded, "bind not accepted, retry")
	}
	return gnet.None
}

// bindTask registers a new app binding and loads its stored messages
// (worker), then completes the BIND on s's loop.
func (r *Room) bindTask(s *connState, app uint32, seq uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	displaced, err := r.setApps(ctx, s)
	if err == nil {
		r.displace(ctx, push.Session{UID: s.uid, Room: r.cfg.ID, ConnID: s.id}, displaced)
	}
	var msgs []push.Message
	online := false
	if err == nil {
		r.status(ctx, s.uid, app, push.EventOnline)
		online = true
		msgs, err = r.deps.Saver.Load(ctx, s.uid, []uint32{app})
	}
	r.onLoop(s, func() { r.finishBind(s, app, seq, msgs, online, err) })
}

// finishBind answers a BIND on the loop: BIND_OK and the app's stored
// messages, or ERROR internal and the app unbound again (online: its online
// event went out, so the unbind reports it offline).
func (r *Room) finishBind(s *connState, app, seq uint32, msgs []push.Message, online bool, err error) {
	if err != nil {
		r.log.Warn("bind failed", "uid", s.uid, "app", app, "err", err)
		if s.removeApp(app) {
			r.syncApps(s, app, online)
		}
		r.writeError(s, seq, proto.ErrCodeInternal, "bind failed")
		return
	}
	if s.c.OutboundBuffered() > maxOutbound {
		r.closeConn(s, closeSlow) // a load starts only under the budget
		return
	}
	l := s.loop
	l.outBuf = proto.AppendHeader(l.outBuf[:0], proto.Header{Op: proto.OpBindOK, Seq: seq}, 0)
	l.outBuf, _ = r.appendStored(s, l.outBuf, msgs)
	r.send(s, kindStored, l.outBuf)
}

func (r *Room) handleUnbind(s *connState, f proto.Frame) {
	if s.removeApp(f.App) {
		r.syncApps(s, f.App, true)
	}
	r.writeEmpty(s, proto.OpUnbindOK, f.Seq)
}

// setApps sends s's current app set to register (worker). Calls for one
// connection are serialised and each sends the set as it is when it runs,
// so the last one to finish always carries the latest set.
func (r *Room) setApps(ctx context.Context, s *connState) ([]push.Session, error) {
	mu := s.setMu()
	mu.Lock()
	defer mu.Unlock()
	displaced, _, err := r.deps.Register.SetApps(ctx, s.uid, s.id, s.appList())
	return displaced, err
}

// syncApps queues a setApps after app was unbound (UNBIND, a failed BIND,
// a kick that left other apps), and its offline event when offline is set
// (loop only).
func (r *Room) syncApps(s *connState, app uint32, offline bool) {
	ok := r.submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if _, err := r.setApps(ctx, s); err != nil {
			r.log.Warn("set apps failed", "uid", s.uid, "err", err)
			return
		}
		if offline {
			r.status(ctx, s.uid, app, push.EventOffline)
		}
	})
	if !ok {
		mPoolDropped.WithLabelValues("set_apps").Inc()
	}
}
