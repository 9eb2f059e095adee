package room

import (
	"context"

	"github.com/lcpush/lcpush/pkg/push"
)

// Blocking calls to other services, run on the worker pool.

// status reports an online/offline event; a failure is logged, never fatal.
func (r *Room) status(ctx context.Context, uid string, app uint32, event string) {
	ev := push.StatusEvent{App: app, UID: uid, Event: event, Room: r.cfg.ID, TS: nowMilli()}
	if err := r.deps.Coordinator.Status(ctx, ev); err != nil {
		r.log.Debug("status event not sent", "uid", uid, "app", app, "event", event, "err", err)
	}
}

// unregister removes the session (uid, connID) from register and, when it
// was still the uid's session, reports it offline for each app. A session
// already replaced by a newer login is not reported offline: the user is
// online elsewhere.
func (r *Room) unregister(uid string, connID uint64, apps []uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
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

// setApps sends s's current app set to register. Calls for one connection
// are serialised and each sends the set as it is when it runs, so the last
// one to finish always carries the latest set.
func (r *Room) setApps(ctx context.Context, s *connState) ([]push.Session, error) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	displaced, _, err := r.deps.Register.SetApps(ctx, s.uid, s.id, s.appList())
	return displaced, err
}

// syncApps queues a setApps after app was unbound, and its offline event
// when offline is set (loop only).
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
