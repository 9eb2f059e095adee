package room

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// The WebSocket transport (ws.go) with a real client (gobwas/ws), through
// the room's second listener.

const wsUpgrade = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Protocol: lcpush.v1\r\n\r\n"

func TestWSSession(t *testing.T) {
	e := startWSEnv(t, nil)
	if e.room.WSAddr() == "" || e.room.WSAddr() == e.room.Addr() {
		t.Fatalf("WSAddr %q, Addr %q", e.room.WSAddr(), e.room.Addr())
	}
	w, c := wsConnect(t, e.room.WSAddr()) // no Origin: a native client
	if w.protocol != "lcpush.v1" {
		t.Fatalf("subprotocol %q, want lcpush.v1", w.protocol)
	}
	ok := c.Login(1, "wsalice", testkit.Token(1, "wsalice"), 30)
	if ok.Room != "room-t" {
		t.Fatalf("AUTH_OK %+v", ok)
	}
	testkit.WaitFor(t, "session registered", testkit.Timeout, func() bool { return e.hasSession("wsalice") })
	if s, _ := e.reg.session("wsalice"); s.IP != "127.0.0.1" {
		t.Fatalf("session IP %q", s.IP)
	}
	msg := push.Message{ID: 901, App: 1, QoS: push.QoS1, Payload: []byte("hello ws")}
	if n, err := e.room.Push(t.Context(), msg, []push.Target{{UID: "wsalice", ConnID: e.connID("wsalice")}}); err != nil || n != 1 {
		t.Fatalf("push: %d %v", n, err)
	}
	id := c.ExpectPushText(1, "hello ws")
	c.Ack(id)
	testkit.WaitFor(t, "ack reaches the store", testkit.Timeout, func() bool { return len(e.inbox.acked("wsalice")) == 1 })
	// A few pushes at once: each its own binary message.
	for i := range 5 {
		msg := push.Message{ID: uint64(910 + i), App: 1, Payload: []byte("burst")}
		if _, err := e.room.Push(t.Context(), msg, []push.Target{{UID: "wsalice", ConnID: e.connID("wsalice")}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		c.ExpectPushText(1, "burst")
	}
	c.ExpectQuiet(0)
	if n := w.notOne.Load(); n != 0 {
		t.Fatalf("%d server messages were not exactly one frame", n)
	}
	// Raw TCP still works next to it.
	raw, _ := e.login(1, "rawbob")
	raw.ExpectQuiet(0)
}

func TestWSOrigin(t *testing.T) {
	e := startWSEnv(t, func(c *config.Config) {
		c.Room.WebSocket.Origins = []string{"https://app.example.com"}
	})
	addr := e.room.WSAddr()
	if _, err := dialWS(t, wsDialer(http.Header{"Origin": {"https://app.example.com"}}), addr); err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	if _, err := dialWS(t, wsDialer(nil), addr); err != nil {
		t.Fatalf("no origin: %v", err)
	}
	_, err := dialWS(t, wsDialer(http.Header{"Origin": {"https://evil.example.com"}}), addr)
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != http.StatusForbidden {
		t.Fatalf("disallowed origin: %v, want 403", err)
	}
	// Wrong path: 404 before any upgrade.
	rc := dialRaw(t, addr)
	_, _ = rc.Write([]byte(strings.Replace(wsUpgrade, "/v1/ws", "/other", 1)))
	if st := rc.status(t); st != http.StatusNotFound {
		t.Fatalf("wrong path: %d, want 404", st)
	}
	rc.expectEOF(t, 3*time.Second)
}

func TestWSEmptyOriginListAcceptsAny(t *testing.T) {
	e := startWSEnv(t, nil)
	if _, err := dialWS(t, wsDialer(http.Header{"Origin": {"https://anything.example"}}), e.room.WSAddr()); err != nil {
		t.Fatalf("any origin with an empty allow list: %v", err)
	}
}

func TestWSCookie(t *testing.T) {
	e := startWSEnv(t, func(c *config.Config) { c.Room.WebSocket.Cookie = "lcroom" })
	rc := dialRaw(t, e.room.WSAddr())
	_, _ = rc.Write([]byte(wsUpgrade))
	_ = rc.SetReadDeadline(time.Now().Add(testkit.Timeout))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(ck, "lcroom=room-t") {
		t.Fatalf("Set-Cookie %q", ck)
	}
}

// TestWSBadMessages: each malformed input gets what PROTOCOL.md says: an
// ERROR (when the protocol has one for it), then a close frame with the
// code it names, then the end of the connection.
func TestWSBadMessages(t *testing.T) {
	e := startWSEnv(t, nil)
	auth := func(c *testkit.Conn) { c.Login(1, "wsbad", testkit.Token(1, "wsbad"), 30) }
	ping := proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: 7}, nil)
	for _, tc := range []struct {
		name  string
		login bool
		send  func(w *wsClient, c *testkit.Conn)
		err   string // ERROR code expected first, "" none
		close int
	}{
		{"text message", false, func(w *wsClient, _ *testkit.Conn) {
			w.writeFrame(ws.NewTextFrame([]byte("hello")), false)
		}, proto.ErrCodeBadFrame, 1008},
		{"two frames in one message", true, func(w *wsClient, c *testkit.Conn) {
			c.Write(append(append([]byte(nil), ping...), ping...))
		}, proto.ErrCodeBadFrame, 1008},
		{"less than one frame", true, func(w *wsClient, c *testkit.Conn) { c.Write(ping[:10]) }, proto.ErrCodeBadFrame, 1008},
		{"too short for a Len", true, func(w *wsClient, c *testkit.Conn) { c.Write([]byte{0, 0}) }, proto.ErrCodeBadFrame, 1008},
		{"oversize message before AUTH", false, func(w *wsClient, c *testkit.Conn) {
			c.Write(bigFrame(1024 + 1))
		}, proto.ErrCodeFrameTooLarge, 1009},
		{"oversize message after AUTH", true, func(w *wsClient, c *testkit.Conn) {
			c.Write(bigFrame(65536 + 12 + 1))
		}, proto.ErrCodeFrameTooLarge, 1009},
		{"unmasked client frame", false, func(w *wsClient, _ *testkit.Conn) {
			w.writeFrame(ws.NewBinaryFrame(ping), true)
		}, "", 1002},
		{"reserved bits", true, func(w *wsClient, _ *testkit.Conn) {
			f := ws.NewBinaryFrame(ping)
			f.Header.Rsv = 4
			w.writeFrame(f, false)
		}, "", 1002},
		{"fragmented ping", true, func(w *wsClient, _ *testkit.Conn) {
			f := ws.NewPingFrame(nil)
			f.Header.Fin = false
			w.writeFrame(f, false)
		}, "", 1002},
		{"PING before AUTH", false, func(w *wsClient, c *testkit.Conn) { c.Send(proto.OpPing, 0, 0, nil) }, proto.ErrCodeAuthRequired, 1008},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c := wsConnect(t, e.room.WSAddr())
			if tc.login {
				auth(c)
			}
			tc.send(w, c)
			if tc.err != "" {
				c.ExpectError(tc.err)
			}
			w.expectClose(t, tc.close)
		})
	}
}

