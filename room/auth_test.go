package room

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/token"
)

func TestAuthOK(t *testing.T) {
	e := startEnv(t, envOpt{})
	cases := []struct {
		name   string
		hb     int
		wantHB int
	}{
		{"requested", 30, 30},
		{"default", 0, 60},
		{"below min", 1, 5},
		{"above max", 100000, 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The previous subtest's client is closed by its cleanup.
			testkit.WaitFor(t, "Online() back to 0", testkit.Timeout, func() bool { return e.room.Online() == 0 })
			c := testkit.Dial(t, e.room.Addr())
			uid := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			before := time.Now().Unix()
			seq := c.Auth(1, uid, testkit.Token(1, uid), tc.hb)
			f := c.ExpectNext(proto.OpAuthOK)
			var ok proto.AuthOK
			if err := json.Unmarshal(f.Body, &ok); err != nil {
				t.Fatal(err)
			}
			if f.Seq != seq || ok.HB != tc.wantHB || ok.Room != "room-t" || ok.ServerTime < before || ok.ServerTime > time.Now().Unix()+1 {
				t.Fatalf("AUTH_OK seq=%d %+v", f.Seq, ok)
			}
			s, found := e.reg.session(uid)
			if !found || s.Room != "room-t" || s.ConnID == 0 || len(s.Apps) != 1 || s.Apps[0] != 1 || s.IP != "127.0.0.1" || s.Since == 0 {
				t.Fatalf("registered session %+v", s)
			}
			testkit.WaitFor(t, "online status", 2*time.Second, func() bool { return e.coord.hasStatus(uid, 1, push.EventOnline) })
			c.ExpectQuiet(0)
			if e.room.Online() != 1 {
				t.Fatalf("Online() = %d", e.room.Online())
			}
		})
	}
}

func TestAuthRefused(t *testing.T) {
	e := startEnv(t, envOpt{})
	expired := token.Sign([]byte(testkit.Secret1), 1, "u1", time.Now().Add(-time.Hour).Unix())
	long := strings.Repeat("x", 129)
	cases := []struct {
		name, uid, tok, code string
		app                  uint32
		body                 []byte // raw body instead of JSON of uid/tok
	}{
		{name: "bad signature", uid: "u1", tok: testkit.Token(1, "u1")[:20] + strings.Repeat("0", 53), app: 1, code: proto.ErrCodeBadToken},
		{name: "garbage token", uid: "u1", tok: "not-a-token", app: 1, code: proto.ErrCodeBadToken},
		{name: "expired", uid: "u1", tok: expired, app: 1, code: proto.ErrCodeBadToken},
		{name: "other uid", uid: "u1", tok: testkit.Token(1, "someone-else"), app: 1, code: proto.ErrCodeBadToken},
		{name: "other app", uid: "u1", tok: testkit.Token(2, "u1"), app: 1, code: proto.ErrCodeBadToken},
		{name: "unknown app", uid: "u1", tok: testkit.Token(1, "u1"), app: 99, code: proto.ErrCodeBadToken},
		{name: "app zero", uid: "u1", tok: testkit.Token(1, "u1"), app: 0, code: proto.ErrCodeBadToken},
		{name: "empty uid", uid: "", tok: testkit.Token(1, ""), app: 1, code: proto.ErrCodeBadToken},
		{name: "uid too long", uid: long, tok: testkit.Token(1, long), app: 1, code: proto.ErrCodeBadToken},
		{name: "bad json", app: 1, body: []byte("{"), code: proto.ErrCodeBadFrame},
		{name: "trailing json", app: 1, body: []byte(`{"uid":"a"} x`), code: proto.ErrCodeBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testkit.Dial(t, e.room.Addr())
			var seq uint32
			if tc.body != nil {
				seq = c.Send(proto.OpAuth, tc.app, 0, tc.body)
			} else {
				seq = c.Auth(tc.app, tc.uid, tc.tok, 0)
			}
			if f := c.ExpectError(tc.code); f.Seq != seq {
				t.Fatalf("ERROR seq %d, want %d", f.Seq, seq)
			}
			c.ExpectClosed(testkit.Timeout)
		})
	}
	if _, ok := e.reg.session("u1"); ok {
		t.Fatal("a refused AUTH was registered")
	}
}

