package room

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/token"
)

// defaultLimits puts the op limits back to their defaults (the kit raises
// the PING limit for its liveness probe).
func defaultLimits(c *config.Config) { c.Room.Limits = config.OpLimits{} }

// TestOpFloodNeverReading: a client that floods one op and never reads is
// refused (ERROR rate_limited), and closed once its ERROR budget is spent;
// its output never grows past a few frames, and a bystander is served.
func TestOpFloodNeverReading(t *testing.T) {
	cases := []struct {
		name  string
		frame func(seq uint32) []byte
	}{
		{"ping", func(seq uint32) []byte { return proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: seq}, nil) }},
		{"upstream to an unbound app", func(seq uint32) []byte { return proto.AppendUpstream(nil, seq, 2, true, 1, []byte("x")) }},
		{"ack of unknown ids", func(seq uint32) []byte { return proto.AppendAck(nil, seq, []uint64{uint64(seq), uint64(seq) + 1}) }},
		{"bind with a bad token", func(seq uint32) []byte {
			return proto.AppendFrame(nil, proto.Header{Op: proto.OpBind, Seq: seq, App: 2}, []byte(`{"token":"1.00"}`))
		}},
		{"unbind", func(seq uint32) []byte {
			return proto.AppendFrame(nil, proto.Header{Op: proto.OpUnbind, Seq: seq, App: 3}, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: defaultLimits})
			by, _ := e.login(1, "bystander")
			c, _ := e.login(1, "flood")
			var batch []byte
			for seq := uint32(1); len(batch) < 64<<10; seq++ {
				batch = append(batch, tc.frame(seq)...)
			}
			// Write without reading until the room closes the connection.
			deadline := time.Now().Add(5 * time.Second)
			_ = c.NetConn().SetWriteDeadline(deadline)
			for time.Now().Before(deadline) {
				if _, err := c.NetConn().Write(batch); err != nil {
					break
				}
			}
			var codes []string
			for {
				f, err := c.Next(testkit.Timeout)
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the flooding connection is still open")
					}
					break
				}
				if f.Op == proto.OpError {
					var b proto.Error
					_ = proto.DecodeJSON(f.Body, &b)
					codes = append(codes, b.Code)
				}
			}
			if !slices.Contains(codes, proto.ErrCodeRateLimited) {
				t.Fatalf("no ERROR rate_limited among %v", codes)
			}
			if len(codes) > 25 {
				t.Fatalf("%d ERRORs written, want at most the error budget (20) and one more", len(codes))
			}
			by.ExpectQuiet(0)
		})
	}
}

// TestPreAuthLimits: before AUTH a frame may be only max_auth_frame long,
// unauthenticated connections have caps of their own, and new connections
// per IP are rate-limited; authenticated users are not affected.
func TestPreAuthLimits(t *testing.T) {
	t.Run("frame over max_auth_frame", func(t *testing.T) {
		e := startEnv(t, envOpt{})
		c := testkit.Dial(t, e.room.Addr())
		c.Write([]byte{0, 0, 4, 1}) // Len 1025: over the 1024 default, under max_frame
		c.ExpectError(proto.ErrCodeFrameTooLarge)
		c.ExpectClosed(testkit.Timeout)
	})
	t.Run("unauthenticated per IP", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.MaxUnauthedPerIP = 3 }})
		by, _ := e.login(1, "bystander")
		var held []*testkit.Conn
		for i := 0; i < 3; i++ {
			c := testkit.Dial(t, e.room.Addr())
			c.Write([]byte{0, 0, 1}) // a partial frame, held
			held = append(held, c)
		}
		testkit.WaitFor(t, "3 unauthenticated", 2*time.Second, func() bool { return e.room.unauthed.Load() == 3 })
		testkit.Dial(t, e.room.Addr()).ExpectClosed(testkit.Timeout)
		by.ExpectQuiet(0)
		// A held connection that leaves frees its slot for a login.
		held[0].Close()
		testkit.WaitFor(t, "slot freed", 2*time.Second, func() bool { return e.room.unauthed.Load() == 2 })
		c, _ := e.login(1, "late")
		c.ExpectQuiet(0)
		if n, u := e.room.ips.count(netip.MustParseAddr("127.0.0.1")); n != 4 || u != 2 {
			t.Fatalf("per-IP counts %d connections, %d unauthenticated; want 4, 2", n, u)
		}
	})
	t.Run("unauthenticated in total", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.MaxUnauthed = 2 }})
		for i := 0; i < 2; i++ {
			testkit.Dial(t, e.room.Addr())
		}
		testkit.WaitFor(t, "2 unauthenticated", 2*time.Second, func() bool { return e.room.unauthed.Load() == 2 })
		testkit.Dial(t, e.room.Addr()).ExpectClosed(testkit.Timeout)
	})
	t.Run("connect rate per IP", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.ConnectRatePerIP = 1; c.Room.ConnectBurstPerIP = 5 }})
		for i := 0; i < 5; i++ {
			c, _ := e.login(1, "u"+string(rune('a'+i)))
			c.ExpectQuiet(0)
		}
		testkit.Dial(t, e.room.Addr()).ExpectClosed(testkit.Timeout)
		// Another source address has its own bucket.
		other := testkit.DialFrom(t, e.room.Addr(), "127.0.0.2")
		other.Auth(1, "other", testkit.Token(1, "other"), 0)
		other.ExpectNext(proto.OpAuthOK)
	})
}

