package sdk

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

func TestNewValidates(t *testing.T) {
	good := testConfig("127.0.0.1:1")
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"good", func(*Config) {}, true},
		{"token func instead of token", func(c *Config) { c.Token = ""; c.TokenFunc = func(context.Context) (string, error) { return "t", nil } }, true},
		{"dispatch only", func(c *Config) { c.Addrs = nil; c.DispatchURL = "http://127.0.0.1:1" }, true},
		{"no uid", func(c *Config) { c.UID = "" }, false},
		{"no token", func(c *Config) { c.Token = "" }, false},
		{"no address", func(c *Config) { c.Addrs = nil }, false},
		{"bad dispatch url", func(c *Config) { c.DispatchURL = "ftp://x" }, false},
		{"dispatch url without host", func(c *Config) { c.DispatchURL = "http://" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.ok != (err == nil) {
				t.Fatalf("New err %v; want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v does not wrap ErrConfig", err)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

func TestConnectAuth(t *testing.T) {
	srv := newFakeServer(t)
	srv.configure(func(s *fakeServer) { s.hb = 45 })
	cfg := testConfig(srv.addr())
	cfg.Heartbeat = 20 * time.Second
	cfg.SDKName = "test-sdk"
	var st states
	cfg.OnState = st.add
	c := newClient(t, cfg)
	if c.HB() != 20*time.Second {
		t.Fatalf("HB before connect %v", c.HB())
	}
	connect(t, c)
	fc := srv.accept(t)
	want := proto.Auth{UID: "u1", Token: "tok", Device: "dev", Net: "wifi", HB: 20, SDK: "test-sdk"}
	if fc.auth != want || fc.app != 7 {
		t.Fatalf("AUTH %+v app %d; want %+v app 7", fc.auth, fc.app, want)
	}
	if c.HB() != 45*time.Second || c.Room() != "room-test" || c.State() != StateConnected {
		t.Fatalf("HB %v Room %q State %v", c.HB(), c.Room(), c.State())
	}
	if err := c.Connect(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Connect: %v; want ErrStarted", err)
	}
	testkit.WaitFor(t, "connected state", waitTimeout, func() bool { return st.has(StateConnected) })
	_ = c.Close()
	testkit.WaitFor(t, "closed state", waitTimeout, func() bool { return st.has(StateClosed) })
	if got := st.list(); !slices.Equal(got, []State{StateConnecting, StateConnected, StateClosed}) {
		t.Fatalf("states %v", got)
	}
}

func TestConnectBadToken(t *testing.T) {
	srv := newFakeServer(t)
	srv.setAuth(func(a proto.Auth, h proto.Header) []byte {
		return proto.AppendError(nil, h.Seq, proto.ErrCodeBadToken, "expired")
	})
	second := newFakeServer(t) // must not be tried: the token is the same everywhere
	c := newClient(t, testConfig(srv.addr(), second.addr()))
	err := c.Connect(context.Background())
	pe := protoErr(err)
	if pe == nil || pe.Code != proto.ErrCodeBadToken || pe.Message != "expired" {
		t.Fatalf("Connect err %v; want *proto.Error bad_token", err)
	}
	if second.auths.Load() != 0 {
		t.Fatal("bad token retried on another address")
	}
	time.Sleep(50 * time.Millisecond) // several backoff periods: nothing may reconnect
	if n := srv.auths.Load(); n != 1 {
		t.Fatalf("%d AUTHs after a failed Connect; want 1", n)
	}
	if c.State() != StateDisconnected {
		t.Fatalf("state %v", c.State())
	}
}

func TestConnectCanceled(t *testing.T) {
	// A listener that accepts but never answers: Connect must honour ctx.
	srv := newFakeServer(t)
	block := make(chan struct{})
	srv.setAuth(func(proto.Auth, proto.Header) []byte { <-block; return nil })
	defer close(block)
	c := newClient(t, testConfig(srv.addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect err %v; want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Connect took %v after its deadline", d)
	}
}

func TestMessagesOnMessageAndAutoAck(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	var mu sync.Mutex
	var got []Message
	cfg.OnMessage = func(m Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendPush(nil, 7, true, 101, []byte("a")))
	fc.send(proto.AppendPush(nil, 7, false, 102, []byte("b")))
	fc.send(proto.AppendPush(nil, 8, true, 103, nil))
	testkit.WaitFor(t, "3 messages", waitTimeout, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	mu.Lock()
	want := []Message{{101, 7, true, []byte("a")}, {102, 7, false, []byte("b")}, {103, 8, true, nil}}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].App != want[i].App || got[i].QoS1 != want[i].QoS1 || string(got[i].Payload) != string(want[i].Payload) {
			t.Fatalf("message %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	mu.Unlock()
	testkit.WaitFor(t, "ACK of 101 and 103", waitTimeout, func() bool { return len(fc.acked(t)) >= 2 })
	if ids := fc.acked(t); !slices.Equal(ids, []uint64{101, 103}) {
		t.Fatalf("acked %v; want [101 103] (QoS 0 is not acked)", ids)
	}
}

func TestMessagesChannel(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	for i := uint64(1); i <= 5; i++ {
		fc.send(proto.AppendPush(nil, 7, true, i, []byte{byte(i)}))
	}
	for i := uint64(1); i <= 5; i++ {
		select {
		case m := <-c.Messages():
			if m.ID != i || m.Payload[0] != byte(i) {
				t.Fatalf("message %+v; want id %d", m, i)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("message %d not delivered", i)
		}
	}
	testkit.WaitFor(t, "5 acks", waitTimeout, func() bool { return len(fc.acked(t)) == 5 })
	_ = c.Close()
	select {
	case _, ok := <-c.Messages():
		if ok {
			t.Fatal("message after Close")
		}
	case <-time.After(waitTimeout):
		t.Fatal("Messages() not closed by Close")
	}
}

func TestAckBatching(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.OnMessage = func(Message) {}
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	var burst []byte
	const n = 300
	for i := uint64(1); i <= n; i++ {
		burst = proto.AppendPush(burst, 7, true, i, []byte("x"))
	}
	fc.send(burst)
	testkit.WaitFor(t, "all acks", waitTimeout, func() bool { return len(fc.acked(t)) == n })
	ids := fc.acked(t) // also checks each frame holds 1..64 ids
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("ack %d = %d", i, id)
		}
	}
	if frames := fc.count(proto.OpAck); frames < n/ackBatch || frames > n/2 {
		t.Fatalf("%d ACK frames for %d ids: not batched", frames, n)
	}
}

func TestDedup(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	var delivered atomic.Int32
	cfg.OnMessage = func(Message) { delivered.Add(1) }
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendPush(nil, 7, true, 5, []byte("once")))
	testkit.WaitFor(t, "first ack", waitTimeout, func() bool { return len(fc.acked(t)) == 1 })
	// A redelivery of an acked message is not shown again but ACKed again,
	// so the server can delete it.
	fc.send(proto.AppendPush(nil, 7, true, 5, []byte("once")))
	fc.send(proto.AppendPush(nil, 7, true, 6, []byte("new")))
	testkit.WaitFor(t, "second delivery", waitTimeout, func() bool { return delivered.Load() == 2 })
	testkit.WaitFor(t, "acks", waitTimeout, func() bool { return len(fc.acked(t)) == 3 })
	ids := fc.acked(t)
	slices.Sort(ids)
	if !slices.Equal(ids, []uint64{5, 5, 6}) {
		t.Fatalf("acked %v; want 5 twice and 6", ids)
	}
	if delivered.Load() != 2 {
		t.Fatalf("delivered %d; want 2", delivered.Load())
	}
}

func TestManualAck(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.ManualAck = true
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendPush(nil, 7, true, 11, nil))
	fc.send(proto.AppendPush(nil, 7, true, 12, nil))
	for range 2 {
		select {
		case <-c.Messages():
		case <-time.After(waitTimeout):
			t.Fatal("no message")
		}
	}
	time.Sleep(5 * ackDelay)
	if n := fc.count(proto.OpAck); n != 0 {
		t.Fatalf("%d ACK frames with ManualAck", n)
	}
	// A duplicate of a message not acked yet is not acked for the user either.
	fc.send(proto.AppendPush(nil, 7, true, 11, nil))
	time.Sleep(5 * ackDelay)
	if n := fc.count(proto.OpAck); n != 0 {
		t.Fatalf("duplicate of an unacked message was acked")
	}
	if err := c.Ack(12, 11); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "manual acks", waitTimeout, func() bool { return len(fc.acked(t)) == 2 })
	if ids := fc.acked(t); !slices.Equal(ids, []uint64{12, 11}) {
		t.Fatalf("acked %v", ids)
	}
	_ = c.Close()
	if err := c.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
}

func TestAcksQueuedWhileDisconnectedAreSentAfterReconnect(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.ManualAck = true
	cfg.BackoffMin, cfg.BackoffMax = 200*time.Millisecond, 200*time.Millisecond
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.Close()
	testkit.WaitFor(t, "disconnect", waitTimeout, func() bool { return c.State() != StateConnected })
	if err := c.Ack(77); err != nil {
		t.Fatal(err)
	}
	fc2 := srv.accept(t)
	testkit.WaitFor(t, "ack on the new connection", waitTimeout, func() bool { return slices.Equal(fc2.acked(t), []uint64{77}) })
}

func TestReconnectAfterServerCloses(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	var st states
	cfg.OnState = st.add
	var tokens atomic.Int32
	cfg.Token = ""
	cfg.TokenFunc = func(context.Context) (string, error) {
		return "tok-" + string(rune('0'+tokens.Add(1))), nil
	}
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	if fc.auth.Token != "tok-1" {
		t.Fatalf("first token %q", fc.auth.Token)
	}
	for i := 2; i <= 3; i++ {
		fc.Close()
		fc = srv.accept(t)
		if want := "tok-" + string(rune('0'+i)); fc.auth.Token != want {
			t.Fatalf("AUTH %d used token %q; want %q (TokenFunc per connect)", i, fc.auth.Token, want)
		}
	}
	testkit.WaitFor(t, "connected", waitTimeout, func() bool { return c.State() == StateConnected })
	// Messages still flow on the new connection.
	fc.send(proto.AppendPush(nil, 7, true, 900, nil))
	select {
	case m := <-c.Messages():
		if m.ID != 900 {
			t.Fatalf("got %d", m.ID)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no message after reconnect")
	}
	testkit.WaitFor(t, "states", waitTimeout, func() bool { return len(st.list()) >= 7 })
	want := []State{StateConnecting, StateConnected, StateDisconnected, StateConnecting, StateConnected, StateDisconnected, StateConnecting, StateConnected}
	if got := st.list(); !slices.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]) {
		t.Fatalf("states %v; want prefix of %v", got, want)
	}
}

func TestReconnectBacksOff(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	c := newClient(t, cfg)
	connect(t, c)
	srv.accept(t)
	// From now on every AUTH is refused with a retryable error.
	const retries = 12
	var times []time.Time
	var mu sync.Mutex
	srv.setAuth(func(proto.Auth, proto.Header) []byte {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return proto.AppendError(nil, 0, proto.ErrCodeOverloaded, "busy")
	})
	srv.mu.Lock()
	first := srv.all[0]
	srv.mu.Unlock()
	first.Close()
	testkit.WaitFor(t, "retries", waitTimeout, func() bool { mu.Lock(); defer mu.Unlock(); return len(times) >= retries })
	_ = c.Close()
	mu.Lock()
	defer mu.Unlock()
	total := times[retries-1].Sub(times[0])
	// Eleven gaps with full jitter under ceilings of 50, 100, then 200 ms:
	// about 1 s expected, and below 250 ms with a chance under 1e-6. Without
	// the backoff a local reconnect takes a millisecond or two. Above: at
	// most 11 x 200 ms plus work.
	if total < 250*time.Millisecond {
		t.Fatalf("%d retries in %v: no backoff", retries, total)
	}
	if total > 5*time.Second {
		t.Fatalf("retries too slow: %v", total)
	}
	if c.Err() != nil {
		t.Fatalf("retryable errors stopped the client: %v", c.Err())
	}
}

func TestBackoffBounds(t *testing.T) {
	lo, hi := 10*time.Millisecond, 100*time.Millisecond
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{{0, 10 * time.Millisecond}, {1, 20 * time.Millisecond}, {3, 80 * time.Millisecond}, {4, hi}, {60, hi}, {1 << 30, hi}}
	for _, tt := range tests {
		var maxSeen time.Duration
		for range 2000 {
			d := backoff(lo, hi, tt.attempt)
			if d < 0 || d > tt.ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", tt.attempt, d, tt.ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < tt.ceil/2 {
			t.Fatalf("attempt %d: jitter never above %v of %v", tt.attempt, maxSeen, tt.ceil)
		}
	}
}

func TestKickTerminalStopsReconnect(t *testing.T) {
	tests := []struct {
		code      int
		terminal  bool
		reason    string
		wantReasn string
	}{
		{1, true, "login_elsewhere", "login_elsewhere"},
		{2, true, "", "admin"},
		{3, true, "banned", "banned"},
		{4, false, "server_shutdown", "server_shutdown"},
		{9, false, "whatever", "whatever"},
	}
	for _, tt := range tests {
		t.Run(proto.KickReason(tt.code), func(t *testing.T) {
			srv := newFakeServer(t)
			cfg := testConfig(srv.addr())
			type kick struct {
				code   int
				reason string
			}
			kicks := make(chan kick, 4)
			cfg.OnKick = func(code int, reason string) { kicks <- kick{code, reason} }
			c := newClient(t, cfg)
			connect(t, c)
			fc := srv.accept(t)
			fc.send(proto.AppendJSON(nil, proto.Header{Op: proto.OpKick}, proto.Kick{Code: tt.code, Reason: tt.reason}))
			select {
			case k := <-kicks:
				if k.code != tt.code || k.reason != tt.wantReasn {
					t.Fatalf("OnKick(%d, %q); want (%d, %q)", k.code, k.reason, tt.code, tt.wantReasn)
				}
			case <-time.After(waitTimeout):
				t.Fatal("OnKick not called")
			}
			if !tt.terminal {
				srv.accept(t)
				return
			}
			select {
			case <-c.Done():
			case <-time.After(waitTimeout):
				t.Fatal("Done not closed after a terminal kick")
			}
			var ke *KickError
			if err := c.Err(); !errors.Is(err, ErrKicked) || !errors.As(err, &ke) || ke.Code != tt.code {
				t.Fatalf("Err() = %v", err)
			}
			srv.noConn(t, 100*time.Millisecond) // 20 backoff periods
			if err := c.Connect(context.Background()); !errors.Is(err, ErrKicked) {
				t.Fatalf("Connect after terminal kick: %v", err)
			}
		})
	}
}

func TestNoReconnect(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.NoReconnect = true
	c := newClient(t, cfg)
	connect(t, c)
	srv.accept(t).Close()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("Done not closed")
	}
	srv.noConn(t, 50*time.Millisecond)
	if c.Err() == nil {
		t.Fatal("Err() nil")
	}
}

