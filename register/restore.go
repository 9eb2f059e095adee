package register

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Restore stores sessions that a room re-announces after this register
// restarted empty or took over their uids (cluster refill, pkg/remote).
// Unlike Register it returns no previous session, so nothing is kicked: the
// refill must not look like a second login. For each session:
//
//   - the same connection (room, connID) already stored is refreshed;
//   - another connection of the uid that logged in at the same second or
//     later (Since >=) is kept: it is the user's newer login, registered
//     while the refill was on its way;
//   - otherwise the session is stored, replacing an older one.
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
		sh, _ := s.shardOf(sess.UID)
		if sh.restore(sess) {
			metricSessions.Inc()
		}
	}
	if bad > 0 {
		return fmt.Errorf("register restore: %d sessions without uid or room: %w", bad, ErrInvalid)
	}
	return nil
}

// restore applies one session of Restore and reports whether the uid was
// new to the shard.
func (sh *shard) restore(sess *push.Session) bool {
	apps := copyApps(sess.Apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[sess.UID]
	if !ok {
		sh.nextSeq++
		e = &entry{uid: sess.UID, seq: sh.nextSeq}
		e.set(sh, sess, apps)
		sh.m[e.uid] = e
		sh.order = append(sh.order, slot{seq: e.seq, e: e})
		return true
	}
	if (e.room != sess.Room || e.connID != sess.ConnID) && e.since >= sess.Since {
		return false
	}
	sh.uncount(e)
	e.set(sh, sess, apps)
	return false
}
