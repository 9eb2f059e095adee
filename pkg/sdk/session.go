package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// session is one authenticated connection, on any transport.
type session struct {
	conn         net.Conn  // the outermost connection: deadlines are set here
	fr           frameConn // reads and writes whole frames over conn
	addr         string
	hb           time.Duration
	room         string
	writeTimeout time.Duration
	done         chan struct{} // closed by close

	wmu       sync.Mutex
	wbuf      []byte
	closeOnce sync.Once
}

var pingFrame = proto.AppendHeader(nil, proto.Header{Op: proto.OpPing}, 0)

// send builds a frame in the session's buffer and writes it. A failed write
// closes the connection, so the reader notices and reconnects.
func (s *session) send(build func(dst []byte) []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = build(s.wbuf[:0])
	err := s.writeLocked(s.wbuf)
	if cap(s.wbuf) > 64<<10 { // do not pin the buffer of a rare big upstream
		s.wbuf = nil
	}
	return err
}

func (s *session) write(frame []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(frame)
}

func (s *session) writeLocked(frame []byte) error {
	select {
	case <-s.done:
		return ErrDisconnected
	default:
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.fr.writeFrame(frame); err != nil {
		s.close()
		return fmt.Errorf("sdk write %s: %w", s.addr, err)
	}
	return nil
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.fr.close()
	})
}

// redirectError is a REDIRECT: reconnect to addrs after a random delay in [0, after].
type redirectError struct {
	addrs  []string
	after  time.Duration
	reason string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("sdk: redirected to %v (%s)", e.addrs, e.reason)
}

func (e *redirectError) delay() time.Duration {
	if e.after <= 0 {
		return 0
	}
	return rand.N(e.after + 1)
}

func decodeRedirect(body []byte) *redirectError {
	var r proto.Redirect
	_ = proto.DecodeJSON(body, &r) // a bad body still means "go elsewhere"
	e := &redirectError{reason: r.Reason, after: time.Duration(r.AfterMS) * time.Millisecond}
	e.after = min(max(e.after, 0), maxRedirectWait)
	for _, a := range r.Addrs {
		if a != "" && len(e.addrs) < maxAddrs {
			e.addrs = append(e.addrs, a)
		}
	}
	return e
}

func decodeKick(body []byte) *KickError {
	var k proto.Kick
	if err := proto.DecodeJSON(body, &k); err != nil {
		return &KickError{Reason: "undecodable kick"}
	}
	if k.Reason == "" {
		k.Reason = proto.KickReason(k.Code)
	}
	return &KickError{Code: k.Code, Reason: k.Reason}
}

func decodeError(body []byte) *proto.Error {
	var e proto.Error
	if err := proto.DecodeJSON(body, &e); err != nil || e.Code == "" {
		return &proto.Error{Code: proto.ErrCodeInternal, Message: "undecodable ERROR body: " + string(body)}
	}
	return &e
}

// handshake dials addr (TCP, TLS, WebSocket: see dial), sends AUTH and waits
// for AUTH_OK, all within one DialTimeout. ERROR, KICK and REDIRECT answers
// come back as *proto.Error, *KickError and *redirectError.
func (c *Client) handshake(ctx context.Context, addr, token string) (*session, error) {
	deadline := time.Now().Add(c.cfg.DialTimeout)
	conn, fr, err := c.dial(ctx, addr, deadline)
	if err != nil {
		return nil, err
	}
	s := &session{
		conn:         conn,
		fr:           fr,
		addr:         addr,
		writeTimeout: c.cfg.DialTimeout,
		done:         make(chan struct{}),
	}
	_ = conn.SetDeadline(deadline)
	// Cancelling ctx aborts a blocked read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*session, error) {
		s.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("sdk auth %s: %w", addr, err)
	}
	auth := proto.Auth{UID: c.cfg.UID, Token: token, Device: c.cfg.Device, Net: c.cfg.Net, HB: c.hbReq, SDK: c.cfg.SDKName}
	frame := proto.AppendJSON(nil, proto.Header{Op: proto.OpAuth, Seq: c.nextSeq(), App: c.cfg.App}, auth)
	if err := s.write(frame); err != nil {
		return fail(err)
	}
	for {
		f, err := s.fr.next()
		if err != nil {
			return fail(err)
		}
		switch f.Op {
		case proto.OpAuthOK:
			var ok proto.AuthOK
			if err := proto.DecodeJSON(f.Body, &ok); err != nil {
				return fail(err)
			}
			s.hb = time.Duration(ok.HB) * time.Second
			if s.hb <= 0 {
				s.hb = time.Duration(c.hbReq) * time.Second
			}
			s.room = ok.Room
			if !stop() {
				return fail(ctx.Err())
			}
			_ = conn.SetDeadline(time.Time{})
			return s, nil
		case proto.OpError:
			return fail(decodeError(f.Body))
		case proto.OpKick:
			return fail(decodeKick(f.Body))
		case proto.OpRedirect:
			return fail(decodeRedirect(f.Body))
		}
		// Anything else before AUTH_OK (a PONG, a future op) is ignored;
		// the deadline bounds how long we listen.
	}
}

