package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/workpool"
)

// refillState is what the poller remembers between polls.
type refillState struct {
	view    []push.Member    // the register membership last acted on
	pending map[string]int64 // member ID -> Epoch still owed a full refill (a Restore failed)
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
	return nil
}

// Shutdown stops the poller (an unfinished refill is abandoned) and the
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
		r.refill(ctx)
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
//
// Restore never kicks, and keeps a newer login of the uid. If the source
// fails, nothing changes and the next poll tries again; a member whose
// Restore failed gets a full refill at the next poll.
//
// The sessions are a snapshot: one that closes while the refill is on its
// way may be restored after its Unregister, and then stays listed (counts,
// scans; pushes to it find no connection) until that uid logs in or out
// again. Likewise a register that drops out of membership without
// restarting (same Epoch) keeps what it held, including sessions that closed
// meanwhile.
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
	for i, err := range errs {
		if err != nil {
			pending[cur[i].ID] = cur[i].Epoch
			r.log.Warn("register refill failed", "register", cur[i].ID, "sessions", len(batches[i]), "err", err)
		}
	}
	// A session stays on its old owner until its new owner has it.
	away = slices.DeleteFunc(away, func(x movedSession) bool { return errs[x.to] != nil })
	r.forget(ctx, away)
	st.view, st.pending = cur, pending
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
	m  push.Member // the old owner
	to int         // index of the new owner in the current view
	s  push.Session
}

// forget removes moved sessions from their old owners, best effort: a
// failure leaves a copy that only counts and scans see, until that uid's
// next logout or the old owner's restart.
func (r *Registers) forget(ctx context.Context, away []movedSession) {
	if len(away) == 0 {
		return
	}
	parts := min(r.cfg.FanOut, len(away))
	var failed sync.Map
	r.fanOut(parts, func(p int) {
		for i := p; i < len(away); i += parts {
			x := &away[i]
			c, err := r.client(x.m)
			if err == nil {
				_, err = c.Unregister(ctx, x.s.UID, x.s.Room, x.s.ConnID)
			}
			if err != nil {
				failed.Store(x.m.ID, err)
				continue
			}
			mMovedAway.Inc()
		}
	})
	failed.Range(func(k, v any) bool {
		r.log.Warn("register refill: removing moved sessions failed", "register", k, "err", v)
		return true
	})
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
