package room

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
)

// maxLoopBacklog bounds the bytes of push work (payloads and connection
// lists) queued for one loop; beyond it a push is not delivered here (QoS 1
// stays stored), so a stalled loop cannot make the room's memory grow
// without limit.
const maxLoopBacklog = 32 << 20

// loopState is the room's state for one gnet event loop. Everything except
// the atomics is touched only on that loop.
type loopState struct {
	el  gnet.EventLoop
	idx int // position in Room.loopSeq

	head   *connState // intrusive list of the loop's connections
	n      int
	outBuf []byte // frame building for writes on this loop
	wire   []byte // wire form of frames for transports that are not plain (write.go)

	push    pushQueue  // pushes waiting for the loop's flush (write.go)
	acks    ackQueue   // ACKs waiting for the store (ack.go)
	flusher *pushFlush // the flush task, allocated once

	sent     sentLog      // writes for the delivery status (sent.go)
	cover    coverLog     // stored broadcasts given live or by a load (cover.go)
	backlog  atomic.Int64 // bytes of push batches queued on the loop (admit)
	sweeping atomic.Bool  // a sweep is queued or running
}

func (l *loopState) link(s *connState) {
	s.next = l.head
	if l.head != nil {
		l.head.prev = s
	}
	l.head = s
	l.n++
}

func (l *loopState) unlink(s *connState) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if l.head == s {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}

// each calls f for every connection of the loop; f may close the one it is given.
func (l *loopState) each(f func(*connState)) {
	for s := l.head; s != nil; {
		next := s.next
		f(s)
		s = next
	}
}

// loopOf returns the state of el, creating it on first use (on el itself).
func (r *Room) loopOf(el gnet.EventLoop) *loopState {
	r.loopsMu.RLock()
	l := r.loops[el]
	r.loopsMu.RUnlock()
	if l != nil {
		return l
	}
	r.loopsMu.Lock()
	defer r.loopsMu.Unlock()
	if l = r.loops[el]; l == nil {
		l = &loopState{el: el, idx: len(r.loopSeq)}
		l.flusher = &pushFlush{r: r, l: l}
		r.loops[el] = l
		r.loopSeq = append(r.loopSeq, l)
	}
	return l
}

// onLoop runs f on s's loop if s is still open when it gets there; f may
// write to s. An error means the engine is stopping and f will not run.
func (r *Room) onLoop(s *connState, f func()) error {
	return s.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if s.state != stClosed {
			f()
		}
		return nil
	}))
}

// allLoops returns a snapshot of the known loops.
func (r *Room) allLoops() []*loopState {
	r.loopsMu.RLock()
	defer r.loopsMu.RUnlock()
	return append([]*loopState(nil), r.loopSeq...)
}

// onLoops runs f once on every known loop and waits for all of them (or ctx).
// It returns how many loops ran f.
func (r *Room) onLoops(ctx context.Context, f func(*loopState)) int {
	loops := r.allLoops()
	done := make(chan struct{}, len(loops))
	queued := 0
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(l)
			done <- struct{}{}
			return nil
		}))
		if err == nil {
			queued++
		}
	}
	ran := 0
	for ; ran < queued; ran++ {
		select {
		case <-done:
		case <-ctx.Done():
			return ran
		}
	}
	return ran
}

// tickEvery is the housekeeping period: at most 1 s, shorter when deadlines
// are configured short so that they are enforced with little slack.
func tickEvery(authDeadline, grace time.Duration) time.Duration {
	d := time.Second
	if q := authDeadline / 4; q < d {
		d = q
	}
	if q := grace / 2; q < d {
		d = q
	}
	return max(d, 20*time.Millisecond)
}

// sweep enforces the auth deadline, the idle timeout and the end of lingering
// on one loop's connections. It runs on the loop, once per tick: no timer
// per connection.
func (r *Room) sweep(l *loopState) {
	cfg := r.deps.Config.Load().Room
	now := r.now()
	authDL := int64(cfg.AuthDeadline)
	grace := int64(cfg.HeartbeatGrace)
	r.reportSent(l)
	l.each(func(s *connState) {
		switch s.state {
		case stNew:
			if now-s.active <= authDL {
				return
			}
			// Something was sent, just not an AUTH in time (a connection
			// still in its transport's handshake is sent no frame).
			if s.c.InboundBuffered() > 0 && !s.shaking {
				r.writeError(s, 0, proto.ErrCodeAuthRequired, "no AUTH within the deadline")
				r.lingerClose(s, closeAuthTimeout, proto.ErrCodeAuthRequired)
				return
			}
			r.closeConn(s, closeAuthTimeout)
		case stAuthed:
			if now-s.active > 2*int64(s.hb)*int64(time.Second)+grace {
				r.closeConn(s, closeIdle)
				return
			}
			// A paused connection whose output drained may have frames
			// waiting and no new input to wake it.
			if s.paused && r.resumable(s) && s.c.InboundBuffered() > 0 {
				if r.drainFrames(s) == gnet.Close {
					r.closeConn(s, closeProtocol)
				}
			}
		case stClosed:
			if s.lingering {
				r.sweepLinger(s, now)
			}
		}
	})
}

// tick queues one sweep per loop; a loop whose previous sweep has not run yet
// is skipped rather than piling up work on it.
func (r *Room) tick() time.Duration {
	cfg := r.deps.Config.Load().Room
	if now := r.now(); now-r.purgedAt.Load() > int64(time.Second) {
		r.purgedAt.Store(now)
		r.ips.purge(connectLimit(cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP), r.nowMS())
	}
	r.expireHolds()
	for _, l := range r.allLoops() {
		if !l.sweeping.CompareAndSwap(false, true) {
			continue
		}
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer l.sweeping.Store(false)
			r.sweep(l)
			return nil
		}))
		if err != nil {
			l.sweeping.Store(false)
		}
	}
	return tickEvery(cfg.AuthDeadline, cfg.HeartbeatGrace)
}
