package room

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/remote"
)

// bcastResult is the outcome of one Broadcast call run in a goroutine.
type bcastResult struct {
	n   int
	err error
}

func goBroadcast(ctx context.Context, r *Room, msg push.Message, perSec float64) chan bcastResult {
	ch := make(chan bcastResult, 1)
	go func() {
		n, err := r.Broadcast(ctx, msg, perSec)
		ch <- bcastResult{n, err}
	}()
	return ch
}

func bcastMsg(id uint64) push.Message {
	return push.Message{ID: id, App: 1, QoS: push.QoS1, Broadcast: true, Payload: []byte(fmt.Sprintf("b%d", id))}
}

// loginN logs in n clients of app 1 and one of app 2 (never a target).
func (e *env) loginN(n int) ([]*testkit.Conn, *testkit.Conn) {
	e.t.Helper()
	cs := make([]*testkit.Conn, n)
	for i := range cs {
		cs[i], _ = e.login(1, fmt.Sprintf("u%d", i))
	}
	other, _ := e.login(2, "other")
	return cs, other
}

// expectOnce checks that every client got exactly the PUSHes ids, in order.
func expectOnce(t *testing.T, cs []*testkit.Conn, ids ...uint64) {
	t.Helper()
	for i, c := range cs {
		for _, want := range ids {
			if id, _, _ := c.ExpectPush(); id != want {
				t.Fatalf("client %d got PUSH %d, want %d", i, id, want)
			}
		}
		c.ExpectQuiet(0)
	}
}

func taskOf(r *Room, id uint64) *bcastTask {
	r.bcasts.mu.Lock()
	defer r.bcasts.mu.Unlock()
	return r.bcasts.m[id]
}

func tasksRunning(r *Room) int {
	r.bcasts.mu.Lock()
	defer r.bcasts.mu.Unlock()
	return r.bcasts.running
}

func callsDelta(result string, before float64) float64 {
	return counterValue(mBcastCalls.WithLabelValues(result)) - before
}

// A second call for a running task joins it: the message is written once,
// both calls return the task's count, and the joiner's perSec is ignored.
func TestBcastJoinRunning(t *testing.T) {
	cases := []struct {
		name         string
		first, again float64 // perSec of the two calls
		hold         bool    // hold the loops until both calls are in
	}{
		{"unpaced, loops held", 0, 0, true},
		// 20/s in steps of one: 4 clients take ~150 ms. An unpaced joiner
		// would write everyone at once, a second time.
		{"paced, joined unpaced", 20, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{})
			cs, other := e.loginN(4)
			var release chan struct{}
			if tc.hold {
				release = holdLoops(t, e.room)
			}
			joined := counterValue(mBcastCalls.WithLabelValues(callJoined))
			first := goBroadcast(t.Context(), e.room, bcastMsg(7), tc.first)
			testkit.WaitFor(t, "the task to start", 2*time.Second, func() bool { return taskOf(e.room, 7) != nil })
			second := goBroadcast(t.Context(), e.room, bcastMsg(7), tc.again)
			testkit.WaitFor(t, "the second call to join", 2*time.Second, func() bool { return callsDelta(callJoined, joined) == 1 })
			if tc.hold {
				close(release)
			}
			for _, ch := range []chan bcastResult{first, second} {
				if r := <-ch; r.err != nil || r.n != len(cs) {
					t.Fatalf("Broadcast = %d, %v; want %d", r.n, r.err, len(cs))
				}
			}
			expectOnce(t, cs, 7)
			other.ExpectQuiet(0)
		})
	}
}

