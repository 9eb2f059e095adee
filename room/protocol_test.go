package room

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
)

func TestMalformedInput(t *testing.T) {
	e := startEnv(t, envOpt{})
	bystander, _ := e.login(1, "bystander")

	lenOnly := func(l uint32) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint32(b, l)
		b[4], b[5] = 1, proto.OpAuth
		return b
	}
	cases := []struct {
		name    string
		authed  bool
		data    []byte
		code    string
		wantSeq uint32
	}{
		{name: "len 2 GiB", data: lenOnly(2 << 30), code: proto.ErrCodeFrameTooLarge},
		{name: "len max+1", data: lenOnly(proto.DefaultMaxLen + 1), code: proto.ErrCodeFrameTooLarge},
		{name: "len below 12", data: lenOnly(11), code: proto.ErrCodeBadFrame},
		{name: "len zero", data: lenOnly(0), code: proto.ErrCodeBadFrame},
		{name: "unknown version", data: []byte{0, 0, 0, 12, 9, proto.OpAuth, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1}, code: proto.ErrCodeBadFrame, wantSeq: 7},
		{name: "authed unknown version", authed: true, data: []byte{0, 0, 0, 12, 9, proto.OpPing, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0}, code: proto.ErrCodeBadFrame, wantSeq: 8},
		{name: "authed too large", authed: true, data: lenOnly(1 << 20), code: proto.ErrCodeFrameTooLarge},
		{name: "unknown op", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: 0x55, Seq: 3}, nil), code: proto.ErrCodeUnknownOp, wantSeq: 3},
		{name: "server-only op PUSH", authed: true, data: proto.AppendPush(nil, 1, false, 1, nil), code: proto.ErrCodeUnknownOp},
		{name: "server-only op KICK", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: proto.OpKick, Seq: 4}, []byte("{}")), code: proto.ErrCodeUnknownOp, wantSeq: 4},
		{name: "ack short body", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: proto.OpAck, Seq: 5}, []byte{0}), code: proto.ErrCodeBadFrame, wantSeq: 5},
		{name: "ack count mismatch", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: proto.OpAck, Seq: 6}, []byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 1}), code: proto.ErrCodeBadFrame, wantSeq: 6},
		{name: "upstream short body", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: proto.OpUpstream, Seq: 9, App: 1}, []byte{1}), code: proto.ErrCodeBadFrame, wantSeq: 9},
		{name: "bind bad json", authed: true, data: proto.AppendFrame(nil, proto.Header{Op: proto.OpBind, Seq: 10, App: 2}, []byte("nope")), code: proto.ErrCodeBadFrame, wantSeq: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *client
			if tc.authed {
				c, _ = e.login(1, "victim")
			} else {
				c = dial(t, e.room.Addr())
			}
			c.write(tc.data)
			if f := c.expectError(tc.code); f.Seq != tc.wantSeq {
				t.Fatalf("ERROR seq %d, want %d", f.Seq, tc.wantSeq)
			}
			c.expectClosed(3 * time.Second)
			bystander.expectQuiet()
		})
	}
}

func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	e := startEnv(t, envOpt{})
	good, _ := e.login(1, "good")
	rng := rand.New(rand.NewPCG(7, 9))
	for i := 0; i < 30; i++ {
		g := dial(t, e.room.Addr())
		junk := make([]byte, 4+rng.IntN(400))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		junk[0] = 0xff // a Len this large is refused at once, whatever follows
		g.write(junk)
		g.expectClosed(3 * time.Second)
	}
	good.expectQuiet()
}

func TestPing(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "pinger")
	seq := c.send(proto.OpPing, 0, 0, nil)
	if f := c.expect(proto.OpPong); f.Seq != seq || len(f.Body) != 0 {
		t.Fatalf("PONG %+v", f)
	}
	// Seq 0 gets the one shared PONG frame, byte for byte.
	c.write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil))
	raw := make([]byte, len(proto.PongFrame))
	_ = c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.c.Read(raw); err != nil || string(raw) != string(proto.PongFrame) {
		t.Fatalf("PONG bytes %x, %v", raw, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *config.Config) {
		c.Room.HeartbeatMin = 1
		c.Room.HeartbeatGrace = 200 * time.Millisecond
	}})
	idle := dial(t, e.room.Addr())
	idle.auth(1, "idle", tokenFor(1, "idle"), 1)
	idle.expect(proto.OpAuthOK)
	start := time.Now()

	busy := dial(t, e.room.Addr())
	busy.auth(1, "busy", tokenFor(1, "busy"), 1)
	busy.expect(proto.OpAuthOK)
	stop := make(chan struct{})
	pinged := make(chan error, 1)
	go func() { // the busy client's heartbeat
		tk := time.NewTicker(400 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				pinged <- nil
				return
			case <-tk.C:
				if _, err := busy.c.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil)); err != nil {
					pinged <- err
					return
				}
			}
		}
	}()

	idle.expectClosed(5 * time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("closed after %s, before 2 x hb + grace", el)
	}
	waitFor(t, "unregister of the idle session", 2*time.Second, func() bool { return !e.hasSession("idle") })
	close(stop)
	if err := <-pinged; err != nil {
		t.Fatalf("busy client: %v", err)
	}
	// Still open: skip the PONGs of its heartbeat up to the answer to seq 99.
	busy.seq = 98
	busy.send(proto.OpPing, 0, 0, nil)
	for busy.expect(proto.OpPong).Seq != 99 {
	}
}