// TestLoginRules: the one uid rule and the token lifetime, at AUTH and BIND.
func TestLoginRules(t *testing.T) {
	e := startEnv(t, envOpt{})
	forever := func(app uint32, uid string) string { return token.Sign([]byte(testkit.Secret(app)), app, uid, 1<<63-1) }
	cases := []struct {
		name, uid, tok string
	}{
		{"NUL in the uid", "a\x00b", testkit.Token(1, "a\x00b")},
		{"newline in the uid", "a\nb", testkit.Token(1, "a\nb")},
		{"invalid UTF-8", "\xff\xfe", testkit.Token(1, "\xff\xfe")},
		{"uid of 129 bytes", strings.Repeat("u", 129), testkit.Token(1, strings.Repeat("u", 129))},
		{"token valid for ever", "forever", forever(1, "forever")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testkit.Dial(t, e.room.Addr())
			c.Auth(1, tc.uid, tc.tok, 0)
			c.ExpectError(proto.ErrCodeBadToken)
			c.ExpectClosed(testkit.Timeout)
			if e.hasSession(tc.uid) {
				t.Fatal("the refused uid was registered")
			}
		})
	}
	t.Run("BIND with a token valid for ever", func(t *testing.T) {
		c, _ := e.login(1, "binder")
		seq := c.SendJSON(proto.OpBind, 2, proto.Bind{Token: forever(2, "binder")})
		if f := c.ExpectError(proto.ErrCodeBadToken); f.Seq != seq {
			t.Fatalf("seq %d, want %d", f.Seq, seq)
		}
		c.ExpectQuiet(0)
	})
}

// TestAckIsScopedToBoundApps: the ids of an ACK can only delete messages of
// the apps bound on the connection.
func TestAckIsScopedToBoundApps(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "acker")
	c.Write(proto.AppendAck(nil, 7, []uint64{11, 12}))
	testkit.WaitFor(t, "ack applied", 2*time.Second, func() bool { return len(e.inbox.acked("acker")) == 2 })
	e.inbox.mu.Lock()
	apps := e.inbox.ackApps["acker"]
	e.inbox.mu.Unlock()
	if len(apps) != 1 || !slices.Equal(apps[0], []uint32{1}) {
		t.Fatalf("Ack scoped to %v, want [[1]]", apps)
	}
}

// TestRepliesBackpressure: a client that does not read its replies stops
// being read once they pass the reply budget, and is closed once its own
// unread input passes two frames; the room's memory for it stays bounded.
func TestRepliesBackpressure(t *testing.T) {
	e := startEnv(t, envOpt{
		cfg:  func(c *config.Config) { c.Room.Limits.Ping = config.OpLimit{Rate: 1000, Burst: 65535} },
		room: func(c *Config) { c.SendBuffer = 4096 }, // so that gnet, not the kernel, holds the replies
	})
	by, _ := e.login(1, "bystander")
	c, _ := e.login(1, "noread")
	if tc, ok := c.NetConn().(*net.TCPConn); ok {
		raw, _ := tc.SyscallConn()
		_ = raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}
	before, closes := counterValue(mBackpressure), counterValue(mCloses.WithLabelValues(closeInbound))
	var batch []byte
	for seq := uint32(1); len(batch) < 64<<10; seq++ {
		batch = append(batch, proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: seq}, nil)...)
	}
	deadline := time.Now().Add(10 * time.Second)
	_ = c.NetConn().SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		if _, err := c.NetConn().Write(batch); err != nil {
			break
		}
	}
	if counterValue(mBackpressure) == before {
		t.Fatal("the connection was never paused")
	}
	c.ExpectClosed(5 * time.Second)
	if counterValue(mCloses.WithLabelValues(closeInbound)) == closes {
		t.Fatal("not closed for its unread input")
	}
	by.ExpectQuiet(0)
}

