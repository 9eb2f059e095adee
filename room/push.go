package room

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// pushBatch is one message for the connections of one loop: a push costs one
// Execute per loop, however many targets it has there.
type pushBatch struct {
	r     *Room
	l     *loopState
	msg   push.Message
	conns []*connState
}

var batchPool = sync.Pool{New: func() any { return &pushBatch{conns: make([]*connState, 0, 8)} }}

func (b *pushBatch) release() {
	clear(b.conns)
	b.conns = b.conns[:0]
	b.r, b.l, b.msg = nil, nil, push.Message{}
	batchPool.Put(b)
}

// Push delivers msg to the targets connected here and returns how many of
// them are (right uid and connID, msg.App bound). It never blocks: the
// frames are written later by the connections' loops. msg.Payload is shared
// with the loops and must not be modified afterwards.
func (r *Room) Push(_ context.Context, msg push.Message, targets []push.Target) (int, error) {
	if r.isClosing() {
		return 0, fmt.Errorf("room push: %w", push.ErrClosed)
	}
	var local [8]*pushBatch
	batches := local[:0]
	for _, t := range targets {
		s := r.idx.get(t.UID, t.ConnID)
		if s == nil || !s.hasApp(msg.App) {
			continue
		}
		var b *pushBatch
		for _, x := range batches {
			if x.l == s.loop {
				b = x
				break
			}
		}
		if b == nil {
			b = batchPool.Get().(*pushBatch)
			b.r, b.l, b.msg = r, s.loop, msg
			batches = append(batches, b)
		}
		b.conns = append(b.conns, s)
	}
	found := 0
	for _, b := range batches {
		n := len(b.conns)
		if b.l.backlog.Add(1) > maxLoopBacklog {
			b.l.backlog.Add(-1)
			mPushDropped.WithLabelValues("loop_backlog").Add(float64(n))
			b.release()
			continue
		}
		if err := b.l.el.Execute(context.Background(), b); err != nil {
			b.l.backlog.Add(-1)
			b.release()
			continue
		}
		found += n
	}
	return found, nil
}

// Run writes the batch on its loop (gnet.Runnable).
func (b *pushBatch) Run(context.Context) error {
	r, l := b.r, b.l
	l.backlog.Add(-1)
	app := b.msg.App
	l.outBuf = proto.AppendPush(l.outBuf[:0], app, b.msg.QoS == push.QoS1, b.msg.ID, b.msg.Payload)
	frame := l.outBuf
	written := 0
	for _, s := range b.conns {
		if !s.hasApp(app) { // unbound since Push looked
			continue
		}
		switch s.state {
		case stAuthed:
			if !r.write(s, frame) {
				continue
			}
			written++
			if s.c.OutboundBuffered() > maxOutbound {
				// QoS 1 messages stay stored; the client gets them at its
				// next login, from a room that is not drowning in its backlog.
				r.closeConn(s, closeSlow)
			}
		case stAuthing:
			if len(s.pending) < r.deps.Config.Load().Room.MaxPending {
				s.pending = append(s.pending, bytes.Clone(frame))
			} else {
				mPushDropped.WithLabelValues("pending_full").Inc()
			}
		}
	}
	if written > 0 {
		mPushes.Add(float64(written))
	}
	b.release()
	return nil
}

// Kick sends KICK {code, reason} to the uid's connection with connID (0 =
// its newest connection here) and closes it. It reports whether such a
// connection was found; the KICK is written asynchronously by its loop.
func (r *Room) Kick(_ context.Context, uid string, connID uint64, code int, reason string) (bool, error) {
	if r.isClosing() {
		return false, fmt.Errorf("room kick: %w", push.ErrClosed)
	}
	s := r.idx.get(uid, connID)
	if s == nil {
		return false, nil
	}
	if reason == "" {
		reason = proto.KickReason(code)
	}
	err := r.onLoop(s, func() {
		r.writeKick(s, code, reason)
		r.lingerClose(s, closeKick)
	})
	if err != nil {
		return false, fmt.Errorf("room kick: %w", push.ErrClosed)
	}
	return true, nil
}

// Drain asks every authenticated client to reconnect to one of addrs after
// a random delay in [0, afterMS] (REDIRECT) and returns how many were told.
// It waits for the loops (bounded by ctx); clients close by themselves.
func (r *Room) Drain(ctx context.Context, addrs []string, afterMS int) int {
	if addrs == nil {
		addrs = []string{}
	}
	frame := proto.AppendJSON(nil, proto.Header{Op: proto.OpRedirect},
		proto.Redirect{Addrs: addrs, AfterMS: afterMS, Reason: "drain"})
	var told atomic.Int64
	r.onLoops(ctx, func(l *loopState) {
		n := 0
		l.each(func(s *connState) {
			if s.state == stAuthed && r.write(s, frame) {
				n++
			}
		})
		told.Add(int64(n))
	})
	return int(told.Load())
}
