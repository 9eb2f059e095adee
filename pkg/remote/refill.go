package remote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/workpool"
)

// refillState is what the poller remembers between polls.
type refillState struct {
	view    []push.Member    // the register membership last acted on
	pending map[string]int64 // member ID -> Epoch still owed a full refill (a Restore failed)

	forgets    []movedSession // removals owed to old owners, retried until done
	forgetNext time.Time      // when retryForgets may run again
	forgetWait time.Duration  // its backoff

	reconNext  time.Time        // when reconcile may run again
	reconRound int              // checks done
	room       string           // this process's room id, learned from its sessions
	refused    map[sessKey]bool // restored by reconcile and still missing: not retried
}

// RefilledHook is called (on a goroutine of Registers, one call at a time)
// after sessions of this process were re-announced to a register — a
// refill, or the reconciliation restoring missing ones: pushes to them may
// have been stored while the register could not route them. The room's
// Redeliver fits: it re-pushes the stored messages of every session it
// holds and returns how many messages it pushed.
type RefilledHook func(ctx context.Context) (int, error)

// SetOnRefilled sets the hook called after a refill (see RefilledHook); nil
// removes it. It may be called at any time. A failing hook is called again
// with backoff, at most 5 times per refill.
func (r *Registers) SetOnRefilled(f func(ctx context.Context) (int, error)) {
	if f == nil {
		r.onRefilled.Store(nil)
		return
	}
	h := RefilledHook(f)
	r.onRefilled.Store(&h)
}

// requestRedeliver asks the redeliver goroutine for one more run of the
// hook; requests made while one is owed are merged.
func (r *Registers) requestRedeliver() {
	if r.onRefilled.Load() == nil {
		return
	}
	select {
	case r.redeliver <- struct{}{}:
	default:
	}
}

// redeliverLoop runs the hook when asked, until ctx ends.
func (r *Registers) redeliverLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.redeliver:
		}
		for attempt := 0; ; attempt++ {
			h := r.onRefilled.Load()
			if h == nil {
				break
			}
			cctx, cancel := context.WithTimeout(ctx, r.cfg.RedeliverTimeout)
			n, err := (*h)(cctx)
			cancel()
			if err == nil {
				mRedeliver.WithLabelValues("ok").Inc()
				r.log.Info("register refill: stored messages pushed again", "messages", n)
				break
			}
			mRedeliver.WithLabelValues("error").Inc()
			r.log.Warn("register refill: pushing stored messages again failed", "attempt", attempt+1, "err", err)
			if attempt >= 4 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second << attempt):
			}
		}
	}
}

// SetSource sets where the refill reads this process's sessions (the local
// room's Sessions). Without one, the refill does nothing. It may be called
// at any time.
func (r *Registers) SetSource(src func(ctx context.Context) ([]push.Session, error)) {
	s := Source(src)
	r.source.Store(&s)
}

// Start starts the fan-out workers and the membership poller that refills
// registers. Both run until Shutdown, not until ctx ends.
func (r *Registers) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("remote registers: started twice or after Shutdown")
	}
	r.started = true
	r.fan.Store(workpool.New(r.cfg.FanOut, r.cfg.FanOut))
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	r.wg.Go(func() { r.poll(run) })
	r.wg.Go(func() { r.redeliverLoop(run) })
	return nil
}

