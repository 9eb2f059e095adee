package room

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// Graceful drain and shutdown: Drain redirects the clients elsewhere,
// Shutdown kicks what is left and stops.

// Drain asks every authenticated client to reconnect to one of the
// addresses of its own transport (addrs by push.Transports name: tcp, ws,
// tls, wss) after a random delay in [0, afterMS] (REDIRECT), and returns
// how many were told; a client whose transport has no address is not told
// (Shutdown kicks it with server_shutdown).
// It waits for the loops (bounded by ctx); clients close by themselves.
func (r *Room) Drain(ctx context.Context, addrs map[string][]string, afterMS int) int {
	// One REDIRECT per client transport: a WebSocket client is sent to
	// WebSocket addresses, a client behind the TLS terminator to TLS ones.
	var frames [len(trNames)][]byte
	for k, name := range trNames {
		if a := addrs[name]; len(a) > 0 {
			frames[k] = proto.AppendJSON(nil, proto.Header{Op: proto.OpRedirect},
				proto.Redirect{Addrs: a, AfterMS: afterMS, Reason: "drain"})
		}
	}
	var told atomic.Int64
	r.onLoops(ctx, func(l *loopState) {
		n := 0
		l.each(func(s *connState) {
			if f := frames[s.kind]; s.state == stAuthed && f != nil && r.send(s, kindControl, f) {
				n++
			}
		})
		told.Add(int64(n))
	})
	return int(told.Load())
}

// Shutdown kicks every session (KICK 4 server_shutdown), unregisters them,
// stops the engine and the workers and waits for them. It is idempotent and
// safe before Start; ctx bounds the waiting.
func (r *Room) Shutdown(ctx context.Context) error {
	r.shutOnce.Do(func() { r.shutErr = r.shutdown(ctx) })
	return r.shutErr
}

// goneSession is a kicked session Shutdown unregisters itself, instead of
// one pool task per connection that a full queue would drop.
type goneSession struct {
	uid  string
	id   uint64
	apps []uint32
}

func (r *Room) shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true // refuses new connections and new AUTHs from now on
	r.closed.Store(true)
	started, pool := r.started, r.pool
	r.mu.Unlock()
	r.stopBcasts(ctx) // before the kicks: a paced task would queue more
	if !started {
		return nil
	}
	defer pool.Close()
	select {
	case <-r.booted:
	case <-r.runDone:
		return nil // never listened
	case <-ctx.Done():
		return fmt.Errorf("room shutdown: %w", ctx.Err())
	}

	// Let the AUTHs already with the workers land, so that every registered
	// session is known to its loop and gets kicked and unregistered below.
	for r.authing.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("room shutdown: waiting for auths: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}

	var mu sync.Mutex
	var gone []goneSession
	var ends []push.SessionEnd // for the store's checkpoint (checkpoint.go)
	r.onLoops(ctx, func(l *loopState) {
		var mine []goneSession
		l.sent.ends.all = true // every session closed here is reported
		l.each(func(s *connState) {
			if s.state == stAuthed {
				r.writeKick(s, push.KickShutdown, proto.KickReason(push.KickShutdown))
			}
			if s.registered && !s.cleaned {
				s.cleaned = true
				mine = append(mine, goneSession{s.uid, s.id, s.appList()})
			}
			r.closeConn(s, closeKick)
		})
		p := l.sent.ends.take() // with the ends the last sweep did not report
		mu.Lock()
		gone = append(gone, mine...)
		if p != nil {
			ends = append(ends, *p...)
		}
		mu.Unlock()
		if p != nil {
			putEnds(p)
		}
	})

	err := r.stopEngine(ctx)
	r.flushAcks(ctx)

	mu.Lock()
	todo := append([]goneSession(nil), gone...)
	mu.Unlock()
	held, heldEnds := r.holds.all()
	for _, h := range held { // no reconnect can take them over now
		mResume.WithLabelValues("shutdown").Inc()
		todo = append(todo, goneSession{h.uid, h.id, []uint32{h.app}})
	}
	// After flushAcks, so the cursors include the last ACKs; before the
	// unregisters, the room's last calls.
	if p := r.endRetry.take(true); p != nil {
		ends = append(ends, *p...)
		putEnds(p)
	}
	r.checkpointAll(ctx, append(ends, heldEnds...))
	r.unregisterAll(ctx, todo)
	return err
}

// stopEngine stops gnet and waits for its goroutine. Engine.Stop polls
// every 500 ms; the end of our Run goroutine is the faster signal.
func (r *Room) stopEngine(ctx context.Context) error {
	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.runDone:
			cancel()
		case <-stopCtx.Done():
		}
	}()
	err := r.eng.Stop(stopCtx)
	select {
	case <-r.runDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("room shutdown: stopping engine: %w (%v)", ctx.Err(), err)
	}
}

// unregisterAll unregisters kicked sessions with bounded parallelism.
func (r *Room) unregisterAll(ctx context.Context, gone []goneSession) {
	ch := make(chan goneSession)
	var wg sync.WaitGroup
	for range min(r.cfg.Workers, len(gone)) {
		wg.Go(func() {
			for g := range ch {
				r.unregister(g.uid, g.id, g.apps)
			}
		})
	}
feed:
	for _, g := range gone {
		select {
		case ch <- g:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
}
