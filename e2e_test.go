package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/system"
)

func TestE2EAuth(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	addr := sys.RoomAddr()

	t.Run("ok", func(t *testing.T) {
		r := testkit.Dial(t, addr)
		seq := r.Auth(1, "u-ok", testkit.Token(1, "u-ok"), 25)
		f := r.Expect(proto.OpAuthOK)
		var ok proto.AuthOK
		if err := json.Unmarshal(f.Body, &ok); err != nil {
			t.Fatal(err)
		}
		if f.Seq != seq || ok.HB != 25 || ok.Room == "" || ok.ServerTime == 0 {
			t.Fatalf("AUTH_OK seq=%d %+v", f.Seq, ok)
		}
		r.Send(proto.OpPing, 0, 0, nil)
		r.Expect(proto.OpPong)
	})

	expired := testkit.TokenUntil(1, "u1", time.Now().Add(-time.Hour))
	cases := []struct {
		name, uid, tok string
		app            uint32
	}{
		{"bad signature", "u1", testkit.Token(1, "u1")[:20] + "00000000000000000000000000000000000000000000000000000", 1},
		{"garbage", "u1", "not-a-token", 1},
		{"expired", "u1", expired, 1},
		{"other uid", "u1", testkit.Token(1, "someone-else"), 1},
		{"other app", "u1", testkit.Token(2, "u1"), 1},
		{"unknown app", "u1", testkit.Token(1, "u1"), 99},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testkit.Dial(t, addr)
			r.Auth(tc.app, tc.uid, tc.tok, 0)
			r.ExpectError(proto.ErrCodeBadToken)
			r.ExpectClosed(3 * time.Second)
		})
	}

	t.Run("non-auth first frame", func(t *testing.T) {
		r := testkit.Dial(t, addr)
		r.Send(proto.OpPing, 0, 0, nil)
		r.ExpectError(proto.ErrCodeAuthRequired)
		r.ExpectClosed(3 * time.Second)
	})

	t.Run("auth deadline", func(t *testing.T) {
		r := testkit.Dial(t, addr)
		start := time.Now()
		r.ExpectClosed(5 * time.Second)
		if el := time.Since(start); el < 500*time.Millisecond {
			t.Fatalf("closed after %s, before the 700ms deadline", el)
		}
	})

	t.Run("SDK", func(t *testing.T) {
		c := sdkClient(t, sys, 1, "u-sdk", nil)
		if c.Room() == "" || c.HB() <= 0 {
			t.Fatalf("room %q hb %s", c.Room(), c.HB())
		}
	})
}

func TestE2EHostileInputHarmsNoOne(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	good := testkit.Login(t, sys.RoomAddr(), 1, "bystander")

	huge := testkit.Dial(t, sys.RoomAddr())
	var b [16]byte
	binary.BigEndian.PutUint32(b[:], 2<<30) // 2 GiB
	b[4], b[5] = 1, proto.OpAuth
	huge.Write(b[:])
	huge.ExpectError(proto.ErrCodeFrameTooLarge)
	huge.ExpectClosed(3 * time.Second)

	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		g := testkit.Dial(t, sys.RoomAddr())
		junk := make([]byte, 1+rng.IntN(300))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		g.Write(junk)
		g.ExpectClosed(5 * time.Second)
	}

	// Garbage after a good AUTH closes only that session.
	bad := testkit.Login(t, sys.RoomAddr(), 1, "troublemaker")
	bad.Write([]byte{0, 0, 0, 12, 9, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}) // Ver 9
	bad.ExpectError(proto.ErrCodeBadFrame)
	bad.ExpectClosed(3 * time.Second)

	good.Send(proto.OpPing, 0, 0, nil)
	good.Expect(proto.OpPong)
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"bystander"}, "still here", 1)
	if _, p, _ := good.ExpectPush(); string(p) != "still here" {
		t.Fatalf("payload %q", p)
	}
}

func TestE2EIdleTimeout(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	r := testkit.Dial(t, sys.RoomAddr())
	r.Auth(1, "idle", testkit.Token(1, "idle"), 1) // hb 1 s: closed after 2 x 1 s + 0.5 s
	r.Expect(proto.OpAuthOK)
	start := time.Now()
	r.ExpectClosed(8 * time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("closed after %s, before 2 x hb + grace", el)
	}

	// A client that pings stays.
	p := testkit.Dial(t, sys.RoomAddr())
	p.Auth(1, "pinger", testkit.Token(1, "pinger"), 1)
	p.Expect(proto.OpAuthOK)
	for i := 0; i < 8; i++ {
		time.Sleep(500 * time.Millisecond) // the client's heartbeat interval, not a wait for state
		p.Send(proto.OpPing, 0, 0, nil)
		p.Expect(proto.OpPong)
	}
}

