package sdk

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

const waitTimeout = 5 * time.Second

// fakeServer is a minimal room speaking PROTOCOL.md over a real loopback
// listener: it answers AUTH (through onAuth), PING with PONG, and records
// every other frame for the test to inspect.
type fakeServer struct {
	t      *testing.T
	ln     net.Listener
	opts   fakeOpts
	noPong atomic.Bool

	// Guarded by mu: change them with configure.
	hb   int
	room string
	// onAuth returns the frame answering an AUTH; nil means AUTH_OK.
	onAuth func(a proto.Auth, h proto.Header) []byte

	auths atomic.Int32
	conns chan *fakeConn
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []*fakeConn
}

type rxFrame struct {
	proto.Header
	Body  []byte
	taken bool
}

type fakeConn struct {
	net.Conn
	ws    *wsServerConn // the WebSocket transport, or nil
	auth  proto.Auth
	app   uint32
	pings atomic.Int32

	wmu    sync.Mutex
	mu     sync.Mutex
	frames []*rxFrame
	closed chan struct{}
}

// fakeOpts chooses the fake server's transport: raw TCP by default, TLS
// with tls, WebSocket (at WSPath) with ws, WSS with both.
type fakeOpts struct {
	tls *tls.Config
	ws  bool
}

func newFakeServer(t *testing.T) *fakeServer { return newFakeServerOpts(t, fakeOpts{}) }

func newFakeServerOpts(t *testing.T, opts fakeOpts) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, opts: opts, hb: 30, room: "room-test", conns: make(chan *fakeConn, 64)}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

// addr is the address a client is given: host:port for TCP and TLS, a
// ws:// or wss:// URL for WebSocket.
func (s *fakeServer) addr() string {
	switch {
	case s.opts.ws && s.opts.tls != nil:
		return "wss://" + s.hostport() + WSPath
	case s.opts.ws:
		return "ws://" + s.hostport() + WSPath
	}
	return s.hostport()
}

func (s *fakeServer) hostport() string { return s.ln.Addr().String() }

// configure changes hb, room or onAuth while the server runs.
func (s *fakeServer) configure(f func(s *fakeServer)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

func (s *fakeServer) setAuth(f func(a proto.Auth, h proto.Header) []byte) {
	s.configure(func(s *fakeServer) { s.onAuth = f })
}

func (s *fakeServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.all {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		if s.opts.tls != nil {
			conn = tls.Server(conn, s.opts.tls)
		}
		fc := &fakeConn{Conn: conn, closed: make(chan struct{})}
		if s.opts.ws {
			fc.ws = newWSServerConn(conn)
			fc.Conn = fc.ws
		}
		s.mu.Lock()
		s.all = append(s.all, fc)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(fc)
	}
}

func (s *fakeServer) serve(fc *fakeConn) {
	defer s.wg.Done()
	defer close(fc.closed)
	defer fc.Close()
	if fc.ws != nil && !fc.ws.upgrade() {
		return
	}
	dec := proto.NewDecoder(fc, 0)
	f, err := dec.Next()
	if err != nil || f.Op != proto.OpAuth {
		return
	}
	if err := proto.DecodeJSON(f.Body, &fc.auth); err != nil {
		return
	}
	fc.app = f.App
	s.auths.Add(1)
	s.mu.Lock()
	onAuth, hb, room := s.onAuth, s.hb, s.room
	s.mu.Unlock()
	var answer []byte
	if onAuth != nil {
		answer = onAuth(fc.auth, f.Header)
	}
	if answer == nil {
		answer = proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK, Seq: f.Seq}, proto.AuthOK{HB: hb, Room: room, ServerTime: time.Now().Unix()})
		fc.send(answer)
	} else {
		fc.send(answer)
		if fc.ws != nil {
			// Like the room: a close frame after KICK (1000) or ERROR (1008).
			code := ws.StatusPolicyViolation
			if len(answer) > 5 && answer[5] == proto.OpKick {
				code = ws.StatusNormalClosure
			}
			fc.ws.sendClose(code, "")
		}
		// Like the room: an ERROR or KICK to an AUTH ends the connection.
		// Wait for the client to hang up first, so the answer is not lost
		// to a reset.
		_, _ = io.Copy(io.Discard, fc)
		return
	}
	s.conns <- fc
	for {
		f, err := dec.Next()
		if err != nil {
			return
		}
		if f.Op == proto.OpPing {
			fc.pings.Add(1)
			if !s.noPong.Load() {
				fc.send(proto.PongFrame)
			}
			continue
		}
		fc.mu.Lock()
		fc.frames = append(fc.frames, &rxFrame{Header: f.Header, Body: append([]byte(nil), f.Body...)})
		fc.mu.Unlock()
	}
}

