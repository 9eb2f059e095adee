package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/lcpush/lcpush/pkg/proto"
)

// pendingReq is a request waiting for its reply on connection s.
type pendingReq struct {
	s    *session
	done func(error) // must not block
}

// Bind adds app to the connection with that app's token and waits for
// BIND_OK (nil) or ERROR (*proto.Error). Bound apps are bound again after a
// reconnect.
func (c *Client) Bind(ctx context.Context, app uint32, token string) error {
	err := c.call(ctx, func(seq uint32, dst []byte) []byte {
		return proto.AppendJSON(dst, proto.Header{Op: proto.OpBind, Seq: seq, App: app}, proto.Bind{Token: token})
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if _, ok := c.binds[app]; ok || len(c.binds) < maxBinds {
		c.binds[app] = token
	}
	c.mu.Unlock()
	return nil
}

// Unbind removes app from the connection and waits for UNBIND_OK or ERROR.
func (c *Client) Unbind(ctx context.Context, app uint32) error {
	// ACKs still batched go first: the server ignores ACKs of an app the
	// connection no longer has, and the messages would stay pending.
	c.flushAcks()
	c.mu.Lock()
	delete(c.binds, app)
	c.mu.Unlock()
	return c.call(ctx, func(seq uint32, dst []byte) []byte {
		return proto.AppendHeader(dst, proto.Header{Op: proto.OpUnbind, Seq: seq, App: app}, 0)
	})
}

// Upstream sends data of type typ to app's back end. With wantReply it waits
// for UPSTREAM_OK (the coordinator accepted it) or ERROR; without, it
// returns once the frame is written.
func (c *Client) Upstream(ctx context.Context, app uint32, typ uint16, data []byte, wantReply bool) error {
	if proto.MinLen+2+len(data) > proto.DefaultMaxLen {
		return fmt.Errorf("%w: upstream of %d bytes", ErrTooLarge, len(data))
	}
	build := func(seq uint32, dst []byte) []byte {
		return proto.AppendUpstream(dst, seq, app, wantReply, typ, data)
	}
	if wantReply {
		return c.call(ctx, build)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	s, closed := c.sess, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case s == nil:
		return ErrNotConnected
	}
	seq := c.nextSeq()
	return s.send(func(dst []byte) []byte { return build(seq, dst) })
}

// call sends a request and waits for the reply with the same Seq.
func (c *Client) call(ctx context.Context, build func(seq uint32, dst []byte) []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ch := make(chan error, 1)
	seq, err := c.request(build, func(err error) { ch <- err })
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		c.forget(seq)
		return ctx.Err()
	}
}

// request registers done under a new Seq, then writes the frame, so that a
// fast reply cannot arrive before its waiter exists.
func (c *Client) request(build func(seq uint32, dst []byte) []byte, done func(error)) (uint32, error) {
	c.mu.Lock()
	s := c.sess
	switch {
	case c.closed:
		c.mu.Unlock()
		return 0, ErrClosed
	case s == nil:
		c.mu.Unlock()
		return 0, ErrNotConnected
	case len(c.pending) >= maxPending:
		c.mu.Unlock()
		return 0, ErrBusy
	}
	seq := c.nextSeq()
	c.pending[seq] = pendingReq{s: s, done: done}
	c.mu.Unlock()
	if err := s.send(func(dst []byte) []byte { return build(seq, dst) }); err != nil {
		c.forget(seq)
		return 0, err
	}
	return seq, nil
}

func (c *Client) forget(seq uint32) {
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
}

// resolve completes the request with Seq seq; false if none waits for it.
func (c *Client) resolve(seq uint32, err error) bool {
	if seq == 0 {
		return false
	}
	c.mu.Lock()
	p, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	if ok {
		p.done(err)
	}
	return ok
}

// failPending fails the requests sent on s (every request when s is nil).
func (c *Client) failPending(s *session, err error) {
	var fail []func(error)
	c.mu.Lock()
	for seq, p := range c.pending {
		if s == nil || p.s == s {
			fail = append(fail, p.done)
			delete(c.pending, seq)
		}
	}
	c.mu.Unlock()
	for _, f := range fail {
		f(err)
	}
}

// rebind binds again, on a new connection, the apps bound before. An app
// whose token is now refused is forgotten.
func (c *Client) rebind(binds map[uint32]string) {
	for app, token := range binds {
		_, err := c.request(func(seq uint32, dst []byte) []byte {
			return proto.AppendJSON(dst, proto.Header{Op: proto.OpBind, Seq: seq, App: app}, proto.Bind{Token: token})
		}, func(err error) {
			var pe *proto.Error
			if !errors.As(err, &pe) {
				return // nil, or the connection ended: the next one binds again
			}
			c.log.Warn("sdk: rebind refused", "uid", c.cfg.UID, "app", app, "err", pe)
			c.mu.Lock()
			if c.binds[app] == token {
				delete(c.binds, app)
			}
			c.mu.Unlock()
		})
		if err != nil {
			return
		}
	}
}
