package coordinator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

const secret = "0123456789abcdef-secret"

// sink is a product's callback endpoint that records what it gets.
type sink struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	calls   atomic.Int32
	status  func(n int32) int // answer of call n (1-based); nil = 200
	block   chan struct{}     // when set, requests wait on it (or their context)
	aborted atomic.Int32      // requests whose context ended while blocked
	srv     *httptest.Server
}

func newSink(t *testing.T) *sink {
	k := &sink{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := k.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if k.block != nil {
			select {
			case <-k.block:
			case <-r.Context().Done():
				k.aborted.Add(1)
				return
			}
		}
		code := 200
		if k.status != nil {
			code = k.status(n)
		}
		if code == 200 {
			k.mu.Lock()
			k.bodies = append(k.bodies, body)
			k.headers = append(k.headers, r.Header.Clone())
			k.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *sink) got() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.bodies)
}

type fakeRooms struct {
	mu     sync.Mutex
	calls  []string
	kicked bool
	err    error
}

func (f *fakeRooms) Kick(_ context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, room+"/"+uid)
	return f.kicked, f.err
}

func holder(t *testing.T, apps ...config.App) *config.Holder {
	t.Helper()
	c := &config.Config{AdminKey: "admin", Apps: apps}
	c.Coordinator.RetryBaseDelay = 5 * time.Millisecond
	c.Coordinator.Timeout = 2 * time.Second
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	return config.NewHolder(c)
}

func app(id uint32, url string) config.App {
	return config.App{ID: id, Secret: secret, APIKey: "key-" + string(rune('a'+id)), CallbackURL: url, StatusEvents: true}
}