// bigFrame is a PING frame whose body makes its Len n.
func bigFrame(n int) []byte {
	return proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, make([]byte, n-12))
}

func TestWSFragmentedMessage(t *testing.T) {
	e := startWSEnv(t, nil)
	w, c := wsConnect(t, e.room.WSAddr())
	body := []byte(`{"uid":"frag","token":"` + testkit.Token(1, "frag") + `","hb":30}`)
	frame := proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, body)
	// AUTH in four fragments, a ping between two of them.
	parts := [][]byte{frame[:3], frame[3:20], frame[20:40], frame[40:]}
	for i, p := range parts {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpBinary
		}
		w.writeFrame(ws.NewFrame(op, i == len(parts)-1, p), false)
		if i == 1 {
			w.writeFrame(ws.NewPingFrame([]byte("mid")), false)
		}
	}
	c.Expect(proto.OpAuthOK)
	testkit.WaitFor(t, "pong", testkit.Timeout, func() bool { return w.pongs.Load() == 1 })

	// A fragmented message counts whole against the maximum frame.
	big := bigFrame(65536 + 12 + 1)
	half := len(big) / 2
	w.writeFrame(ws.NewFrame(ws.OpBinary, false, big[:half]), false)
	w.writeFrame(ws.NewFrame(ws.OpContinuation, true, big[half:]), false)
	c.ExpectError(proto.ErrCodeFrameTooLarge)
	w.expectClose(t, 1009)
}

func TestWSPingPongActivity(t *testing.T) {
	e := startWSEnv(t, func(c *config.Config) {
		c.Room.HeartbeatMin = 1
		c.Room.HeartbeatGrace = 200 * time.Millisecond
	})
	w, c := wsConnect(t, e.room.WSAddr())
	c.Login(1, "pinger", testkit.Token(1, "pinger"), 1) // idle after 2.2 s without a frame
	deadline := time.Now().Add(3 * time.Second)
	sent := int32(0)
	for time.Now().Before(deadline) {
		w.writeFrame(ws.NewPingFrame([]byte("hb")), false)
		sent++
		time.Sleep(300 * time.Millisecond)
		if sent%2 == 0 { // pongs (unsolicited) count too
			w.writeFrame(ws.NewPongFrame(nil), false)
		}
	}
	testkit.WaitFor(t, "a pong per ping", testkit.Timeout, func() bool {
		_ = c.NetConn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Next(50 * time.Millisecond) // Read handles the control frames
		return w.pongs.Load() == sent
	})
	c.ExpectQuiet(0) // still open: WebSocket pings kept it alive
}

