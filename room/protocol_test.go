package room

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
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
			var c *testkit.Conn
			if tc.authed {
				c, _ = e.login(1, "victim")
			} else {
				c = testkit.Dial(t, e.room.Addr())
			}
			c.Write(tc.data)
			if f := c.ExpectError(tc.code); f.Seq != tc.wantSeq {
				t.Fatalf("ERROR seq %d, want %d", f.Seq, tc.wantSeq)
			}
			c.ExpectClosed(testkit.Timeout)
			bystander.ExpectQuiet(0)
		})
	}
}

// TestGarbageClosesOnlyThatConnection sends inputs that each fail a
// different check of the frame path — the Len field (below the minimum,
// over max_auth_frame before AUTH, over max_frame after it, split over
// several writes), the version, the AUTH-first rule, each op's body, the
// token and uid checks, unknown and server-only ops, a frame that never
// completes — each on its own connection, and checks that each gets exactly
// its ERROR (code and Seq) and is closed, while a bystander stays served.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	const authDeadline = 800 * time.Millisecond
	e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.AuthDeadline = authDeadline }})
	good, _ := e.login(1, "good")
	rc := e.holder.Load().Room
	if rc.MaxAuthFrame >= rc.MaxFrame {
		t.Fatalf("max_auth_frame %d, max_frame %d: the cases need max_auth_frame < max_frame", rc.MaxAuthFrame, rc.MaxFrame)
	}

	// head is a frame header announcing Len l, followed by pad bytes.
	head := func(l uint32, op uint8, seq uint32, pad int) []byte {
		b := binary.BigEndian.AppendUint32(nil, l)
		b = append(b, proto.Version, op, 0, 0)
		b = binary.BigEndian.AppendUint32(b, seq)
		b = binary.BigEndian.AppendUint32(b, 1)
		return append(b, make([]byte, pad)...)
	}
	frame := func(op uint8, seq, app uint32, body []byte) []byte {
		return proto.AppendFrame(nil, proto.Header{Op: op, Seq: seq, App: app}, body)
	}
	withVer := func(ver uint8, b []byte) []byte { b[4] = ver; return b }
	authJSON := func(seq, app uint32, uid, tok string) []byte {
		return frame(proto.OpAuth, seq, app, mustJSON(t, proto.Auth{UID: uid, Token: tok}))
	}
	expired := token.Sign([]byte(testkit.Secret1), 1, "late", time.Now().Add(-time.Hour).Unix())
	badUID := "bad\x01uid" // a control character: the token is valid for it, the uid is not
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}

	cases := []struct {
		name   string
		authed bool     // log in first
		chunks [][]byte // written one after the other, with a pause
		before []uint8  // ops answered before the ERROR
		code   string   // the ERROR code
		seq    uint32   // the ERROR's Seq
		slow   bool     // refused by the auth deadline, not at once
	}{
		// The Len field, before AUTH.
		{name: "len 4 GiB-1", chunks: [][]byte{head(0xffffffff, proto.OpAuth, 1, 40)}, code: proto.ErrCodeFrameTooLarge},
		{name: "len max_auth_frame+1", chunks: [][]byte{head(uint32(rc.MaxAuthFrame)+1, proto.OpAuth, 1, 8)}, code: proto.ErrCodeFrameTooLarge},
		{name: "len max_frame+1 before auth", chunks: [][]byte{head(uint32(rc.MaxFrame)+1, proto.OpAuth, 1, 0)}, code: proto.ErrCodeFrameTooLarge},
		{name: "len 11", chunks: [][]byte{head(11, proto.OpAuth, 1, 0)}, code: proto.ErrCodeBadFrame},
		{name: "len 0", chunks: [][]byte{head(0, proto.OpAuth, 1, 0)}, code: proto.ErrCodeBadFrame},
		{name: "oversize len one byte at a time", chunks: [][]byte{{0}, {0x10}, {0}, {0}}, code: proto.ErrCodeFrameTooLarge},
		{name: "len 11 after a partial header", chunks: [][]byte{{0, 0, 0}, {11, 1, 1}}, code: proto.ErrCodeBadFrame},
		// The version and the AUTH-first rule.
		{name: "version 0", chunks: [][]byte{withVer(0, authJSON(21, 1, "v", testkit.Token(1, "v")))}, code: proto.ErrCodeBadFrame, seq: 21},
		{name: "version 2", chunks: [][]byte{withVer(2, frame(proto.OpPing, 22, 0, nil))}, code: proto.ErrCodeBadFrame, seq: 22},
		{name: "PING first", chunks: [][]byte{frame(proto.OpPing, 23, 0, nil)}, code: proto.ErrCodeAuthRequired, seq: 23},
		{name: "BIND first", chunks: [][]byte{frame(proto.OpBind, 24, 1, mustJSON(t, proto.Bind{Token: testkit.Token(1, "x")}))}, code: proto.ErrCodeAuthRequired, seq: 24},
		{name: "unknown op first", chunks: [][]byte{frame(0x55, 25, 0, nil)}, code: proto.ErrCodeAuthRequired, seq: 25},
		// The AUTH body and token.
		{name: "AUTH empty body", chunks: [][]byte{frame(proto.OpAuth, 31, 1, nil)}, code: proto.ErrCodeBadFrame, seq: 31},
		{name: "AUTH not JSON", chunks: [][]byte{frame(proto.OpAuth, 32, 1, []byte("uid=u"))}, code: proto.ErrCodeBadFrame, seq: 32},
		{name: "AUTH truncated JSON", chunks: [][]byte{frame(proto.OpAuth, 33, 1, []byte(`{"uid":"u","token":"12`))}, code: proto.ErrCodeBadFrame, seq: 33},
		{name: "AUTH trailing data", chunks: [][]byte{frame(proto.OpAuth, 34, 1, cat(mustJSON(t, proto.Auth{UID: "u", Token: testkit.Token(1, "u")}), []byte(" {}")))}, code: proto.ErrCodeBadFrame, seq: 34},
		{name: "AUTH bad token", chunks: [][]byte{authJSON(35, 1, "u", "123.abc")}, code: proto.ErrCodeBadToken, seq: 35},
		{name: "AUTH token of another app", chunks: [][]byte{authJSON(36, 1, "u", testkit.Token(2, "u"))}, code: proto.ErrCodeBadToken, seq: 36},
		{name: "AUTH token of another uid", chunks: [][]byte{authJSON(37, 1, "u", testkit.Token(1, "someone"))}, code: proto.ErrCodeBadToken, seq: 37},
		{name: "AUTH expired token", chunks: [][]byte{authJSON(38, 1, "late", expired)}, code: proto.ErrCodeBadToken, seq: 38},
		{name: "AUTH unknown app", chunks: [][]byte{authJSON(39, 99, "u", testkit.Token(99, "u"))}, code: proto.ErrCodeBadToken, seq: 39},
		{name: "AUTH bad uid", chunks: [][]byte{authJSON(40, 1, badUID, testkit.Token(1, badUID))}, code: proto.ErrCodeBadToken, seq: 40},
		{name: "AUTH empty uid", chunks: [][]byte{authJSON(41, 1, "", testkit.Token(1, ""))}, code: proto.ErrCodeBadToken, seq: 41},
		// Frames that never complete: only the auth deadline ends them.
		{name: "3 bytes then silence", chunks: [][]byte{{0, 0, 0}}, code: proto.ErrCodeAuthRequired, slow: true},
		{name: "AUTH cut short", chunks: [][]byte{authJSON(42, 1, "cut", testkit.Token(1, "cut"))[:30]}, code: proto.ErrCodeAuthRequired, slow: true},
		// Garbage pipelined behind a good AUTH is read after AUTH_OK.
		{name: "garbage behind AUTH", chunks: [][]byte{cat(authJSON(43, 1, "pipe", testkit.Token(1, "pipe")), head(0xff000000, proto.OpPing, 0, 0))}, before: []uint8{proto.OpAuthOK}, code: proto.ErrCodeFrameTooLarge},
		// After AUTH: the Len field and version with the larger limit.
		{name: "authed len max_frame+1", authed: true, chunks: [][]byte{head(uint32(rc.MaxFrame)+1, proto.OpPing, 1, 0)}, code: proto.ErrCodeFrameTooLarge},
		{name: "authed len 3", authed: true, chunks: [][]byte{head(3, proto.OpPing, 1, 0)}, code: proto.ErrCodeBadFrame},
		{name: "authed version 9", authed: true, chunks: [][]byte{withVer(9, frame(proto.OpPing, 51, 0, nil))}, code: proto.ErrCodeBadFrame, seq: 51},
		{name: "garbage behind a PING", authed: true, chunks: [][]byte{cat(frame(proto.OpPing, 52, 0, nil), head(0x7fffffff, proto.OpPing, 0, 0))}, before: []uint8{proto.OpPong}, code: proto.ErrCodeFrameTooLarge},
		// Ops a client may not send.
		{name: "unknown op", authed: true, chunks: [][]byte{frame(0x55, 61, 0, nil)}, code: proto.ErrCodeUnknownOp, seq: 61},
		{name: "op 0", authed: true, chunks: [][]byte{frame(0, 62, 0, nil)}, code: proto.ErrCodeUnknownOp, seq: 62},
		{name: "server op PUSH", authed: true, chunks: [][]byte{frame(proto.OpPush, 63, 1, make([]byte, 8))}, code: proto.ErrCodeUnknownOp, seq: 63},
		{name: "server op ERROR", authed: true, chunks: [][]byte{frame(proto.OpError, 64, 0, []byte("{}"))}, code: proto.ErrCodeUnknownOp, seq: 64},
		{name: "second AUTH", authed: true, chunks: [][]byte{authJSON(65, 1, "victim", testkit.Token(1, "victim"))}, code: proto.ErrCodeBadFrame, seq: 65},
		// Bad bodies of known ops.
		{name: "ACK empty body", authed: true, chunks: [][]byte{frame(proto.OpAck, 71, 1, nil)}, code: proto.ErrCodeBadFrame, seq: 71},
		{name: "ACK count above ids", authed: true, chunks: [][]byte{frame(proto.OpAck, 72, 1, []byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 1})}, code: proto.ErrCodeBadFrame, seq: 72},
		{name: "ACK count below ids", authed: true, chunks: [][]byte{frame(proto.OpAck, 73, 1, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1})}, code: proto.ErrCodeBadFrame, seq: 73},
		{name: "UPSTREAM 1-byte body", authed: true, chunks: [][]byte{frame(proto.OpUpstream, 74, 1, []byte{1})}, code: proto.ErrCodeBadFrame, seq: 74},
		{name: "BIND not JSON", authed: true, chunks: [][]byte{frame(proto.OpBind, 75, 2, []byte("nope"))}, code: proto.ErrCodeBadFrame, seq: 75},
		{name: "BIND trailing data", authed: true, chunks: [][]byte{frame(proto.OpBind, 76, 2, cat(mustJSON(t, proto.Bind{Token: testkit.Token(2, "victim")}), []byte("x")))}, code: proto.ErrCodeBadFrame, seq: 76},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *testkit.Conn
			// Dialled with the subtest's t: its failures are the subtest's.
			c = testkit.Dial(t, e.room.Addr())
			if tc.authed {
				c.Login(1, "victim", testkit.Token(1, "victim"), 30)
			}
			start := time.Now()
			for i, b := range tc.chunks {
				if i > 0 {
					time.Sleep(20 * time.Millisecond)
				}
				c.Write(b)
			}
			for _, op := range tc.before {
				c.ExpectNext(op)
			}
			if f := c.ExpectError(tc.code); f.Seq != tc.seq {
				t.Fatalf("ERROR seq %d, want %d", f.Seq, tc.seq)
			}
			// The deadline runs from the server's accept, a little before
			// start: half of it tells the two kinds apart.
			if el := time.Since(start); tc.slow != (el >= authDeadline/2) {
				t.Fatalf("ERROR after %s; refused by the auth deadline (%s): %v", el, authDeadline, tc.slow)
			}
			c.ExpectClosed(testkit.Timeout)
			_ = c.Close()
			good.ExpectQuiet(0)
		})
	}
	good.ExpectQuiet(0)
}