// A caller that goes away leaves the task running; a later call gets the
// finished count at once and writes nothing.
func TestBcastOutlivesCaller(t *testing.T) {
	e := startEnv(t, envOpt{})
	cs, _ := e.loginN(4)
	ctx, cancel := context.WithCancel(t.Context())
	first := goBroadcast(ctx, e.room, bcastMsg(8), 20) // ~150 ms
	testkit.WaitFor(t, "the first step", 2*time.Second, func() bool {
		tk := taskOf(e.room, 8)
		return tk != nil && tk.w.sent.Load() >= 1
	})
	cancel() // the center died
	r := <-first
	if !errors.Is(r.err, context.Canceled) || r.n >= len(cs) {
		t.Fatalf("cancelled Broadcast = %d, %v; want fewer than %d and Canceled", r.n, r.err, len(cs))
	}
	testkit.WaitFor(t, "the task to finish alone", 5*time.Second, func() bool {
		select {
		case <-taskOf(e.room, 8).done:
			return true
		default:
			return false
		}
	})
	finished := counterValue(mBcastCalls.WithLabelValues(callFinished))
	n, err := e.room.Broadcast(t.Context(), bcastMsg(8), 20)
	if err != nil || n != len(cs) {
		t.Fatalf("resumed Broadcast = %d, %v; want %d", n, err, len(cs))
	}
	if d := callsDelta(callFinished, finished); d != 1 {
		t.Fatalf("finished calls +%v, want 1 (the finished task answers)", d)
	}
	expectOnce(t, cs, 8)
}

// A failed task answers later calls with its error, without a new try.
func TestBcastFinishedError(t *testing.T) {
	e := startEnv(t, envOpt{})
	cs, _ := e.loginN(6)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// 2/s in steps of one: the second step is 0.5 s away, past the deadline.
	n1, err := e.room.Broadcast(ctx, bcastMsg(9), 2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Broadcast = %d, %v; want a deadline error", n1, err)
	}
	testkit.WaitFor(t, "the task to finish", 2*time.Second, func() bool { return tasksRunning(e.room) == 0 })
	n2, err := e.room.Broadcast(t.Context(), bcastMsg(9), 0)
	if !errors.Is(err, context.DeadlineExceeded) || n2 > 1 {
		t.Fatalf("again = %d, %v; want the task's deadline error", n2, err)
	}
	got := 0
	for _, c := range cs {
		for {
			f, err := c.Next(20 * time.Millisecond)
			if err != nil {
				break
			}
			if id, _, err := proto.ParsePush(f.Body); f.Op == proto.OpPush && err == nil && id == 9 {
				got++
			}
		}
	}
	if got != n2 {
		t.Fatalf("clients got %d PUSHes, the task reports %d", got, n2)
	}
}

// Tasks of distinct ids run side by side.
func TestBcastDistinctIDs(t *testing.T) {
	e := startEnv(t, envOpt{})
	cs, other := e.loginN(3)
	release := holdLoops(t, e.room)
	a := goBroadcast(t.Context(), e.room, bcastMsg(21), 0)
	testkit.WaitFor(t, "task 21", 2*time.Second, func() bool { return taskOf(e.room, 21) != nil })
	b := goBroadcast(t.Context(), e.room, bcastMsg(22), 0)
	testkit.WaitFor(t, "both running", 2*time.Second, func() bool { return tasksRunning(e.room) == 2 })
	close(release)
	for _, ch := range []chan bcastResult{a, b} {
		if r := <-ch; r.err != nil || r.n != len(cs) {
			t.Fatalf("Broadcast = %d, %v; want %d", r.n, r.err, len(cs))
		}
	}
	expectOnce(t, cs, 21, 22)
	other.ExpectQuiet(0)
}