func TestFirstFrameMustBeAuth(t *testing.T) {
	e := startEnv(t, envOpt{})
	for _, op := range []uint8{proto.OpPing, proto.OpAck, proto.OpBind, proto.OpPush, 0x7f} {
		c := testkit.Dial(t, e.room.Addr())
		seq := c.Send(op, 1, 0, nil)
		if f := c.ExpectError(proto.ErrCodeAuthRequired); f.Seq != seq {
			t.Fatalf("op %#x: ERROR seq %d, want %d", op, f.Seq, seq)
		}
		c.ExpectClosed(testkit.Timeout)
	}
}

func TestAuthDeadline(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.AuthDeadline = 300 * time.Millisecond }})

	silent := testkit.Dial(t, e.room.Addr())
	start := time.Now()
	silent.ExpectClosed(testkit.Timeout)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %s, before the deadline", el)
	}

	// Half a frame: something was sent, so the close says why.
	partial := testkit.Dial(t, e.room.Addr())
	partial.Write([]byte{0, 0, 0, 40, 1, proto.OpAuth})
	partial.ExpectError(proto.ErrCodeAuthRequired)
	partial.ExpectClosed(testkit.Timeout)

	// An authenticated connection is not subject to the auth deadline.
	c, _ := e.login(1, "on-time")
	time.Sleep(500 * time.Millisecond) // longer than the deadline, not waiting for a state
	c.ExpectQuiet(0)
}

func TestSecondAuthIsBadFrame(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "twice")
	seq := c.Auth(1, "twice", testkit.Token(1, "twice"), 0)
	if f := c.ExpectError(proto.ErrCodeBadFrame); f.Seq != seq {
		t.Fatalf("seq %d want %d", f.Seq, seq)
	}
	c.ExpectClosed(testkit.Timeout)
}

func TestAuthStoreFailure(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.reg.mu.Lock()
	e.reg.err = push.ErrUnavailable
	e.reg.mu.Unlock()
	c := testkit.Dial(t, e.room.Addr())
	seq := c.Auth(1, "u", testkit.Token(1, "u"), 0)
	if f := c.ExpectError(proto.ErrCodeInternal); f.Seq != seq {
		t.Fatalf("seq %d want %d", f.Seq, seq)
	}
	c.ExpectClosed(testkit.Timeout)

	// A Load failure after a successful Register unregisters again.
	e.reg.mu.Lock()
	e.reg.err = nil
	e.reg.mu.Unlock()
	e.inbox.mu.Lock()
	e.inbox.err = push.ErrUnavailable
	e.inbox.mu.Unlock()
	c2 := testkit.Dial(t, e.room.Addr())
	c2.Auth(1, "v", testkit.Token(1, "v"), 0)
	c2.ExpectError(proto.ErrCodeInternal)
	c2.ExpectClosed(testkit.Timeout)
	testkit.WaitFor(t, "unregister after failed load", testkit.Timeout, func() bool {
		_, ok := e.reg.session("v")
		return !ok
	})
}

func TestAuthOverloaded(t *testing.T) {
	e := startEnv(t, envOpt{room: func(c *Config) { c.Workers = 1; c.Queue = 1 }})
	gate := make(chan struct{})
	e.reg.setGate(gate)
	// One AUTH occupies the worker, one waits in the queue, the next is refused.
	var cs []*testkit.Conn
	for i, uid := range []string{"a", "b"} {
		c := testkit.Dial(t, e.room.Addr())
		c.Auth(1, uid, testkit.Token(1, uid), 0)
		cs = append(cs, c)
		if i == 0 {
			testkit.WaitFor(t, "worker busy", 2*time.Second, func() bool { return e.reg.entered.Load() == 1 })
		}
	}
	testkit.WaitFor(t, "queue full", 2*time.Second, func() bool { return e.room.pool.Len() == 1 })
	c := testkit.Dial(t, e.room.Addr())
	c.Auth(1, "c", testkit.Token(1, "c"), 0)
	c.ExpectError(proto.ErrCodeOverloaded)
	c.ExpectClosed(testkit.Timeout)
	close(gate)
	for _, c := range cs {
		c.ExpectNext(proto.OpAuthOK)
	}
}

