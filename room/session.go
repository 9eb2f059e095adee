package room

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/internal/appset"
	"github.com/lcpush/lcpush/pkg/push"
)

// The session lifecycle of one connection, all on its loop:
//
//	OnOpen     openConn: admission (admit.go), transport (transport.go), stNew
//	           [handshake: the transport's preamble, if it has one (shake)]
//	AUTH       stNew -> stAuthing -> stAuthed (auth.go)
//	end        endSession: out of the index and the online count, unregister
//	           queued; then either closeConn (gnet closes now) or lingerClose
//	           (the last frame reaches the client, then the socket closes)
//	OnClose    connClosed: releaseConn gives back the caps and the loop slot
//
// The frames of a session are read and dispatched by dispatch.go; timeouts
// (auth deadline, idle, end of lingering) are enforced by the loop's sweep
// (loop.go).

// Session states of a connection. Loop-owned.
const (
	stNew     uint8 = iota // waiting for AUTH (or still in the transport's handshake)
	stAuthing              // AUTH accepted offline, workers are registering it
	stAuthed               // AUTH_OK sent
	stClosed               // OnClose ran, or the connection lingers (lingerClose)
)

// connState is everything the room keeps per connection, set as the gnet
// connection's context. It is kept small: ~1M of these per instance is the
// design point. 160 bytes, one size class (TestConnStateIsSmall): what a
// connection rarely uses hangs off x, allocated on first use; the client
// address is the socket's (gnet keeps it) unless a PROXY header named
// another (x.ip); the app set is interned (internal/appset), shared by
// every connection with the same apps.
//
// Ownership: the connection's loop owns every field, except that
//   - c, loop and id never change after OnOpen, tr never changes after
//     the transport's handshake (before any frame), and uid never changes
//     after the state leaves stNew (it is set before the connection enters
//     the index, under the shard lock), so any goroutine may read them;
//   - apps is an atomic copy-on-write set, read by Push on any goroutine;
//   - sameNext is guarded by the index shard lock;
//   - x is the loop's only (the address it holds included).
type connState struct {
	c    gnet.Conn
	loop *loopState
	id   uint64
	uid  string

	apps     atomic.Pointer[[]uint32] // interned, read-only (appset)
	sameNext *connState               // older connection of the same uid (index)

	prev, next *connState // loop's list of connections

	active int64      // monotonic ns: open time while stNew, then last frame
	since  int64      // login time, unix seconds (the session's Since)
	cover  uint64     // loop's cover counter when it last became a broadcast target (cover.go)
	x      *connExtra // rarely used state, nil until needed (extra)

	// tr is how the connection's bytes become frames and back; raw TCP
	// never reads it (custom).
	tr transport

	ping, ack  bucket // op limits (limits.go); the rare ones are in x
	hb         int32  // negotiated heartbeat, seconds
	state      uint8
	registered bool  // Register succeeded: closing must unregister
	byUs       bool  // the room decided to close it (counted by reason)
	cleaned    bool  // its unregister is queued, or Shutdown took it over
	lingering  bool  // session over, socket kept until the client closes (lingerClose)
	finSent    bool  // lingering and shutdown(SHUT_WR) done
	paused     bool  // output past replyBudget: frames are not read (write.go)
	unauthed   bool  // counted in the unauthenticated caps (admit.go)
	shaking    bool  // the transport's handshake is not over: no frame yet
	custom     bool  // tr is not raw TCP: frames go through its methods (transport.go)
	kind       uint8 // the listener's transport (trTCP, trWS), for metrics
}

// connExtra is the part of a connection's state that most connections
// never need, or need only for a moment (loop only).
type connExtra struct {
	ip       netip.Addr // the client's address when not the socket's peer (ipSet)
	pending  [][]byte   // PUSH frames that arrived while stAuthing
	bind, up bucket     // op limits of BIND and UPSTREAM
	errs     bucket     // ERROR replies
	ipSet    bool       // ip replaces the socket's peer address (a PROXY header; invalid: a trusted proxy's own)
}

// extra returns s's rarely used state, allocating it on first use (loop only).
func (s *connState) extra() *connExtra {
	if s.x == nil {
		s.x = &connExtra{}
	}
	return s.x
}

// ip is the client's address the caps count the connection under: the
// socket's peer, or the address its PROXY header named (loop only). The
// zero Addr for a trusted proxy's connection before its header.
func (s *connState) ip() netip.Addr {
	if s.x != nil && s.x.ipSet {
		return s.x.ip
	}
	if s.c == nil {
		return netip.Addr{}
	}
	return remoteIP(s.c.RemoteAddr())
}