func TestE2EUnicastOnline(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	alice := testkit.Login(t, sys.RoomAddr(), 1, "alice")
	bob := testkit.Login(t, sys.RoomAddr(), 1, "bob")

	out := testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"alice"}, "hi alice", 1)
	if out["online"] != float64(1) || out["stored"] != float64(1) {
		t.Fatalf("push answer %v", out)
	}
	id, payload, f := alice.ExpectPush()
	if string(payload) != "hi alice" || f.App != 1 || f.Flags&proto.FlagAckRequired == 0 || f.Seq != 0 {
		t.Fatalf("push %q app=%d flags=%d seq=%d", payload, f.App, f.Flags, f.Seq)
	}
	if strconv.FormatUint(id, 10) != out["msg_id"] {
		t.Fatalf("msg id %d, API said %v", id, out["msg_id"])
	}
	// bob got nothing: a PING round trip shows his queue is empty.
	bob.Send(proto.OpPing, 0, 0, nil)
	if f := bob.Expect(proto.OpPong); f.Op != proto.OpPong {
		t.Fatal("bob got a push")
	}

	// QoS 0 with data, multicast.
	body := fmt.Sprintf(`{"uids":["alice","bob","carol"],"data":%q,"qos":0}`, base64.StdEncoding.EncodeToString([]byte{0, 1, 2}))
	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/push", testkit.Key1, body)
	if code != 200 || out["online"] != float64(2) || out["stored"] != float64(0) {
		t.Fatalf("multicast: %d %v", code, out)
	}
	for _, c := range []*testkit.Conn{alice, bob} {
		_, p, f := c.ExpectPush()
		if string(p) != "\x00\x01\x02" || f.Flags&proto.FlagAckRequired != 0 {
			t.Fatalf("qos0 push %q flags %d", p, f.Flags)
		}
	}
}

func TestE2EOfflineStoredInOrderUntilAck(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	var want []string
	for i := 0; i < 5; i++ {
		txt := fmt.Sprintf("m%d", i)
		want = append(want, txt)
		out := testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"olive"}, txt, 1)
		if out["online"] != float64(0) || out["stored"] != float64(1) {
			t.Fatalf("offline push answer %v", out)
		}
	}
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"olive"}, "qos0 is not stored", 0)

	receive := func() []uint64 {
		r := testkit.Login(t, sys.RoomAddr(), 1, "olive")
		var ids []uint64
		for i, w := range want {
			id, p, _ := r.ExpectPush()
			if string(p) != w {
				t.Fatalf("message %d: %q, want %q", i, p, w)
			}
			if len(ids) > 0 && id <= ids[len(ids)-1] {
				t.Fatalf("ids not ascending: %v then %d", ids, id)
			}
			ids = append(ids, id)
		}
		r.Close()
		return ids
	}
	first := receive()
	testkit.WaitFor(t, "olive offline", 5*time.Second, func() bool {
		_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/olive", testkit.Key1, "")
		return out["online"] == false
	})
	second := receive() // no ACK: everything again, same order
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("redelivery %v, want %v", second, first)
	}
	if n := pendingOf(t, sys); n != 5 {
		t.Fatalf("pending %v, want 5", n)
	}

	r := testkit.Login(t, sys.RoomAddr(), 1, "olive")
	for range want {
		r.ExpectPush()
	}
	r.Ack(first...)
	testkit.WaitFor(t, "ACK to empty the store", 5*time.Second, func() bool { return pendingOf(t, sys) == 0 })
	r.Close()

	testkit.WaitFor(t, "olive offline", 5*time.Second, func() bool {
		_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/olive", testkit.Key1, "")
		return out["online"] == false
	})
	again := testkit.Login(t, sys.RoomAddr(), 1, "olive")
	again.Send(proto.OpPing, 0, 0, nil)
	f, err := again.Next(3 * time.Second)
	if err != nil || f.Op != proto.OpPong {
		t.Fatalf("after ACK expected nothing but PONG, got op 0x%02x err %v", f.Op, err)
	}
}