// Frames pipelined behind the AUTH, and pushes routed here while the AUTH
// is with the workers, come after AUTH_OK and the stored messages.
func TestAuthPipelineAndPending(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.inbox.store("p", push.Message{ID: 10, App: 1, QoS: 1, Payload: []byte("stored-1")},
		push.Message{ID: 11, App: 1, QoS: 1, Payload: []byte("stored-2")},
		push.Message{ID: 12, App: 1, QoS: 1, Expire: 1, Payload: []byte("expired")},
		push.Message{ID: 13, App: 2, QoS: 1, Payload: []byte("other app")})
	gate := make(chan struct{})
	e.reg.setGate(gate)

	c := testkit.Dial(t, e.room.Addr())
	var b []byte
	b = proto.AppendFrame(b, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, mustJSON(t, proto.Auth{UID: "p", Token: testkit.Token(1, "p")}))
	b = proto.AppendFrame(b, proto.Header{Op: proto.OpPing, Seq: 2}, nil)
	c.Write(b)
	testkit.WaitFor(t, "auth pending", 2*time.Second, func() bool { return e.room.idx.get("p", 0) != nil })
	s := e.room.idx.get("p", 0)
	n, err := e.room.Push(t.Context(), push.Message{ID: 20, App: 1, QoS: 0, Payload: []byte("live")}, []push.Target{{UID: "p", ConnID: s.id}})
	if err != nil || n != 1 {
		t.Fatalf("Push during auth = %d, %v", n, err)
	}
	close(gate)

	if f := c.ExpectNext(proto.OpAuthOK); f.Seq != 1 {
		t.Fatalf("AUTH_OK seq %d", f.Seq)
	}
	for _, want := range []struct {
		id   uint64
		body string
		qos1 bool
	}{{10, "stored-1", true}, {11, "stored-2", true}, {20, "live", false}} {
		id, p, f := c.ExpectPush()
		if id != want.id || string(p) != want.body || (f.Flags&proto.FlagAckRequired != 0) != want.qos1 || f.App != 1 || f.Seq != 0 {
			t.Fatalf("push id=%d %q flags=%d app=%d, want %+v", id, p, f.Flags, f.App, want)
		}
	}
	if f := c.ExpectNext(proto.OpPong); f.Seq != 2 {
		t.Fatalf("PONG seq %d, want 2", f.Seq)
	}
}

func TestConfigReloadAppliesToNewConnections(t *testing.T) {
	e := startEnv(t, envOpt{})
	_, ok := e.login(1, "before")
	if ok.HB != 30 {
		t.Fatalf("hb %d", ok.HB)
	}
	e.holder.Store(roomTestConfig(t, func(c *config.Config) {
		c.Room.HeartbeatMin = 40
		c.Room.HeartbeatDefault = 50
	}))
	_, ok = e.login(1, "after")
	if ok.HB != 40 {
		t.Fatalf("hb after reload %d, want 40 (new minimum)", ok.HB)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuthSinceIsRegistrationTime: an AUTH that waited in the worker queue
// registers with the time it reached the register as its Since, not the time
// it arrived. The register's reconciliation drops a session the room does
// not list once its Since is older than its grace: a login that queued for
// longer than that would be dropped while the room is still loading its
// messages, and restored (with a Redeliver of the whole room) right after.
func TestAuthSinceIsRegistrationTime(t *testing.T) {
	e := startEnv(t, envOpt{room: func(c *Config) { c.Workers = 1 }})
	gate := make(chan struct{})
	e.reg.mu.Lock()
	e.reg.gate = gate
	e.reg.mu.Unlock()
	first := testkit.Dial(t, e.room.Addr())
	first.Auth(1, "first", testkit.Token(1, "first"), 30) // holds the only worker
	testkit.WaitFor(t, "the first AUTH in Register", 5*time.Second, func() bool { return e.reg.entered.Load() == 1 })
	queued := testkit.Dial(t, e.room.Addr())
	arrived := time.Now().Unix()
	queued.Auth(1, "queued", testkit.Token(1, "queued"), 30) // waits for the worker
	testkit.WaitFor(t, "two seconds of queueing", 5*time.Second, func() bool { return time.Now().Unix() >= arrived+2 })
	close(gate)
	first.Expect(proto.OpAuthOK)
	queued.Expect(proto.OpAuthOK)
	s, ok := e.reg.session("queued")
	if !ok {
		t.Fatal("queued login not registered")
	}
	if s.Since < arrived+2 {
		t.Fatalf("registered with Since %d, the AUTH's arrival (%d); want the registration time (>= %d)", s.Since, arrived, arrived+2)
	}
	sess, err := e.room.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range sess {
		if x.UID == "queued" && x.Since != s.Since {
			t.Fatalf("the room lists Since %d, the register has %d", x.Since, s.Since)
		}
	}
}
