package saver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// The job board contract (JobBoard), run on every Store.

func TestMemoryJobs(t *testing.T) { testJobBoard(t, newMemoryStore) }

func TestBoltJobs(t *testing.T) { testJobBoard(t, newBoltStore) }

func TestRedisJobs(t *testing.T) { testJobBoard(t, newRedisStore) }

func testJobBoard(t *testing.T, newStore func(t *testing.T, lim Limits) Store) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, st Store)
	}{
		{"CreateAndGet", contractJobCreate},
		{"CreateIdempotent", contractJobIdempotent},
		{"RunningList", contractJobRunning},
		{"ClaimConcurrent", contractJobClaimConcurrent},
		{"LeaseLapses", contractJobLeaseLapse},
		{"RenewByHolder", contractJobRenew},
		{"FinalTasksStayFinal", contractJobFinalTasks},
		{"FinishOnce", contractJobFinish},
		{"Expire", contractJobExpire},
		{"Unknown", contractJobUnknown},
		{"Invalid", contractJobInvalid},
		{"Closed", contractJobClosed},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t, Limits{})) })
	}
}

const tLease = 10 * time.Second

// jobT0 is the tests' clock: now, so that RedisStore's TTLs (Deadline plus
// a day, Keep) lie ahead.
func jobT0() time.Time { return time.UnixMilli(time.Now().UnixMilli()) }

func tjob(id uint64, t0 time.Time) push.Job {
	return push.Job{
		ID: id, App: 7,
		Msg:  push.Message{ID: id, App: 7, QoS: push.QoS1, Expire: t0.Add(time.Hour).Unix(), Broadcast: true, Payload: []byte("hello all")},
		Rate: 1500.5, Stored: true, Owner: "center-1",
		Started: t0.UnixMilli(), Deadline: t0.Add(10 * time.Minute).UnixMilli(),
	}
}

func mustCreateJob(t *testing.T, st Store, j push.Job, rooms ...string) {
	t.Helper()
	if err := st.CreateJob(bg, j, rooms); err != nil {
		t.Fatalf("create job %d: %v", j.ID, err)
	}
}

func mustJob(t *testing.T, st Store, id uint64) (push.Job, []push.JobTask) {
	t.Helper()
	j, ts, ok, err := st.Job(bg, id)
	if err != nil || !ok {
		t.Fatalf("job %d: found %v, %v", id, ok, err)
	}
	return j, ts
}

func taskOf(t *testing.T, st Store, id uint64, room string) push.JobTask {
	t.Helper()
	_, ts := mustJob(t, st, id)
	for _, task := range ts {
		if task.Room == room {
			return task
		}
	}
	t.Fatalf("job %d has no task %q: %+v", id, room, ts)
	return push.JobTask{}
}