func TestRedirect(t *testing.T) {
	a := newFakeServer(t)
	b := newFakeServer(t)
	b.configure(func(s *fakeServer) { s.room = "room-b" })
	c := newClient(t, testConfig(a.addr()))
	connect(t, c)
	fa := a.accept(t)
	start := time.Now()
	fa.send(proto.AppendJSON(nil, proto.Header{Op: proto.OpRedirect}, proto.Redirect{Addrs: []string{b.addr()}, AfterMS: 60, Reason: "drain"}))
	b.accept(t)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("redirect took %v; after_ms was 60", d)
	}
	testkit.WaitFor(t, "room-b", waitTimeout, func() bool { return c.Room() == "room-b" })
	a.noConn(t, 30*time.Millisecond)
}

func TestRedirectDuringAuth(t *testing.T) {
	a := newFakeServer(t)
	b := newFakeServer(t)
	a.setAuth(func(proto.Auth, proto.Header) []byte {
		return proto.AppendJSON(nil, proto.Header{Op: proto.OpRedirect}, proto.Redirect{Addrs: []string{b.addr()}, AfterMS: 10})
	})
	c := newClient(t, testConfig(a.addr()))
	connect(t, c)
	b.accept(t)
}

func TestAddressFallback(t *testing.T) {
	refused := closedAddr(t)
	overloaded := newFakeServer(t)
	overloaded.setAuth(func(_ proto.Auth, h proto.Header) []byte {
		return proto.AppendError(nil, h.Seq, proto.ErrCodeOverloaded, "full")
	})
	good := newFakeServer(t)
	c := newClient(t, testConfig(refused, overloaded.addr(), good.addr()))
	connect(t, c)
	good.accept(t)
	if got := c.failedList(); !slices.Equal(got, []string{refused, overloaded.addr()}) {
		t.Fatalf("failed list %v", got)
	}
	// On reconnect the failed addresses go last.
	if got := c.candidates(context.Background(), nil, 0); !slices.Equal(got, []string{good.addr(), refused, overloaded.addr()}) {
		t.Fatalf("candidates %v", got)
	}
}

func TestAllAddressesFail(t *testing.T) {
	c := newClient(t, testConfig(closedAddr(t), closedAddr(t)))
	err := c.Connect(context.Background())
	if err == nil || protoErr(err) != nil {
		t.Fatalf("Connect err %v", err)
	}
	// Connect may be retried after a failure.
	if err := c.Connect(context.Background()); err == nil || errors.Is(err, ErrStarted) {
		t.Fatalf("second Connect err %v", err)
	}
}