// TestLoginTakesOnlyItsApp: apps are tenants. A login through app 1 takes
// only app 1 from the uid's connection bound on apps 1 and 2: that
// connection keeps serving app 2, is sent nothing and is not kicked; a
// connection bound on app 2 only is not touched at all.
func TestLoginTakesOnlyItsApp(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.coord.onKick = func(old push.Session, code int, reason string) {
		if old.Room == e.room.ID() {
			_, _ = e.room.Kick(t.Context(), old.UID, old.ConnID, old.Apps, code, reason)
		}
	}
	first, _ := e.login(2, "both")
	firstID := e.connID("both")
	seq := first.SendJSON(proto.OpBind, 1, proto.Bind{Token: testkit.Token(1, "both")})
	if f := first.ExpectNext(proto.OpBindOK); f.Seq != seq {
		t.Fatalf("BIND_OK seq %d", f.Seq)
	}
	second, _ := e.login(1, "both")
	secondID := e.connID("both")
	testkit.WaitFor(t, "app 1 taken from the first connection", 2*time.Second, func() bool {
		s := e.room.idx.get("both", firstID)
		return s != nil && !s.hasApp(1) && s.hasApp(2)
	})
	// App 2 still reaches the first connection, app 1 only the second.
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 10, App: 2, Payload: []byte("two")}, []push.Target{{UID: "both", ConnID: firstID}}); n != 1 {
		t.Fatalf("app 2 push to the first connection: %d", n)
	}
	if id, _, _ := first.ExpectPush(); id != 10 {
		t.Fatalf("first got %d", id)
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 11, App: 1, Payload: []byte("one")}, []push.Target{{UID: "both", ConnID: firstID}}); n != 0 {
		t.Fatalf("app 1 push reached the first connection: %d", n)
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 12, App: 1, Payload: []byte("one")}, []push.Target{{UID: "both", ConnID: secondID}}); n != 1 {
		t.Fatalf("app 1 push to the second connection: %d", n)
	}
	if id, _, _ := second.ExpectPush(); id != 12 {
		t.Fatalf("second got %d", id)
	}
	first.ExpectQuiet(0)
	if e.coord.hasStatus("both", 1, push.EventOffline) {
		t.Fatal("offline event for app 1: the user is online on it elsewhere")
	}
	// A login through an app the other connection does not have leaves it alone.
	only2, _ := e.login(2, "other")
	third, _ := e.login(1, "other")
	only2.ExpectQuiet(0)
	third.ExpectQuiet(0)
}

// TestAcksRetried: ACKs the store refuses are retried until it takes them,
// in order, none dropped; the client is not bothered.
func TestAcksRetried(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.inbox.mu.Lock()
	e.inbox.ackErr = push.ErrUnavailable
	e.inbox.mu.Unlock()
	c, _ := e.login(1, "acker")
	retries := counterValue(mAckRetries)
	reasons := []string{"retry_time", "retry_bound", "shutdown"}
	dropped := map[string]float64{}
	for _, r := range reasons {
		dropped[r] = counterValue(mAcksDropped.WithLabelValues(r))
	}
	c.Write(proto.AppendAck(nil, 1, []uint64{1, 2}))
	c.Write(proto.AppendAck(nil, 2, []uint64{3}))
	testkit.WaitFor(t, "retries", testkit.Timeout, func() bool {
		e.inbox.mu.Lock()
		defer e.inbox.mu.Unlock()
		return e.inbox.ackCall >= 4 && counterValue(mAckRetries) >= retries+2
	})
	c.ExpectQuiet(0) // no ERROR: the ACK was accepted
	e.inbox.mu.Lock()
	e.inbox.ackErr = nil
	e.inbox.mu.Unlock()
	testkit.WaitFor(t, "acks applied after the store came back", 5*time.Second, func() bool {
		return slices.Equal(e.inbox.acked("acker"), []uint64{1, 2, 3})
	})
	for _, r := range reasons {
		if v := counterValue(mAcksDropped.WithLabelValues(r)) - dropped[r]; v != 0 {
			t.Fatalf("%v ids dropped (%s)", v, r)
		}
	}
}

// TestRedeliver: messages stored while the session could not be found (a
// register outage) reach a connected client without a reconnect.
func TestRedeliver(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "r1")
	other, _ := e.login(2, "r2")
	e.inbox.store("r1", push.Message{ID: 7, App: 1, QoS: push.QoS1, Payload: []byte("stored late")},
		push.Message{ID: 8, App: 2, QoS: push.QoS1, Payload: []byte("other app")})
	n, err := e.room.Redeliver(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Redeliver = %d, %v; want 1 message", n, err)
	}
	if id, payload, f := c.ExpectPush(); id != 7 || string(payload) != "stored late" || f.Flags&proto.FlagAckRequired == 0 {
		t.Fatalf("got %d %q flags %d", id, payload, f.Flags)
	}
	c.ExpectQuiet(0) // app 2's message is not for this connection
	other.ExpectQuiet(0)
}
