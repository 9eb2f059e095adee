package room

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/push"
)

// Recovery of a register that lost its sessions: Sessions is the snapshot
// it is re-filled from, and Redeliver pushes again what was stored while it
// could not route.

// Sessions returns a snapshot of the registered sessions held here. A
// register that restarted empty is re-filled from it: recovery by re-filling
// rather than by replicating the session store.
func (r *Room) Sessions(ctx context.Context) ([]push.Session, error) {
	var (
		mu   sync.Mutex
		out  []push.Session
		over bool // the caller gave up: loops that run late must not append
	)
	ran := r.onLoops(ctx, func(l *loopState) {
		var mine []push.Session
		l.each(func(s *connState) {
			if s.state == stAuthed && s.registered && !s.cleaned {
				mine = append(mine, push.Session{
					UID: s.uid, Room: r.cfg.ID, ConnID: s.id, Apps: slices.Clone(s.appList()),
					Since: s.since, IP: s.ip().String(),
				})
			}
		})
		mu.Lock()
		if !over {
			out = append(out, mine...)
		}
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	over = true
	if err := ctx.Err(); err != nil && ran < len(r.allLoops()) {
		return nil, fmt.Errorf("room sessions: %w", err)
	}
	// Held sessions are registered too, until their window ends.
	return append(out, r.holds.snapshot(r.cfg.ID)...), nil
}

// redeliverParallel bounds the store loads one Redeliver makes at once.
const redeliverParallel = 8

// Redeliver loads the stored messages of every session held here and
// pushes them again, for after an event that may have hidden a delivery:
// while a register was unreachable or being re-filled, the center stored
// QoS 1 pushes it could not route, and stored messages are otherwise loaded
// only at AUTH and BIND. No accepted message then waits for a reconnect.
// Messages already sent and not yet ACKed go out again: clients dedup by id.
// It returns how many messages it wrote; ctx bounds the whole call.
func (r *Room) Redeliver(ctx context.Context) (int, error) {
	if r.isClosing() {
		return 0, fmt.Errorf("room redeliver: %w", push.ErrClosed)
	}
	sessions, err := r.Sessions(ctx)
	if err != nil {
		return 0, fmt.Errorf("room redeliver: %w", err)
	}
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		written atomic.Int64
		errs    atomic.Int64
	)
	for range min(redeliverParallel, len(sessions)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(sessions) || ctx.Err() != nil {
					return
				}
				n, err := r.redeliverOne(ctx, sessions[i])
				if err != nil {
					errs.Add(1)
					r.log.Warn("redeliver failed", "uid", sessions[i].UID, "err", err)
				}
				written.Add(int64(n))
			}
		})
	}
	wg.Wait()
	mRedelivered.Add(float64(written.Load()))
	if n := errs.Load(); n > 0 {
		return int(written.Load()), fmt.Errorf("room redeliver: %d of %d sessions failed", n, len(sessions))
	}
	if err := ctx.Err(); err != nil {
		return int(written.Load()), fmt.Errorf("room redeliver: %w", err)
	}
	return int(written.Load()), nil
}

// redeliverOne loads one session's stored messages and writes them on its
// connection's loop if it is still that connection, authenticated.
func (r *Room) redeliverOne(ctx context.Context, sess push.Session) (int, error) {
	s := r.idx.get(sess.UID, sess.ConnID)
	if s == nil {
		return 0, nil
	}
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	msgs, err := r.deps.Saver.Load(lctx, sess.UID, s.appList())
	cancel()
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	done := make(chan int, 1)
	err = s.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		n := 0
		switch {
		case s.state != stAuthed:
		case s.c.OutboundBuffered() > maxOutbound:
			r.closeConn(s, closeSlow) // a load starts only under the budget
		default:
			l := s.loop
			l.outBuf, n = r.appendStored(s, l.outBuf[:0], msgs)
			r.send(s, kindStored, l.outBuf)
		}
		done <- n
		return nil
	}))
	if err != nil {
		return 0, nil // the engine is stopping
	}
	select {
	case n := <-done:
		return n, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