func TestWSKickClose1000(t *testing.T) {
	e := startWSEnv(t, nil)
	w, c := wsConnect(t, e.room.WSAddr())
	c.Login(1, "kicked", testkit.Token(1, "kicked"), 30)
	testkit.WaitFor(t, "registered", testkit.Timeout, func() bool { return e.hasSession("kicked") })
	if ok, err := e.room.Kick(t.Context(), "kicked", e.connID("kicked"), nil, push.KickAdmin, "admin"); err != nil || !ok {
		t.Fatalf("kick: %v %v", ok, err)
	}
	c.ExpectKick(push.KickAdmin)
	w.expectClose(t, 1000)
}

func TestWSClientClose(t *testing.T) {
	e := startWSEnv(t, nil)
	w, c := wsConnect(t, e.room.WSAddr())
	c.Login(1, "leaver", testkit.Token(1, "leaver"), 30)
	w.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")), false)
	w.expectClose(t, 1001) // echoed
	testkit.WaitFor(t, "unregistered", testkit.Timeout, func() bool { return !e.hasSession("leaver") })
}

func TestWSSlowHandshakeAuthDeadline(t *testing.T) {
	e := startWSEnv(t, func(c *config.Config) { c.Room.AuthDeadline = 300 * time.Millisecond })
	rc := dialRaw(t, e.room.WSAddr())
	_, _ = rc.Write([]byte(wsUpgrade[:30]))
	start := time.Now()
	rc.expectEOF(t, 3*time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %s, before the deadline", d)
	}
	// Upgraded in time, but no AUTH: closed at the deadline too.
	w, _ := wsConnect(t, e.room.WSAddr())
	w.expectClose(t, 1008)
}

func TestWSHandshakeSplit(t *testing.T) {
	e := startWSEnv(t, nil)
	rc := dialRaw(t, e.room.WSAddr())
	req := []byte(wsUpgrade)
	for len(req) > 0 {
		n := min(7, len(req))
		if _, err := rc.Write(req[:n]); err != nil {
			t.Fatal(err)
		}
		req = req[n:]
		time.Sleep(3 * time.Millisecond)
	}
	_ = rc.SetReadDeadline(time.Now().Add(testkit.Timeout))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "lcpush.v1" {
		t.Fatalf("upgrade: %+v %v", resp, err)
	}
	w := &wsClient{Conn: rc.Conn, rd: rc.br}
	w.closeCode.Store(-1)
	c := testkit.Wrap(t, w)
	// The AUTH frame also goes out a few bytes at a time.
	body := []byte(`{"uid":"split","token":"` + testkit.Token(1, "split") + `","hb":30}`)
	var msg bytes.Buffer
	_ = ws.WriteFrame(&msg, ws.MaskFrameInPlace(ws.NewBinaryFrame(proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, body))))
	for b := msg.Bytes(); len(b) > 0; {
		n := min(5, len(b))
		_, _ = rc.Write(b[:n])
		b = b[n:]
		time.Sleep(2 * time.Millisecond)
	}
	c.Expect(proto.OpAuthOK)
	c.ExpectQuiet(0)
}

