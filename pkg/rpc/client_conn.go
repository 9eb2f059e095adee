package rpc

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// Slot states.
const (
	stateConnecting int32 = iota // dialing: calls wait for the outcome
	stateReady                   // a link is up
	stateBackoff                 // down, waiting to redial: calls fail fast
)

// slot is one of a client's connections over time: its goroutine dials,
// reads replies until the connection breaks, waits a backoff and dials again,
// until the client is closed.
type slot struct {
	c     *Client
	state atomic.Int32
	link  atomic.Pointer[link] // the current connection, nil while down
}

func (s *slot) setState(st int32) {
	if s.state.Swap(st) != st {
		s.c.notify()
	}
}

func (s *slot) run() {
	c := s.c
	defer c.wg.Done()
	var backoff time.Duration // 0 after a connection that worked
	for {
		s.setState(stateConnecting)
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
		nc, err := dialer.DialContext(ctx, "tcp", c.cfg.Addr)
		cancel()
		if err != nil {
			mDialErr.Inc()
			if c.ctx.Err() != nil {
				return
			}
			c.log.Debug("rpc dial failed", "err", err)
			backoff = min(max(2*backoff, c.cfg.BackoffMin), c.cfg.BackoffMax)
		} else {
			mDialOK.Inc()
			if !s.serve(nc) {
				return
			}
			backoff = c.cfg.BackoffMin
		}
		s.setState(stateBackoff)
		if !sleepCtx(c.ctx, jitter(backoff)) {
			return
		}
	}
}

// serve runs one connection until it breaks. It returns false when the
// client was closed.
func (s *slot) serve(nc net.Conn) bool {
	c := s.c
	l := &link{outbox: newOutbox(), nc: nc, pending: make(map[uint64]*call)}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		_ = nc.Close()
		return false
	}
	s.link.Store(l)
	c.mu.Unlock()
	l.usable.Store(true)
	s.setState(stateReady)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := l.run(nc, c.cfg.WriteTimeout, clientIO); err != nil {
			_ = nc.Close() // wakes the reader, which fails the calls
		}
	}()

	err := s.read(l)

	closed := c.closed.Load()
	lost := ErrConnLost
	if closed {
		lost = ErrClosed
	}
	l.fail(lost)
	_ = nc.Close()
	l.close()
	<-writerDone
	s.link.Store(nil)
	if !closed {
		c.log.Warn("rpc connection lost", "err", err)
	}
	return !closed
}

// read dispatches frames from the server until the connection fails.
func (s *slot) read(l *link) error {
	fr := newFrameReader(l.nc, 32<<10, s.c.cfg.MaxFrame)
	for {
		h, body, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return io.EOF
			}
			return err
		}
		switch h.kind {
		case kindReply, kindError:
			if !l.deliver(h, body) {
				s.c.late.Add(1)
				clientLate.Inc()
			}
		case kindGoAway:
			l.drain()
			s.c.notify()
		default:
			return ErrBadFrame // a request: servers do not call clients
		}
	}
}

// link is one live connection: its outbox (whose mutex also guards the
// pending table) and the calls waiting for a reply on it.
type link struct {
	*outbox
	nc       net.Conn
	usable   atomic.Bool      // up and not draining: pick may choose it
	pending  map[uint64]*call // by id; guarded by mu
	nextID   uint64           // guarded by mu
	failed   bool             // guarded by mu: pending was failed, take no more
	draining bool             // guarded by mu: the server said GoAway
}

// register assigns cl an id, records it and queues its frame, unless the
// link failed or drains.
func (l *link) register(cl *call) bool {
	l.mu.Lock()
	if l.failed || l.draining {
		l.mu.Unlock()
		return false
	}
	l.nextID++
	cl.id = l.nextID
	stampID(cl.req, cl.id)
	l.pending[cl.id] = cl
	l.addLocked(cl.req)
	l.mu.Unlock()
	return true
}

// cancel removes cl if no reply was taken for it yet. On false, the reply
// (or a failure) is being delivered and cl.done will be signalled.
func (l *link) cancel(cl *call) bool {
	l.mu.Lock()
	ok := l.pending[cl.id] == cl
	if ok {
		delete(l.pending, cl.id)
	}
	l.mu.Unlock()
	return ok
}

// deliver hands a reply to its call. It returns false when no call waits
// for it (the call gave up).
func (l *link) deliver(h header, body []byte) bool {
	l.mu.Lock()
	cl := l.pending[h.id]
	if cl != nil {
		delete(l.pending, h.id)
	}
	l.mu.Unlock()
	if cl == nil {
		return false
	}
	if h.kind == kindError {
		cl.err = &Error{Code: h.aux, Msg: string(body)}
	} else {
		cl.err = nil
		cl.body = append(cl.body[:0], body...)
	}
	cl.done <- struct{}{}
	return true
}

// drain stops new calls on the link; the calls in flight go on.
func (l *link) drain() {
	l.usable.Store(false)
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
}

// fail ends every call in flight with err and refuses new ones.
func (l *link) fail(err error) {
	l.usable.Store(false)
	l.mu.Lock()
	l.failed = true
	p := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, cl := range p {
		cl.err = err
		cl.done <- struct{}{}
	}
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