// Shutdown stops the poller (an unfinished refill is abandoned, and so are
// the removals from old owners still owed), the redeliver goroutine and the
// fan-out workers, and waits for them; calls made afterwards still work,
// without fan-out. It is idempotent.
func (r *Registers) Shutdown(ctx context.Context) error {
	r.shutOnce.Do(func() {
		r.mu.Lock()
		r.started = true // no Start after Shutdown
		stop := r.stop
		r.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		if p := r.fan.Load(); p != nil {
			p.Close()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("remote registers shutdown: %w", ctx.Err())
	}
}

func (r *Registers) poll(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollEvery)
	defer t.Stop()
	for {
		r.observe(live(r.m, RoleRegister), time.Now())
		r.refill(ctx)
		r.retryForgets(ctx)
		r.reconcile(ctx)
		r.reapRooms(ctx, time.Now())
		r.polls.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refill compares the live registers with the last view and re-announces
// local sessions where needed:
//
//   - to a member that is new or has a new Epoch (a restart: it is empty),
//     or still owed a refill, every local session it owns;
//   - to the new owner of a uid whose owner changed, that session; and the
//     old owner, if it is still up with the same Epoch, forgets it
//     (conditional Unregister), so that it neither counts nor shows it.
//     The removal waits until the new owner has the session and is retried
//     until it is done (retryForgets).
//
// After a round that re-announced sessions, the OnRefilled hook runs.
//
// Restore never kicks, and keeps a newer login of the uid. If the source
// fails, nothing changes and the next poll tries again; a member whose
// Restore failed gets a full refill at the next poll.
//
// The sessions are a snapshot: one that closes while the refill is on its
// way may be restored after its Unregister, and then stays listed (counts,
// scans; pushes to it find no connection) until the reconciliation drops it.
// Likewise a register that drops out of membership without restarting (same
// Epoch) keeps what it held, including sessions that closed meanwhile, until
// the reconciliation drops them.
func (r *Registers) refill(ctx context.Context) {
	src := r.source.Load()
	cur := live(r.m, RoleRegister)
	st := &r.rf
	if sameMembers(st.view, cur) && len(st.pending) == 0 {
		return
	}
	if src == nil || len(cur) == 0 {
		// Nothing to do, or nowhere to put it: registers that come back
		// are new to the view and get a full refill then.
		st.view, st.pending = cur, nil
		return
	}
	fresh := make(map[string]bool, len(cur))
	prev := make(map[string]int64, len(st.view))
	for _, m := range st.view {
		prev[m.ID] = m.Epoch
	}
	for _, m := range cur {
		e, ok := prev[m.ID]
		if !ok || e != m.Epoch {
			fresh[m.ID] = true
		} else if pe, ok := st.pending[m.ID]; ok && pe == m.Epoch {
			fresh[m.ID] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RefillTimeout)
	defer cancel()
	sessions, err := (*src)(ctx)
	if err != nil {
		r.log.Warn("register refill: reading local sessions failed", "err", err)
		mRefillErr.Inc()
		return
	}
	batches := make([][]push.Session, len(cur))
	var away []movedSession
	for _, s := range sessions {
		n := owner(cur, s.UID)
		moved := false
		if len(st.view) > 0 {
			o := st.view[owner(st.view, s.UID)]
			if moved = o.ID != cur[n].ID; moved && isLive(cur, o) {
				away = append(away, movedSession{m: o, to: n, s: s})
			}
		}
		if fresh[cur[n].ID] || moved {
			batches[n] = append(batches[n], s)
		}
	}
	pending := make(map[string]int64)
	errs := make([]error, len(cur))
	r.fanOut(len(cur), func(i int) { errs[i] = r.restore(ctx, cur[i], batches[i]) })
	restored := 0
	for i, err := range errs {
		if err != nil {
			pending[cur[i].ID] = cur[i].Epoch
			r.log.Warn("register refill failed", "register", cur[i].ID, "sessions", len(batches[i]), "err", err)
		} else {
			restored += len(batches[i])
		}
	}
	st.view, st.pending = cur, pending
	if restored > 0 {
		r.requestRedeliver()
	}
	// A session stays on its old owner until its new owner has it: the
	// removals wait in st.forgets (retryForgets runs right after this).
	r.queueForgets(away, time.Now())
	st.forgetNext = time.Time{}
}

// restore sends batch to m in RefillBatch-sized Restore calls.
func (r *Registers) restore(ctx context.Context, m push.Member, batch []push.Session) error {
	if len(batch) == 0 {
		return nil
	}
	c, err := r.client(m)
	if err != nil {
		mRefillErr.Inc()
		return err
	}
	for len(batch) > 0 {
		n := min(len(batch), r.cfg.RefillBatch)
		if err := c.Restore(ctx, batch[:n]); err != nil {
			mRefillErr.Inc()
			return err
		}
		mRefilled.Add(float64(n))
		batch = batch[n:]
	}
	mRefillOK.Inc()
	r.log.Info("register refilled", "register", m.ID, "epoch", m.Epoch)
	return nil
}

type movedSession struct {
	m     push.Member // the old owner
	to    int         // index of the new owner in the view of the refill that moved it
	s     push.Session
	added time.Time
}

// queueForgets adds moved sessions to the removals owed to their old
// owners; beyond ForgetMax they are dropped and counted (the
// reconciliation removes those copies).
func (r *Registers) queueForgets(away []movedSession, now time.Time) {
	st := &r.rf
	room := max(0, r.cfg.ForgetMax-len(st.forgets))
	if len(away) > room {
		mForgetDropped.Add(float64(len(away) - room))
		r.log.Warn("register refill: too many removals owed to old owners, dropping some", "dropped", len(away)-room, "max", r.cfg.ForgetMax)
		away = away[:room]
	}
	for _, x := range away {
		x.added = now
		st.forgets = append(st.forgets, x)
	}
}

// Backoff of retryForgets.
const (
	forgetWaitMax = 5 * time.Second
)

// retryForgets removes moved sessions from their old owners (conditional
// Unregister: a newer login there stays). A removal is done when it
// succeeds, when the old owner restarted (new Epoch: it is empty) or owns
// the uid again, or after ForgetKeep out of membership; it waits while the
// uid's current owner is still owed a refill (the session stays on its old
// owner until its new owner has it). Failures are retried with backoff
// (PollEvery doubling up to 5 s).
func (r *Registers) retryForgets(ctx context.Context) {
	st := &r.rf
	if len(st.forgets) == 0 {
		st.forgetWait = 0
		return
	}
	now := time.Now()
	if now.Before(st.forgetNext) {
		return
	}
	cur := live(r.m, RoleRegister)
	byID := make(map[string]int, len(cur))
	for i, m := range cur {
		byID[m.ID] = i
	}
	keep := make([]bool, len(st.forgets))
	var ready []int
	for j := range st.forgets {
		x := &st.forgets[j]
		k, in := byID[x.m.ID]
		switch {
		case !in:
			// Out of membership: it may come back with what it held.
			if keep[j] = now.Sub(x.added) < r.cfg.ForgetKeep; !keep[j] {
				mForgetDropped.Inc()
			}
		case cur[k].Epoch != x.m.Epoch:
			// Restarted empty: nothing left to remove.
		case cur[owner(cur, x.s.UID)].ID == x.m.ID:
			// It owns the uid again (and the refill re-announced it there).
		default:
			if _, owed := st.pending[cur[owner(cur, x.s.UID)].ID]; owed {
				keep[j] = true
				continue
			}
			x.m = cur[k] // its current address
			ready = append(ready, j)
		}
	}
	if len(ready) > 0 {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.RefillTimeout)
		parts := min(r.cfg.FanOut, len(ready))
		errs := make([]error, len(ready))
		r.fanOut(parts, func(p int) {
			for i := p; i < len(ready); i += parts {
				x := &st.forgets[ready[i]]
				c, err := r.client(x.m)
				if err == nil {
					_, err = c.Unregister(ctx, x.s.UID, x.s.Room, x.s.ConnID)
				}
				if err != nil {
					errs[i] = err
					keep[ready[i]] = true
					mForgetFailed.Inc()
					continue
				}
				mMovedAway.Inc()
			}
		})
		cancel()
		logged := make(map[string]bool)
		for i, err := range errs {
			if id := st.forgets[ready[i]].m.ID; err != nil && !logged[id] {
				logged[id] = true
				r.log.Warn("register refill: removing moved sessions failed, will retry", "register", id, "err", err)
			}
		}
	}
	out := st.forgets[:0]
	for j, x := range st.forgets {
		if keep[j] {
			out = append(out, x)
		}
	}
	clear(st.forgets[len(out):])
	st.forgets = out
	if len(out) == 0 {
		st.forgetWait = 0
		return
	}
	st.forgetWait = min(max(2*st.forgetWait, r.cfg.PollEvery), forgetWaitMax)
	st.forgetNext = now.Add(st.forgetWait)
}

// sameMembers reports whether a and b (sorted by ID) hold the same IDs,
// epochs and addresses.
func sameMembers(a, b []push.Member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Epoch != b[i].Epoch || a[i].RPCAddr != b[i].RPCAddr {
			return false
		}
	}
	return true
}

// isLive reports whether ms holds m with the same Epoch.
func isLive(ms []push.Member, m push.Member) bool {
	for _, x := range ms {
		if x.ID == m.ID {
			return x.Epoch == m.Epoch
		}
	}
	return false
}
