package room

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/push"
)

// The reconnect window (room.resume_window): on weak mobile networks most
// disconnects are flash reconnects to the same gateway. A session the
// client's side ended (the peer closed or the network dropped it; not a
// kick, an error or a shutdown) is held for the window instead of being
// unregistered. The same uid logging in to this room for the same single
// app within it takes the held session over: it keeps the connection id,
// so the register entry stays valid as it is (no Unregister, no Register)
// and the product sees no offline/online events. Stored QoS 1 messages are
// still loaded at the AUTH (at least once comes first); pushes routed here
// while no connection was open were stored (QoS 1) or dropped (QoS 0), as
// for any offline user. When the window ends unclaimed, the session is
// unregistered and reported offline as it would have been at the close.

var (
	mHeld = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_room_held_sessions",
		Help: "Closed sessions held for the reconnect window (room.resume_window), about 100 bytes each.",
	})
	mResume = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_resume_total",
		Help: "Held sessions by outcome: resumed (a reconnect took it over), expired (unregistered at the window's end), full (not held: room.resume_max reached), kicked, shutdown.",
	}, []string{"result"})
	// mBackendCalls counts the room's calls to the register and the store
	// on a session's way in and out: what a resume saves.
	mBackendCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_session_calls_total",
		Help: "Register and store calls of session logins and logouts (register, unregister, load, status).",
	}, []string{"call"})
)

// heldSession is a closed session waiting for its reconnect.
type heldSession struct {
	uid   string
	app   uint32
	id    uint64 // the connection id the register knows it by
	since int64
	until int64 // monotonic ns (Room.now)
}

type heldKey struct {
	uid string
	app uint32
}

// holds is the room's table of held sessions, bounded by room.resume_max.
// Sessions are held for one window, so the FIFO is also expiry order.
type holds struct {
	mu   sync.Mutex
	m    map[heldKey]*heldSession
	fifo []*heldSession // entries taken out early stay until they reach the head
	ends endLog         // holds ended by expiry or a kick, for the store's checkpoint (checkpoint.go)
}

// put holds h; false when the table is full.
func (t *holds) put(h *heldSession, max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[heldKey]*heldSession)
	}
	if len(t.m) >= max {
		return false
	}
	k := heldKey{h.uid, h.app}
	if old := t.m[k]; old != nil {
		// Cannot happen with one session per (uid, app) in the register;
		// the older hold is still unregistered at its expiry.
		return false
	}
	t.m[k] = h
	t.fifo = append(t.fifo, h)
	mHeld.Inc()
	return true
}

// take removes and returns the held session of (uid, app), if any.
func (t *holds) take(uid string, app uint32) *heldSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := heldKey{uid, app}
	h := t.m[k]
	if h != nil {
		delete(t.m, k)
		mHeld.Dec()
	}
	return h
}

// takeID removes and returns the held session of uid with connection id.
func (t *holds) takeID(uid string, id uint64) *heldSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, h := range t.m {
		if k.uid == uid && h.id == id {
			delete(t.m, k)
			mHeld.Dec()
			t.ends.note(h.uid, []uint32{h.app}) // a kick: its session ends
			return h
		}
	}
	return nil
}

// expired removes and returns the sessions whose window ended by now.
func (t *holds) expired(now int64) []*heldSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*heldSession
	n := 0
	for ; n < len(t.fifo) && t.fifo[n].until <= now; n++ {
		h := t.fifo[n]
		if k := (heldKey{h.uid, h.app}); t.m[k] == h {
			delete(t.m, k)
			mHeld.Dec()
			out = append(out, h)
		}
	}
	if n > 0 {
		t.fifo = slices.Delete(t.fifo, 0, n)
	}
	// Their sessions end now: one array holds every end's app.
	apps := make([]uint32, len(out))
	for i, h := range out {
		apps[i] = h.app
		t.ends.note(h.uid, apps[i:i+1:i+1])
	}
	return out
}

// takeEnds returns the holds ended since the last call, nil when none.
func (t *holds) takeEnds() *[]push.SessionEnd {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ends.take()
}

// all removes and returns every held session (shutdown), and the ends of
// holds not reported yet, with those of every session it removes.
func (t *holds) all() ([]*heldSession, []push.SessionEnd) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*heldSession, 0, len(t.m))
	ends := t.ends.ends
	apps := make([]uint32, 0, len(t.m))
	for _, h := range t.m {
		out = append(out, h)
		apps = append(apps, h.app)
		ends = append(ends, push.SessionEnd{UID: h.uid, Apps: apps[len(apps)-1 : len(apps) : len(apps)]})
	}
	mHeld.Sub(float64(len(t.m)))
	t.m, t.fifo, t.ends.ends = nil, nil, nil
	return out, ends
}

// snapshot lists the held sessions as the register knows them (recovery).
func (t *holds) snapshot(room string) []push.Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]push.Session, 0, len(t.m))
	for _, h := range t.m {
		out = append(out, push.Session{UID: h.uid, Room: room, ConnID: h.id, Apps: []uint32{h.app}, Since: h.since})
	}
	return out
}

// hold keeps s's session for the reconnect window instead of unregistering
// it (loop only, from endSession); false when s does not qualify or the
// table is full, and the caller unregisters as usual.
func (r *Room) hold(s *connState) bool {
	cfg := r.deps.Config.Load().Room
	apps := s.appList()
	if cfg.ResumeWindow <= 0 || s.byUs || len(apps) != 1 || r.isClosing() {
		return false
	}
	h := &heldSession{uid: s.uid, app: apps[0], id: s.id, since: s.since, until: r.now() + int64(cfg.ResumeWindow)}
	if !r.holds.put(h, cfg.ResumeMax) {
		mResume.WithLabelValues("full").Inc()
		return false
	}
	return true
}

// resume gives s the held session of (uid, app), if there is one (loop
// only, from handleAuth, before s is indexed): true when s took it over.
func (r *Room) resume(s *connState, uid string, app uint32) bool {
	if r.deps.Config.Load().Room.ResumeWindow <= 0 {
		return false
	}
	h := r.holds.take(uid, app)
	if h == nil {
		return false
	}
	s.id, s.since = h.id, h.since
	mResume.WithLabelValues("resumed").Inc()
	return true
}

// expireHolds unregisters the held sessions whose window is over and
// reports the holds that ended since the last tick to the store (tick).
func (r *Room) expireHolds() {
	for _, h := range r.holds.expired(r.now()) {
		mResume.WithLabelValues("expired").Inc()
		if !r.submit(func() { r.unregister(h.uid, h.id, []uint32{h.app}) }) {
			mPoolDropped.WithLabelValues("unregister").Inc()
			r.log.Warn("unregister of a held session dropped: worker pool full", "uid", h.uid, "conn", h.id)
		}
	}
	r.reportEnds(r.holds.takeEnds())
}

// kickHeld ends a held session a kick is aimed at (the register still
// routes to it): it is unregistered now, reported offline if it was still
// the uid's session. False when uid/connID is not held.
func (r *Room) kickHeld(uid string, connID uint64) bool {
	h := r.holds.takeID(uid, connID)
	if h == nil {
		return false
	}
	mResume.WithLabelValues("kicked").Inc()
	if !r.submit(func() { r.unregister(h.uid, h.id, []uint32{h.app}) }) {
		mPoolDropped.WithLabelValues("unregister").Inc()
	}
	return true
}