func pendingOf(t *testing.T, sys *system.System) float64 {
	t.Helper()
	code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/stats", testkit.AdminKey, "")
	if code != 200 {
		t.Fatalf("stats: %d %v", code, out)
	}
	m, _ := out["messages"].(map[string]any)
	n, ok := m["pending"].(float64)
	if !ok {
		t.Fatalf("stats without messages.pending: %v", out)
	}
	return n
}

func TestE2ESecondLoginKicksFirst(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	first := testkit.Login(t, sys.RoomAddr(), 1, "dup")
	second := testkit.Login(t, sys.RoomAddr(), 1, "dup")
	f := first.Expect(proto.OpKick)
	var k proto.Kick
	if err := json.Unmarshal(f.Body, &k); err != nil || k.Code != 1 || k.Reason != "login_elsewhere" {
		t.Fatalf("KICK %q", f.Body)
	}
	first.ExpectClosed(3 * time.Second)

	// The kicked connection's close must not unregister the new session.
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"dup"}, "to the new one", 1)
	if _, p, _ := second.ExpectPush(); string(p) != "to the new one" {
		t.Fatalf("payload %q", p)
	}
	_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/dup", testkit.Key1, "")
	if out["online"] != true {
		t.Fatalf("user status %v", out)
	}

	// Admin kick through the API.
	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/users/dup/kick", testkit.Key1, `{"reason":"test"}`)
	if code != 200 || out["kicked"] != true {
		t.Fatalf("kick: %d %v", code, out)
	}
	f = second.Expect(proto.OpKick)
	if err := json.Unmarshal(f.Body, &k); err != nil || k.Code != 2 {
		t.Fatalf("KICK %q", f.Body)
	}
	second.ExpectClosed(3 * time.Second)
}

func TestE2EBindUnbindRouting(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{"binder"}, "stored for app 2", 1)

	r := testkit.Login(t, sys.RoomAddr(), 1, "binder")
	testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{"binder"}, "app 2 while unbound", 0) // dropped: QoS 0, app 2 not bound
	seq := r.Send(proto.OpBind, 2, 0, mustJSON(proto.Bind{Token: testkit.Token(2, "binder")}))
	if f := r.Expect(proto.OpBindOK); f.Seq != seq {
		t.Fatalf("BIND_OK seq %d, want %d", f.Seq, seq)
	}
	if _, p, f := r.ExpectPush(); string(p) != "stored for app 2" || f.App != 2 {
		t.Fatalf("after bind: %q app %d", p, f.App)
	}
	testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{"binder"}, "app 2 bound", 1)
	if _, p, _ := r.ExpectPush(); string(p) != "app 2 bound" {
		t.Fatalf("got %q", p)
	}
	_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/2/users/binder", testkit.Key2, "")
	if out["online"] != true {
		t.Fatalf("status after bind %v", out)
	}

	seq = r.Send(proto.OpUnbind, 2, 0, nil)
	if f := r.Expect(proto.OpUnbindOK); f.Seq != seq {
		t.Fatalf("UNBIND_OK seq %d", f.Seq)
	}
	out = testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{"binder"}, "after unbind", 1)
	if out["online"] != float64(0) {
		t.Fatalf("push after unbind counted online: %v", out)
	}
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"binder"}, "app 1 still bound", 1)
	if _, p, f := r.ExpectPush(); string(p) != "app 1 still bound" || f.App != 1 {
		t.Fatalf("got %q app %d", p, f.App)
	}

	// A BIND with a bad token is refused but keeps the session.
	r.Send(proto.OpBind, 2, 0, mustJSON(proto.Bind{Token: testkit.Token(2, "someone-else")}))
	r.ExpectError(proto.ErrCodeBadToken)
	r.Send(proto.OpPing, 0, 0, nil)
	r.Expect(proto.OpPong)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestE2EUpstreamCallbackSigned(t *testing.T) {
	cb := testkit.NewProduct(t, testkit.Secret3)
	sys := systest.Start(t, testkit.ConfigYAML(cb.URL()))

	r := testkit.Login(t, sys.RoomAddr(), 3, "upper")
	seq := r.Send(proto.OpUpstream, 3, proto.FlagReplyWanted, append([]byte{0, 7}, "hello product"...))
	if f := r.Expect(proto.OpUpstreamOK); f.Seq != seq {
		t.Fatalf("UPSTREAM_OK seq %d, want %d", f.Seq, seq)
	}
	testkit.WaitFor(t, "upstream callback", 5*time.Second, func() bool { return len(cb.Upstreams()) == 1 })
	if up := cb.Upstreams()[0]; up != (testkit.Upstream{App: 3, UID: "upper", Type: 7, Data: "hello product"}) {
		t.Fatalf("upstream %+v", up)
	}
	testkit.WaitFor(t, "online status event", 5*time.Second, func() bool { return cb.StatusCount("upper", "online") == 1 })
	r.Close()
	testkit.WaitFor(t, "offline status event", 5*time.Second, func() bool { return cb.StatusCount("upper", "offline") == 1 })
	cb.CheckSignatures()

	// Upstream to an app that is not bound.
	r2 := testkit.Login(t, sys.RoomAddr(), 1, "upper2")
	r2.Send(proto.OpUpstream, 3, 0, []byte{0, 1})
	r2.ExpectError(proto.ErrCodeNotBound)
}