// The table holds maxBcastTasks running tasks and maxBcastFinished finished
// ones: a call beyond either is refused (push.ErrUnavailable); finished ones make room, the one that
// finished first going first; one past its keep time no longer answers.
func TestBcastTableBound(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		e := startEnv(t, envOpt{})
		c, _ := e.login(1, "u")
		release := holdLoops(t, e.room)
		results := make([]chan bcastResult, maxBcastTasks)
		for i := range results {
			results[i] = goBroadcast(t.Context(), e.room, bcastMsg(uint64(1000+i)), 0)
		}
		testkit.WaitFor(t, "a full table", 5*time.Second, func() bool { return tasksRunning(e.room) == maxBcastTasks })
		refused := counterValue(mBcastCalls.WithLabelValues(callRefused))
		n, err := e.room.Broadcast(t.Context(), bcastMsg(1), 0)
		if !errors.Is(err, ErrBroadcastsFull) || !errors.Is(err, push.ErrUnavailable) || n != 0 {
			t.Fatalf("Broadcast on a full table = %d, %v; want ErrBroadcastsFull", n, err)
		}
		if d := callsDelta(callRefused, refused); d != 1 {
			t.Fatalf("refused calls +%v, want 1", d)
		}
		close(release)
		for _, ch := range results {
			if r := <-ch; r.err != nil || r.n != 1 {
				t.Fatalf("Broadcast = %d, %v; want 1", r.n, r.err)
			}
		}
		for range maxBcastTasks {
			c.ExpectPush()
		}
		c.ExpectQuiet(0)
		ageFinished(e.room, bcastMinKeep+time.Second)
		if n, err := e.room.Broadcast(t.Context(), bcastMsg(1), 0); err != nil || n != 1 {
			t.Fatalf("Broadcast once some finished = %d, %v", n, err)
		}
		c.ExpectPush()
	})
	t.Run("finished recently", func(t *testing.T) {
		// A resume of a task that finished seconds ago must find it: a
		// full table refuses a new task rather than evict it.
		e := startEnv(t, envOpt{})
		for id := range uint64(maxBcastFinished) {
			if _, err := e.room.Broadcast(t.Context(), bcastMsg(id+1), 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.room.Broadcast(t.Context(), bcastMsg(maxBcastFinished+1000), 0); !errors.Is(err, ErrBroadcastsFull) {
			t.Fatalf("Broadcast on a table of young finished tasks: %v; want ErrBroadcastsFull", err)
		}
		if taskOf(e.room, 1) == nil {
			t.Fatal("the oldest finished task left the table before bcastMinKeep")
		}
	})
	t.Run("finished", func(t *testing.T) {
		e := startEnv(t, envOpt{})
		for id := range uint64(maxBcastFinished) {
			if _, err := e.room.Broadcast(t.Context(), bcastMsg(id+1), 0); err != nil {
				t.Fatal(err)
			}
		}
		ageFinished(e.room, bcastMinKeep+time.Second)
		steps := []struct {
			id      uint64
			expire  uint64 // the task whose keep time is made to pass first, 0: none
			result  string
			gone    uint64 // the task that must have left the table, 0: none
			present uint64
		}{
			{maxBcastFinished + 1000, 0, callStarted, 1, 2}, // the one that finished first goes
			{2, 0, callFinished, 0, 2},
			{1, 0, callStarted, 2, 3}, // evicted: a new task
			{3, 3, callStarted, 0, 4}, // past its keep time: a new task
		}
		for _, s := range steps {
			if s.expire != 0 {
				x := taskOf(e.room, s.expire)
				e.room.bcasts.mu.Lock()
				x.keep = time.Now().Add(-time.Second)
				e.room.bcasts.mu.Unlock()
			}
			before := counterValue(mBcastCalls.WithLabelValues(s.result))
			if _, err := e.room.Broadcast(t.Context(), bcastMsg(s.id), 0); err != nil {
				t.Fatalf("Broadcast %d: %v", s.id, err)
			}
			if d := callsDelta(s.result, before); d != 1 {
				t.Fatalf("Broadcast %d: %s calls +%v, want 1", s.id, s.result, d)
			}
			if s.gone != 0 && taskOf(e.room, s.gone) != nil {
				t.Fatalf("after %d: task %d still in the table", s.id, s.gone)
			}
			if taskOf(e.room, s.present) == nil {
				t.Fatalf("after %d: task %d left the table", s.id, s.present)
			}
			e.room.bcasts.mu.Lock()
			size, fin := len(e.room.bcasts.m), len(e.room.bcasts.fin)
			e.room.bcasts.mu.Unlock()
			if size > maxBcastFinished || fin > maxBcastFinished {
				t.Fatalf("table holds %d tasks, %d in the finished list", size, fin)
			}
		}
	})
}

// Shutdown stops the running tasks: their callers get an error at once.
func TestBcastShutdownStopsTasks(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.loginN(6)
	res := goBroadcast(t.Context(), e.room, bcastMsg(31), 2) // 3 s of pacing
	testkit.WaitFor(t, "the first step", 2*time.Second, func() bool {
		tk := taskOf(e.room, 31)
		return tk != nil && tk.w.sent.Load() >= 1
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Broadcast = %d, %v; want Canceled", r.n, r.err)
		}
	case <-time.After(time.Second):
		t.Fatal("Broadcast still running after Shutdown")
	}
	if n := tasksRunning(e.room); n != 0 {
		t.Fatalf("%d tasks running after Shutdown", n)
	}
	if _, err := e.room.Broadcast(t.Context(), bcastMsg(32), 0); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Broadcast after Shutdown: %v, want ErrClosed", err)
	}
}