// setIP makes ip the connection's client address (loop only).
func (s *connState) setIP(ip netip.Addr) {
	if s.x == nil && s.c != nil && ip == remoteIP(s.c.RemoteAddr()) {
		return
	}
	x := s.extra()
	x.ip, x.ipSet = ip, true
}

// takePending returns the PUSH frames queued while stAuthing and forgets them.
func (s *connState) takePending() [][]byte {
	if s.x == nil {
		return nil
	}
	p := s.x.pending
	s.x.pending = nil
	return p
}

// setMus serialise each connection's Register.SetApps calls on the
// workers (bind.go), striped by connection id instead of a mutex in every
// connection: two connections sharing a stripe only wait for each other.
var setMus [64]sync.Mutex

// setMu returns the lock of s's SetApps calls.
func (s *connState) setMu() *sync.Mutex { return &setMus[s.id%uint64(len(setMus))] }

// hasApp reports whether app is bound. Safe on any goroutine.
func (s *connState) hasApp(app uint32) bool {
	p := s.apps.Load()
	return p != nil && slices.Contains(*p, app)
}

// appList returns the bound apps; the slice must not be modified.
func (s *connState) appList() []uint32 {
	if p := s.apps.Load(); p != nil {
		return *p
	}
	return nil
}

// addApp binds app (loop only); false when it was already bound.
func (s *connState) addApp(app uint32) bool {
	cur := s.appList()
	if slices.Contains(cur, app) {
		return false
	}
	var buf [maxApps + 1]uint32
	next := append(append(buf[:0], cur...), app)
	s.apps.Store(appset.Of(next))
	return true
}

// removeApp unbinds app (loop only); false when it was not bound. For an
// authenticated session it is the end of that app's session: noted for
// the store's checkpoint (checkpoint.go).
func (s *connState) removeApp(app uint32) bool {
	cur := s.appList()
	i := slices.Index(cur, app)
	if i < 0 {
		return false
	}
	if s.state == stAuthed {
		s.loop.sent.ends.note(s.uid, cur[i:i+1:i+1]) // cur is never modified: no copy
	}
	var buf [maxApps]uint32
	next := append(append(buf[:0], cur[:i]...), cur[i+1:]...)
	s.apps.Store(appset.Of(next))
	return true
}

// openConn admits a connection gnet just accepted and gives it its state
// and transport (OnOpen). A refused one is closed at once, with no state.
func (r *Room) openConn(c gnet.Conn) ([]byte, gnet.Action) {
	ip := remoteIP(c.RemoteAddr())
	proxied := r.trustedPeer(ip)
	if res := r.admitConn(ip, proxied); res != admitted {
		mRefused.WithLabelValues(string(res)).Inc()
		return nil, gnet.Close
	}
	tr, kind := r.transportFor(c, proxied)
	s := &connState{
		c: c, loop: r.loopOf(c.EventLoop()), tr: tr, id: r.nextID.Add(1), kind: kind,
		active: r.now(), unauthed: true, shaking: tr.handshaking(), custom: !isRaw(tr),
	}
	if proxied {
		// Not counted under the proxy's address: the PROXY header names
		// the client's, which readmit counts (admit.go).
		s.setIP(netip.Addr{})
	}
	if a, ok := tr.(attacher); ok {
		a.attach(s)
	}
	s.loop.link(s)
	c.SetContext(s)
	mConns.Inc()
	mConnsBy[kind].Inc()
	return nil, gnet.None
}

