package sdk

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// dispatcher is a fake dispatcher recording its queries.
type dispatcher struct {
	mu      sync.Mutex
	queries []url.Values
	addrs   []string
	ttl     int
	status  int
}

func (d *dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Method != http.MethodGet || r.URL.Path != "/v1/dispatch" {
		http.NotFound(w, r)
		return
	}
	d.queries = append(d.queries, r.URL.Query())
	if d.status != 0 {
		w.WriteHeader(d.status)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"addrs": d.addrs, "ttl": d.ttl})
}

func (d *dispatcher) calls() []url.Values {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]url.Values(nil), d.queries...)
}

func TestDispatch(t *testing.T) {
	bad := closedAddr(t)
	srv := newFakeServer(t)
	d := &dispatcher{addrs: []string{bad, srv.addr()}, ttl: 60}
	hs := httptest.NewServer(d)
	defer hs.Close()
	cfg := testConfig()
	cfg.DispatchURL = hs.URL + "/"
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)

	q := d.calls()
	if len(q) != 1 {
		t.Fatalf("%d dispatch calls", len(q))
	}
	want := url.Values{"uid": {"u1"}, "app": {"7"}, "net": {"wifi"}, "retry": {"0"}}
	for k, v := range want {
		if q[0].Get(k) != v[0] {
			t.Fatalf("query %s = %q; want %q (%v)", k, q[0].Get(k), v[0], q[0])
		}
	}
	if q[0].Has("failed") {
		t.Fatalf("first call lists failed addresses: %v", q[0])
	}

	// After a loss the next dispatch call names the address that refused us.
	fc.Close()
	srv.accept(t)
	q = d.calls()
	if len(q) != 2 || q[1].Get("failed") != bad {
		t.Fatalf("second dispatch call %v; want failed=%s", q[len(q)-1], bad)
	}
}

func TestDispatchCacheAndFallback(t *testing.T) {
	srv := newFakeServer(t)
	d := &dispatcher{addrs: []string{srv.addr()}, ttl: 60}
	hs := httptest.NewServer(d)
	defer hs.Close()
	cfg := testConfig()
	cfg.DispatchURL = hs.URL
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.Close()
	srv.accept(t)
	if n := len(d.calls()); n != 1 {
		t.Fatalf("%d dispatch calls; a flash reconnect should use the cached list", n)
	}

	// A dispatcher that fails leaves the static addresses.
	static := newFakeServer(t)
	d2 := &dispatcher{status: http.StatusServiceUnavailable}
	hs2 := httptest.NewServer(d2)
	defer hs2.Close()
	cfg = testConfig(static.addr())
	cfg.DispatchURL = hs2.URL
	c2 := newClient(t, cfg)
	connect(t, c2)
	static.accept(t)
	if len(d2.calls()) != 1 {
		t.Fatal("dispatcher not asked")
	}
	// No dispatcher and no address: a clear error.
	cfg = testConfig()
	cfg.DispatchURL = hs2.URL
	c3 := newClient(t, cfg)
	if err := c3.Connect(context.Background()); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Connect err %v; want ErrNoAddress", err)
	}
}

func TestHeartbeat(t *testing.T) {
	srv := newFakeServer(t)
	srv.configure(func(s *fakeServer) { s.hb = 1 })
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	if c.HB() != time.Second {
		t.Fatalf("HB %v", c.HB())
	}
	fc := srv.accept(t)
	testkit.WaitFor(t, "two PINGs", waitTimeout, func() bool { return fc.pings.Load() >= 2 })
	if srv.auths.Load() != 1 {
		t.Fatal("reconnected while the server answered PINGs")
	}
}

func TestDeadServerDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 2.5 heartbeats")
	}
	srv := newFakeServer(t)
	srv.configure(func(s *fakeServer) { s.hb = 1 })
	srv.noPong.Store(true) // the server reads PINGs but never answers: a half-dead path
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	srv.accept(t)
	start := time.Now()
	srv.accept(t)
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("reconnected after %v, before the read timeout", d)
	}
}

func goroutinesOf(sub string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, sub) {
			n++
		}
	}
	return n
}

func TestCloseStopsAllGoroutines(t *testing.T) {
	srv := newFakeServer(t)
	srv.configure(func(s *fakeServer) { s.hb = 1 })
	before := runtime.NumGoroutine()
	for _, onMessage := range []func(Message){nil, func(Message) {}} {
		cfg := testConfig(srv.addr())
		cfg.OnMessage = onMessage
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		connect(t, c)
		fc := srv.accept(t)
		fc.send(proto.AppendPush(nil, 7, true, 1, nil))
		if onMessage == nil {
			<-c.Messages()
		}
		testkit.WaitFor(t, "ack", waitTimeout, func() bool { return len(fc.acked(t)) == 1 })
		if goroutinesOf("sdk.(*Client)") < 4 {
			t.Fatalf("expected reader, heartbeat, flusher and callback goroutines")
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		// Close waited for every goroutine; poll only for the instant
		// between a goroutine's WaitGroup.Done and its exit.
		testkit.WaitFor(t, "client goroutines gone", waitTimeout, func() bool { return goroutinesOf("sdk.(*Client)") == 0 })
		if err := c.Connect(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Connect after Close: %v", err)
		}
	}
	testkit.WaitFor(t, "goroutine count back to the baseline", waitTimeout, func() bool { return runtime.NumGoroutine() <= before })
}

func TestCloseWhileReconnecting(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour
	c := newClient(t, cfg)
	connect(t, c)
	srv.accept(t).Close()
	testkit.WaitFor(t, "disconnected", waitTimeout, func() bool { return c.State() == StateDisconnected })
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close blocked by the backoff sleep")
	}
	srv.close()
	testkit.WaitFor(t, "goroutines gone", waitTimeout, func() bool { return runtime.NumGoroutine() <= before })
}