func start(t *testing.T, cfg Config, h *config.Holder) *Service {
	t.Helper()
	s, err := New(cfg, Deps{Config: h, Rooms: &fakeRooms{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func TestCallbackBodiesAndSignature(t *testing.T) {
	k := newSink(t)
	s := start(t, Config{}, holder(t, app(1, k.srv.URL)))
	ctx := context.Background()
	if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u1", Type: 7, Data: []byte("hi"), TS: 1700000000123}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "upstream callback", 5*time.Second, func() bool { return k.got() == 1 })
	if err := s.Status(ctx, push.StatusEvent{App: 1, UID: "u1", Event: push.EventOnline, Room: "room-1", TS: 1700000000456}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "status callback", 5*time.Second, func() bool { return k.got() == 2 })

	k.mu.Lock()
	defer k.mu.Unlock()
	tests := []struct {
		name string
		want map[string]any
	}{
		{"upstream", map[string]any{"app": 1.0, "uid": "u1", "type": 7.0, "data": base64.StdEncoding.EncodeToString([]byte("hi")), "ts": 1700000000123.0}},
		{"status", map[string]any{"app": 1.0, "uid": "u1", "event": "online", "room": "room-1", "ts": 1700000000456.0}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, hdr := k.bodies[i], k.headers[i]
			if got := hdr.Get(SignatureHeader); got != Sign([]byte(secret), body) || len(got) != 64 {
				t.Fatalf("signature %q does not match body %s", got, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("body %s, want fields %v", body, tc.want)
			}
			for f, v := range tc.want {
				if got[f] != v {
					t.Fatalf("field %s = %v, want %v (body %s)", f, got[f], v, body)
				}
			}
		})
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		status    func(n int32) int
		retries   int
		delivered int
		calls     int32
	}{
		{"500 then success", func(n int32) int { return map[bool]int{true: 500, false: 200}[n <= 2] }, 3, 1, 3},
		{"always 500", func(int32) int { return 500 }, 2, 0, 3},
		{"redirect is a failure", func(int32) int { return 302 }, 1, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newSink(t)
			k.status = tc.status
			h := holder(t, app(1, k.srv.URL))
			c := *h.Load()
			c.Coordinator.Retries = tc.retries
			h = config.NewHolder(&c)
			s := start(t, Config{}, h)
			if err := s.Upstream(context.Background(), push.Upstream{App: 1, UID: "u"}); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "all attempts", 5*time.Second, func() bool { return k.calls.Load() >= tc.calls })
			// No attempt beyond the budget.
			time.Sleep(50 * time.Millisecond)
			if n := k.calls.Load(); n != tc.calls {
				t.Fatalf("%d calls, want %d", n, tc.calls)
			}
			if k.got() != tc.delivered {
				t.Fatalf("%d delivered, want %d", k.got(), tc.delivered)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	base := 100 * time.Millisecond
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 150 * time.Millisecond},
		{2, 100 * time.Millisecond, 300 * time.Millisecond},
		{4, 400 * time.Millisecond, 1200 * time.Millisecond},
		{40, maxBackoff / 2, maxBackoff * 3 / 2},
	}
	for _, tc := range tests {
		for i := 0; i < 100; i++ {
			if d := backoff(base, tc.attempt); d < tc.min || d >= tc.max {
				t.Fatalf("attempt %d: %v outside [%v, %v)", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}

func TestQueueFull(t *testing.T) {
	k := newSink(t)
	a := app(1, k.srv.URL)
	a.CallbackQueue = 3
	s, err := New(Config{}, Deps{Config: holder(t, a, app(2, k.srv.URL)), Rooms: &fakeRooms{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Not started: nothing leaves the queue.
	for i := 0; i < 3; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); !errors.Is(err, push.ErrOverloaded) {
		t.Fatalf("4th upstream: %v, want ErrOverloaded", err)
	}
	if err := s.Status(ctx, push.StatusEvent{App: 1, UID: "u", Event: push.EventOffline}); !errors.Is(err, push.ErrOverloaded) {
		t.Fatalf("status on a full queue: %v, want ErrOverloaded", err)
	}
	// Another app has its own queue.
	if err := s.Upstream(ctx, push.Upstream{App: 2, UID: "u"}); err != nil {
		t.Fatalf("app 2: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "queued callbacks", 5*time.Second, func() bool { return k.got() == 4 })
	if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); err != nil {
		t.Fatalf("after the queue emptied: %v", err)
	}
	s.Shutdown(ctx)
}

func TestNoCallback(t *testing.T) {
	k := newSink(t)
	noStatus := app(2, k.srv.URL)
	noStatus.StatusEvents = false
	s := start(t, Config{}, holder(t, app(1, ""), noStatus))
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown app upstream", func() error { return s.Upstream(ctx, push.Upstream{App: 9}) }, ErrNoCallback},
		{"no url upstream", func() error { return s.Upstream(ctx, push.Upstream{App: 1}) }, ErrNoCallback},
		{"unknown app status", func() error { return s.Status(ctx, push.StatusEvent{App: 9}) }, nil},
		{"no url status", func() error { return s.Status(ctx, push.StatusEvent{App: 1}) }, nil},
		{"not subscribed status", func() error { return s.Status(ctx, push.StatusEvent{App: 2}) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if k.calls.Load() != 0 {
		t.Fatalf("%d callbacks sent, want none", k.calls.Load())
	}
}

func TestSlowAppDoesNotBlockOthers(t *testing.T) {
	slow, fast := newSink(t), newSink(t)
	slow.block = make(chan struct{})
	defer close(slow.block)
	s := start(t, Config{Workers: 4}, holder(t, app(1, slow.srv.URL), app(2, fast.srv.URL)))
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "slow app holding its workers", 5*time.Second, func() bool { return slow.calls.Load() == 2 })
	for i := 0; i < 20; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 2, UID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "fast app delivered", 5*time.Second, func() bool { return fast.got() == 20 })
	if n := slow.calls.Load(); n != 2 {
		t.Fatalf("slow app has %d calls in flight, want its cap of 2", n)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("drains queued", func(t *testing.T) {
		k := newSink(t)
		s, _ := New(Config{Workers: 2}, Deps{Config: holder(t, app(1, k.srv.URL)), Rooms: &fakeRooms{}})
		ctx := context.Background()
		for i := 0; i < 20; i++ {
			s.Upstream(ctx, push.Upstream{App: 1, UID: "u"})
		}
		s.Start(ctx)
		s.Shutdown(ctx)
		if k.got() != 20 {
			t.Fatalf("%d delivered during drain, want 20", k.got())
		}
	})
	t.Run("aborts stuck callbacks", func(t *testing.T) {
		k := newSink(t)
		k.block = make(chan struct{})
		defer close(k.block)
		s, _ := New(Config{Workers: 2, DrainTimeout: 50 * time.Millisecond}, Deps{Config: holder(t, app(1, k.srv.URL)), Rooms: &fakeRooms{}})
		ctx := context.Background()
		s.Start(ctx)
		for i := 0; i < 10; i++ {
			s.Upstream(ctx, push.Upstream{App: 1, UID: "u"})
		}
		testkit.WaitFor(t, "callbacks in flight", 5*time.Second, func() bool { return k.calls.Load() == 1 })
		t0 := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("Shutdown took %v", d)
		}
		testkit.WaitFor(t, "in-flight request aborted", 5*time.Second, func() bool { return k.aborted.Load() == 1 })
		if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); !errors.Is(err, push.ErrClosed) {
			t.Fatalf("upstream after shutdown: %v", err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
		if err := s.Start(ctx); err == nil {
			t.Fatal("Start after Shutdown succeeded")
		}
	})
	t.Run("never started", func(t *testing.T) {
		s, _ := New(Config{}, Deps{Config: holder(t, app(1, "http://127.0.0.1:1")), Rooms: &fakeRooms{}})
		s.Upstream(context.Background(), push.Upstream{App: 1})
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKick(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		rooms   *fakeRooms
		session push.Session
		wantErr error
		calls   int
	}{
		{"kicked", &fakeRooms{kicked: true}, push.Session{UID: "u", Room: "room-2", ConnID: 9}, nil, 1},
		{"already gone", &fakeRooms{}, push.Session{UID: "u", Room: "room-2", ConnID: 9}, nil, 1},
		{"room error", &fakeRooms{err: boom}, push.Session{UID: "u", Room: "room-2", ConnID: 9}, boom, 1},
		{"no room", &fakeRooms{}, push.Session{UID: "u"}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{}, Deps{Config: holder(t), Rooms: tc.rooms})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Kick(context.Background(), tc.session, push.KickLoginElsewhere, "login_elsewhere")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if len(tc.rooms.calls) != tc.calls || (tc.calls == 1 && tc.rooms.calls[0] != "room-2/u") {
				t.Fatalf("room calls %v", tc.rooms.calls)
			}
		})
	}
}

func BenchmarkQueue(b *testing.B) {
	q := newQueue(4)
	ev := &event{app: 1}
	o := opts{url: "http://x", limit: 1 << 20}
	b.ReportAllocs()
	for b.Loop() {
		q.push(ev, o)
		q.done(q.next(), false)
	}
}
