package room

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestPushDelivery(t *testing.T) {
	e := startEnv(t, envOpt{})
	alice, _ := e.login(1, "alice")
	bob, _ := e.login(1, "bob")
	aliceID := e.connID("alice")

	cases := []struct {
		name    string
		msg     push.Message
		targets []push.Target
		want    int
		alice   bool // alice receives it
	}{
		{"qos1 to alice by connID", push.Message{ID: 1, App: 1, QoS: push.QoS1, Payload: []byte("a1")}, []push.Target{{UID: "alice", ConnID: aliceID}}, 1, true},
		{"qos0 any conn", push.Message{ID: 2, App: 1, QoS: push.QoS0, Payload: []byte("a2")}, []push.Target{{UID: "alice"}}, 1, true},
		{"wrong connID", push.Message{ID: 3, App: 1, QoS: push.QoS1, Payload: []byte("x")}, []push.Target{{UID: "alice", ConnID: aliceID + 1000}}, 0, false},
		{"app not bound", push.Message{ID: 4, App: 2, QoS: push.QoS1, Payload: []byte("x")}, []push.Target{{UID: "alice"}}, 0, false},
		{"unknown uid", push.Message{ID: 5, App: 1, Payload: []byte("x")}, []push.Target{{UID: "nobody"}}, 0, false},
		{"empty payload", push.Message{ID: 6, App: 1, QoS: push.QoS1}, []push.Target{{UID: "alice"}, {UID: "nobody"}}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := e.room.Push(t.Context(), tc.msg, tc.targets)
			if err != nil || n != tc.want {
				t.Fatalf("Push = %d, %v; want %d", n, err, tc.want)
			}
			if tc.alice {
				id, p, f := alice.ExpectPush()
				if id != tc.msg.ID || string(p) != string(tc.msg.Payload) || f.App != tc.msg.App || f.Seq != 0 ||
					(f.Flags&proto.FlagAckRequired != 0) != (tc.msg.QoS == push.QoS1) {
					t.Fatalf("got push id=%d %q %+v", id, p, f.Header)
				}
			}
			alice.ExpectQuiet(0)
			bob.ExpectQuiet(0)
		})
	}

	// Multicast over both loops: one Push, every target gets it once.
	var targets []push.Target
	var clients []*testkit.Conn
	for _, uid := range []string{"m1", "m2", "m3", "m4", "m5"} {
		c, _ := e.login(1, uid)
		clients = append(clients, c)
		targets = append(targets, push.Target{UID: uid})
	}
	n, err := e.room.Push(t.Context(), push.Message{ID: 77, App: 1, Payload: []byte("all")}, targets)
	if err != nil || n != len(targets) {
		t.Fatalf("multicast Push = %d, %v", n, err)
	}
	for _, c := range clients {
		if id, p, _ := c.ExpectPush(); id != 77 || string(p) != "all" {
			t.Fatalf("multicast got %d %q", id, p)
		}
	}
}

func TestStoredMessagesAfterAuthOK(t *testing.T) {
	e := startEnv(t, envOpt{})
	for i := uint64(1); i <= 50; i++ {
		e.inbox.store("s", push.Message{ID: 1000 + i, App: 1, QoS: push.QoS1, Payload: []byte{byte(i)}})
	}
	c, _ := e.login(1, "s")
	for i := uint64(1); i <= 50; i++ {
		id, p, f := c.ExpectPush()
		if id != 1000+i || len(p) != 1 || p[0] != byte(i) || f.Flags&proto.FlagAckRequired == 0 {
			t.Fatalf("stored #%d: id=%d payload=%v flags=%d", i, id, p, f.Flags)
		}
	}
	c.ExpectQuiet(0)
}

func TestAck(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "acker")
	c.Write(proto.AppendAck(nil, 5, []uint64{11, 12, 1 << 60}))
	c.Write(proto.AppendAck(nil, 6, nil)) // empty batch: nothing to do
	c.ExpectQuiet(0)                      // no reply to ACK
	testkit.WaitFor(t, "Saver.Ack", 2*time.Second, func() bool { return len(e.inbox.acked("acker")) == 3 })
	got := e.inbox.acked("acker")
	if got[0] != 11 || got[1] != 12 || got[2] != 1<<60 {
		t.Fatalf("acked %v", got)
	}
}