func wantRunning(t *testing.T, st Store, want ...uint64) {
	t.Helper()
	got, err := st.RunningJobs(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || len(want) != 0 {
		if !slices.Equal(got, want) {
			t.Fatalf("running jobs = %v, want %v", got, want)
		}
	}
}

func claim(t *testing.T, st Store, id uint64, room, owner string, now time.Time) bool {
	t.Helper()
	ok, err := st.ClaimTask(bg, id, room, owner, now, tLease)
	if err != nil {
		t.Fatalf("claim %d/%s by %s: %v", id, room, owner, err)
	}
	return ok
}

func update(t *testing.T, st Store, id uint64, task push.JobTask, now time.Time) bool {
	t.Helper()
	ok, err := st.UpdateTask(bg, id, task, now, tLease)
	if err != nil {
		t.Fatalf("update %d/%s by %s: %v", id, task.Room, task.Owner, err)
	}
	return ok
}

func finish(t *testing.T, st Store, id uint64, state, errMsg string, now time.Time, keep time.Duration) bool {
	t.Helper()
	ok, err := st.FinishJob(bg, id, state, errMsg, now, keep)
	if err != nil {
		t.Fatalf("finish %d: %v", id, err)
	}
	return ok
}

func contractJobCreate(t *testing.T, st Store) {
	t0 := jobT0()
	in := tjob(40, t0)
	in.State, in.Finished, in.Error, in.Keep = push.JobDone, 5, "ignored", 6 // CreateJob records a running job
	mustCreateJob(t, st, in, "room-b", "room-a", "room-b", "房间")
	in.Msg.Payload[0] = 'X' // the store keeps its own copy
	j, ts := mustJob(t, st, 40)
	want := tjob(40, t0)
	want.State = push.JobRunning
	if !reflect.DeepEqual(j, want) {
		t.Fatalf("job:\n got %+v\nwant %+v", j, want)
	}
	wantTasks := []push.JobTask{{Room: "room-a", State: push.TaskPending}, {Room: "room-b", State: push.TaskPending}, {Room: "房间", State: push.TaskPending}}
	if !reflect.DeepEqual(ts, wantTasks) {
		t.Fatalf("tasks:\n got %+v\nwant %+v", ts, wantTasks)
	}
	j.Msg.Payload[0] = 'Y' // nor does a caller's change of what Job returned reach it
	if j, _ := mustJob(t, st, 40); string(j.Msg.Payload) != "hello all" {
		t.Fatalf("payload %q", j.Msg.Payload)
	}
	// No rooms: a job without tasks.
	mustCreateJob(t, st, tjob(41, t0))
	if _, ts := mustJob(t, st, 41); len(ts) != 0 {
		t.Fatalf("tasks of a job without rooms: %+v", ts)
	}
	// The most rooms a job takes, and the longest room id.
	rooms := make([]string, maxJobTasks)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%04d", i)
	}
	rooms[0] = strings.Repeat("r", maxRoomLen)
	mustCreateJob(t, st, tjob(42, t0), rooms...)
	if _, ts := mustJob(t, st, 42); len(ts) != maxJobTasks || ts[len(ts)-1].Room != rooms[0] {
		t.Fatalf("%d tasks, last %q", len(ts), ts[len(ts)-1].Room)
	}
}

func contractJobIdempotent(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(5, t0), "a", "b")
	if !claim(t, st, 5, "a", "c1", t0) {
		t.Fatal("claim")
	}
	again := tjob(5, t0)
	again.Owner, again.App, again.Msg.Payload = "center-2", 8, []byte("other")
	mustCreateJob(t, st, again, "c")
	j, ts := mustJob(t, st, 5)
	if j.Owner != "center-1" || j.App != 7 || string(j.Msg.Payload) != "hello all" {
		t.Fatalf("a second CreateJob changed the job: %+v", j)
	}
	if len(ts) != 2 || ts[0].State != push.TaskRunning || ts[0].Owner != "c1" || ts[1].State != push.TaskPending {
		t.Fatalf("a second CreateJob changed the tasks: %+v", ts)
	}
}

func contractJobRunning(t *testing.T, st Store) {
	t0 := jobT0()
	wantRunning(t, st)
	for _, id := range []uint64{30, 10, 1 << 63, 20} {
		mustCreateJob(t, st, tjob(id, t0), "r")
	}
	wantRunning(t, st, 10, 20, 30, 1<<63)
	if !finish(t, st, 20, push.JobDone, "", t0, time.Hour) || !finish(t, st, 1<<63, push.JobFailed, "x", t0, time.Hour) {
		t.Fatal("finish")
	}
	wantRunning(t, st, 10, 30)
}

