package register

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/internal/appset"
	"github.com/lcpush/lcpush/pkg/push"
)

// Restore stores sessions that a room re-announces after this register
// restarted empty or took over their uids (cluster refill, pkg/remote).
// Unlike Register it returns no previous session, so nothing is kicked: the
// refill must not look like a second login. For each session:
//
//   - the same connection (room, connID) already stored is refreshed;
//   - for each app, another connection of the uid holding it that logged in
//     at the same second or later (Since >=) keeps it: it is the user's newer
//     login, registered while the refill was on its way;
//   - otherwise the session is stored, taking its apps from older holders.
//
// Sessions with an empty uid or room are skipped; Restore then stores the
// others and returns an error wrapping ErrInvalid.
func (s *Service) Restore(ctx context.Context, sessions []push.Session) error {
	if err := s.check(ctx, "restore"); err != nil {
		return err
	}
	bad := 0
	for i := range sessions {
		sess := &sessions[i]
		if sess.UID == "" || sess.Room == "" {
			bad++
			continue
		}
		sh, h := s.shardOf(sess.UID)
		if sh.restore(sess, h) {
			metricSessions.Inc()
		}
	}
	if bad > 0 {
		return fmt.Errorf("register restore: %d sessions without uid or room: %w", bad, ErrInvalid)
	}
	return nil
}

// restore applies one session of Restore and reports whether it added a
// connection. Per app, the newer login wins: an app another connection of
// the uid holds since the same second or later stays there and the
// restored session goes without it (it is skipped when nothing is left);
// an older holder loses the app, as in register, but nothing is kicked.
func (sh *shard) restore(sess *push.Session, h uint64) bool {
	var buf [16]uint32
	apps := dedupApps(buf[:0], sess.Apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	defer sh.compact()
	head := sh.head(sess.UID, h)
	if head == nil {
		sh.add(sess, appset.Of(apps), h)
		return true
	}
	if own := head.find(sess.Room, sess.ConnID); own != nil {
		sh.uncount(own)
		own.set(sh, sess, appset.Of(apps))
		return false
	}
	var older []uint32
	for e := head; e != nil; e = e.more {
		for _, a := range common(e.appList(), apps) {
			if e.since >= sess.Since {
				apps = removeApp(apps, a)
			} else {
				older = append(older, a)
			}
		}
	}
	if len(apps) == 0 && len(sess.Apps) > 0 {
		return false
	}
	e := &rec{uid: sess.UID}
	e.set(sh, sess, appset.Of(apps))
	e.more, head.more = head.more, e
	if len(older) > 0 { // after joining: the uid never goes offline in between
		sh.displace(head, sess.Room, sess.ConnID, older)
	}
	return true
}

// removeApp returns apps without app, in a new slice.
func removeApp(apps []uint32, app uint32) []uint32 {
	out := make([]uint32, 0, len(apps))
	for _, a := range apps {
		if a != app {
			out = append(out, a)
		}
	}
	return out
}