// TestAckStorm: while the store is slow, ACKs of many connections (a QoS 1
// broadcast's answers) queue per loop behind one drain task instead of
// filling the worker pool: none is refused, all reach the store.
func TestAckStorm(t *testing.T) {
	e := startEnv(t, envOpt{room: func(c *Config) { c.Workers, c.Queue = 2, 2 }})
	const n = 40
	clients := make([]*testkit.Conn, n)
	for i := range clients {
		clients[i], _ = e.login(1, fmt.Sprintf("acker-%d", i))
	}
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release) // a failed check must not leave workers blocked
	e.inbox.mu.Lock()
	e.inbox.ackGate = gate
	e.inbox.mu.Unlock()
	for i, c := range clients {
		c.Write(proto.AppendAck(nil, 7, []uint64{uint64(100 + i)}))
	}
	for _, c := range clients {
		c.ExpectQuiet(0) // no ERROR overloaded
	}
	release()
	for i := range clients {
		uid := fmt.Sprintf("acker-%d", i)
		testkit.WaitFor(t, uid+" acked", 2*time.Second, func() bool {
			got := e.inbox.acked(uid)
			return len(got) == 1 && got[0] == uint64(100+i)
		})
	}
}

func TestBindUnbind(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.inbox.store("b", push.Message{ID: 5, App: 2, QoS: push.QoS1, Payload: []byte("stored for 2")})
	c, _ := e.login(1, "b")
	id := e.connID("b")

	// Bad token for app 2 (signed for app 1): refused, session kept.
	seq := c.SendJSON(proto.OpBind, 2, proto.Bind{Token: testkit.Token(1, "b")})
	if f := c.ExpectError(proto.ErrCodeBadToken); f.Seq != seq {
		t.Fatalf("seq %d want %d", f.Seq, seq)
	}
	seq = c.SendJSON(proto.OpBind, 99, proto.Bind{Token: testkit.Token(1, "b")})
	c.ExpectError(proto.ErrCodeBadToken)
	c.ExpectQuiet(0)

	seq = c.SendJSON(proto.OpBind, 2, proto.Bind{Token: testkit.Token(2, "b")})
	if f := c.ExpectNext(proto.OpBindOK); f.Seq != seq {
		t.Fatalf("BIND_OK seq %d want %d", f.Seq, seq)
	}
	if mid, p, f := c.ExpectPush(); mid != 5 || string(p) != "stored for 2" || f.App != 2 {
		t.Fatalf("stored after bind: %d %q app %d", mid, p, f.App)
	}
	if apps := e.reg.appsOf(id); len(apps) != 2 || apps[0] != 1 || apps[1] != 2 {
		t.Fatalf("SetApps %v", apps)
	}
	testkit.WaitFor(t, "online for app 2", 2*time.Second, func() bool { return e.coord.hasStatus("b", 2, push.EventOnline) })
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 6, App: 2, Payload: []byte("live 2")}, []push.Target{{UID: "b"}}); n != 1 {
		t.Fatalf("push to bound app: %d", n)
	}
	if mid, _, _ := c.ExpectPush(); mid != 6 {
		t.Fatalf("got %d", mid)
	}
	// Binding again is harmless.
	c.SendJSON(proto.OpBind, 2, proto.Bind{Token: testkit.Token(2, "b")})
	c.ExpectNext(proto.OpBindOK)

	seq = c.Send(proto.OpUnbind, 2, 0, nil)
	if f := c.ExpectNext(proto.OpUnbindOK); f.Seq != seq {
		t.Fatalf("UNBIND_OK seq %d want %d", f.Seq, seq)
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 7, App: 2, Payload: []byte("x")}, []push.Target{{UID: "b"}}); n != 0 {
		t.Fatalf("push to unbound app reported %d", n)
	}
	c.ExpectQuiet(0)
	testkit.WaitFor(t, "SetApps after unbind", 2*time.Second, func() bool { return len(e.reg.appsOf(id)) == 1 })
	testkit.WaitFor(t, "offline for app 2", 2*time.Second, func() bool { return e.coord.hasStatus("b", 2, push.EventOffline) })

	// Unbinding the AUTH app is allowed; then nothing is delivered.
	c.Send(proto.OpUnbind, 1, 0, nil)
	c.ExpectNext(proto.OpUnbindOK)
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 8, App: 1, Payload: []byte("x")}, []push.Target{{UID: "b"}}); n != 0 {
		t.Fatalf("push after unbinding everything reported %d", n)
	}
	c.ExpectQuiet(0)
}