// Owners racing for one task: exactly one gets it.
func contractJobClaimConcurrent(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(7, t0), "room-a", "room-b")
	const owners = 8
	var wg sync.WaitGroup
	won := make([]bool, owners)
	errs := make([]error, owners)
	for i := range owners {
		wg.Go(func() {
			won[i], errs[i] = st.ClaimTask(bg, 7, "room-a", fmt.Sprintf("center-%d", i), t0, tLease)
		})
	}
	wg.Wait()
	winner := -1
	for i := range owners {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if won[i] {
			if winner >= 0 {
				t.Fatalf("center-%d and center-%d both got the task", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("nobody got the task")
	}
	task := taskOf(t, st, 7, "room-a")
	want := push.JobTask{Room: "room-a", State: push.TaskRunning, Owner: fmt.Sprintf("center-%d", winner), Lease: t0.Add(tLease).UnixMilli()}
	if task != want {
		t.Fatalf("task %+v, want %+v", task, want)
	}
	if task := taskOf(t, st, 7, "room-b"); task.State != push.TaskPending || task.Owner != "" {
		t.Fatalf("the other task moved: %+v", task)
	}
}

// A holder that stops renewing loses the task at its lease; its late
// update is refused and writes nothing.
func contractJobLeaseLapse(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(8, t0), "r")
	if !claim(t, st, 8, "r", "old", t0) {
		t.Fatal("claim by old")
	}
	if !update(t, st, 8, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "old", Targets: 100, Pushed: 10}, t0.Add(time.Second)) {
		t.Fatal("update by old")
	}
	// The lease now ends at t0+1s+lease.
	end := t0.Add(time.Second + tLease)
	if claim(t, st, 8, "r", "new", end.Add(-time.Millisecond)) {
		t.Fatal("new took the task before the lease lapsed")
	}
	if !claim(t, st, 8, "r", "new", end) {
		t.Fatal("new could not take the task at the lease's end")
	}
	if update(t, st, 8, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "old", Targets: 100, Pushed: 60}, end) {
		t.Fatal("old updated a task it lost")
	}
	if update(t, st, 8, push.JobTask{Room: "r", State: push.TaskDone, Owner: "old", Targets: 100, Pushed: 100}, end) {
		t.Fatal("old finished a task it lost")
	}
	task := taskOf(t, st, 8, "r")
	want := push.JobTask{Room: "r", State: push.TaskRunning, Owner: "new", Lease: end.Add(tLease).UnixMilli(), Targets: 100, Pushed: 10}
	if task != want {
		t.Fatalf("task %+v, want %+v (the claim keeps the progress; the old owner wrote nothing)", task, want)
	}
	if !update(t, st, 8, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "new", Targets: 100, Pushed: 70}, end.Add(time.Second)) {
		t.Fatal("update by new")
	}
	if task := taskOf(t, st, 8, "r"); task.Pushed != 70 || task.Owner != "new" {
		t.Fatalf("task %+v", task)
	}
}

// The holder renews its lease by UpdateTask (running) or by claiming again.
func contractJobRenew(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(9, t0), "r")
	if !claim(t, st, 9, "r", "a", t0) {
		t.Fatal("claim")
	}
	at := t0.Add(8 * time.Second)
	if !update(t, st, 9, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a", Targets: 50, Pushed: 5, Error: "slow"}, at) {
		t.Fatal("renew by update")
	}
	want := push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a", Lease: at.Add(tLease).UnixMilli(), Targets: 50, Pushed: 5, Error: "slow"}
	if task := taskOf(t, st, 9, "r"); task != want {
		t.Fatalf("task %+v, want %+v", task, want)
	}
	if claim(t, st, 9, "r", "b", t0.Add(12*time.Second)) {
		t.Fatal("b took a renewed task")
	}
	at = t0.Add(15 * time.Second)
	if !claim(t, st, 9, "r", "a", at) {
		t.Fatal("renew by claim")
	}
	want.Lease = at.Add(tLease).UnixMilli()
	if task := taskOf(t, st, 9, "r"); task != want {
		t.Fatalf("task after a renewing claim %+v, want %+v", task, want)
	}
	if update(t, st, 9, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a", Pushed: 9}, at.Add(tLease)) {
		t.Fatal("a renewed a lease that had lapsed")
	}
}

