// Package testkit is the one test kit of the repository (issue 11): a raw
// protocol client (Conn), one poll-until-deadline helper (WaitFor), the test
// apps' secrets, tokens and base configuration, and Center API calls.
// The in-process system starter is its sub-package systest.
//
// testkit imports only pkg/ packages (proto, token, config), so the tests of
// every service package (room, center, ...) can use it without an import
// cycle. systest imports the services; only tests outside them use it.
package testkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// Timeout is the kit's one default wait: how long Dial and every Expect
// wait for the server.
const Timeout = 5 * time.Second

// maxFrame is the largest frame a Conn reads: well above any server's
// maximum, so that the client never refuses what a test wants to look at.
const maxFrame = 16 << 20

// Conn is a raw protocol client (PROTOCOL.md, on pkg/proto) for byte-level
// tests. Its Expect methods fail the test; Next, NetConn and Close may be
// used from any goroutine.
//
// Expect* skip PONGs (the answers to heartbeat PINGs) unless a PONG is what
// they wait for; ExpectNext and Next see every frame.
type Conn struct {
	*state
	who string // prefix of failure messages (As)
}

type state struct {
	t   testing.TB
	c   net.Conn
	dec *proto.Decoder
	seq uint32
}

// Dial connects to a room's client address; the connection is closed when
// the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	return DialFrom(t, addr, "")
}

// DialFrom is Dial from source address srcIP (an IP; empty: the kernel's
// choice). Any address of 127.0.0.0/8 works on loopback, which is how tests
// act as several client IPs (per-IP limits).
func DialFrom(t testing.TB, addr, srcIP string) *Conn {
	t.Helper()
	d := net.Dialer{Timeout: Timeout}
	if srcIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, srcIP, err)
	}
	return Wrap(t, c)
}

// Wrap makes a Conn of a connection dialed elsewhere (TLS, a test proxy);
// it is closed when the test ends.
func Wrap(t testing.TB, c net.Conn) *Conn {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	return &Conn{state: &state{t: t, c: c, dec: proto.NewDecoder(c, maxFrame)}}
}

// Login dials addr and authenticates uid on app with a valid token (Token)
// and a 30 s heartbeat, and waits for the AUTH_OK answering it.
func Login(t testing.TB, addr string, app uint32, uid string) *Conn {
	t.Helper()
	c := Dial(t, addr)
	c.Login(app, uid, Token(app, uid), 30)
	return c
}

// As returns c with who in front of its failure messages ("victim (app 2):
// ..."). The two share the connection.
func (c *Conn) As(who string) *Conn { return &Conn{state: c.state, who: who} }

func (c *Conn) fatalf(format string, args ...any) {
	c.t.Helper()
	if c.who != "" {
		format = c.who + ": " + format
	}
	c.t.Fatalf(format, args...)
}

// NetConn is the underlying connection (deadlines, floods, TCP state).
func (c *Conn) NetConn() net.Conn { return c.c }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Write writes raw bytes (a hand-made or broken frame).
func (c *Conn) Write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.fatalf("write: %v", err)
	}
}

// Send writes one frame with the next Seq and returns that Seq.
func (c *Conn) Send(op uint8, app uint32, flags uint16, body []byte) uint32 {
	c.t.Helper()
	c.seq++
	c.Write(proto.AppendFrame(nil, proto.Header{Op: op, Flags: flags, Seq: c.seq, App: app}, body))
	return c.seq
}

// SendJSON is Send with v marshalled as the body.
func (c *Conn) SendJSON(op uint8, app uint32, v any) uint32 {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.fatalf("marshal %T: %v", v, err)
	}
	return c.Send(op, app, 0, b)
}

// Auth sends AUTH for uid on app with token tok and heartbeat hb seconds (0:
// the server's default) and returns its Seq.
func (c *Conn) Auth(app uint32, uid, tok string, hb int) uint32 {
	c.t.Helper()
	return c.SendJSON(proto.OpAuth, app, proto.Auth{UID: uid, Token: tok, HB: hb})
}

// Login sends AUTH and expects the AUTH_OK with its Seq, returning its body.
func (c *Conn) Login(app uint32, uid, tok string, hb int) proto.AuthOK {
	c.t.Helper()
	seq := c.Auth(app, uid, tok, hb)
	f := c.Expect(proto.OpAuthOK)
	if f.Seq != seq {
		c.fatalf("AUTH_OK seq %d, want %d", f.Seq, seq)
	}
	var ok proto.AuthOK
	if err := json.Unmarshal(f.Body, &ok); err != nil {
		c.fatalf("AUTH_OK body %q: %v", f.Body, err)
	}
	return ok
}

// Ack sends an ACK of ids and returns its Seq.
func (c *Conn) Ack(ids ...uint64) uint32 {
	c.t.Helper()
	return c.Send(proto.OpAck, 0, 0, proto.AppendAck(nil, 0, ids)[proto.HeaderSize:])
}