func TestBindLimit(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "many")
	s := e.room.idx.get("many", 0)
	// Fill the set up to the limit directly: the test config has 3 apps only.
	done := make(chan struct{})
	_ = e.room.onLoop(s, func() {
		for app := uint32(100); len(s.appList()) < maxApps; app++ {
			s.addApp(app)
		}
		close(done)
	})
	<-done
	seq := c.SendJSON(proto.OpBind, 2, proto.Bind{Token: testkit.Token(2, "many")})
	if f := c.ExpectError(proto.ErrCodeRateLimited); f.Seq != seq {
		t.Fatalf("seq %d", f.Seq)
	}
	c.ExpectQuiet(0)
}

func TestUpstream(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "up")

	seq := c.Send(proto.OpUpstream, 1, proto.FlagReplyWanted, proto.AppendUpstream(nil, 0, 1, true, 42, []byte("hello"))[proto.HeaderSize:])
	if f := c.ExpectNext(proto.OpUpstreamOK); f.Seq != seq {
		t.Fatalf("UPSTREAM_OK seq %d want %d", f.Seq, seq)
	}
	ups := e.coord.upstreamList()
	if len(ups) != 1 || ups[0].App != 1 || ups[0].UID != "up" || ups[0].Type != 42 || string(ups[0].Data) != "hello" || ups[0].TS == 0 {
		t.Fatalf("upstreams %+v", ups)
	}

	// Without REPLY_WANTED: accepted silently.
	c.Write(proto.AppendUpstream(nil, 50, 1, false, 1, nil))
	c.ExpectQuiet(0)
	testkit.WaitFor(t, "second upstream", 2*time.Second, func() bool { return len(e.coord.upstreamList()) == 2 })

	// Not bound.
	c.Write(proto.AppendUpstream(nil, 51, 2, true, 1, []byte("x")))
	if f := c.ExpectError(proto.ErrCodeNotBound); f.Seq != 51 {
		t.Fatalf("seq %d", f.Seq)
	}

	// Coordinator full.
	e.coord.mu.Lock()
	e.coord.upErr = push.ErrOverloaded
	e.coord.mu.Unlock()
	c.Write(proto.AppendUpstream(nil, 52, 1, true, 1, []byte("x")))
	if f := c.ExpectError(proto.ErrCodeOverloaded); f.Seq != 52 {
		t.Fatalf("seq %d", f.Seq)
	}
	e.coord.mu.Lock()
	e.coord.upErr = nil
	e.coord.mu.Unlock()
	c.ExpectQuiet(0)
}

func TestUpstreamRateLimit(t *testing.T) {
	const upBurst = 100 // the default
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "flood")
	var b []byte
	for i := 0; i < upBurst+20; i++ {
		b = proto.AppendUpstream(b, uint32(1000+i), 1, false, 1, []byte("x"))
	}
	c.Write(b)
	limited := 0
	for limited < 20 {
		f := c.ExpectError(proto.ErrCodeRateLimited)
		if f.Seq < 1000+upBurst-10 {
			t.Fatalf("rate limited early at seq %d", f.Seq)
		}
		limited++
	}
	c.ExpectQuiet(0) // still connected
}

func TestLoginElsewhere(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.coord.onKick = func(old push.Session, code int, reason string) {
		if old.Room == e.room.ID() {
			_, _ = e.room.Kick(t.Context(), old.UID, old.ConnID, old.Apps, code, reason)
		}
	}
	first, _ := e.login(1, "dup")
	firstID := e.connID("dup")
	second, _ := e.login(1, "dup")
	secondID := e.connID("dup")
	if firstID == secondID {
		t.Fatal("same connID twice")
	}
	k := first.ExpectKick(push.KickLoginElsewhere)
	if k.Reason != "login_elsewhere" {
		t.Fatalf("kick reason %q", k.Reason)
	}
	first.ExpectClosed(testkit.Timeout)
	testkit.WaitFor(t, "unregister of the first connection", 2*time.Second, func() bool { return e.reg.unregistered("dup", firstID) })
	// The old connection's close did not remove the new session, here or in register.
	if s, ok := e.reg.session("dup"); !ok || s.ConnID != secondID {
		t.Fatalf("register holds %+v, %v", s, ok)
	}
	if e.coord.hasStatus("dup", 1, push.EventOffline) {
		t.Fatal("offline event for a user who is online on a newer connection")
	}
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 1, App: 1, Payload: []byte("x")}, []push.Target{{UID: "dup"}}); n != 1 {
		t.Fatalf("push after kick: %d", n)
	}
	second.ExpectPush()
	if n, _ := e.room.Push(t.Context(), push.Message{ID: 2, App: 1, Payload: []byte("x")}, []push.Target{{UID: "dup", ConnID: firstID}}); n != 0 {
		t.Fatalf("push to the kicked connID: %d", n)
	}
	second.ExpectQuiet(0)
}

