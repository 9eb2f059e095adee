package remote

import (
	"context"
	"fmt"
	"time"
)

// reapState is what the room reaper remembers between checks.
type reapState struct {
	next   time.Time            // the next check
	absent map[string]time.Time // room id -> first seen with sessions and no member
}

// reapRooms drops, on every register, the sessions of a room instance that
// has had sessions there while absent from membership for ReapRoomsAfter:
// a room that died for good never unregisters its connections, and no
// reconciliation of its own will remove them. A room that restarts (same
// id) re-fills and reconciles its sessions within seconds, long before; one
// whose membership node merely lapsed while it kept running restores what
// it holds at its next reconciliation. Membership is frozen while this
// process's coordination session is down (keeper), so an outage never
// looks like every room leaving; and nothing is dropped while a register
// does not answer. Every process that runs Registers reaps: DropRoom is
// idempotent.
func (r *Registers) reapRooms(ctx context.Context, now time.Time) {
	st := &r.reap
	if r.cfg.ReapRoomsAfter < 0 || now.Before(st.next) {
		return
	}
	st.next = now.Add(max(r.cfg.ReapRoomsAfter/4, time.Second))
	if len(live(r.m, RoleRegister)) == 0 {
		return
	}
	present := make(map[string]bool)
	for _, m := range r.m.Members(RoleRoom) {
		present[m.ID] = true
	}
	cnt, err := r.Counts(ctx)
	if err != nil || cnt.Unanswered > 0 {
		return // judge only on a whole answer
	}
	if st.absent == nil {
		st.absent = make(map[string]time.Time)
	}
	for room := range st.absent {
		if cnt.PerRoom[room] == 0 || present[room] {
			delete(st.absent, room)
		}
	}
	for room, n := range cnt.PerRoom {
		if n == 0 || present[room] {
			continue
		}
		first, seen := st.absent[room]
		if !seen {
			st.absent[room] = now
			continue
		}
		if now.Sub(first) < r.cfg.ReapRoomsAfter {
			continue
		}
		dropped, err := r.DropRoom(ctx, room)
		if err != nil {
			r.log.Warn("register reap: drop room failed", "room", room, "err", err)
			continue
		}
		delete(st.absent, room)
		mReaped.Add(float64(dropped))
		r.log.Warn("register reap: dropped the sessions of a room gone for good", "room", room,
			"sessions", dropped, "absent_for", now.Sub(first).Round(time.Second))
	}
}

// DropRoom removes every session of room from every live register and
// returns how many; a register that fails is an error (the others still
// dropped theirs).
func (r *Registers) DropRoom(ctx context.Context, room string) (int, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return 0, noMember(RoleRegister)
	}
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ns := make([]int, len(ms))
	errs := make([]error, len(ms))
	r.fanOut(len(ms), func(i int) {
		c, err := r.client(ms[i])
		if err == nil {
			ns[i], err = c.DropRoom(ctx, room)
		}
		if err != nil {
			errs[i] = fmt.Errorf("remote drop room %s on %s: %w", room, ms[i].ID, err)
		}
	})
	n := 0
	var first error
	for i := range ms {
		n += ns[i]
		if first == nil && errs[i] != nil {
			first = errs[i]
		}
	}
	return n, first
}
