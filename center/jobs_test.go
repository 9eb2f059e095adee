package center

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/lcpush/lcpush/saver"
)

// boardTasks reads the tasks of job (a decimal id) from the board.
func boardTasks(t *testing.T, e *env, job string) (push.Job, []push.JobTask) {
	t.Helper()
	id, err := strconv.ParseUint(job, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	j, ts, _, err := e.store.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j, ts
}

// allHeld reports whether every task runs under a claim.
func allHeld(ts []push.JobTask) bool {
	for _, t := range ts {
		if t.State != push.TaskRunning {
			return false
		}
	}
	return len(ts) > 0
}

// jobView is a job answer without the fields that move on their own.
func jobView(t *testing.T, e *env, job string) string {
	t.Helper()
	a := e.do(t, "GET", "/v1/jobs/"+job, key1, "")
	if a.status != 200 {
		t.Fatalf("job %s: %d %s", job, a.status, a.body)
	}
	var st jobStatus
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	return string(b)
}

// Two centers share the tasks of a job accepted by one of them: each room's
// task goes first to its preferred center (live ids sorted, task index mod
// their count), both answer for the job alike, and the accepting center's
// slot comes back once the job is final, whoever ended it.
func TestJobTasksSpreadOverCenters(t *testing.T) {
	for _, b := range jobBoards() {
		t.Run(b.name, func(t *testing.T) { testJobTasksSpread(t, b.board(t)) })
	}
}

// jobBoards are the boards the centers' tests run on: the fake's, and the
// saver's memory store (the contract's implementation for one process).
func jobBoards() []struct {
	name  string
	board func(testing.TB) saver.JobBoard
} {
	return []struct {
		name  string
		board func(testing.TB) saver.JobBoard
	}{
		{"fake board", func(testing.TB) saver.JobBoard { return nil }},
		{"saver memory", func(t testing.TB) saver.JobBoard {
			m := saver.NewMemory()
			t.Cleanup(func() { m.Close() })
			return m
		}},
	}
}

func testJobTasksSpread(t *testing.T, board saver.JobBoard) {
	cs, live := newClusterOn(t, board, func(c *config.Config) {
		oneSlot(c)
		c.Apps[0].BroadcastRate = 400
	}, "center-a", "center-b")
	a, b := cs[0], cs[1]
	addUsers(a, "u", 20, 4, 1)
	block := make(chan struct{})
	a.rooms.block = block
	job, _ := startBroadcast(t, a, "1", key1, `{"text":"news"}`)
	var tasks []push.JobTask
	testkit.WaitFor(t, "every task claimed", 5*time.Second, func() bool {
		_, tasks = boardTasks(t, a, job)
		return allHeld(tasks)
	})
	ids := live.list()
	for i, tk := range tasks {
		if want := ids[i%2]; tk.Owner != want {
			t.Fatalf("task %d (%s) held by %q, want its preferred center %q (tasks %+v)", i, tk.Room, tk.Owner, want, tasks)
		}
	}
	if va, vb := jobView(t, a, job), jobView(t, b, job); va != vb || !strings.Contains(va, `"state":"running"`) {
		t.Fatalf("the centers answer differently:\n a %s\n b %s", va, vb)
	}
	if got := b.do(t, "GET", "/v1/jobs/"+job, key2, ""); got.status != 403 {
		t.Fatalf("another app's key through center-b: %d %s", got.status, got.body)
	}
	close(block)
	m := waitJob(t, b, job, key1)
	if m["state"] != JobDone || m["targets"] != 20.0 || m["pushed"] != 20.0 {
		t.Fatalf("job %v", m)
	}
	for _, tk := range m["tasks"].([]any) {
		if tk := tk.(map[string]any); tk["state"] != push.TaskDone || tk["pushed"] != 5.0 {
			t.Fatalf("task %v", tk)
		}
	}
	calls := map[string]int{}
	for _, c := range a.rooms.broadcasted() {
		calls[c.room]++
		if c.perSec != 100 {
			t.Fatalf("room %s paced at %v/s, want 400/4", c.room, c.perSec)
		}
	}
	if len(calls) != 4 || a.rooms.deliveredCount() != 20 {
		t.Fatalf("room calls %v, %d delivered; want one per room, 20", calls, a.rooms.deliveredCount())
	}
	testkit.WaitFor(t, "center-a's slot back", 5*time.Second, func() bool { n, _ := a.svc.slots.running(1); return n == 0 })
	startBroadcast(t, a, "1", key1, `{"text":"next","qos":0}`)
}

// A center that stops renewing (here: shut down with its room calls under
// way, as if it died) loses its tasks when their leases lapse; the other
// center resumes them, the rooms deliver nothing twice, and the job ends
// done.
func TestJobResumedWhenHolderStops(t *testing.T) {
	for _, b := range jobBoards() {
		t.Run(b.name, func(t *testing.T) { testJobResumed(t, b.board(t)) })
	}
}

func testJobResumed(t *testing.T, board saver.JobBoard) {
	cs, _ := newClusterOn(t, board, nil, "center-a", "center-b")
	a, b := cs[0], cs[1]
	addUsers(a, "u", 6, 2, 1)
	block := make(chan struct{})
	a.rooms.block = block
	job, _ := startBroadcast(t, a, "1", key1, `{"text":"x"}`)
	testkit.WaitFor(t, "both tasks claimed", 5*time.Second, func() bool {
		_, ts := boardTasks(t, a, job)
		return allHeld(ts) && ts[0].Owner == "center-a" && ts[1].Owner == "center-b"
	})
	resumed := testkit.Counter(t, "lcpush_center_job_tasks_total", map[string]string{"event": "resumed"})
	if err := a.svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "center-b to resume room-0", 5*time.Second, func() bool {
		_, ts := boardTasks(t, a, job)
		return ts[0].Owner == "center-b" && ts[0].State == push.TaskRunning
	})
	if n := testkit.Counter(t, "lcpush_center_job_tasks_total", map[string]string{"event": "resumed"}); n < resumed+1 {
		t.Fatalf("resumed counted %v times, want at least 1", n-resumed)
	}
	close(block)
	m := waitJob(t, b, job, key1)
	if m["state"] != JobDone || m["pushed"] != 6.0 {
		t.Fatalf("job %v", m)
	}
	if n := a.rooms.deliveredCount(); n != 6 {
		t.Fatalf("%d deliveries, want 6", n)
	}
}

