package room

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/internal/appset"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/token"
)

// AUTH: the first frame of every connection. The token is checked offline
// on the loop (handleAuth); a worker registers the session, takes its app
// from the uid's other connections and loads its stored messages
// (authTask); AUTH_OK, those messages, the pushes that came meanwhile and
// the frames the client pipelined follow on the loop (finishAuth).

// handleAuth checks an AUTH offline on the loop and hands the blocking part
// (register, kick the previous session, load stored messages) to the workers.
func (r *Room) handleAuth(s *connState, f proto.Frame) gnet.Action {
	var a proto.Auth
	if err := proto.DecodeJSON(f.Body, &a); err != nil {
		mAuths.WithLabelValues("bad_frame").Inc()
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "bad AUTH body")
	}
	cfg := r.deps.Config.Load()
	if push.CheckUID(a.UID) != nil || !verifyToken(cfg, f.App, a.UID, a.Token) {
		mAuths.WithLabelValues("bad_token").Inc()
		return r.protocolError(s, f.Seq, proto.ErrCodeBadToken, "bad or expired token")
	}
	if r.isClosing() {
		mAuths.WithLabelValues("shutdown").Inc()
		r.writeKick(s, push.KickShutdown, proto.KickReason(push.KickShutdown))
		r.markClose(s, closeKick, "")
		return gnet.Close
	}

	r.authenticated(s)
	s.uid = a.UID // decoded JSON strings are fresh copies, not gnet's buffer
	s.hb = int32(cfg.Room.ClampHeartbeat(a.HB))
	apps := appset.One(f.App) // shared and read-only: see connState.apps
	s.apps.Store(apps)
	s.state = stAuthing
	s.since = time.Now().Unix()
	resumed := r.resume(s, s.uid, f.App) // takes the held session's id and since
	// Indexed before registering: a push that the register already routes
	// here while AUTH_OK is not written yet is queued on the connection.
	r.idx.add(s)
	sess := push.Session{
		UID: s.uid, Room: r.cfg.ID, ConnID: s.id, Apps: *apps,
		Since: s.since, IP: s.ip().String(),
	}
	seq := f.Seq
	r.mu.RLock()
	ok := !r.closing && r.pool != nil
	if ok {
		r.authing.Add(1)
		if ok = r.pool.TrySubmit(func() { r.authTask(s, sess, seq, resumed) }); !ok {
			r.authing.Add(-1)
		}
	}
	r.mu.RUnlock()
	if !ok {
		if resumed {
			// The held session is this connection's now: its close unregisters it.
			s.registered = true
		}
		mAuths.WithLabelValues("overloaded").Inc()
		mPoolDropped.WithLabelValues("auth").Inc()
		return r.protocolError(s, seq, proto.ErrCodeOverloaded, "server busy, retry later")
	}
	return gnet.None
}

// authResult carries what the workers learned back to the loop.
type authResult struct {
	seq        uint32
	since      int64 // the session's login time as registered
	registered bool
	msgs       []push.Message
	err        error
}

// authTask runs on a worker. A resumed session (resume.go) is registered
// already, under the same connection id: only its stored messages load.
func (r *Room) authTask(s *connState, sess push.Session, seq uint32, resumed bool) {
	res := &authResult{seq: seq, since: sess.Since}
	ctx := callCtx()
	var displaced []push.Session
	var err error
	if !resumed {
		// Since is when the register gets it, not when AUTH arrived: the
		// AUTH may have queued behind others for long, and the register's
		// reconciliation counts the time from Since to the moment the room
		// lists the session (reconcileGrace).
		sess.Since = time.Now().Unix()
		res.since = sess.Since
		mBackendCalls.WithLabelValues("register").Inc()
		displaced, err = r.deps.Register.Register(ctx, sess)
	}
	if err != nil {
		res.err = fmt.Errorf("room register %s: %w", sess.UID, err)
	} else {
		res.registered = true
		if !resumed {
			r.displace(ctx, sess, displaced)
			r.status(ctx, sess.UID, sess.Apps[0], push.EventOnline)
		}
		mBackendCalls.WithLabelValues("load").Inc()
		if res.msgs, err = r.deps.Saver.Load(ctx, sess.UID, sess.Apps); err != nil {
			res.err = fmt.Errorf("room load %s: %w", sess.UID, err)
		}
	}
	err = s.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		defer r.authing.Add(-1)
		r.finishAuth(s, res)
		return nil
	}))
	if err != nil { // the engine is stopping: the loop will never see this result
		if res.registered {
			r.unregister(sess.UID, sess.ConnID, sess.Apps)
		}
		r.authing.Add(-1)
	}
}