func TestKickAPI(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "k")
	ok, err := e.room.Kick(t.Context(), "nobody", 0, nil, push.KickAdmin, "")
	if ok || err != nil {
		t.Fatalf("Kick(nobody) = %v, %v", ok, err)
	}
	if ok, _ := e.room.Kick(t.Context(), "k", e.connID("k")+1, nil, push.KickAdmin, ""); ok {
		t.Fatal("Kick with a wrong connID found something")
	}
	if ok, err := e.room.Kick(t.Context(), "k", 0, nil, push.KickBanned, ""); !ok || err != nil {
		t.Fatalf("Kick = %v, %v", ok, err)
	}
	if k := c.ExpectKick(push.KickBanned); k.Reason != "banned" {
		t.Fatalf("reason %q", k.Reason)
	}
	c.ExpectClosed(testkit.Timeout)
	testkit.WaitFor(t, "offline after kick", 2*time.Second, func() bool { return e.coord.hasStatus("k", 1, push.EventOffline) })
}

func TestUnregisterOnClose(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "leaver")
	id := e.connID("leaver")
	c.Close()
	testkit.WaitFor(t, "unregister", 2*time.Second, func() bool { return e.reg.unregistered("leaver", id) })
	testkit.WaitFor(t, "offline", 2*time.Second, func() bool { return e.coord.hasStatus("leaver", 1, push.EventOffline) })
	testkit.WaitFor(t, "Online() 0", 2*time.Second, func() bool { return e.room.Online() == 0 })
	if e.room.idx.get("leaver", 0) != nil {
		t.Fatal("closed connection still indexed")
	}
}

func TestDrain(t *testing.T) {
	e := startEnv(t, envOpt{})
	a, _ := e.login(1, "d1")
	b, _ := e.login(1, "d2")
	testkit.Dial(t, e.room.Addr()) // not authenticated: not told
	if n := e.room.Drain(t.Context(), map[string][]string{"tcp": {"10.0.0.1:7000", "10.0.0.2:7000"}, "ws": {"ws://10.0.0.1:7001/v1/ws"}}, 3000); n != 2 {
		t.Fatalf("Drain told %d", n)
	}
	for _, c := range []*testkit.Conn{a, b} {
		f := c.ExpectNext(proto.OpRedirect)
		var rd proto.Redirect
		if err := json.Unmarshal(f.Body, &rd); err != nil {
			t.Fatal(err)
		}
		if f.Seq != 0 || len(rd.Addrs) != 2 || rd.Addrs[1] != "10.0.0.2:7000" || rd.AfterMS != 3000 || rd.Reason == "" {
			t.Fatalf("REDIRECT %+v seq %d", rd, f.Seq)
		}
		c.ExpectQuiet(0) // clients leave by themselves
	}
}

func TestSlowConsumerIsDropped(t *testing.T) {
	e := startEnv(t, envOpt{})
	slow, _ := e.login(1, "slow")
	fast, _ := e.login(1, "fast")
	before := counterValue(mCloses.WithLabelValues(closeSlow))
	payload := make([]byte, 60<<10)
	closed := func() bool { return e.room.idx.get("slow", 0) == nil }
	for i := 0; i < 2000 && !closed(); i++ { // ~120 MB at most; the kernel buffers a few MB
		if _, err := e.room.Push(t.Context(), push.Message{ID: uint64(i), App: 1, Payload: payload}, []push.Target{{UID: "slow"}}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // let the loop write
		}
	}
	testkit.WaitFor(t, "slow consumer closed", 5*time.Second, closed)
	if counterValue(mCloses.WithLabelValues(closeSlow)) != before+1 {
		t.Fatal("closed, but not as a slow consumer")
	}
	fast.ExpectQuiet(0)
	_ = slow
}
