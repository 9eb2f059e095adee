package testkit

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// fakeRoom accepts one connection, hands every frame it reads to onFrame
// (which writes the answers) and records the headers.
func fakeRoom(t *testing.T, onFrame func(c net.Conn, f proto.Frame)) (string, chan proto.Header) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan proto.Header, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		dec := proto.NewDecoder(c, 0)
		for {
			f, err := dec.Next()
			if err != nil {
				return
			}
			got <- f.Header
			onFrame(c, f)
		}
	}()
	return ln.Addr().String(), got
}

func TestConnSendOrderAndExpect(t *testing.T) {
	addr, got := fakeRoom(t, func(c net.Conn, f proto.Frame) {
		switch f.Op {
		case proto.OpAuth:
			// A PONG first: Expect skips it.
			c.Write(proto.PongFrame)
			c.Write(proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK, Seq: f.Seq}, proto.AuthOK{HB: 30, Room: "r"}))
		case proto.OpPing:
			c.Write(proto.PongFrame)
		case proto.OpUpstream:
			c.Write(proto.PongFrame)
			c.Write(proto.AppendPush(nil, 2, true, 42, []byte("hi")))
			c.Write(proto.AppendError(nil, f.Seq, proto.ErrCodeNotBound, "x"))
			c.Write(proto.AppendJSON(nil, proto.Header{Op: proto.OpKick}, proto.Kick{Code: 1, Reason: "login_elsewhere"}))
		}
	})
	c := Dial(t, addr)
	if ok := c.Login(1, "u", Token(1, "u"), 30); ok.HB != 30 || ok.Room != "r" {
		t.Fatalf("AUTH_OK %+v", ok)
	}
	if h := <-got; h.Op != proto.OpAuth || h.App != 1 || h.Seq != 1 {
		t.Fatalf("AUTH header %+v", h)
	}
	seq := c.Send(proto.OpUpstream, 7, proto.FlagReplyWanted, []byte{0, 1})
	if h := <-got; h.Op != proto.OpUpstream || h.App != 7 || h.Flags != proto.FlagReplyWanted || h.Seq != seq || seq != 2 {
		t.Fatalf("Send(op, app, flags, body) wrote header %+v seq %d", h, seq)
	}
	if f := c.ExpectNext(proto.OpPong); f.Op != proto.OpPong {
		t.Fatal("ExpectNext skipped a PONG")
	}
	if id := c.ExpectPushText(2, "hi"); id != 42 {
		t.Fatalf("push id %d", id)
	}
	if f := c.ExpectError(proto.ErrCodeNotBound); f.Seq != seq {
		t.Fatalf("ERROR seq %d", f.Seq)
	}
	if k := c.ExpectKick(1); k.Reason != "login_elsewhere" {
		t.Fatalf("KICK %+v", k)
	}
	c.ExpectQuiet(0)
	c.As("quiet").ExpectQuiet(50 * time.Millisecond)
	c.Close()
}

func TestConnExpectClosed(t *testing.T) {
	addr, _ := fakeRoom(t, func(c net.Conn, f proto.Frame) {
		c.Write(proto.AppendError(nil, f.Seq, proto.ErrCodeAuthRequired, "x"))
		c.Close()
	})
	c := Dial(t, addr)
	c.Send(proto.OpPing, 0, 0, nil)
	c.ExpectError(proto.ErrCodeAuthRequired)
	start := time.Now()
	c.ExpectClosed(Timeout)
	if time.Since(start) > time.Second {
		t.Fatal("ExpectClosed waited for the timeout")
	}
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	WaitFor(t, "three polls", time.Second, func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("%d polls", n.Load())
	}
}

func TestTokensAndConfig(t *testing.T) {
	c := Config(t, func(c *config.Config) { c.Room.HeartbeatMin = 5 })
	if c.Room.HeartbeatMin != 5 || c.AdminKey != AdminKey {
		t.Fatalf("config %+v", c.Room)
	}
	for _, app := range []uint32{1, 2, 3} {
		a, ok := c.App(app)
		if !ok {
			t.Fatalf("app %d missing", app)
		}
		if err := token.Verify([]byte(a.Secret), app, "u", Token(app, "u"), time.Now(), 0); err != nil {
			t.Fatalf("app %d token: %v", app, err)
		}
	}
	if err := token.Verify([]byte(Secret1), 1, "u", TokenUntil(1, "u", time.Now().Add(-time.Minute)), time.Now(), 0); err == nil {
		t.Fatal("expired token accepted")
	}
}