// serve reads frames until the connection ends and returns why. It runs the
// connection's heartbeat goroutine and waits for it before returning.
func (c *Client) serve(s *session) error {
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		c.heartbeat(s)
	}()
	err := c.readLoop(s)
	s.close()
	<-hbDone
	return err
}

// readTimeout is how long the reader waits for any frame: the server answers
// each PING, so silence for 2.5 heartbeats means the path is dead.
func (s *session) readTimeout() time.Duration { return s.hb*5/2 + time.Second }

func (c *Client) readLoop(s *session) error {
	timeout := s.readTimeout()
	var serverErr *proto.Error // the last ERROR no request waited for
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
		f, err := s.fr.next()
		if err != nil {
			if serverErr != nil {
				// The server closes after an ERROR it sent on its own:
				// that ERROR is why the connection ended.
				return fmt.Errorf("sdk: server error %w, then: %w", serverErr, err)
			}
			return err
		}
		if f.Op != proto.OpError {
			serverErr = nil // the connection went on: that ERROR was not fatal
		}
		switch f.Op {
		case proto.OpPush:
			if err := c.onPush(f); err != nil {
				return err
			}
		case proto.OpUpstreamOK, proto.OpBindOK, proto.OpUnbindOK:
			c.resolve(f.Seq, nil)
		case proto.OpError:
			e := decodeError(f.Body)
			if !c.resolve(f.Seq, e) {
				serverErr = e
				c.log.Warn("sdk: server error", "addr", s.addr, "seq", f.Seq, "code", e.Code, "message", e.Message)
			}
		case proto.OpKick:
			k := decodeKick(f.Body)
			c.emit(event{kind: evKick, kick: *k})
			return k
		case proto.OpRedirect:
			return decodeRedirect(f.Body)
		}
		// PONG only refreshes the deadline; unknown ops are future extensions.
	}
}

func (c *Client) onPush(f proto.Frame) error {
	id, payload, err := proto.ParsePush(f.Body)
	if err != nil {
		return fmt.Errorf("sdk push: %w", err)
	}
	qos1 := f.Flags&proto.FlagAckRequired != 0
	fresh, acked := c.dedup.add(id)
	if !fresh {
		// A redelivery: ACK again if we already did (the first ACK was lost),
		// otherwise the pending ACK of the first copy covers it.
		if qos1 && acked {
			c.queueAcks(id)
		}
		return nil
	}
	m := Message{ID: id, App: f.App, QoS1: qos1, Payload: bytes.Clone(payload)}
	if !c.emit(event{kind: evMessage, msg: m}) {
		return ErrClosed
	}
	return nil
}

func (c *Client) heartbeat(s *session) {
	t := time.NewTicker(s.hb)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.write(pingFrame); err != nil {
				return
			}
		}
	}
}

// isTerminal reports whether err means reconnecting cannot help.
func (c *Client) isTerminal(err error) bool {
	var k *KickError
	if errors.As(err, &k) {
		return k.Terminal()
	}
	var pe *proto.Error
	if errors.As(err, &pe) && pe.Code == proto.ErrCodeBadToken {
		return c.cfg.TokenFunc == nil // a fresh token may fix it
	}
	return false
}