// TestBadInputsBothTransports runs the malformed inputs of PROTOCOL.md over
// raw TCP and over WebSocket: the same ERROR code on both, then the close.
func TestBadInputsBothTransports(t *testing.T) {
	e := startWSEnv(t, nil)
	frame := func(h proto.Header, body []byte) []byte { return proto.AppendFrame(nil, h, body) }
	authBody := func(uid, tok string) []byte {
		return []byte(`{"uid":"` + uid + `","token":"` + tok + `"}`)
	}
	badLen := []byte{0, 0, 0, 5, 1, 3, 0, 0, 0}
	badVer := frame(proto.Header{Op: proto.OpPing}, nil)
	badVer[4] = 2
	for _, tc := range []struct {
		name  string
		login bool
		in    []byte
		code  string
	}{
		{"bad length", false, badLen, proto.ErrCodeBadFrame},
		{"bad length after AUTH", true, badLen, proto.ErrCodeBadFrame},
		{"unknown version", true, badVer, proto.ErrCodeBadFrame},
		{"oversize before AUTH", false, bigFrame(1025), proto.ErrCodeFrameTooLarge},
		{"oversize after AUTH", true, bigFrame(65536 + 13), proto.ErrCodeFrameTooLarge},
		{"unknown op", true, frame(proto.Header{Op: 0x42, Seq: 3}, nil), proto.ErrCodeUnknownOp},
		{"server op from the client", true, frame(proto.Header{Op: proto.OpPush, Seq: 3}, make([]byte, 8)), proto.ErrCodeUnknownOp},
		{"PING before AUTH", false, frame(proto.Header{Op: proto.OpPing, Seq: 1}, nil), proto.ErrCodeAuthRequired},
		{"bad AUTH body", false, frame(proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, []byte("{not json")), proto.ErrCodeBadFrame},
		{"bad token", false, frame(proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, authBody("tok", "123.abc")), proto.ErrCodeBadToken},
		{"token of another app", false, frame(proto.Header{Op: proto.OpAuth, Seq: 1, App: 2}, authBody("tok", testkit.Token(1, "tok"))), proto.ErrCodeBadToken},
		{"second AUTH", true, frame(proto.Header{Op: proto.OpAuth, Seq: 9, App: 1}, authBody("both", testkit.Token(1, "both"))), proto.ErrCodeBadFrame},
	} {
		for _, tr := range []string{"tcp", "ws"} {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				var c *testkit.Conn
				var w *wsClient
				if tr == "tcp" {
					c = testkit.Dial(t, e.room.Addr())
				} else {
					w, c = wsConnect(t, e.room.WSAddr())
				}
				if tc.login {
					c.Login(1, "both", testkit.Token(1, "both"), 30)
				}
				c.Write(tc.in)
				c.ExpectError(tc.code)
				if w == nil {
					c.ExpectClosed(3 * time.Second)
					return
				}
				want := 1008
				if tc.code == proto.ErrCodeFrameTooLarge {
					want = 1009
				}
				w.expectClose(t, want)
			})
		}
	}
}

// TestWSListenerMetrics: the connections-by-transport gauge follows both
// listeners.
func TestWSListenerMetrics(t *testing.T) {
	e := startWSEnv(t, nil)
	before := gaugeValue(mConnsBy[trWS])
	w, _ := wsConnect(t, e.room.WSAddr())
	testkit.WaitFor(t, "ws gauge up", testkit.Timeout, func() bool { return gaugeValue(mConnsBy[trWS]) >= before+1 })
	w.Close()
	testkit.WaitFor(t, "ws gauge down", testkit.Timeout, func() bool { return gaugeValue(mConnsBy[trWS]) <= before })
}

func TestWSAppendWire(t *testing.T) {
	w := &wsConn{}
	a := proto.AppendFrame(nil, proto.Header{Op: proto.OpPong, Seq: 1}, nil)
	b := proto.AppendFrame(nil, proto.Header{Op: proto.OpPush}, make([]byte, 300))
	out := w.appendWire(nil, append(append([]byte(nil), a...), b...))
	rd := bytes.NewReader(out)
	for i, want := range [][]byte{a, b} {
		f, err := ws.ReadFrame(rd)
		if err != nil || f.Header.OpCode != ws.OpBinary || !f.Header.Fin || !bytes.Equal(f.Payload, want) {
			t.Fatalf("message %d: %+v %v", i, f.Header, err)
		}
	}
	if rd.Len() != 0 {
		t.Fatalf("%d bytes left", rd.Len())
	}
	if n := testing.AllocsPerRun(100, func() { _ = w.appendWire(out[:0], b) }); n != 0 {
		t.Fatalf("appendWire allocates %.0f times", n)
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// TestWSFixedPorts: with fixed, distinct ports the listeners are told apart
// by the connection's listener address alone (no getsockname).
func TestWSFixedPorts(t *testing.T) {
	raw, wsa := testkit.FreePort(t), testkit.FreePort(t)
	if l := newListeners(raw, wsa); !l.byPort {
		t.Fatalf("listeners %+v: want byPort", l)
	}
	e := startEnv(t, envOpt{room: func(c *Config) { c.Addr, c.WSAddr = raw, wsa }})
	if e.room.Addr() != raw || e.room.WSAddr() != wsa {
		t.Fatalf("bound %s %s, want %s %s", e.room.Addr(), e.room.WSAddr(), raw, wsa)
	}
	_, c := wsConnect(t, wsa)
	c.Login(1, "fixed-ws", testkit.Token(1, "fixed-ws"), 30)
	r, _ := e.login(1, "fixed-tcp")
	r.ExpectQuiet(0)
	if _, err := New(Config{Addr: raw, WSAddr: raw}, Deps{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("WSAddr = Addr: %v", err)
	}
}