// targetsOf sums the Targets the room reported for msg id.
func (f *fakeSaver) targetsOf(id uint64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, d := range f.sent {
		if d.MsgID == id {
			n += d.Targets
		}
	}
	return n
}

// A task reports the connections it found as Targets once; joined and
// finished calls add none.
func TestBcastTargetsOnce(t *testing.T) {
	cases := []struct {
		name   string
		perSec float64
	}{
		{"unpaced", 0},
		{"paced", 40},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{})
			cs, _ := e.loginN(5)
			id, marker := uint64(40+2*i), uint64(41+2*i)
			for range 2 {
				if n, err := e.room.Broadcast(t.Context(), bcastMsg(id), tc.perSec); err != nil || n != len(cs) {
					t.Fatalf("Broadcast = %d, %v", n, err)
				}
			}
			// A later task's report means every loop swept after the calls.
			if _, err := e.room.Broadcast(t.Context(), bcastMsg(marker), tc.perSec); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "the targets reported", 5*time.Second, func() bool {
				return e.inbox.targetsOf(marker) == int64(len(cs))
			})
			if got := e.inbox.targetsOf(id); got != int64(len(cs)) {
				t.Fatalf("targets %d, want %d", got, len(cs))
			}
			if got := e.inbox.sentTo(id, ""); got != int64(len(cs)) {
				t.Fatalf("sent %d, want %d", got, len(cs))
			}
			expectOnce(t, cs, id, marker)
		})
	}
}

func TestBcastDeadline(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	soon := now.Add(time.Minute)
	cases := []struct {
		name     string
		deadline time.Time // zero: none
		expire   int64
		want     time.Time
	}{
		{"none", time.Time{}, 0, now.Add(maxBcastRun)},
		{"caller's", soon, 0, soon},
		{"expiry sooner", soon, now.Add(time.Second).Unix(), now.Add(time.Second)},
		{"expiry later", soon, now.Add(time.Hour).Unix(), soon},
		{"expiry, no deadline", time.Time{}, now.Add(2 * time.Minute).Unix(), now.Add(2 * time.Minute)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if !tc.deadline.IsZero() {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, tc.deadline)
				defer cancel()
			}
			msg := push.Message{Expire: tc.expire}
			if got := bcastDeadline(ctx, &msg, now); !got.Equal(tc.want) {
				t.Fatalf("deadline %v, want %v", got, tc.want)
			}
		})
	}
	if maxBcastRun != remote.MaxBroadcastCall {
		t.Fatalf("maxBcastRun %v, remote.MaxBroadcastCall %v: a call without deadline must bound the task as the RPC does", maxBcastRun, remote.MaxBroadcastCall)
	}
}

// ageFinished makes every finished task of r look finished d ago.
func ageFinished(r *Room, d time.Duration) {
	r.bcasts.mu.Lock()
	defer r.bcasts.mu.Unlock()
	for _, t := range r.bcasts.fin {
		t.at = t.at.Add(-d)
	}
}

// A finished task stays in the table as a compact copy without channels of
// its own, and answers a later call with the same outcome.
func TestBcastFinishedCompact(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "u")
	if n, err := e.room.Broadcast(t.Context(), bcastMsg(7), 0); err != nil || n != 1 {
		t.Fatalf("Broadcast = %d, %v; want 1", n, err)
	}
	c.ExpectPush()
	tk := taskOf(e.room, 7)
	if tk == nil || tk.done != closedDone || tk.w.ch != nil || !tk.over || tk.n != 1 {
		t.Fatalf("finished task in the table: %+v", tk)
	}
	before := counterValue(mBcastCalls.WithLabelValues(callFinished))
	if n, err := e.room.Broadcast(t.Context(), bcastMsg(7), 0); err != nil || n != 1 {
		t.Fatalf("Broadcast of a finished task = %d, %v; want 1", n, err)
	}
	if d := callsDelta(callFinished, before); d != 1 {
		t.Fatalf("finished calls +%v, want 1", d)
	}
	c.ExpectQuiet(0)
}