func contractJobFinalTasks(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(11, t0), "done", "failed")
	for _, tc := range []struct{ room, state, errMsg string }{
		{"done", push.TaskDone, ""},
		{"failed", push.TaskFailed, "room gone"},
	} {
		if !claim(t, st, 11, tc.room, "a", t0) {
			t.Fatalf("claim %s", tc.room)
		}
		at := t0.Add(time.Second)
		if !update(t, st, 11, push.JobTask{Room: tc.room, State: tc.state, Owner: "a", Targets: 3, Pushed: 3, Error: tc.errMsg}, at) {
			t.Fatalf("update %s", tc.room)
		}
		want := push.JobTask{Room: tc.room, State: tc.state, Owner: "a", Lease: at.UnixMilli(), Targets: 3, Pushed: 3, Error: tc.errMsg}
		if task := taskOf(t, st, 11, tc.room); task != want {
			t.Fatalf("task %+v, want %+v", task, want)
		}
		for _, owner := range []string{"a", "b"} {
			if claim(t, st, 11, tc.room, owner, t0.Add(time.Hour)) {
				t.Fatalf("%s claimed the final task %s", owner, tc.room)
			}
		}
		for _, state := range []string{push.TaskRunning, push.TaskDone, push.TaskFailed} {
			if update(t, st, 11, push.JobTask{Room: tc.room, State: state, Owner: "a", Pushed: 1}, at) {
				t.Fatalf("update of the final task %s to %s", tc.room, state)
			}
		}
		if task := taskOf(t, st, 11, tc.room); task != want {
			t.Fatalf("final task changed: %+v, want %+v", task, want)
		}
	}
}

func contractJobFinish(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(12, t0), "r", "s")
	if !claim(t, st, 12, "r", "a", t0) {
		t.Fatal("claim")
	}
	at := t0.Add(time.Minute)
	if !finish(t, st, 12, push.JobFailed, "deadline", at, time.Hour) {
		t.Fatal("finish")
	}
	want := tjob(12, t0)
	want.State, want.Error, want.Finished, want.Keep = push.JobFailed, "deadline", at.UnixMilli(), at.Add(time.Hour).UnixMilli()
	want.Msg.Payload = nil
	j, ts := mustJob(t, st, 12)
	if len(j.Msg.Payload) == 0 {
		j.Msg.Payload = nil
	}
	if !reflect.DeepEqual(j, want) {
		t.Fatalf("finished job (payload dropped):\n got %+v\nwant %+v", j, want)
	}
	if len(ts) != 2 || ts[0].State != push.TaskRunning || ts[1].State != push.TaskPending {
		t.Fatalf("tasks of the finished job: %+v", ts)
	}
	if finish(t, st, 12, push.JobDone, "", at.Add(time.Second), time.Hour) {
		t.Fatal("finished twice")
	}
	if j2, _ := mustJob(t, st, 12); j2.State != push.JobFailed || j2.Finished != want.Finished {
		t.Fatalf("the second FinishJob changed the job: %+v", j2)
	}
	// A final job's tasks are closed.
	if claim(t, st, 12, "s", "b", at) || claim(t, st, 12, "r", "a", at) {
		t.Fatal("claimed a task of a finished job")
	}
	if update(t, st, 12, push.JobTask{Room: "r", State: push.TaskDone, Owner: "a"}, t0.Add(time.Second)) {
		t.Fatal("updated a task of a finished job")
	}
}