// Next reads the next frame, whatever it is (PONGs included), within d. The
// body is the frame's own copy. It does not touch the test: other
// goroutines may call it.
func (c *Conn) Next(d time.Duration) (proto.Frame, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	f, err := c.dec.Next()
	if err != nil {
		return f, err
	}
	f.Body = append([]byte(nil), f.Body...)
	return f, nil
}

// Expect reads frames within Timeout until one with op arrives and returns
// it. PONGs on the way are skipped; any other frame fails the test.
func (c *Conn) Expect(op uint8) proto.Frame {
	c.t.Helper()
	for {
		f, err := c.Next(Timeout)
		if err != nil {
			c.fatalf("waiting for op 0x%02x: %v", op, err)
		}
		if f.Op == op {
			return f
		}
		if f.Op != proto.OpPong {
			c.fatalf("waiting for op 0x%02x, got op 0x%02x body %q", op, f.Op, f.Body)
		}
	}
}

// ExpectNext reads the very next frame (PONGs are not skipped) within
// Timeout: it must be one of ops.
func (c *Conn) ExpectNext(ops ...uint8) proto.Frame {
	c.t.Helper()
	f, err := c.Next(Timeout)
	if err != nil {
		c.fatalf("waiting for op %s: %v", opList(ops), err)
	}
	for _, op := range ops {
		if f.Op == op {
			return f
		}
	}
	c.fatalf("waiting for op %s, got op 0x%02x body %q", opList(ops), f.Op, f.Body)
	return f
}

// ExpectNonPong reads the next frame that is not a PONG, whatever its op,
// within Timeout.
func (c *Conn) ExpectNonPong() proto.Frame {
	c.t.Helper()
	for {
		f, err := c.Next(Timeout)
		if err != nil {
			c.fatalf("waiting for a frame: %v", err)
		}
		if f.Op != proto.OpPong {
			return f
		}
	}
}

func opList(ops []uint8) string {
	s := ""
	for i, op := range ops {
		if i > 0 {
			s += " or "
		}
		s += fmt.Sprintf("0x%02x", op)
	}
	return s
}

// ExpectError expects an ERROR (Expect: PONGs skipped) with code.
func (c *Conn) ExpectError(code string) proto.Frame {
	c.t.Helper()
	f := c.Expect(proto.OpError)
	var e proto.Error
	if err := json.Unmarshal(f.Body, &e); err != nil || e.Code != code {
		c.fatalf("ERROR body %q, want code %s", f.Body, code)
	}
	return f
}

// ExpectPush expects a PUSH (PONGs skipped) and returns its message id,
// payload and frame.
func (c *Conn) ExpectPush() (uint64, []byte, proto.Frame) {
	c.t.Helper()
	f := c.Expect(proto.OpPush)
	id, payload, err := proto.ParsePush(f.Body)
	if err != nil {
		c.fatalf("bad PUSH body %q: %v", f.Body, err)
	}
	return id, payload, f
}

// ExpectPushText expects a PUSH (PONGs skipped) of app whose payload is
// text, and returns its message id.
func (c *Conn) ExpectPushText(app uint32, text string) uint64 {
	c.t.Helper()
	id, p, f := c.ExpectPush()
	if string(p) != text || f.App != app {
		c.fatalf("got PUSH %q app %d, want %q app %d", p, f.App, text, app)
	}
	return id
}

// ExpectKick expects a KICK (PONGs skipped) with code, sent as a
// server-initiated frame (Seq 0), and returns its body.
func (c *Conn) ExpectKick(code int) proto.Kick {
	c.t.Helper()
	f := c.Expect(proto.OpKick)
	var k proto.Kick
	if err := json.Unmarshal(f.Body, &k); err != nil || k.Code != code || f.Seq != 0 {
		c.fatalf("KICK %q seq %d, want code %d seq 0", f.Body, f.Seq, code)
	}
	return k
}

// ExpectClosed reads (and drops) frames until the server closes the
// connection; it fails when the connection is still open after within.
func (c *Conn) ExpectClosed(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		_ = c.c.SetReadDeadline(deadline)
		_, err := c.dec.Next()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.fatalf("connection still open after %s", within)
		}
		return // EOF, reset, or a refused frame: closed
	}
}

// ExpectQuiet checks that nothing is queued for the client: for d it
// accepts only PONGs (0: no wait), then it sends a PING whose PONG must be
// the very next frame.
func (c *Conn) ExpectQuiet(d time.Duration) {
	c.t.Helper()
	if d > 0 {
		deadline := time.Now().Add(d)
		for {
			f, err := c.Next(time.Until(deadline))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				c.fatalf("while quiet: %v", err)
			}
			if f.Op != proto.OpPong {
				c.fatalf("got op 0x%02x %q, want nothing", f.Op, f.Body)
			}
		}
	}
	c.Send(proto.OpPing, 0, 0, nil)
	f, err := c.Next(Timeout)
	if err != nil || f.Op != proto.OpPong {
		c.fatalf("PING answered by op 0x%02x %q (err %v), want PONG and nothing else", f.Op, f.Body, err)
	}
}