// A holder whose claim another center took (its lease lapsed while it was
// cut off) stops its room call and writes nothing more.
func TestJobClaimLost(t *testing.T) {
	cs, _ := newCluster(t, nil, "center-a")
	a := cs[0]
	addUsers(a, "u", 2, 1, 1)
	block := make(chan struct{})
	a.rooms.block = block
	defer close(block)
	job, _ := startBroadcast(t, a, "1", key1, `{"text":"x"}`)
	testkit.WaitFor(t, "the task claimed", 5*time.Second, func() bool { _, ts := boardTasks(t, a, job); return allHeld(ts) })
	lost := testkit.Counter(t, "lcpush_center_job_tasks_total", map[string]string{"event": "lost"})
	j, _ := boardTasks(t, a, job)
	later := time.Now().Add(time.Minute) // past center-a's lease
	if ok, err := a.store.ClaimTask(context.Background(), j.ID, "room-0", "intruder", later, time.Hour); !ok || err != nil {
		t.Fatalf("intruder's claim: %v %v", ok, err)
	}
	testkit.WaitFor(t, "center-a to see its claim lost", 5*time.Second, func() bool {
		return testkit.Counter(t, "lcpush_center_job_tasks_total", map[string]string{"event": "lost"}) == lost+1 &&
			!a.svc.holds(j.ID, "room-0")
	})
	if _, ts := boardTasks(t, a, job); ts[0].Owner != "intruder" || ts[0].State != push.TaskRunning {
		t.Fatalf("task %+v: center-a wrote after it lost the claim", ts[0])
	}
	// The intruder finishes the task; a scanner ends the job.
	if ok, _ := a.store.UpdateTask(context.Background(), j.ID, push.JobTask{Room: "room-0", Owner: "intruder", State: push.TaskDone, Targets: 2, Pushed: 2},
		later, time.Hour); !ok {
		t.Fatal("intruder's outcome refused")
	}
	if m := waitJob(t, a, job, key1); m["state"] != JobDone || m["pushed"] != 2.0 {
		t.Fatalf("job %v", m)
	}
}