func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// shake hands s's new input to its transport's handshake (OnTraffic while
// s.shaking) and, once the handshake is done, reads the frames that came
// after it. The auth deadline, counted from the open, bounds it too.
func (r *Room) shake(s *connState) gnet.Action {
	l := s.loop
	step, err := s.tr.handshake(s.c, l.wire[:0])
	if step.reply != nil {
		l.wire = step.reply[:0] // keep the grown buffer
		if !r.sendWire(s, kindReply, step.reply) {
			return gnet.None // closed under the output budget
		}
	}
	if err != nil {
		reason := closeHandshake
		if errors.Is(err, errNoSession) {
			reason = closeNoSession
		}
		r.log.Debug("transport handshake refused", "conn", s.id, "ip", s.ip(), "peer", s.c.RemoteAddr(), "err", err)
		r.lingerClose(s, reason, "")
		return gnet.None
	}
	if step.addr.IsValid() && step.addr != s.ip() && !r.readmit(s, step.addr) {
		r.lingerClose(s, closeHandshake, "")
		return gnet.None
	}
	if !step.done {
		return gnet.None
	}
	if step.handoff != nil {
		s.tr = step.handoff
		s.custom = !isRaw(s.tr)
		if a, ok := s.tr.(attacher); ok {
			a.attach(s)
		}
		if s.tr.handshaking() {
			if s.c.InboundBuffered() == 0 {
				return gnet.None
			}
			return r.shake(s)
		}
	}
	s.shaking = false
	if s.c.InboundBuffered() == 0 {
		return gnet.None
	}
	return r.drainFrames(s)
}

// connClosed is OnClose for a connection that was admitted.
func (r *Room) connClosed(s *connState) {
	switch {
	case s.lingering:
		s.lingering = false
		r.releaseConn(s)
	case s.state != stClosed:
		r.endSession(s)
		r.releaseConn(s)
	}
}

// authenticated takes s out of the caps on unauthenticated connections
// once its token checked out (loop only).
func (r *Room) authenticated(s *connState) {
	if s.unauthed {
		s.unauthed = false
		r.unauthed.Add(-1)
		r.ips.authed(s.ip())
	}
}

// endSession ends the session of a connection that gnet closed or that
// lingers before its close (loop only): nothing is delivered to it any more.
func (r *Room) endSession(s *connState) {
	was := s.state
	s.state = stClosed
	s.takePending()
	if was == stAuthing || was == stAuthed {
		r.idx.remove(s)
	}
	if was == stAuthed {
		r.onl.Add(-1)
		mOnline.Dec()
	}
	// An auth still in flight (stAuthing) cleans up after itself when its
	// result comes back to the loop and finds the connection closed.
	held := false
	if s.registered && !s.cleaned {
		s.cleaned = true // a lingering connection must not be unregistered twice
		if was != stAuthed || !r.hold(s) {
			r.unregisterAsync(s)
		} else {
			held = true
		}
	}
	// A held session ends when its hold does (resume.go); an auth in
	// flight has ACKed nothing yet.
	if was == stAuthed && !held {
		s.loop.sent.ends.note(s.uid, s.appList())
	}
}

// releaseConn gives back what an open connection holds: its place on the
// loop and in the connection caps (loop only, from OnClose).
func (r *Room) releaseConn(s *connState) {
	s.loop.unlink(s)
	r.conns.Add(-1)
	r.ips.release(s.ip(), s.unauthed)
	if s.unauthed {
		s.unauthed = false
		r.unauthed.Add(-1)
	}
	mConns.Dec()
	mConnsBy[s.kind].Dec()
	if !s.byUs {
		mClosePeer.Inc()
	}
}

// closeConn closes s from a runnable or sweep on its loop (not from
// OnTraffic, which returns gnet.Close instead). OnClose runs before it
// returns. A lingering connection is closed for good.
func (r *Room) closeConn(s *connState, reason string) {
	if s.state == stClosed && !s.lingering {
		return
	}
	r.markClose(s, reason, "")
	_ = s.loop.el.Close(s.c)
}

// markClose counts why the room closes s, once, and lets s's transport send
// what it sends before a close (transport.appendClose; raw TCP sends
// nothing). code is the ERROR code just sent, "" when none.
func (r *Room) markClose(s *connState, reason, code string) {
	if s.byUs {
		return
	}
	s.byUs = true
	mCloses.WithLabelValues(reason).Inc()
	if s.custom && !s.shaking && s.state != stClosed {
		if b := s.tr.appendClose(nil, reason, code); len(b) > 0 {
			r.sendWire(s, kindControl, b)
		}
	}
}

// lingerFor bounds how long a connection stays open after its last frame;
// the sweep enforces it, so the real bound is lingerFor plus one tick.
const lingerFor = 2 * time.Second