func contractJobExpire(t *testing.T, st Store) {
	t0 := jobT0()
	for _, id := range []uint64{1, 2, 3} {
		mustCreateJob(t, st, tjob(id, t0), "r")
	}
	if !finish(t, st, 1, push.JobDone, "", t0, time.Hour) || !finish(t, st, 3, push.JobDone, "", t0, 3*time.Hour) {
		t.Fatal("finish")
	}
	expire := func(at time.Time) {
		t.Helper()
		if _, err := st.Expire(bg, at); err != nil {
			t.Fatal(err)
		}
	}
	has := func(id uint64) bool {
		t.Helper()
		_, _, ok, err := st.Job(bg, id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	expire(t0.Add(time.Hour - time.Millisecond))
	if !has(1) || !has(2) || !has(3) {
		t.Fatal("dropped before Keep")
	}
	expire(t0.Add(time.Hour))
	if has(1) || !has(2) || !has(3) {
		t.Fatalf("at job 1's Keep: has %v %v %v", has(1), has(2), has(3))
	}
	// Job 2 still runs (its centers are gone): dropped a day past its Deadline.
	deadline := time.UnixMilli(tjob(2, t0).Deadline)
	expire(deadline.Add(jobRunningTTL - time.Millisecond))
	if !has(2) || has(3) {
		t.Fatalf("before job 2's drop: has %v %v", has(2), has(3))
	}
	wantRunning(t, st, 2)
	expire(deadline.Add(jobRunningTTL))
	if has(2) {
		t.Fatal("job 2 kept past Deadline plus a day")
	}
	wantRunning(t, st)
	if claim(t, st, 2, "r", "a", t0) {
		t.Fatal("claimed a task of a dropped job")
	}
}

func contractJobUnknown(t *testing.T, st Store) {
	t0 := jobT0()
	if _, ts, ok, err := st.Job(bg, 99); err != nil || ok || ts != nil {
		t.Fatalf("unknown job: %v %v %v", ts, ok, err)
	}
	if claim(t, st, 99, "r", "a", t0) {
		t.Fatal("claim of an unknown job")
	}
	if update(t, st, 99, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a"}, t0) {
		t.Fatal("update of an unknown job")
	}
	if finish(t, st, 99, push.JobDone, "", t0, time.Hour) {
		t.Fatal("finish of an unknown job")
	}
	mustCreateJob(t, st, tjob(100, t0), "r")
	if claim(t, st, 100, "nope", "a", t0) {
		t.Fatal("claim of an unknown room")
	}
	if update(t, st, 100, push.JobTask{Room: "nope", State: push.TaskRunning, Owner: "a"}, t0) {
		t.Fatal("update of an unknown room")
	}
	if update(t, st, 100, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a"}, t0) {
		t.Fatal("update of a pending task")
	}
	if _, ts := mustJob(t, st, 100); len(ts) != 1 || ts[0] != (push.JobTask{Room: "r", State: push.TaskPending}) {
		t.Fatalf("tasks %+v", ts)
	}
}

func contractJobInvalid(t *testing.T, st Store) {
	t0 := jobT0()
	long := strings.Repeat("x", maxOwnerLen+1)
	tooMany := make([]string, maxJobTasks+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint(i)
	}
	with := func(f func(j *push.Job)) push.Job {
		j := tjob(1, t0)
		f(&j)
		return j
	}
	for _, tc := range []struct {
		name  string
		j     push.Job
		rooms []string
	}{
		{"id 0", with(func(j *push.Job) { j.ID = 0 }), nil},
		{"no deadline", with(func(j *push.Job) { j.Deadline = 0 }), nil},
		{"negative expire", with(func(j *push.Job) { j.Msg.Expire = -1 }), nil},
		{"long owner", with(func(j *push.Job) { j.Owner = long }), nil},
		{"NaN rate", with(func(j *push.Job) { j.Rate = math.NaN() }), nil},
		{"infinite rate", with(func(j *push.Job) { j.Rate = math.Inf(1) }), nil},
		{"too many rooms", tjob(1, t0), tooMany},
		{"empty room", tjob(1, t0), []string{"a", ""}},
		{"long room", tjob(1, t0), []string{strings.Repeat("r", maxRoomLen+1)}},
	} {
		if err := st.CreateJob(bg, tc.j, tc.rooms); !errors.Is(err, ErrInvalid) {
			t.Errorf("create job, %s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, _, ok, err := st.Job(bg, 1); err != nil || ok {
		t.Fatalf("an invalid job was recorded: %v %v", ok, err)
	}
	mustCreateJob(t, st, tjob(1, t0), "r")
	for _, tc := range []struct {
		room, owner string
		lease       time.Duration
	}{{"", "a", tLease}, {long, "a", tLease}, {"r", "", tLease}, {"r", long, tLease}, {"r", "a", 0}, {"r", "a", -time.Second}} {
		if _, err := st.ClaimTask(bg, 1, tc.room, tc.owner, t0, tc.lease); !errors.Is(err, ErrInvalid) {
			t.Errorf("claim room %q owner %q lease %v: %v, want ErrInvalid", truncate(tc.room), truncate(tc.owner), tc.lease, err)
		}
	}
	if !claim(t, st, 1, "r", "a", t0) {
		t.Fatal("claim")
	}
	for _, task := range []push.JobTask{
		{Room: "r", State: push.TaskPending, Owner: "a"},
		{Room: "r", State: "paused", Owner: "a"},
		{Room: "r", State: push.TaskRunning, Owner: ""},
		{Room: "", State: push.TaskRunning, Owner: "a"},
		{Room: "r", State: push.TaskRunning, Owner: "a", Pushed: -1},
		{Room: "r", State: push.TaskRunning, Owner: "a", Targets: -1},
	} {
		if _, err := st.UpdateTask(bg, 1, task, t0, tLease); !errors.Is(err, ErrInvalid) {
			t.Errorf("update %+v: %v, want ErrInvalid", task, err)
		}
	}
	if _, err := st.UpdateTask(bg, 1, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a"}, t0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("update with lease 0: %v, want ErrInvalid", err)
	}
	for _, state := range []string{push.JobRunning, "", "stopped"} {
		if _, err := st.FinishJob(bg, 1, state, "", t0, time.Hour); !errors.Is(err, ErrInvalid) {
			t.Errorf("finish as %q: %v, want ErrInvalid", state, err)
		}
	}
	if _, err := st.FinishJob(bg, 1, push.JobDone, "", t0, -time.Hour); !errors.Is(err, ErrInvalid) {
		t.Errorf("finish with a negative keep: %v, want ErrInvalid", err)
	}
	if task := taskOf(t, st, 1, "r"); task.State != push.TaskRunning || task.Owner != "a" || task.Pushed != 0 {
		t.Fatalf("refused calls changed the task: %+v", task)
	}
	// A long error text is cut, not refused.
	long = strings.Repeat("é", maxJobError)
	if !update(t, st, 1, push.JobTask{Room: "r", State: push.TaskFailed, Owner: "a", Error: long}, t0) {
		t.Fatal("update with a long error")
	}
	if task := taskOf(t, st, 1, "r"); len(task.Error) > maxJobError || !strings.HasPrefix(long, task.Error) || len(task.Error) < maxJobError-1 {
		t.Fatalf("error of %d bytes kept as %d bytes", len(long), len(task.Error))
	}
}

func contractJobClosed(t *testing.T, st Store) {
	t0 := jobT0()
	mustCreateJob(t, st, tjob(1, t0), "r")
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := st.CreateJob(ctx, tjob(2, t0), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("create job with a cancelled context: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}
	errs["create"] = st.CreateJob(bg, tjob(3, t0), nil)
	_, _, _, errs["job"] = st.Job(bg, 1)
	_, errs["running"] = st.RunningJobs(bg)
	_, errs["claim"] = st.ClaimTask(bg, 1, "r", "a", t0, tLease)
	_, errs["update"] = st.UpdateTask(bg, 1, push.JobTask{Room: "r", State: push.TaskRunning, Owner: "a"}, t0, tLease)
	_, errs["finish"] = st.FinishJob(bg, 1, push.JobDone, "", t0, time.Hour)
	for op, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
}

// Bolt's jobs survive a reopen, claims included.
func TestBoltJobsDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := jobT0()
	mustCreateJob(t, st, tjob(3, t0), "a", "b")
	mustCreateJob(t, st, tjob(4, t0))
	if !claim(t, st, 3, "a", "c1", t0) || !finish(t, st, 4, push.JobDone, "", t0, time.Hour) {
		t.Fatal("claim or finish")
	}
	j3, ts3 := mustJob(t, st, 3)
	j4, _ := mustJob(t, st, 4)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if j, ts := mustJob(t, st, 3); !reflect.DeepEqual(j, j3) || !reflect.DeepEqual(ts, ts3) {
		t.Fatalf("after reopen: %+v %+v, want %+v %+v", j, ts, j3, ts3)
	}
	if j, _ := mustJob(t, st, 4); !reflect.DeepEqual(j, j4) {
		t.Fatalf("after reopen: %+v, want %+v", j, j4)
	}
	wantRunning(t, st, 3)
}

func TestJobRecordRoundTrip(t *testing.T) {
	t0 := jobT0()
	running := tjob(1<<63|5, t0)
	running.State = push.JobRunning
	done := finishedJob(tjob(9, t0), push.JobFailed, "boom", t0, time.Hour)
	for _, j := range []push.Job{running, done, {ID: 1, State: push.JobRunning}} {
		got, err := decodeJob(j.ID, appendJob(nil, &j))
		if len(got.Msg.Payload) == 0 && len(j.Msg.Payload) == 0 {
			got.Msg.Payload, j.Msg.Payload = nil, nil
		}
		if err != nil || !reflect.DeepEqual(got, j) {
			t.Errorf("job round trip: %+v %v, want %+v", got, err, j)
		}
		if s := jobStateOf(appendJob(nil, &j)); s != j.State {
			t.Errorf("jobStateOf = %q, want %q", s, j.State)
		}
	}
	for _, task := range []push.JobTask{
		{Room: "r", State: push.TaskPending},
		{Room: "房间", State: push.TaskRunning, Owner: strings.Repeat("o", maxOwnerLen), Lease: t0.UnixMilli(), Targets: 1 << 40, Pushed: 7, Error: "e"},
		{Room: "r", State: push.TaskFailed, Error: strings.Repeat("e", maxJobError)},
	} {
		got, err := decodeTask(task.Room, appendTask(nil, &task))
		if err != nil || got != task {
			t.Errorf("task round trip: %+v %v, want %+v", got, err, task)
		}
	}
	// Every strict prefix of a record is refused.
	v := appendJob(nil, &running)
	j := running
	for n := range len(v) - len(j.Msg.Payload) {
		if _, err := decodeJob(1, v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("job prefix %d: %v", n, err)
		}
	}
	task := push.JobTask{Room: "r", State: push.TaskDone, Owner: "own", Error: "err"}
	v = appendTask(nil, &task)
	for n := range len(v) {
		if _, err := decodeTask("r", v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("task prefix %d: %v", n, err)
		}
	}
}

// FuzzDecodeJob decodes arbitrary bytes as job and task records: no panic,
// an error that is ErrCorrupt, and what decodes encodes to bytes that
// decode to the same value.
func FuzzDecodeJob(f *testing.F) {
	t0 := time.UnixMilli(1700000000000)
	j := tjob(1, t0)
	j.State = push.JobRunning
	f.Add(appendJob(nil, &j))
	j = finishedJob(j, push.JobDone, "x", t0, time.Hour)
	f.Add(appendJob(nil, &j))
	f.Add(appendTask(nil, &push.JobTask{Room: "r", State: push.TaskRunning, Owner: "c", Lease: 5, Targets: 1, Pushed: 1, Error: "e"}))
	f.Add([]byte{jobVersion, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		if j, err := decodeJob(1, data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("job error %v is not ErrCorrupt", err)
			}
		} else {
			// Compared as bytes: a NaN rate is not equal to itself.
			b := appendJob(nil, &j)
			j2, err := decodeJob(1, b)
			if err != nil || !bytes.Equal(appendJob(nil, &j2), b) {
				t.Fatalf("job re-decode: %+v %v", j2, err)
			}
		}
		if task, err := decodeTask("r", data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("task error %v is not ErrCorrupt", err)
			}
		} else {
			task2, err := decodeTask("r", appendTask(nil, &task))
			if err != nil || task2 != task {
				t.Fatalf("task re-decode: %+v %v, want %+v", task2, err, task)
			}
		}
	})
}

// The job board on a Redis Cluster of three masters: every script touches
// one slot.
func TestRedisClusterJobs(t *testing.T) {
	integrationEnv(t) // before the cluster starts: skipped at once without servers
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: startCluster(t, 3)})
	t.Cleanup(func() { _ = rc.Close() })
	testJobBoard(t, func(t *testing.T, lim Limits) Store {
		return newRedisEnv(t).open(t, RedisOptions{Client: rc, Limits: lim})
	})
}

// RedisStore's job keys carry their drop time as a TTL, and its indexes
// repair themselves: a lost index move after FinishJob, and an index
// entry whose job was never created.
func TestRedisJobsIndex(t *testing.T) {
	e := newRedisEnv(t)
	st := e.open(t, RedisOptions{})
	t0 := jobT0()
	j := tjob(1, t0)
	mustCreateJob(t, st, j, "r")
	ttl := func(want time.Duration) {
		t.Helper()
		got, err := e.rc.PTTL(bg, st.k.job(1)).Result()
		if err != nil || got > want+time.Second || got < want-time.Minute {
			t.Fatalf("job key TTL %v %v, want about %v", got, err, want)
		}
	}
	ttl(time.Until(time.UnixMilli(j.Deadline).Add(jobRunningTTL)))
	if !finish(t, st, 1, push.JobDone, "", t0, time.Hour) {
		t.Fatal("finish")
	}
	ttl(time.Until(t0.Add(time.Hour)))
	score := func(index string, id string) (float64, bool) {
		t.Helper()
		s, err := e.rc.ZScore(bg, index, id).Result()
		if err == redis.Nil {
			return 0, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return s, true
	}
	keep := float64(t0.Add(time.Hour).UnixMilli())
	if _, ok := score(st.k.jobsRunning(), "1"); ok {
		t.Fatal("a finished job is in the running index")
	}
	if s, ok := score(st.k.jobsKept(), "1"); !ok || s != keep {
		t.Fatalf("kept index: %v %v, want %v", s, ok, keep)
	}
	// The index move lost: RunningJobs skips the job and moves it.
	e.rc.ZRem(bg, st.k.jobsKept(), "1")
	e.rc.ZAdd(bg, st.k.jobsRunning(), redis.Z{Score: 1, Member: "1"})
	wantRunning(t, st)
	if _, ok := score(st.k.jobsRunning(), "1"); ok {
		t.Fatal("RunningJobs left a finished job in the running index")
	}
	if s, ok := score(st.k.jobsKept(), "1"); !ok || s != keep {
		t.Fatalf("kept index after repair: %v %v, want %v", s, ok, keep)
	}
	// A listed job without a hash (a CreateJob cut between its two
	// calls) is not running, and Expire prunes it at its score.
	drop := t0.Add(time.Hour)
	e.rc.ZAdd(bg, st.k.jobsRunning(), redis.Z{Score: float64(drop.UnixMilli()), Member: "555"})
	wantRunning(t, st)
	if _, err := st.Expire(bg, drop.Add(-time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, ok := score(st.k.jobsRunning(), "555"); !ok {
		t.Fatal("pruned before its score")
	}
	if _, err := st.Expire(bg, drop); err != nil {
		t.Fatal(err)
	}
	if _, ok := score(st.k.jobsRunning(), "555"); ok {
		t.Fatal("not pruned at its score")
	}
	if _, ok := score(st.k.jobsKept(), "1"); ok {
		t.Fatal("job 1 still indexed past its Keep")
	}
	if n, err := e.rc.Exists(bg, st.k.job(1)).Result(); err != nil || n != 0 {
		t.Fatalf("job 1's key past its Keep: %d %v", n, err)
	}
}
