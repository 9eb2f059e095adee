package remote

import (
	"context"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// sessKey names one connection of a room.
type sessKey struct {
	uid  string
	conn uint64
}

func keyOf(s push.Session) sessKey { return sessKey{s.UID, s.ConnID} }

// reconcileGrace is how old (Since) a session must be before the
// reconciliation drops it from its owner for not being held here: a login
// is registered before the room lists it (AUTH: Register, then Load, each
// bounded by 5 s), so a younger one may simply not be listed yet.
const reconcileGrace = 15 * time.Second

// scanPage is the page size of the reconciliation's scans.
const scanPage = 5000

// reconcileFullEvery: every that many checks, every register is scanned
// whatever its count (a stale session and a missing one on the same
// register leave the count right).
const reconcileFullEvery = 10

// reconcile makes the registers hold exactly this process's sessions
// (those its Source lists), every ReconcileEvery, while membership is
// settled (no refill owed). It asks every register for its counts, which
// is cheap, and compares the count of this room's sessions with the number
// of local sessions the register owns. Only a register whose count is off
// is scanned (paged, app 0), and every register at every
// reconcileFullEvery-th check; then, against the local sessions read after
// the scan:
//
//   - a session of this room on a register that does not own its uid is a
//     copy left behind by a move (a lost removal, or a register that left
//     and came back with the same Epoch): it is removed there;
//   - a session of this room on its owner that is not held here, and
//     logged in more than reconcileGrace ago, is a connection that closed
//     while its removal was lost (or raced a refill): it is removed;
//   - a local session its owner does not list, held here both before and
//     after the scan, is restored there (Restore, which never kicks), and
//     the OnRefilled hook runs; one the owner still does not list at the
//     next check (Restore kept a newer login) is not restored again.
//
// Removals are conditional (Unregister of that room and connection): a
// newer login is never touched.
func (r *Registers) reconcile(ctx context.Context) {
	src := r.source.Load()
	st := &r.rf
	now := time.Now()
	if r.cfg.ReconcileEvery < 0 || src == nil || now.Before(st.reconNext) {
		return
	}
	st.reconNext = now.Add(r.cfg.ReconcileEvery)
	cur := live(r.m, RoleRegister)
	if len(cur) == 0 || len(st.pending) > 0 || !sameMembers(st.view, cur) {
		return // the refill acts first
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RefillTimeout)
	defer cancel()
	counts := make([]push.Counts, len(cur))
	cerrs := make([]error, len(cur))
	r.fanOut(len(cur), func(i int) {
		c, err := r.client(cur[i])
		if err == nil {
			counts[i], err = c.Counts(ctx)
		}
		cerrs[i] = err
	})
	local, err := (*src)(ctx)
	if err != nil {
		return
	}
	if len(local) > 0 {
		st.room = local[0].Room
	}
	room := st.room
	if room == "" {
		return
	}
	// Only a session held before the scans began can be missing from them:
	// one that logged in meanwhile may have been registered after its
	// register's scan, and restoring it would run the hook (a Redeliver of
	// every stored message to every session here) for nothing.
	before := make(map[sessKey]bool, len(local))
	want := make([]int, len(cur))
	for _, s := range local {
		before[keyOf(s)] = true
		if !st.refused[keyOf(s)] {
			want[owner(cur, s.UID)]++
		}
	}
	st.reconRound++
	full := st.reconRound%reconcileFullEvery == 0
	var check []int
	for i := range cur {
		if cerrs[i] == nil && (full || counts[i].PerRoom[room] != want[i]) {
			check = append(check, i)
		}
	}
	if len(check) == 0 {
		return
	}
	listed := make([][]push.Session, len(cur))
	serrs := make([]error, len(cur))
	r.fanOut(len(check), func(j int) {
		i := check[j]
		listed[i], serrs[i] = r.scanRoom(ctx, cur[i], room)
	})
	// Read after the scans: what they listed and is not here now has left.
	if local, err = (*src)(ctx); err != nil {
		return
	}
	here := make(map[sessKey]bool, len(local))
	for _, s := range local {
		here[keyOf(s)] = true
	}
	cutoff := now.Add(-reconcileGrace).Unix()
	drop := make([][]push.Session, len(cur))
	missing := make([][]push.Session, len(cur))
	refused := make(map[sessKey]bool)
	for _, i := range check {
		if serrs[i] != nil {
			r.log.Warn("register reconcile: scan failed", "register", cur[i].ID, "err", serrs[i])
			continue
		}
		on := make(map[sessKey]bool, len(listed[i]))
		for _, s := range listed[i] {
			k := keyOf(s)
			on[k] = true
			if owner(cur, s.UID) != i || (!here[k] && s.Since <= cutoff) {
				drop[i] = append(drop[i], s)
			}
		}
		for _, s := range local {
			k := keyOf(s)
			if owner(cur, s.UID) != i || on[k] || !before[k] {
				continue
			}
			refused[k] = true
			if !st.refused[k] {
				missing[i] = append(missing[i], s)
			}
		}
	}
	// Keep the refusals of registers not checked this time.
	for k := range st.refused {
		if here[k] && !refused[k] {
			if i := owner(cur, k.uid); !contains(check, i) {
				refused[k] = true
			}
		}
	}
	st.refused = refused
	restored := 0
	r.fanOut(len(check), func(j int) {
		i := check[j]
		c, err := r.client(cur[i])
		if err != nil {
			return
		}
		for _, s := range drop[i] {
			if _, err := c.Unregister(ctx, s.UID, s.Room, s.ConnID); err != nil {
				r.log.Warn("register reconcile: removing a stale session failed", "register", cur[i].ID, "err", err)
				return
			}
			mReconciled.WithLabelValues("dropped").Inc()
		}
	})
	for _, i := range check {
		if len(missing[i]) == 0 {
			continue
		}
		if err := r.restore(ctx, cur[i], missing[i]); err != nil {
			r.log.Warn("register reconcile: restoring missing sessions failed", "register", cur[i].ID, "sessions", len(missing[i]), "err", err)
			for _, s := range missing[i] {
				delete(st.refused, keyOf(s)) // try again next time
			}
			continue
		}
		restored += len(missing[i])
		mReconciled.WithLabelValues("restored").Add(float64(len(missing[i])))
	}
	n := 0
	for _, d := range drop {
		n += len(d)
	}
	if n > 0 || restored > 0 {
		r.log.Info("register reconcile", "room", room, "dropped", n, "restored", restored)
	}
	if restored > 0 {
		r.requestRedeliver()
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// scanRoom lists the sessions of room that m holds.
func (r *Registers) scanRoom(ctx context.Context, m push.Member, room string) ([]push.Session, error) {
	c, err := r.client(m)
	if err != nil {
		return nil, err
	}
	var out []push.Session
	var cursor uint64
	for {
		page, next, err := c.Scan(ctx, 0, cursor, scanPage)
		if err != nil {
			return nil, err
		}
		for _, s := range page {
			if s.Room == room {
				out = append(out, s)
			}
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}