func TestPing(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "pinger")
	seq := c.Send(proto.OpPing, 0, 0, nil)
	if f := c.ExpectNext(proto.OpPong); f.Seq != seq || len(f.Body) != 0 {
		t.Fatalf("PONG %+v", f)
	}
	// Seq 0 gets the one shared PONG frame, byte for byte.
	c.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil))
	raw := make([]byte, len(proto.PongFrame))
	_ = c.NetConn().SetReadDeadline(time.Now().Add(testkit.Timeout))
	if _, err := c.NetConn().Read(raw); err != nil || string(raw) != string(proto.PongFrame) {
		t.Fatalf("PONG bytes %x, %v", raw, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *config.Config) {
		c.Room.HeartbeatMin = 1
		c.Room.HeartbeatGrace = 200 * time.Millisecond
	}})
	idle := testkit.Dial(t, e.room.Addr())
	idle.Auth(1, "idle", testkit.Token(1, "idle"), 1)
	idle.ExpectNext(proto.OpAuthOK)
	start := time.Now()

	busy := testkit.Dial(t, e.room.Addr())
	busy.Auth(1, "busy", testkit.Token(1, "busy"), 1)
	busy.ExpectNext(proto.OpAuthOK)
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
				if _, err := busy.NetConn().Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil)); err != nil {
					pinged <- err
					return
				}
			}
		}
	}()

	idle.ExpectClosed(5 * time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("closed after %s, before 2 x hb + grace", el)
	}
	testkit.WaitFor(t, "unregister of the idle session", 2*time.Second, func() bool { return !e.hasSession("idle") })
	close(stop)
	if err := <-pinged; err != nil {
		t.Fatalf("busy client: %v", err)
	}
	// Still open: skip the PONGs of its heartbeat up to the answer to seq 99.
	busy.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: 99}, nil))
	for busy.ExpectNext(proto.OpPong).Seq != 99 {
	}
}