func TestE2EBroadcast(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	var online []*testkit.Conn
	for i := 0; i < 30; i++ {
		online = append(online, testkit.Login(t, sys.RoomAddr(), 1, fmt.Sprintf("bc-%d", i)))
	}
	other := testkit.Login(t, sys.RoomAddr(), 2, "bc-other-app")

	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/broadcast", testkit.Key1, `{"text":"to everyone","ttl":600}`)
	if code != 202 || out["job_id"] == nil || out["msg_id"] == nil {
		t.Fatalf("broadcast: %d %v", code, out)
	}
	for _, r := range online {
		if _, p, _ := r.ExpectPush(); string(p) != "to everyone" {
			t.Fatalf("got %q", p)
		}
	}
	jobPath := fmt.Sprintf("/v1/jobs/%v", out["job_id"])
	testkit.WaitFor(t, "job done", 5*time.Second, func() bool {
		_, j, _ := testkit.API(t, sys.CenterAddr(), "GET", jobPath, testkit.Key1, "")
		return j["state"] == "done"
	})
	_, job, _ := testkit.API(t, sys.CenterAddr(), "GET", jobPath, testkit.Key1, "")
	if job["targets"] != float64(30) || job["pushed"] != float64(30) {
		t.Fatalf("job %v", job)
	}
	other.Send(proto.OpPing, 0, 0, nil)
	other.Expect(proto.OpPong) // nothing for app 2

	// Offline user logs in later and gets it once; after ACK, never again.
	late := testkit.Login(t, sys.RoomAddr(), 1, "bc-late")
	id, p, _ := late.ExpectPush()
	if string(p) != "to everyone" || strconv.FormatUint(id, 10) != out["msg_id"] {
		t.Fatalf("late user got %q id %d", p, id)
	}
	late.Ack(id)
	late.Close()
	// The ACK is applied asynchronously: log in until the broadcast is no
	// longer delivered (a lost ACK times out here).
	testkit.WaitFor(t, "broadcast gone after ACK", 10*time.Second, func() bool {
		testkit.WaitFor(t, "bc-late offline", 5*time.Second, func() bool {
			_, o, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/bc-late", testkit.Key1, "")
			return o["online"] == false
		})
		again := testkit.Login(t, sys.RoomAddr(), 1, "bc-late")
		defer again.Close()
		again.Send(proto.OpPing, 0, 0, nil)
		f, err := again.Next(3 * time.Second)
		if err != nil {
			t.Fatalf("after ACK: %v", err)
		}
		return f.Op == proto.OpPong
	})
}