// lingerClose ends s's session after the room wrote its last frame (ERROR,
// KICK; code is the ERROR's code, "" after a KICK) and closes the socket
// gracefully (loop only; from OnTraffic, return gnet.None afterwards).
//
// A plain close() while the client's bytes sit unread in the receive buffer
// makes the kernel answer with a TCP RST and drop whatever it had not sent
// yet; a reset also destroys the frame on the way or, on some client stacks,
// unread in the client's buffer. So instead the room keeps the descriptor a
// moment: shutdown(SHUT_WR) sends the frame followed by a FIN, and inbound
// bytes are read and dropped, until the client closes its side (gnet then
// closes the connection) or the sweep closes it after lingerFor. The session
// is over at once: a lingering connection is stClosed to everything but
// OnTraffic, OnClose and the sweep; it still counts against the connection
// caps, which bounds how many there can be.
func (r *Room) lingerClose(s *connState, reason, code string) {
	if s.state == stClosed {
		return
	}
	r.markClose(s, reason, code)
	r.endSession(s)
	s.lingering = true
	s.active = r.now()
	_, _ = s.c.Discard(-1)
	r.shutWrite(s)
}

// shutWrite sends the FIN of a lingering connection once gnet has handed
// all its output to the kernel; before that the sweep and OnTraffic retry.
func (r *Room) shutWrite(s *connState) {
	if s.finSent || s.c.OutboundBuffered() > 0 {
		return
	}
	s.finSent = true
	// An error means the peer is gone already: gnet notices and closes.
	_ = syscall.Shutdown(s.c.Fd(), syscall.SHUT_WR)
}

// lingerTraffic drops what a lingering connection sends (OnTraffic).
func (r *Room) lingerTraffic(s *connState) {
	_, _ = s.c.Discard(-1)
	r.shutWrite(s)
}

// sweepLinger sends a pending FIN and closes the connection for good once
// lingerFor is over (sweep).
func (r *Room) sweepLinger(s *connState, now int64) {
	if now-s.active > int64(lingerFor) {
		r.closeConn(s, "")
		return
	}
	r.shutWrite(s)
}

// unregister removes the session (uid, connID) from register and, when it
// was still the uid's session, reports it offline for each app (worker). A
// session already replaced by a newer login is not reported offline: the
// user is online elsewhere.
func (r *Room) unregister(uid string, connID uint64, apps []uint32) {
	ctx := callCtx()
	mBackendCalls.WithLabelValues("unregister").Inc()
	ok, err := r.deps.Register.Unregister(ctx, uid, r.cfg.ID, connID)
	if err != nil {
		r.log.Warn("unregister failed", "uid", uid, "conn", connID, "err", err)
		return
	}
	if ok {
		for _, app := range apps {
			r.status(ctx, uid, app, push.EventOffline)
		}
	}
}

// unregisterAsync queues the unregister of a closed connection (loop only).
func (r *Room) unregisterAsync(s *connState) {
	uid, id, apps := s.uid, s.id, s.appList()
	if !r.submit(func() { r.unregister(uid, id, apps) }) {
		// register keeps the stale session until the uid logs in again or
		// this room re-registers; its connID check keeps that harmless.
		mPoolDropped.WithLabelValues("unregister").Inc()
		r.log.Warn("unregister dropped: worker pool full", "uid", uid, "conn", id)
	}
}

// sharedCall is one deadline context that the logins' and closes' backend
// calls share for sharedCallFor (callCtx).
type sharedCall struct {
	ctx    context.Context
	cancel context.CancelFunc // never needed: the context ends at its deadline
	until  int64              // unix ns: handed out until then
}

// sharedCallFor is how long one shared context is handed out: a call's
// deadline is callTimeout after its start, minus at most this much.
const sharedCallFor = 100 * time.Millisecond

var (
	sharedCallMu  sync.Mutex
	sharedCallCur atomic.Pointer[sharedCall]
)

// callCtx returns a context for one login's or close's backend calls
// (register, store; worker): a deadline callTimeout from about now,
// shared with every call that starts in the same sharedCallFor. A context
// of its own (context.WithTimeout: a context, a timer and its cancel) was
// ~380 bytes of garbage a login, and the garbage of a login storm is what
// the heap's GC headroom, hence the process's RSS, grows with. It is never
// cancelled early: it ends at its deadline, and at most
// callTimeout/sharedCallFor (50) of them are alive at once.
func callCtx() context.Context {
	now := time.Now().UnixNano()
	if p := sharedCallCur.Load(); p != nil && now < p.until {
		return p.ctx
	}
	sharedCallMu.Lock()
	defer sharedCallMu.Unlock()
	if p := sharedCallCur.Load(); p != nil && now < p.until {
		return p.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	sharedCallCur.Store(&sharedCall{ctx: ctx, cancel: cancel, until: now + int64(sharedCallFor)})
	return ctx
}
