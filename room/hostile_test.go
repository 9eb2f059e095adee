package room

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
			_ = c.c.SetWriteDeadline(deadline)
			for time.Now().Before(deadline) {
				if _, err := c.c.Write(batch); err != nil {
					break
				}
			}
			var codes []string
			for {
				f, err := c.next(3 * time.Second)
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
			by.expectQuiet()
		})
	}
}

// TestPreAuthLimits: before AUTH a frame may be only max_auth_frame long,
// unauthenticated connections have caps of their own, and new connections
// per IP are rate-limited; authenticated users are not affected.
func TestPreAuthLimits(t *testing.T) {
	t.Run("frame over max_auth_frame", func(t *testing.T) {
		e := startEnv(t, envOpt{})
		c := dial(t, e.room.Addr())
		c.write([]byte{0, 0, 4, 1}) // Len 1025: over the 1024 default, under max_frame
		c.expectError(proto.ErrCodeFrameTooLarge)
		c.expectClosed(3 * time.Second)
	})
	t.Run("unauthenticated per IP", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.MaxUnauthedPerIP = 3 }})
		by, _ := e.login(1, "bystander")
		var held []*client
		for i := 0; i < 3; i++ {
			c := dial(t, e.room.Addr())
			c.write([]byte{0, 0, 1}) // a partial frame, held
			held = append(held, c)
		}
		waitFor(t, "3 unauthenticated", 2*time.Second, func() bool { return e.room.unauthed.Load() == 3 })
		dial(t, e.room.Addr()).expectClosed(3 * time.Second)
		by.expectQuiet()
		// A held connection that leaves frees its slot for a login.
		held[0].c.Close()
		waitFor(t, "slot freed", 2*time.Second, func() bool { return e.room.unauthed.Load() == 2 })
		c, _ := e.login(1, "late")
		c.expectQuiet()
		if n, u := e.room.ips.count(netip.MustParseAddr("127.0.0.1")); n != 4 || u != 2 {
			t.Fatalf("per-IP counts %d connections, %d unauthenticated; want 4, 2", n, u)
		}
	})
	t.Run("unauthenticated in total", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.MaxUnauthed = 2 }})
		for i := 0; i < 2; i++ {
			dial(t, e.room.Addr())
		}
		waitFor(t, "2 unauthenticated", 2*time.Second, func() bool { return e.room.unauthed.Load() == 2 })
		dial(t, e.room.Addr()).expectClosed(3 * time.Second)
	})
	t.Run("connect rate per IP", func(t *testing.T) {
		e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.ConnectRatePerIP = 1; c.Room.ConnectBurstPerIP = 5 }})
		for i := 0; i < 5; i++ {
			c, _ := e.login(1, "u"+string(rune('a'+i)))
			c.expectQuiet()
		}
		dial(t, e.room.Addr()).expectClosed(3 * time.Second)
		// Another source address has its own bucket.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 3 * time.Second}
		nc, err := d.Dial("tcp", e.room.Addr())
		if err != nil {
			t.Fatal(err)
		}
		other := &client{t: t, c: nc, dec: proto.NewDecoder(nc, 16<<20)}
		t.Cleanup(func() { nc.Close() })
		other.auth(1, "other", tokenFor(1, "other"), 0)
		other.expect(proto.OpAuthOK)
	})
}

// TestLoginRules: the one uid rule and the token lifetime, at AUTH and BIND.
func TestLoginRules(t *testing.T) {
	e := startEnv(t, envOpt{})
	forever := func(app uint32, uid string) string { return token.Sign([]byte(secretOf(app)), app, uid, 1<<63-1) }
	cases := []struct {
		name, uid, tok string
	}{
		{"NUL in the uid", "a\x00b", tokenFor(1, "a\x00b")},
		{"newline in the uid", "a\nb", tokenFor(1, "a\nb")},
		{"invalid UTF-8", "\xff\xfe", tokenFor(1, "\xff\xfe")},
		{"uid of 129 bytes", strings.Repeat("u", 129), tokenFor(1, strings.Repeat("u", 129))},
		{"token valid for ever", "forever", forever(1, "forever")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, e.room.Addr())
			c.auth(1, tc.uid, tc.tok, 0)
			c.expectError(proto.ErrCodeBadToken)
			c.expectClosed(3 * time.Second)
			if e.hasSession(tc.uid) {
				t.Fatal("the refused uid was registered")
			}
		})
	}
	t.Run("BIND with a token valid for ever", func(t *testing.T) {
		c, _ := e.login(1, "binder")
		seq := c.sendJSON(proto.OpBind, 2, proto.Bind{Token: forever(2, "binder")})
		if f := c.expectError(proto.ErrCodeBadToken); f.Seq != seq {
			t.Fatalf("seq %d, want %d", f.Seq, seq)
		}
		c.expectQuiet()
	})
}