func TestCloseBeforeConnect(t *testing.T) {
	var st states
	cfg := testConfig("127.0.0.1:1")
	cfg.OnState = st.add
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages open after Close")
	}
	if got := st.list(); len(got) != 1 || got[0] != StateClosed {
		t.Fatalf("states %v", got)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after Close")
	}
}

func TestCloseFromCallbacks(t *testing.T) {
	tests := []struct {
		name string
		set  func(cfg *Config, c **Client, done chan<- error)
		act  func(fc *fakeConn)
	}{
		{"OnMessage", func(cfg *Config, c **Client, done chan<- error) {
			cfg.OnMessage = func(Message) { done <- (*c).Close() }
		}, func(fc *fakeConn) { fc.send(proto.AppendPush(nil, 7, true, 1, nil)) }},
		{"OnKick", func(cfg *Config, c **Client, done chan<- error) {
			cfg.OnKick = func(int, string) { done <- (*c).Close() }
		}, func(fc *fakeConn) {
			fc.send(proto.AppendJSON(nil, proto.Header{Op: proto.OpKick}, proto.Kick{Code: 1}))
		}},
		{"OnState", func(cfg *Config, c **Client, done chan<- error) {
			cfg.OnState = func(s State) {
				if s == StateDisconnected {
					done <- (*c).Close()
				}
			}
		}, func(fc *fakeConn) { fc.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			cfg := testConfig(srv.addr())
			var c *Client
			done := make(chan error, 1)
			tt.set(&cfg, &c, done)
			var err error
			if c, err = New(cfg); err != nil {
				t.Fatal(err)
			}
			connect(t, c)
			tt.act(srv.accept(t))
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Close from a callback deadlocked")
			}
			testkit.WaitFor(t, "client goroutines gone", waitTimeout, func() bool { return goroutinesOf("sdk.(*Client)") == 0 })
		})
	}
}

func TestSlowHandlerBoundsMemory(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	release := make(chan struct{})
	var once sync.Once
	cfg.OnMessage = func(Message) { once.Do(func() { <-release }) }
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	var burst []byte
	for i := uint64(1); i <= 3*eventQueue; i++ {
		burst = proto.AppendPush(burst, 7, true, i, []byte("x"))
	}
	go fc.send(burst) // may block in the kernel: the client stops reading
	testkit.WaitFor(t, "queue full", waitTimeout, func() bool { return len(c.events) == eventQueue })
	time.Sleep(20 * time.Millisecond)
	if n := len(c.events); n != eventQueue {
		t.Fatalf("queue %d beyond its bound %d", n, eventQueue)
	}
	close(release)
	testkit.WaitFor(t, "every message acked", waitTimeout, func() bool { return len(fc.acked(t)) == 3*eventQueue })
}

func TestDedupRing(t *testing.T) {
	d := newDedup(3)
	steps := []struct {
		id    uint64
		fresh bool
	}{{1, true}, {2, true}, {1, false}, {3, true}, {4, true}, {2, false}, {1, true}, {3, false}}
	for i, s := range steps {
		if fresh, _ := d.add(s.id); fresh != s.fresh {
			t.Fatalf("step %d: add(%d) fresh=%v; want %v", i, s.id, fresh, s.fresh)
		}
	}
	if len(d.seen) != 3 {
		t.Fatalf("set holds %d ids; want 3", len(d.seen))
	}
	d.markAcked([]uint64{3, 99})
	if _, acked := d.add(3); !acked {
		t.Fatal("3 not marked acked")
	}
	if _, ok := d.seen[99]; ok {
		t.Fatal("markAcked inserted an unknown id")
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateConnecting: "connecting", StateConnected: "connected", StateDisconnected: "disconnected", StateClosed: "closed", 0: "state(0)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q", s, s.String())
		}
	}
}

func TestKickErrorTerminal(t *testing.T) {
	for code, terminal := range map[int]bool{0: false, 1: true, 2: true, 3: true, 4: false} {
		e := &KickError{Code: code}
		if e.Terminal() != terminal || !errors.Is(e, ErrKicked) {
			t.Errorf("code %d: Terminal %v Is %v", code, e.Terminal(), errors.Is(e, ErrKicked))
		}
	}
}

// BenchmarkReceive measures the reader's work per pushed message: parse,
// dedup, payload copy and queueing for the callback goroutine.
func BenchmarkReceive(b *testing.B) {
	c, err := New(Config{Addrs: []string{"127.0.0.1:1"}, UID: "u", Token: "t", OnMessage: func(Message) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-c.events:
			case <-done:
				return
			}
		}
	}()
	frame := proto.AppendPush(nil, 7, true, 0, make([]byte, 256))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for i := uint64(1); b.Loop(); i++ {
		binary.BigEndian.PutUint64(frame[proto.HeaderSize:], i) // a fresh id each time
		f, _, err := proto.Parse(frame, proto.DefaultMaxLen)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.onPush(f); err != nil {
			b.Fatal(err)
		}
	}
}
