package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeQueue is a queue on a fake clock; nothing runs in the background, the
// test moves the clock (at) and fires the timers (tick).
type fakeQueue struct {
	*queue
	t   *testing.T
	now time.Time
}

func newFakeQueue(t *testing.T, perApp int) *fakeQueue {
	f := &fakeQueue{queue: newQueue(perApp), t: t, now: time.Unix(1700000000, 0)}
	f.queue.now = func() time.Time { return f.now }
	return f
}

// at moves the clock to start+d and fires what is due.
func (f *fakeQueue) at(d time.Duration) {
	f.now = time.Unix(1700000000, 0).Add(d)
	f.mu.Lock()
	f.advance()
	f.mu.Unlock()
}

// sends takes every ready batch, marks it sent, and returns their sizes.
func (f *fakeQueue) sends() []int {
	var out []int
	for {
		f.mu.Lock()
		b := f.take()
		f.mu.Unlock()
		if b == nil {
			return out
		}
		out = append(out, len(b.events))
		f.done(b, false)
	}
}

// sent is sends, as the events' "uid:event" (status) or "uid" (upstream).
func (f *fakeQueue) sent() []string {
	var out []string
	for {
		f.mu.Lock()
		b := f.take()
		f.mu.Unlock()
		if b == nil {
			return out
		}
		for _, ev := range b.events {
			if ev.kind == kindStatus {
				out = append(out, ev.st.UID+":"+ev.st.Event)
			} else {
				out = append(out, ev.up.UID)
			}
		}
		f.done(b, false)
	}
}

func (f *fakeQueue) upstream(n int, o opts) {
	f.t.Helper()
	for i := 0; i < n; i++ {
		if err := f.push(&event{kind: kindUpstream, app: 1, up: push.Upstream{App: 1, UID: fmt.Sprint("u", i)}}, o); err != nil {
			f.t.Fatal(err)
		}
	}
}