// The scanner fails a job past its deadline even when no center runs its
// tasks, and claims none of them.
func TestJobDeadlineWithoutHolder(t *testing.T) {
	cs, _ := newCluster(t, nil, "center-a", "center-b")
	b := cs[1]
	now := time.Now()
	j := push.Job{ID: 77, App: 1, Msg: push.Message{ID: 78, App: 1, Broadcast: true, Payload: []byte("x")}, Rate: 100,
		Owner: "center-gone", Started: now.Add(-time.Hour).UnixMilli(), Deadline: now.Add(-time.Second).UnixMilli(), State: push.JobRunning}
	if err := b.store.CreateJob(context.Background(), j, []string{"room-0", "room-1"}); err != nil {
		t.Fatal(err)
	}
	m := waitJob(t, b, "77", key1)
	if errText, _ := m["error"].(string); m["state"] != JobFailed || !strings.Contains(errText, "deadline") {
		t.Fatalf("job %v: want failed at its deadline", m)
	}
	if calls := b.rooms.broadcasted(); len(calls) != 0 {
		t.Fatalf("room calls %v for a job past its deadline", calls)
	}
}

// A finished job is kept center.job_keep, then the store drops it: 404.
func TestJobKeep(t *testing.T) {
	tests := []struct {
		name string
		keep time.Duration // 0: the default
		want time.Duration
	}{
		{"default 1h", 0, time.Hour},
		{"configured", 2 * time.Minute, 2 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, _ := newCluster(t, func(c *config.Config) { c.Center.JobKeep = tc.keep }, "center-a", "center-b")
			a, b := cs[0], cs[1]
			addUsers(a, "u", 2, 2, 1)
			job, _ := startBroadcast(t, a, "1", key1, `{"text":"x"}`)
			waitJob(t, b, job, key1)
			j, _ := boardTasks(t, a, job)
			if got := time.Duration(j.Keep-j.Finished) * time.Millisecond; got != tc.want {
				t.Fatalf("kept %v after it finished, want %v", got, tc.want)
			}
			a.store.board.mu.Lock()
			a.store.board.skew = tc.want + time.Second
			a.store.board.mu.Unlock()
			if got := b.do(t, "GET", "/v1/jobs/"+job, key1, ""); got.status != 404 {
				t.Fatalf("job past its keep: %d %s", got.status, got.body)
			}
		})
	}
}

// While the room calls run, a job's targets and pushed come from the
// message's delivery status record (the rooms count there per tick); the
// tasks' own counts take over when they are larger.
func TestJobProgressFromStatus(t *testing.T) {
	cs, _ := newCluster(t, nil, "center-a", "center-b")
	a, b := cs[0], cs[1]
	addUsers(a, "u", 4, 2, 1)
	block := make(chan struct{})
	a.rooms.block = block
	job, msg := startBroadcast(t, a, "1", key1, `{"text":"x"}`)
	msgID, _ := strconv.ParseUint(msg, 10, 64)
	steps := []struct {
		targets, sent, acked int64
	}{{0, 0, 0}, {3, 1, 0}, {4, 3, 2}}
	for _, st := range steps {
		a.store.setStatus(push.MessageStatus{MsgID: msgID, App: 1, Kind: push.KindBroadcast, Targets: st.targets, Sent: st.sent, Acked: st.acked})
		for _, e := range cs {
			m := e.do(t, "GET", "/v1/jobs/"+job, key1, "").json(t)
			if m["state"] != JobRunning || m["targets"] != float64(st.targets) || m["pushed"] != float64(st.sent) ||
				m["sent"] != float64(st.sent) || m["acked"] != float64(st.acked) || m["stored"] != 1.0 {
				t.Fatalf("job %v, want running at %+v", m, st)
			}
		}
	}
	close(block)
	if m := waitJob(t, b, job, key1); m["state"] != JobDone || m["targets"] != 4.0 || m["pushed"] != 4.0 || m["acked"] != 2.0 {
		t.Fatalf("job %v", m)
	}
}

