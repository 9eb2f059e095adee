package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// Connect finds a gateway (dispatcher, then Addrs; an address that fails is
// skipped and remembered for the next dispatch call), authenticates and
// waits for AUTH_OK or ERROR. A rejected token comes back as a *proto.Error
// with code bad_token. On success the client keeps the connection alive in
// the background, reconnecting after a loss, until Close or a terminal kick.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return err
	case c.started || c.connecting:
		c.mu.Unlock()
		return ErrStarted
	}
	c.connecting = true
	c.startBackground()
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)() // Close aborts a Connect in progress

	c.setState(StateConnecting)
	s, err := c.connectOnce(ctx, nil, 0)
	if err == nil && !c.activate(s) {
		s.close()
		err = ErrClosed
	}
	c.mu.Lock()
	c.connecting = false
	if err != nil {
		closed := c.closed
		c.mu.Unlock()
		c.setState(StateDisconnected)
		if closed {
			return ErrClosed
		}
		return err
	}
	c.started = true
	c.loopWG.Add(1) // under mu with closed == false: Close waits for it
	c.mu.Unlock()
	go c.run(s)
	return nil
}

// activate makes s the current connection. False if the client was closed.
func (c *Client) activate(s *session) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.sess = s
	c.hb = s.hb
	c.room = s.room
	c.lastGood = s.addr
	binds := make(map[uint32]string, len(c.binds))
	for app, tok := range c.binds {
		binds[app] = tok
	}
	c.mu.Unlock()
	c.log.Info("sdk: connected", "uid", c.cfg.UID, "addr", s.addr, "room", s.room, "hb", s.hb)
	c.setState(StateConnected)
	signal(c.acks.kick) // ACKs queued while disconnected
	c.rebind(binds)
	return true
}

// deactivate forgets s after it ended.
func (c *Client) deactivate(s *session, reason error) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	c.failPending(s, ErrDisconnected)
	c.log.Info("sdk: disconnected", "uid", c.cfg.UID, "addr", s.addr, "reason", reason)
	c.setState(StateDisconnected)
}

func (c *Client) current() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// run owns the connection after Connect: it serves s, and after a loss
// reconnects with backoff until Close or a terminal error.
func (c *Client) run(s *session) {
	defer c.loopWG.Done()
	attempt := 0
	for {
		began := time.Now()
		reason := c.serve(s)
		c.deactivate(s, reason)
		if c.ctx.Err() != nil {
			return
		}
		var first []string
		var redirect *redirectError
		var kick *KickError
		delay := time.Duration(-1)
		switch {
		case errors.As(reason, &kick):
			if kick.Terminal() {
				c.stop(kick)
				return
			}
			c.markFailed(s.addr) // server_shutdown: go elsewhere
		case errors.As(reason, &redirect):
			c.markFailed(s.addr)
			first = redirect.addrs
			delay = redirect.delay()
			if c.cfg.OnRedirect != nil {
				c.emit(event{kind: evRedirect, redirect: redirect})
			}
		}
		if c.cfg.NoReconnect {
			c.stop(fmt.Errorf("sdk: connection lost, reconnect disabled: %w", reason))
			return
		}
		if time.Since(began) >= c.cfg.BackoffMax {
			attempt = 0 // the last connection was healthy
		}
		if delay < 0 {
			delay = c.backoff(attempt)
		}
		for {
			if !sleep(c.ctx, delay) {
				return
			}
			c.setState(StateConnecting)
			next, err := c.connectOnce(c.ctx, first, attempt)
			if err == nil {
				if !c.activate(next) {
					next.close()
					return
				}
				s = next
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.setState(StateDisconnected)
			if c.isTerminal(err) {
				c.stop(err)
				return
			}
			c.log.Debug("sdk: reconnect failed", "uid", c.cfg.UID, "attempt", attempt, "err", err)
			attempt++
			first = nil
			delay = c.backoff(attempt)
		}
	}
}

// backoff is exponential from BackoffMin to BackoffMax with full jitter.
func (c *Client) backoff(attempt int) time.Duration {
	return backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, attempt)
}