func TestBatcher(t *testing.T) {
	const ms = time.Millisecond
	batched := opts{url: "http://a", limit: 1000, batch: 3, linger: 50 * ms}
	type step struct {
		at   time.Duration // clock, from the start
		push int           // events pushed at that time
		want []int         // batch sizes then ready
	}
	tests := []struct {
		name  string
		o     opts
		steps []step
	}{
		{"size cut", batched, []step{{0, 7, []int{3, 3}}, {49 * ms, 0, nil}, {50 * ms, 0, []int{1}}}},
		{"linger cut", batched, []step{{0, 2, nil}, {49 * ms, 0, nil}, {50 * ms, 0, []int{2}}}},
		{"linger counts from the first event", batched, []step{{0, 1, nil}, {40 * ms, 1, nil}, {50 * ms, 0, []int{2}}}},
		{"fill before the linger", batched, []step{{0, 2, nil}, {10 * ms, 1, []int{3}}, {60 * ms, 0, nil}}},
		{"linger restarts from the oldest left", batched, []step{{0, 2, nil}, {30 * ms, 2, []int{3}}, {50 * ms, 0, nil}, {80 * ms, 0, []int{1}}}},
		{"zero linger sends at once", opts{url: "u", limit: 100, batch: 5}, []step{{0, 2, []int{2}}}},
		{"unbatched sends one by one", opts{url: "u", limit: 100}, []step{{0, 3, []int{1, 1, 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeQueue(t, 4)
			for _, s := range tc.steps {
				f.at(s.at)
				f.upstream(s.push, tc.o)
				if got := f.sends(); fmt.Sprint(got) != fmt.Sprint(s.want) && (len(got) > 0 || len(s.want) > 0) {
					t.Fatalf("at %v: batches %v, want %v", s.at, got, s.want)
				}
			}
		})
	}
}

func TestBatcherBounds(t *testing.T) {
	t.Run("queue limit counts events", func(t *testing.T) {
		f := newFakeQueue(t, 4)
		o := opts{url: "u", limit: 5, batch: 10, linger: time.Second}
		f.upstream(5, o)
		if err := f.push(&event{app: 1}, o); err != push.ErrOverloaded {
			t.Fatalf("6th event: %v, want ErrOverloaded", err)
		}
	})
	t.Run("per-app cap holds batches in flight", func(t *testing.T) {
		f := newFakeQueue(t, 2)
		f.upstream(10, opts{url: "u", limit: 100, batch: 2})
		var held []*batch
		for {
			f.mu.Lock()
			b := f.take()
			f.mu.Unlock()
			if b == nil {
				break
			}
			held = append(held, b)
		}
		if len(held) != 2 {
			t.Fatalf("%d batches in flight, want the cap of 2", len(held))
		}
		f.done(held[0], false)
		if got := f.sends(); len(got) != 3 {
			t.Fatalf("after one done: %v, want the 3 batches left", got)
		}
	})
	t.Run("a slow route leaves workers for the other URL", func(t *testing.T) {
		f := newFakeQueue(t, 4)
		slow := opts{url: "http://slow", limit: 100, multi: true}
		fast := opts{url: "http://fast", limit: 100, multi: true}
		f.upstream(10, slow)
		var held []*batch
		for {
			f.mu.Lock()
			b := f.take()
			f.mu.Unlock()
			if b == nil {
				break
			}
			held = append(held, b)
		}
		if len(held) != 2 {
			t.Fatalf("slow lane holds %d, want half the app's 4", len(held))
		}
		f.upstream(3, fast)
		if got := f.sends(); len(got) != 3 {
			t.Fatalf("fast lane sent %v, want 3 events", got)
		}
	})
	t.Run("retry comes back whole", func(t *testing.T) {
		f := newFakeQueue(t, 1)
		f.upstream(3, opts{url: "u", limit: 100, batch: 5})
		f.mu.Lock()
		b := f.take()
		f.mu.Unlock()
		b.notBefore = f.now.Add(100 * time.Millisecond)
		f.done(b, true)
		f.at(99 * time.Millisecond)
		if got := f.sends(); len(got) != 0 {
			t.Fatalf("before its time: %v", got)
		}
		f.at(100 * time.Millisecond)
		if got := f.sends(); fmt.Sprint(got) != "[3]" {
			t.Fatalf("retry: %v, want [3]", got)
		}
	})
}

func TestDebouncer(t *testing.T) {
	const window = time.Second
	type ev struct {
		at    time.Duration
		uid   string
		event string // online, offline, or "" for a tick only
	}
	tests := []struct {
		name      string
		max       int
		evs       []ev
		want      []string // what was sent, in order
		debounced float64
	}{
		{"reconnect within the window", 10, []ev{{0, "a", "offline"}, {999 * time.Millisecond, "a", "online"}, {5 * window, "", ""}}, nil, 2},
		{"reconnect at the window's end", 10, []ev{{0, "a", "offline"}, {window, "a", "online"}}, []string{"a:offline", "a:online"}, 0},
		{"reconnect after the window (timer fired)", 10, []ev{{0, "a", "offline"}, {window, "", ""}, {2 * window, "a", "online"}}, []string{"a:offline", "a:online"}, 0},
		{"online then offline is reported", 10, []ev{{0, "a", "online"}, {10 * time.Millisecond, "a", "offline"}, {window + 10*time.Millisecond, "", ""}}, []string{"a:online", "a:offline"}, 0},
		{"another uid does not cancel", 10, []ev{{0, "a", "offline"}, {10 * time.Millisecond, "b", "online"}, {window, "", ""}}, []string{"b:online", "a:offline"}, 0},
		{"bound reached: sent at once", 2, []ev{{0, "a", "offline"}, {0, "b", "offline"}, {0, "c", "offline"}, {10 * time.Millisecond, "a", "online"}, {10 * time.Millisecond, "c", "online"}, {window, "", ""}}, []string{"c:offline", "c:online", "b:offline"}, 2},
		{"two offlines: the first is sent", 10, []ev{{0, "a", "offline"}, {10 * time.Millisecond, "a", "offline"}, {20 * time.Millisecond, "a", "online"}}, []string{"a:offline"}, 2},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := uint32(1000 + i)
			f := newFakeQueue(t, 4)
			o := opts{url: "u", limit: 100, debounce: window, debounceMax: tc.max}
			debounced0 := counterValue(t, debounced.WithLabelValues(appLabel(app)))
			var got []string
			for _, e := range tc.evs {
				f.at(e.at)
				if e.event != "" {
					if err := f.status(&event{kind: kindStatus, app: app, st: push.StatusEvent{App: app, UID: e.uid, Event: e.event}}, o); err != nil {
						t.Fatal(err)
					}
				}
				got = append(got, f.sent()...)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("sent %v, want %v", got, tc.want)
			}
			if d := counterValue(t, debounced.WithLabelValues(appLabel(app))) - debounced0; d != tc.debounced {
				t.Fatalf("debounced %v, want %v", d, tc.debounced)
			}
			if n := len(f.apps[app].pending); n != 0 {
				t.Fatalf("%d offlines still held", n)
			}
		})
	}
	t.Run("flapping keeps the timer heap small", func(t *testing.T) {
		f := newFakeQueue(t, 4)
		o := opts{url: "u", limit: 100, batch: 10, linger: time.Second, debounce: time.Hour, debounceMax: 10}
		for i := 0; i < 1000; i++ {
			for _, e := range []string{push.EventOffline, push.EventOnline} {
				f.status(&event{kind: kindStatus, app: 1, st: push.StatusEvent{App: 1, UID: "a", Event: e}}, o)
			}
			f.upstream(1, o)
			f.sends()
		}
		if n := len(f.timers); n > 1 {
			t.Fatalf("%d timers after 1000 cancelled windows and re-armed lingers, want at most the lane's one", n)
		}
	})
	t.Run("drain sends held offlines", func(t *testing.T) {
		f := newFakeQueue(t, 4)
		o := opts{url: "u", limit: 100, batch: 10, linger: time.Hour, debounce: time.Hour, debounceMax: 10}
		for _, u := range []string{"a", "b"} {
			f.status(&event{kind: kindStatus, app: 1, st: push.StatusEvent{App: 1, UID: u, Event: push.EventOffline}}, o)
		}
		f.drain()
		if got := f.sent(); strings.Join(got, " ") != "a:offline b:offline" {
			t.Fatalf("drained %v", got)
		}
	})
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestBatchedCallbacks posts through a Service: batched bodies signed
// whole, routes by type, status to callback_url.
func TestBatchedCallbacks(t *testing.T) {
	main, routed := newSink(t), newSink(t)
	a := app(1, main.srv.URL)
	a.CallbackBatch = 4
	a.CallbackLinger = 20 * time.Millisecond
	a.CallbackRoutes = []config.CallbackRoute{{Types: []int{7, 8}, URL: routed.srv.URL}}
	s := start(t, Config{}, holder(t, a))
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 1, UID: fmt.Sprint("u", i), Type: uint16(7 + i%3), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Status(ctx, push.StatusEvent{App: 1, UID: "u9", Event: push.EventOnline}); err != nil {
		t.Fatal(err)
	}
	count := func(k *sink) (events int, types map[float64]int) {
		k.mu.Lock()
		defer k.mu.Unlock()
		types = map[float64]int{}
		for i, body := range k.bodies {
			if k.headers[i].Get(SignatureHeader) != Sign([]byte(secret), body) {
				t.Fatalf("bad signature on %s", body)
			}
			if k.headers[i].Get("X-Push-Kind") != "batch" {
				t.Fatalf("kind %q", k.headers[i].Get("X-Push-Kind"))
			}
			var b struct{ Events []map[string]any }
			if err := json.Unmarshal(body, &b); err != nil || len(b.Events) == 0 {
				t.Fatalf("body %s: %v", body, err)
			}
			for _, e := range b.Events {
				events++
				if tp, ok := e["type"].(float64); ok {
					types[tp]++
				} else {
					types[-1]++ // status
				}
			}
		}
		return events, types
	}
	testkit.WaitFor(t, "routed events", 5*time.Second, func() bool { n, _ := count(routed); return n == 4 })
	testkit.WaitFor(t, "callback_url events", 5*time.Second, func() bool { n, _ := count(main); return n == 3 })
	if _, ty := count(routed); ty[7] != 2 || ty[8] != 2 {
		t.Fatalf("routed types %v, want 7 and 8 twice each", ty)
	}
	if _, ty := count(main); ty[9] != 2 || ty[-1] != 1 {
		t.Fatalf("callback_url types %v, want 9 twice and the status event", ty)
	}
}

func TestShutdownSendsHeldOfflines(t *testing.T) {
	k := newSink(t)
	a := app(1, k.srv.URL)
	a.StatusDebounce = time.Hour
	a.CallbackBatch = 10
	a.CallbackLinger = 10 * time.Second
	s := start(t, Config{}, holder(t, a))
	for _, u := range []string{"a", "b", "c"} {
		if err := s.Status(context.Background(), push.StatusEvent{App: 1, UID: u, Event: push.EventOffline}); err != nil {
			t.Fatal(err)
		}
	}
	// Status hands each event to the debouncer before it returns: nothing
	// may be on its way now.
	if k.calls.Load() != 0 {
		t.Fatal("held offlines sent before their window")
	}
	s.Shutdown(context.Background())
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.bodies) != 1 || strings.Count(string(k.bodies[0]), `"offline"`) != 3 {
		t.Fatalf("at shutdown got %q, want one batch of the 3 offlines", k.bodies)
	}
}

func TestSlowBatchedAppStaysBounded(t *testing.T) {
	slow, fast := newSink(t), newSink(t)
	slow.block = make(chan struct{})
	defer close(slow.block)
	a := app(1, slow.srv.URL)
	a.CallbackBatch, a.CallbackQueue = 10, 100
	s := start(t, Config{Workers: 4}, holder(t, a, app(2, fast.srv.URL)))
	ctx := context.Background()
	// Two batches of 10 in flight (the app's cap), then 100 waiting: full.
	accepted := 0
	for i := 0; i < 200; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 1, UID: "u"}); err == nil {
			accepted++
		} else if err != push.ErrOverloaded {
			t.Fatal(err)
		}
		if i == 30 {
			testkit.WaitFor(t, "slow app holding its workers", 5*time.Second, func() bool { return slow.calls.Load() == 2 })
		}
	}
	if accepted != 120 {
		t.Fatalf("slow app accepted %d events, want 2 batches of 10 in flight + callback_queue 100", accepted)
	}
	for i := 0; i < 20; i++ {
		if err := s.Upstream(ctx, push.Upstream{App: 2, UID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "fast app delivered", 5*time.Second, func() bool { return fast.got() == 20 })
}