// An app whose tasks wait for its broadcast_rate, or whose room calls are
// slow, does not hold the workers another app's job needs: its waiting tasks
// stay pending (no worker held) and it runs appRoomCalls tasks at most, so
// the other app's job ends done at once.
func TestJobAppDoesNotHoldOthers(t *testing.T) {
	tests := []struct {
		name        string
		rate        float64 // app 1's broadcast_rate
		body        string  // app 1's jobs
		wantRunning int     // app 1's tasks running while its calls hang
	}{
		// Each job at the app's full rate: one job's 6 tasks fit, the
		// other jobs' tasks wait for the rate.
		{"waits for its rate", 1200, `{"text":"hog","qos":0}`, 6},
		// All fit the rate: the cap per app holds them.
		{"slow room calls", 50000, `{"text":"hog","qos":0,"rate":100}`, appRoomCalls},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, _ := newCluster(t, func(c *config.Config) { c.Apps[0].BroadcastRate = tc.rate }, "center-a")
			e := cs[0]
			addUsers(e, "u", 12, 6, 1)
			addUsers(e, "v", 6, 6, 2)
			slow := make(chan struct{})
			e.rooms.mu.Lock()
			e.rooms.slowApp = map[uint32]chan struct{}{1: slow}
			e.rooms.mu.Unlock()
			var hogs []string
			for range appRoomCalls/6 + 2 { // 6 tasks each: more than appRoomCalls
				job, _ := startBroadcast(t, e, "1", key1, tc.body)
				hogs = append(hogs, job)
			}
			running := func() int {
				n := 0
				for _, job := range hogs {
					_, ts := boardTasks(t, e, job)
					for _, tk := range ts {
						if tk.State == push.TaskRunning {
							n++
						}
					}
				}
				return n
			}
			testkit.WaitFor(t, "app 1's tasks claimed", 5*time.Second, func() bool { return running() == tc.wantRunning })
			other, _ := startBroadcast(t, e, "2", key2, `{"text":"other","qos":0}`)
			if m := waitJob(t, e, other, key2); m["state"] != JobDone || m["pushed"] != 6.0 {
				t.Fatalf("app 2's job %v", m)
			}
			if n := running(); n != tc.wantRunning {
				t.Fatalf("app 1 runs %d tasks, want %d", n, tc.wantRunning)
			}
			close(slow)
			for _, job := range hogs {
				if m := waitJob(t, e, job, key1); m["state"] != JobDone || m["pushed"] != 12.0 {
					t.Fatalf("app 1's job %v", m)
				}
			}
		})
	}
}

// A room call that fails because the room is unreachable (refused while it
// drains, a broken connection) is made again with backoff; the second call
// joins the room's task, so the task ends done with the full count. Other
// errors fail the task at once.
func TestJobRoomUnreachableRetried(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		wantState string
		wantCalls int
	}{
		{"unavailable once", []error{fmt.Errorf("room draining: %w", push.ErrUnavailable)}, JobDone, 2},
		{"unavailable twice", []error{push.ErrUnavailable, rpc.ErrUnavailable}, JobDone, 3},
		{"connection lost", []error{rpc.ErrConnLost}, JobDone, 2},
		{"other error", []error{errDown}, JobFailed, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, _ := newCluster(t, nil, "center-a")
			e := cs[0]
			addUsers(e, "u", 4, 1, 1)
			e.rooms.mu.Lock()
			e.rooms.failNext = map[string][]error{"room-0": tc.errs}
			e.rooms.mu.Unlock()
			job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
			m := waitJob(t, e, job, key1)
			if m["state"] != tc.wantState {
				t.Fatalf("job %v, want %s", m, tc.wantState)
			}
			if tc.wantState == JobDone && m["pushed"] != 4.0 {
				t.Fatalf("job %v, want 4 pushed", m)
			}
			if n := len(e.rooms.broadcasted()); n != tc.wantCalls {
				t.Fatalf("%d room calls, want %d", n, tc.wantCalls)
			}
			if n := e.rooms.deliveredCount(); n != 4 && tc.wantState == JobDone {
				t.Fatalf("%d deliveries, want 4", n)
			}
		})
	}
}