func backoff(lo, hi time.Duration, attempt int) time.Duration {
	ceil := lo
	for i := 0; i < attempt && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return rand.N(ceil + 1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// connectOnce makes one pass over the candidate addresses: first (redirect
// targets), then the dispatcher's answer, then Addrs.
func (c *Client) connectOnce(ctx context.Context, first []string, attempt int) (*session, error) {
	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		var err error
		if token, err = c.cfg.TokenFunc(ctx); err != nil {
			return nil, fmt.Errorf("sdk token: %w", err)
		}
	}
	addrs := c.candidates(ctx, first, attempt)
	if len(addrs) == 0 {
		return nil, ErrNoAddress
	}
	var last error
	for i := 0; i < len(addrs) && i < 2*maxAddrs; i++ {
		s, err := c.handshake(ctx, addrs[i], token)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
		c.log.Debug("sdk: address failed", "addr", addrs[i], "err", err)
		var pe *proto.Error
		var kick *KickError
		var redirect *redirectError
		switch {
		case errors.As(err, &pe) && pe.Code == proto.ErrCodeBadToken:
			return nil, err // every gateway checks the same token
		case errors.As(err, &kick) && kick.Terminal():
			return nil, err
		case errors.As(err, &redirect):
			c.markFailed(addrs[i])
			addrs = slices.Insert(addrs, i+1, redirect.addrs...)
			if !sleep(ctx, redirect.delay()) {
				return nil, ctx.Err()
			}
		default:
			c.markFailed(addrs[i])
		}
	}
	return nil, fmt.Errorf("sdk connect: %d addresses failed, last: %w", len(addrs), last)
}

// candidates lists the addresses to try, without duplicates. Addresses that
// failed recently go last: still tried, but after every other choice.
func (c *Client) candidates(ctx context.Context, first []string, attempt int) []string {
	var rest []string
	if c.cfg.DispatchURL != "" {
		addrs, err := c.dispatch(ctx, attempt)
		if err != nil {
			c.log.Warn("sdk: dispatch failed, using static addresses", "err", err)
		}
		rest = append(rest, addrs...)
	}
	rest = append(rest, c.cfg.Addrs...)
	c.mu.Lock()
	good := c.lastGood
	c.mu.Unlock()
	if i := slices.Index(rest, good); i > 0 {
		// The last address that worked first: most reconnects are flashes.
		rest = slices.Insert(slices.Delete(rest, i, i+1), 0, good)
	}
	failed := c.failedList()
	slices.SortStableFunc(rest, func(a, b string) int {
		fa, fb := slices.Contains(failed, a), slices.Contains(failed, b)
		switch {
		case fa == fb:
			return 0
		case fb:
			return -1
		}
		return 1
	})
	out := make([]string, 0, len(first)+len(rest))
	for _, a := range append(append([]string(nil), first...), rest...) {
		if a != "" && !slices.Contains(out, a) && len(out) < maxAddrs {
			out = append(out, a)
		}
	}
	return out
}

// failedAddr is an address that refused us, remembered for failedTTL.
type failedAddr struct {
	addr string
	at   time.Time
}

func (c *Client) markFailed(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed = slices.DeleteFunc(c.failed, func(f failedAddr) bool { return f.addr == addr })
	c.failed = append(c.failed, failedAddr{addr: addr, at: time.Now()})
	if len(c.failed) > maxFailed {
		c.failed = slices.Delete(c.failed, 0, len(c.failed)-maxFailed)
	}
}

func (c *Client) failedList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	cutoff := time.Now().Add(-failedTTL)
	c.failed = slices.DeleteFunc(c.failed, func(f failedAddr) bool { return f.at.Before(cutoff) })
	out := make([]string, len(c.failed))
	for i, f := range c.failed {
		out[i] = f.addr
	}
	return out
}
