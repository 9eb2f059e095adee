package room

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestBroadcast(t *testing.T) {
	cases := []struct {
		name   string
		perSec float64
		users  int
		// minTook: paced runs take at least this long (the first step is a burst).
		minTook time.Duration
	}{
		{"unpaced", 0, 7, 0},
		{"fits one step", 1e6, 7, 0},
		{"NaN is unpaced", math.NaN(), 3, 0},
		// 40/s with steps of 2 connections: 3 more steps after the first.
		{"paced", 40, 8, 60 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{})
			clients := make([]*testkit.Conn, tc.users)
			for i := range clients {
				clients[i], _ = e.login(1, fmt.Sprintf("u%d", i))
			}
			other, _ := e.login(2, "other") // app 2 only: not a target
			msg := push.Message{ID: 42, App: 1, QoS: push.QoS1, Broadcast: true, Payload: []byte("to all of app 1")}
			start := time.Now()
			n, err := e.room.Broadcast(t.Context(), msg, tc.perSec)
			took := time.Since(start)
			if err != nil || n != tc.users {
				t.Fatalf("Broadcast = %d, %v; want %d", n, err, tc.users)
			}
			if took < tc.minTook {
				t.Fatalf("Broadcast took %v, want >= %v (paced)", took, tc.minTook)
			}
			for i, c := range clients {
				id, p, f := c.ExpectPush()
				if id != 42 || string(p) != "to all of app 1" || f.App != 1 {
					t.Fatalf("client %d got %d %q app %d", i, id, p, f.App)
				}
				c.ExpectQuiet(0)
			}
			other.ExpectQuiet(0)
		})
	}
}

// TestBroadcastMixedWithPushes queues targeted pushes and app-wide
// broadcasts for one flush: each client gets its frames in queue order.
func TestBroadcastMixedWithPushes(t *testing.T) {
	e := startEnv(t, envOpt{})
	a, _ := e.login(1, "a")
	b, _ := e.login(1, "b")
	c, _ := e.login(2, "c")
	release := holdLoops(t, e.room)

	if n, err := e.room.Push(t.Context(), push.Message{ID: 1, App: 1, Payload: []byte("p")}, []push.Target{{UID: "a"}}); n != 1 || err != nil {
		t.Fatalf("Push = %d, %v", n, err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 2)
	loops := len(e.room.allLoops())
	go func() {
		n, err := e.room.Broadcast(t.Context(), push.Message{ID: 2, App: 1, Payload: []byte("b1")}, 0)
		done <- result{n, err}
	}()
	testkit.WaitFor(t, "broadcast queued", 2*time.Second, func() bool { return queued(e.room) >= 1+loops })
	if n, err := e.room.Push(t.Context(), push.Message{ID: 3, App: 2, Payload: []byte("p")}, []push.Target{{UID: "c"}}); n != 1 || err != nil {
		t.Fatalf("Push = %d, %v", n, err)
	}
	go func() {
		n, err := e.room.Broadcast(t.Context(), push.Message{ID: 4, App: 2, Payload: []byte("b2")}, 0)
		done <- result{n, err}
	}()
	testkit.WaitFor(t, "second broadcast queued", 2*time.Second, func() bool { return queued(e.room) >= 2+2*loops })
	close(release)

	got := 0
	for range 2 {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		got += r.n
	}
	if got != 3 { // a and b for app 1, c for app 2
		t.Fatalf("broadcasts reached %d, want 3", got)
	}
	for _, w := range []struct {
		c   *testkit.Conn
		ids []uint64
	}{{a, []uint64{1, 2}}, {b, []uint64{2}}, {c, []uint64{3, 4}}} {
		for _, want := range w.ids {
			if id, _, _ := w.c.ExpectPush(); id != want {
				t.Fatalf("got %d, want %d", id, want)
			}
		}
		w.c.ExpectQuiet(0)
	}
}

func TestBroadcastPacedStopsWithContext(t *testing.T) {
	e := startEnv(t, envOpt{})
	for i := range 6 {
		e.login(1, fmt.Sprintf("u%d", i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// 2/s in steps of one connection: the second step is 0.5 s away.
	n, err := e.room.Broadcast(ctx, push.Message{ID: 9, App: 1, Payload: []byte("x")}, 2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Broadcast = %d, %v; want a deadline error", n, err)
	}
	if n > 1 {
		t.Fatalf("Broadcast reached %d before its deadline, want at most 1", n)
	}
}

func TestBroadcastClosedRoom(t *testing.T) {
	e := startEnv(t, envOpt{})
	if err := e.room.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.room.Broadcast(t.Context(), push.Message{ID: 1, App: 1}, 0); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}

// TestLoopBacklogBound: a loop whose queued work exceeds maxLoopBacklog
// bytes refuses more, and a refused broadcast batch still reports back.
func TestLoopBacklogBound(t *testing.T) {
	l := &loopState{}
	w := newBcastWait()
	big := batchPool.Get().(*pushBatch)
	big.msg = push.Message{Payload: make([]byte, maxLoopBacklog-batchOverhead)}
	if !l.admit(big) {
		t.Fatal("a batch of exactly the bound was refused")
	}
	b := batchPool.Get().(*pushBatch)
	b.msg, b.all, b.wait = push.Message{Payload: []byte("x")}, true, w
	w.hold()
	before := counterValue(mPushDropped.WithLabelValues("loop_backlog_broadcast"))
	if l.admit(b) {
		t.Fatal("a batch over the bound was admitted")
	}
	if got := counterValue(mPushDropped.WithLabelValues("loop_backlog_broadcast")) - before; got != 1 {
		t.Fatalf("drop counted %v, want 1", got)
	}
	if n, err := w.wait(t.Context()); n != 0 || err != nil {
		t.Fatalf("wait = %d, %v", n, err)
	}
	if got := l.backlog.Load(); got != big.cost {
		t.Fatalf("backlog %d, want %d (the refused batch uncharged)", got, big.cost)
	}
}

// holdLoops blocks every loop of r until the returned channel is closed.
func holdLoops(t *testing.T, r *Room) chan struct{} {
	t.Helper()
	release := make(chan struct{})
	held := make(chan struct{}, 8)
	loops := r.allLoops()
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			held <- struct{}{}
			<-release
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	for range loops {
		<-held
	}
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return release
}

// queued counts the batches waiting in r's loops.
func queued(r *Room) int {
	n := 0
	for _, l := range r.allLoops() {
		l.push.mu.Lock()
		n += len(l.push.q)
		l.push.mu.Unlock()
	}
	return n
}