func TestE2EAPIKeysAndValidation(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	cases := []struct {
		name, method, path, key, body string
		code                          int
		errCode                       string
	}{
		{"no key", "POST", "/v1/apps/1/push", "", `{"uids":["a"],"text":"x"}`, 401, "unauthorized"},
		{"unknown key", "POST", "/v1/apps/1/push", "nope", `{"uids":["a"],"text":"x"}`, 401, "unauthorized"},
		{"key of app 2 on app 1", "POST", "/v1/apps/1/push", testkit.Key2, `{"uids":["a"],"text":"x"}`, 403, "forbidden"},
		{"key of app 1 on app 2 user", "GET", "/v1/apps/2/users/a", testkit.Key1, "", 403, "forbidden"},
		{"key of app 1 kicks app 2", "POST", "/v1/apps/2/users/a/kick", testkit.Key1, `{}`, 403, "forbidden"},
		{"app key on stats", "GET", "/v1/stats", testkit.Key1, "", 403, "forbidden"},
		{"unknown field", "POST", "/v1/apps/1/push", testkit.Key1, `{"uids":["a"],"text":"x","qso":1}`, 400, "bad_request"},
		{"unknown field in token", "POST", "/v1/apps/1/tokens", testkit.Key1, `{"uid":"a","ttl":60,"extra":1}`, 400, "bad_request"},
		{"text and data", "POST", "/v1/apps/1/push", testkit.Key1, `{"uids":["a"],"text":"x","data":"eA=="}`, 400, "bad_request"},
		{"no uids", "POST", "/v1/apps/1/push", testkit.Key1, `{"uids":[],"text":"x"}`, 400, "bad_request"},
		{"too large", "POST", "/v1/apps/1/push", testkit.Key1, fmt.Sprintf(`{"uids":["a"],"text":%q}`, strings.Repeat("x", 5000)), 413, "too_large"},
		{"admin key works", "POST", "/v1/apps/2/push", testkit.AdminKey, `{"uids":["a"],"text":"x"}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _ := testkit.API(t, sys.CenterAddr(), tc.method, tc.path, tc.key, tc.body)
			if code != tc.code || testkit.ErrCode(out) != tc.errCode {
				t.Fatalf("%d %v, want %d %s", code, out, tc.code, tc.errCode)
			}
		})
	}

	// A token from the API is accepted by the room.
	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/2/tokens", testkit.Key2, `{"uid":"tok-user","ttl":60}`)
	if code != 200 {
		t.Fatalf("tokens: %d %v", code, out)
	}
	r := testkit.Dial(t, sys.RoomAddr())
	r.Auth(2, "tok-user", out["token"].(string), 0)
	r.Expect(proto.OpAuthOK)
}

// Done-when 3: a restart of the process loses no stored QoS 1 message.
func TestE2ERestartKeepsStoredMessages(t *testing.T) {
	dir := t.TempDir()
	sys := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir))
	for i := 0; i < 3; i++ {
		testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"sleeper"}, fmt.Sprintf("kept-%d", i), 1)
	}
	// One is delivered and ACKed before the restart: it must stay gone.
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"acker"}, "acked", 1)
	a := testkit.Login(t, sys.RoomAddr(), 1, "acker")
	id, _, _ := a.ExpectPush()
	a.Ack(id)
	testkit.WaitFor(t, "ack stored", 5*time.Second, func() bool { return pendingOf(t, sys) == 3 })
	systest.Stop(t, sys)

	sys2 := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir))
	r := testkit.Login(t, sys2.RoomAddr(), 1, "sleeper")
	for i := 0; i < 3; i++ {
		if _, p, _ := r.ExpectPush(); string(p) != fmt.Sprintf("kept-%d", i) {
			t.Fatalf("after restart got %q", p)
		}
	}
	a2 := testkit.Login(t, sys2.RoomAddr(), 1, "acker")
	a2.Send(proto.OpPing, 0, 0, nil)
	if f, err := a2.Next(3 * time.Second); err != nil || f.Op != proto.OpPong {
		t.Fatalf("ACKed message came back after restart: op 0x%02x err %v", f.Op, err)
	}
}

// Issue 4: a client that never ACKs stops getting a message after it was
// loaded max_loads times (default 5); the user's status and the stats show it.
func TestE2ENeverAckingClientIsParked(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"sloth"}, "ack me", 1)
	loads := 0
	for i := 0; i < 7; i++ {
		r := testkit.Login(t, sys.RoomAddr(), 1, "sloth")
		r.Send(proto.OpPing, 0, 0, nil)
		f := r.ExpectNext(proto.OpPush, proto.OpPong)
		if f.Op == proto.OpPush {
			loads++
			r.Expect(proto.OpPong)
		}
		r.Close()
		testkit.WaitFor(t, "sloth offline", 5*time.Second, func() bool {
			_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/sloth", testkit.Key1, "")
			return out["online"] == false
		})
	}
	if loads != 5 {
		t.Fatalf("delivered %d times, want 5 (then parked)", loads)
	}
	_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/sloth", testkit.Key1, "")
	if out["parked"] != float64(1) || out["pending"] != float64(1) {
		t.Fatalf("user status %v, want pending 1 parked 1", out)
	}
	_, st, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/stats", testkit.AdminKey, "")
	if m, _ := st["messages"].(map[string]any); m["parked"] != float64(1) {
		t.Fatalf("stats %v, want messages.parked 1", st)
	}
}