// finishAuth completes an AUTH on the loop: AUTH_OK, stored messages,
// pushes that arrived meanwhile, then the frames the client pipelined.
func (r *Room) finishAuth(s *connState, res *authResult) {
	if s.state == stClosed { // the client left (or was kicked) while registering
		if res.registered {
			r.unregisterAsync(s)
		}
		return
	}
	s.registered = res.registered
	s.since = res.since
	if res.err != nil {
		r.log.Warn("auth failed", "uid", s.uid, "err", res.err)
		mAuths.WithLabelValues("internal").Inc()
		r.writeError(s, res.seq, proto.ErrCodeInternal, "session store unavailable")
		r.lingerClose(s, closeAuthFailed, proto.ErrCodeInternal)
		return
	}
	s.state = stAuthed
	s.cover = s.loop.cover.bump()
	s.active = r.now()
	r.onl.Add(1)
	mOnline.Inc()
	mAuths.WithLabelValues("ok").Inc()

	l := s.loop
	l.outBuf = proto.AppendJSON(l.outBuf[:0], proto.Header{Op: proto.OpAuthOK, Seq: res.seq},
		proto.AuthOK{HB: int(s.hb), Room: r.cfg.ID, ServerTime: time.Now().Unix()})
	l.outBuf, _ = r.appendStored(s, l.outBuf, res.msgs)
	for _, p := range s.takePending() {
		l.outBuf = append(l.outBuf, p...)
		mPushes.Inc()
	}
	if !r.send(s, kindStored, l.outBuf) {
		return
	}
	if r.drainFrames(s) == gnet.Close {
		r.closeConn(s, closeProtocol)
	}
}

// displace takes from the uid's other connections the apps that sess's
// login or BIND (bind.go) took over (worker): a connection left with no app
// is kicked (KICK login_elsewhere), the others keep serving their other apps.
func (r *Room) displace(ctx context.Context, sess push.Session, displaced []push.Session) {
	for _, d := range displaced {
		if d.Room == sess.Room && d.ConnID == sess.ConnID {
			continue
		}
		if err := r.deps.Coordinator.Kick(ctx, d, push.KickLoginElsewhere, proto.KickReason(push.KickLoginElsewhere)); err != nil {
			r.log.Warn("taking apps from the previous session failed", "uid", d.UID, "room", d.Room, "apps", d.Apps, "err", err)
		}
	}
}

// verifyToken checks a token for (app, uid) offline: the app's secret, the
// expiry with the configured skew, and the maximum lifetime.
// Loops and workers share the Verifiers (keyed HMACs kept warm: a check
// makes no garbage) through a pool.
func verifyToken(cfg *config.Config, app uint32, uid, tok string) bool {
	a, ok := cfg.App(app)
	if !ok {
		return false
	}
	v := verifiers.Get().(*token.Verifier)
	err := v.VerifyLifetime(a.Secret, app, uid, tok, time.Now(), cfg.Room.TokenSkew, cfg.Room.MaxTokenLifetime)
	verifiers.Put(v)
	return err == nil
}

var verifiers = sync.Pool{New: func() any { return new(token.Verifier) }}