// accept returns the next authenticated connection.
func (s *fakeServer) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-s.conns:
		return fc
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for an authenticated connection")
		return nil
	}
}

// noConn checks that no connection authenticates within d.
func (s *fakeServer) noConn(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-s.conns:
		t.Fatal("unexpected new connection")
	case <-time.After(d):
	}
}

func (fc *fakeConn) send(frame []byte) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_, _ = fc.Write(frame)
}

// take waits for the first not yet taken frame with op.
func (fc *fakeConn) take(t *testing.T, op uint8) *rxFrame {
	t.Helper()
	var got *rxFrame
	testkit.WaitFor(t, "frame op "+opName(op), waitTimeout, func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		for _, f := range fc.frames {
			if f.Op == op && !f.taken {
				f.taken = true
				got = f
				return true
			}
		}
		return false
	})
	return got
}

// count returns how many frames with op were received.
func (fc *fakeConn) count(op uint8) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	n := 0
	for _, f := range fc.frames {
		if f.Op == op {
			n++
		}
	}
	return n
}

// acked returns every id received in ACK frames, in order, and checks batch sizes.
func (fc *fakeConn) acked(t *testing.T) []uint64 {
	t.Helper()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var ids []uint64
	for _, f := range fc.frames {
		if f.Op != proto.OpAck {
			continue
		}
		var err error
		n := len(ids)
		if ids, err = proto.ParseAck(ids, f.Body); err != nil {
			t.Fatalf("bad ACK body: %v", err)
		}
		if len(ids)-n > ackBatch || len(ids) == n {
			t.Fatalf("ACK frame with %d ids", len(ids)-n)
		}
	}
	return ids
}

func opName(op uint8) string {
	return map[uint8]string{
		proto.OpAuth: "AUTH", proto.OpAck: "ACK", proto.OpUpstream: "UPSTREAM",
		proto.OpBind: "BIND", proto.OpUnbind: "UNBIND", proto.OpPing: "PING",
	}[op]
}

// states records OnState calls.
type states struct {
	mu  sync.Mutex
	got []State
}

func (s *states) add(st State) {
	s.mu.Lock()
	s.got = append(s.got, st)
	s.mu.Unlock()
}

func (s *states) list() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]State(nil), s.got...)
}

func (s *states) has(st State) bool {
	for _, x := range s.list() {
		if x == st {
			return true
		}
	}
	return false
}

func (s *states) String() string {
	var b strings.Builder
	for _, x := range s.list() {
		b.WriteString(x.String() + " ")
	}
	return b.String()
}

// testConfig is a config pointing at addrs with fast backoff.
func testConfig(addrs ...string) Config {
	return Config{
		Addrs:       addrs,
		App:         7,
		UID:         "u1",
		Token:       "tok",
		Device:      "dev",
		Net:         "wifi",
		BackoffMin:  5 * time.Millisecond,
		BackoffMax:  40 * time.Millisecond,
		DialTimeout: 2 * time.Second,
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connect(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
}

func protoErr(err error) *proto.Error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