// TestAckIsScopedToBoundApps: the ids of an ACK can only delete messages of
// the apps bound on the connection.
func TestAckIsScopedToBoundApps(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "acker")
	c.write(proto.AppendAck(nil, 7, []uint64{11, 12}))
	waitFor(t, "ack applied", 2*time.Second, func() bool { return len(e.inbox.acked("acker")) == 2 })
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
	if tc, ok := c.c.(*net.TCPConn); ok {
		raw, _ := tc.SyscallConn()
		_ = raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}
	before, closes := counterValue(mBackpressure), counterValue(mCloses.WithLabelValues(closeInbound))
	var batch []byte
	for seq := uint32(1); len(batch) < 64<<10; seq++ {
		batch = append(batch, proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: seq}, nil)...)
	}
	deadline := time.Now().Add(10 * time.Second)
	_ = c.c.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		if _, err := c.c.Write(batch); err != nil {
			break
		}
	}
	if counterValue(mBackpressure) == before {
		t.Fatal("the connection was never paused")
	}
	c.expectClosed(5 * time.Second)
	if counterValue(mCloses.WithLabelValues(closeInbound)) == closes {
		t.Fatal("not closed for its unread input")
	}
	by.expectQuiet()
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
	seq := first.sendJSON(proto.OpBind, 1, proto.Bind{Token: tokenFor(1, "both")})
	if f := first.expect(proto.OpBindOK); f.Seq != seq {
		t.Fatalf("BIND_OK seq %d", f.Seq)
	}
	second, _ := e.login(1, "both")
	secondID := e.connID("both")
	waitFor(t, "app 1 taken from the first connection", 2*time.Second, func() bool {
		s := e.room.idx.get("both", firstID)
		return s != nil && !s.hasApp(1) && s.hasApp(2)
	})
	// App 2 still reaches the first connection, app 1 only the second.
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 10, App: 2, Payload: []byte("two")}, []push.Target{{UID: "both", ConnID: firstID}}); n != 1 {
		t.Fatalf("app 2 push to the first connection: %d", n)
	}
	if id, _, _ := first.expectPush(); id != 10 {
		t.Fatalf("first got %d", id)
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 11, App: 1, Payload: []byte("one")}, []push.Target{{UID: "both", ConnID: firstID}}); n != 0 {
		t.Fatalf("app 1 push reached the first connection: %d", n)
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 12, App: 1, Payload: []byte("one")}, []push.Target{{UID: "both", ConnID: secondID}}); n != 1 {
		t.Fatalf("app 1 push to the second connection: %d", n)
	}
	if id, _, _ := second.expectPush(); id != 12 {
		t.Fatalf("second got %d", id)
	}
	first.expectQuiet()
	if e.coord.hasStatus("both", 1, push.EventOffline) {
		t.Fatal("offline event for app 1: the user is online on it elsewhere")
	}
	// A login through an app the other connection does not have leaves it alone.
	only2, _ := e.login(2, "other")
	third, _ := e.login(1, "other")
	only2.expectQuiet()
	third.expectQuiet()
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
	c.write(proto.AppendAck(nil, 1, []uint64{1, 2}))
	c.write(proto.AppendAck(nil, 2, []uint64{3}))
	waitFor(t, "retries", 3*time.Second, func() bool {
		e.inbox.mu.Lock()
		defer e.inbox.mu.Unlock()
		return e.inbox.ackCall >= 4 && counterValue(mAckRetries) >= retries+2
	})
	c.expectQuiet() // no ERROR: the ACK was accepted
	e.inbox.mu.Lock()
	e.inbox.ackErr = nil
	e.inbox.mu.Unlock()
	waitFor(t, "acks applied after the store came back", 5*time.Second, func() bool {
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
	if id, payload, f := c.expectPush(); id != 7 || string(payload) != "stored late" || f.Flags&proto.FlagAckRequired == 0 {
		t.Fatalf("got %d %q flags %d", id, payload, f.Flags)
	}
	c.expectQuiet() // app 2's message is not for this connection
	other.expectQuiet()
}
