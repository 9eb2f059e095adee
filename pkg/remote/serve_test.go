package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

func dial(t testing.TB, srv *rpc.Server) *rpc.Client {
	t.Helper()
	c, err := rpc.NewClient(rpc.ClientConfig{Addr: srv.Addr(), Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestServeRegister(t *testing.T) {
	ctx := context.Background()
	api := newFakeRegister()
	c := RegisterClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeRegister(s, api) }))}

	s1 := push.Session{UID: "u1", Room: "r1", ConnID: 1, Apps: []uint32{1, 2}, Since: 100, IP: "1.2.3.4"}
	if prev, err := c.Register(ctx, s1); err != nil || prev != nil {
		t.Fatalf("Register new: %v %v", prev, err)
	}
	s1b := s1
	s1b.Room, s1b.ConnID = "r2", 2
	prev, err := c.Register(ctx, s1b)
	if err != nil || len(prev) != 1 || !reflect.DeepEqual(prev[0], s1) {
		t.Fatalf("Register replace: prev %+v err %v", prev, err)
	}
	if _, ok, err := c.SetApps(ctx, "u1", 2, []uint32{9}); err != nil || !ok {
		t.Fatalf("SetApps: %v %v", ok, err)
	}
	got, ok, err := c.Get(ctx, "u1", 9)
	if err != nil || !ok || got.Room != "r2" || !reflect.DeepEqual(got.Apps, []uint32{9}) {
		t.Fatalf("Get: %+v %v %v", got, ok, err)
	}
	if _, ok, err := c.Get(ctx, "nobody", 0); err != nil || ok {
		t.Fatalf("Get missing: %v %v", ok, err)
	}
	if err := c.Restore(ctx, []push.Session{{UID: "u2", Room: "r1", ConnID: 5, Since: 1}, {UID: "u3", Room: "r1", ConnID: 6}}); err != nil {
		t.Fatal(err)
	}
	ss, err := c.Lookup(ctx, []string{"u1", "u2", "ghost"})
	if err != nil || len(ss) != 2 {
		t.Fatalf("Lookup: %+v %v", ss, err)
	}
	page, next, err := c.Scan(ctx, 0, 0, 2)
	if err != nil || len(page) != 2 || next != 2 {
		t.Fatalf("Scan: %d sessions next %d err %v", len(page), next, err)
	}
	page, next, err = c.Scan(ctx, 0, next, 2)
	if err != nil || len(page) != 1 || next != 0 {
		t.Fatalf("Scan page 2: %d sessions next %d err %v", len(page), next, err)
	}
	cnt, err := c.Counts(ctx)
	want := push.Counts{Total: 3, PerApp: map[uint32]int{9: 1}, PerRoom: map[string]int{"r1": 2, "r2": 1}}
	if err != nil || !reflect.DeepEqual(cnt, want) {
		t.Fatalf("Counts: %+v %v", cnt, err)
	}
	if ok, err := c.Unregister(ctx, "u1", "r2", 1); err != nil || ok {
		t.Fatalf("Unregister stale: %v %v", ok, err)
	}
	if ok, err := c.Unregister(ctx, "u1", "r2", 2); err != nil || !ok {
		t.Fatalf("Unregister: %v %v", ok, err)
	}
}

// fakeSaver records its calls.
type fakeSaver struct {
	mu    sync.Mutex
	saved map[uint64][]string
	bcast []push.Message
	acks  []uint64
	apps  []uint32 // of the last Ack
	stats push.StoreStats
	calls int
	err   error

	status map[uint64]push.MessageStatus // OpenStatus records, by id
	suids  map[uint64][]string
	sent   []push.StatusDelta
	ends   []push.SessionEnd // Checkpoint's
	many   [][]push.AckReq   // AckMany's calls

	queue map[uint64]push.QueuedPush // send queue journal, by id

	job    push.Job // the last CreateJob, its rooms and the last job calls
	rooms  []string
	claim  claimTaskReq
	update updateTaskReq
	finish finishJobReq
}

func newFakeSaver() *fakeSaver { return &fakeSaver{saved: make(map[uint64][]string)} }

func (f *fakeSaver) enter() error {
	f.mu.Lock()
	f.calls++
	return f.err
}

func (f *fakeSaver) Save(_ context.Context, msg push.Message, uids []string) error {
	err := f.enter()
	defer f.mu.Unlock()
	if err == nil {
		f.saved[msg.ID] = uids
	}
	return err
}

func (f *fakeSaver) SaveBroadcast(_ context.Context, msg push.Message) error {
	err := f.enter()
	defer f.mu.Unlock()
	f.bcast = append(f.bcast, msg)
	return err
}

func (f *fakeSaver) Load(_ context.Context, uid string, apps []uint32) ([]push.Message, error) {
	err := f.enter()
	defer f.mu.Unlock()
	var out []push.Message
	for id, uids := range f.saved {
		for _, u := range uids {
			if u == uid {
				out = append(out, push.Message{ID: id, App: apps[0], QoS: push.QoS1, Payload: []byte(uid)})
			}
		}
	}
	return out, err
}

func (f *fakeSaver) Ack(_ context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	err := f.enter()
	defer f.mu.Unlock()
	f.acks = append(f.acks, ids...)
	f.apps = apps
	return len(ids), err
}

func (f *fakeSaver) AckMany(_ context.Context, acks []push.AckReq) (int, error) {
	err := f.enter()
	defer f.mu.Unlock()
	f.many = append(f.many, acks)
	n := 0
	for _, a := range acks {
		n += len(a.IDs)
	}
	return n, err
}

func (f *fakeSaver) Stats(context.Context) (push.StoreStats, error) {
	err := f.enter()
	defer f.mu.Unlock()
	return f.stats, err
}

// UserStats answers len(uid) pending and app parked, so a test can tell
// uids and apps apart.
func (f *fakeSaver) UserStats(_ context.Context, uid string, app uint32) (int, int, error) {
	err := f.enter()
	defer f.mu.Unlock()
	return len(uid), int(app), err
}

func (f *fakeSaver) OpenStatus(_ context.Context, st push.MessageStatus, uids []string) error {
	err := f.enter()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status, f.suids = map[uint64]push.MessageStatus{}, map[uint64][]string{}
	}
	f.status[st.MsgID], f.suids[st.MsgID] = st, uids
	return err
}

func (f *fakeSaver) AddSent(_ context.Context, deltas []push.StatusDelta) error {
	err := f.enter()
	defer f.mu.Unlock()
	f.sent = append(f.sent, deltas...)
	return err
}

func (f *fakeSaver) Checkpoint(_ context.Context, ends []push.SessionEnd) error {
	err := f.enter()
	defer f.mu.Unlock()
	f.ends = append(f.ends, ends...)
	return err
}

func (f *fakeSaver) Status(_ context.Context, app uint32, id uint64) (push.MessageStatus, bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	st, ok := f.status[id]
	if !ok || st.App != app {
		return push.MessageStatus{}, false, err
	}
	return st, true, err
}

// UserState answers the uid followed by the app, so a test can tell them apart.
func (f *fakeSaver) UserState(_ context.Context, app uint32, id uint64, uid string) (string, error) {
	err := f.enter()
	defer f.mu.Unlock()
	return fmt.Sprintf("%s/%d/%d", uid, app, id), err
}

func (f *fakeSaver) Enqueue(_ context.Context, q push.QueuedPush) error {
	err := f.enter()
	defer f.mu.Unlock()
	if f.queue == nil {
		f.queue = map[uint64]push.QueuedPush{}
	}
	f.queue[q.Msg.ID] = q
	return err
}

func (f *fakeSaver) Dequeue(_ context.Context, ids []uint64) error {
	err := f.enter()
	defer f.mu.Unlock()
	for _, id := range ids {
		delete(f.queue, id)
	}
	return err
}

func (f *fakeSaver) Queued(_ context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	err := f.enter()
	defer f.mu.Unlock()
	var out []push.QueuedPush
	for _, q := range f.queue {
		if q.Owner == owner {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b push.QueuedPush) int { return cmp.Compare(a.Msg.ID, b.Msg.ID) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

func (f *fakeSaver) QueueOwners(context.Context) ([]string, error) {
	err := f.enter()
	defer f.mu.Unlock()
	var out []string
	for _, q := range f.queue {
		if !slices.Contains(out, q.Owner) {
			out = append(out, q.Owner)
		}
	}
	slices.Sort(out)
	return out, err
}

func (f *fakeSaver) Claim(_ context.Context, from, to string) (int, error) {
	err := f.enter()
	defer f.mu.Unlock()
	n := 0
	for id, q := range f.queue {
		if q.Owner == from {
			q.Owner = to
			f.queue[id] = q
			n++
		}
	}
	return n, err
}

func (f *fakeSaver) CreateJob(_ context.Context, j push.Job, rooms []string) error {
	err := f.enter()
	defer f.mu.Unlock()
	f.job, f.rooms = j, rooms
	return err
}

func (f *fakeSaver) Job(_ context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if id == 0 || id != f.job.ID {
		return push.Job{}, nil, false, err
	}
	var ts []push.JobTask
	for i, r := range f.rooms {
		ts = append(ts, push.JobTask{Room: r, State: push.TaskRunning, Owner: "c" + r, Lease: int64(i) + 1<<40, Targets: 10, Pushed: int64(i), Error: "e" + r})
	}
	return f.job, ts, true, err
}

func (f *fakeSaver) RunningJobs(context.Context) ([]uint64, error) {
	err := f.enter()
	defer f.mu.Unlock()
	if f.job.ID == 0 {
		return nil, err
	}
	return []uint64{f.job.ID, 1 << 63}, err
}

// The fake's ClaimTask and UpdateTask grant "winner" alone; FinishJob takes done.
func (f *fakeSaver) ClaimTask(_ context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	f.claim = claimTaskReq{ID: id, Room: room, Owner: owner, Now: now, Lease: lease}
	return owner == "winner", err
}

func (f *fakeSaver) UpdateTask(_ context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	f.update = updateTaskReq{ID: id, T: t, Now: now, Lease: lease}
	return t.Owner == "winner", err
}

func (f *fakeSaver) FinishJob(_ context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	err := f.enter()
	defer f.mu.Unlock()
	f.finish = finishJobReq{ID: id, State: state, Error: errMsg, Now: now, Keep: keep}
	return state == push.JobDone, err
}

func TestServeSaverJobs(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}

	if _, _, ok, err := c.Job(ctx, 5); err != nil || ok {
		t.Fatalf("Job unknown: %v %v", ok, err)
	}
	if ids, err := c.RunningJobs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("RunningJobs none: %v %v", ids, err)
	}
	j := push.Job{ID: 1<<62 + 5, App: 3, Msg: push.Message{ID: 1<<62 + 5, App: 3, QoS: push.QoS1, Expire: 1700086400, Broadcast: true, Payload: []byte("all")},
		Rate: 2500.5, Stored: true, Owner: "center-1", Started: 1700000000123, Deadline: 1700000600123, State: push.JobRunning}
	rooms := []string{"room-a", "room-b"}
	if err := c.CreateJob(ctx, j, rooms); err != nil {
		t.Fatal(err)
	}
	got, tasks, ok, err := c.Job(ctx, j.ID)
	if err != nil || !ok || !reflect.DeepEqual(got, j) || len(tasks) != 2 {
		t.Fatalf("Job: %+v %+v %v %v", got, tasks, ok, err)
	}
	if want := (push.JobTask{Room: "room-b", State: push.TaskRunning, Owner: "croom-b", Lease: 1 + 1<<40, Targets: 10, Pushed: 1, Error: "eroom-b"}); tasks[1] != want {
		t.Fatalf("task: %+v, want %+v", tasks[1], want)
	}
	if ids, err := c.RunningJobs(ctx); err != nil || !reflect.DeepEqual(ids, []uint64{j.ID, 1 << 63}) {
		t.Fatalf("RunningJobs: %v %v", ids, err)
	}
	now := time.Unix(1700000001, 123456789)
	for _, owner := range []string{"winner", "loser"} {
		ok, err := c.ClaimTask(ctx, j.ID, "room-a", owner, now, 15*time.Second)
		if err != nil || ok != (owner == "winner") {
			t.Fatalf("ClaimTask %s: %v %v", owner, ok, err)
		}
	}
	task := push.JobTask{Room: "room-a", State: push.TaskDone, Owner: "winner", Targets: 1 << 40, Pushed: 7, Error: "half"}
	if ok, err := c.UpdateTask(ctx, j.ID, task, now, time.Minute); err != nil || !ok {
		t.Fatalf("UpdateTask: %v %v", ok, err)
	}
	if ok, err := c.FinishJob(ctx, j.ID, push.JobFailed, "deadline", now, time.Hour); err != nil || ok {
		t.Fatalf("FinishJob: %v %v", ok, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if !reflect.DeepEqual(api.job, j) || !reflect.DeepEqual(api.rooms, rooms) {
		t.Fatalf("saver saw job %+v rooms %v", api.job, api.rooms)
	}
	cl, up, fin := api.claim, api.update, api.finish
	if cl.ID != j.ID || cl.Room != "room-a" || cl.Owner != "loser" || !cl.Now.Equal(now) || cl.Lease != 15*time.Second {
		t.Fatalf("saver saw claim %+v", cl)
	}
	if up.ID != j.ID || up.T != task || !up.Now.Equal(now) || up.Lease != time.Minute {
		t.Fatalf("saver saw update %+v", up)
	}
	if fin.ID != j.ID || fin.State != push.JobFailed || fin.Error != "deadline" || !fin.Now.Equal(now) || fin.Keep != time.Hour {
		t.Fatalf("saver saw finish %+v", fin)
	}
}

func TestServeSaverQueue(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}

	a := push.QueuedPush{Msg: push.Message{ID: 21, App: 3, QoS: push.QoS1, Expire: 2000000000, Payload: []byte("x")},
		UIDs: []string{"u1", "u2"}, Owner: "center-1", At: 1700000000123}
	b := push.QueuedPush{Msg: push.Message{ID: 20, App: 3}, UIDs: []string{"u3"}, Owner: "center-1", At: 5}
	for _, q := range []push.QueuedPush{a, b} {
		if err := c.Enqueue(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	qs, err := c.Queued(ctx, "center-1", 0)
	if err != nil || len(qs) != 2 || !reflect.DeepEqual(qs[1], a) || qs[0].Msg.ID != 20 || qs[0].At != 5 {
		t.Fatalf("Queued: %+v %v", qs, err)
	}
	if qs, err := c.Queued(ctx, "center-1", 1); err != nil || len(qs) != 1 {
		t.Fatalf("Queued limit 1: %+v %v", qs, err)
	}
	if qs, err := c.Queued(ctx, "center-2", 0); err != nil || len(qs) != 0 {
		t.Fatalf("Queued of nobody: %+v %v", qs, err)
	}
	if owners, err := c.QueueOwners(ctx); err != nil || !reflect.DeepEqual(owners, []string{"center-1"}) {
		t.Fatalf("QueueOwners: %q %v", owners, err)
	}
	if n, err := c.Claim(ctx, "center-1", "center-2"); err != nil || n != 2 {
		t.Fatalf("Claim: %d %v", n, err)
	}
	if err := c.Dequeue(ctx, []uint64{20, 99}); err != nil {
		t.Fatal(err)
	}
	if qs, err := c.Queued(ctx, "center-2", 0); err != nil || len(qs) != 1 || !reflect.DeepEqual(qs[0].UIDs, a.UIDs) || qs[0].Owner != "center-2" {
		t.Fatalf("Queued after Claim and Dequeue: %+v %v", qs, err)
	}
	if owners, err := c.QueueOwners(ctx); err != nil || !reflect.DeepEqual(owners, []string{"center-2"}) {
		t.Fatalf("QueueOwners after Claim: %q %v", owners, err)
	}
}

func (f *fakeSaver) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestServeSaver(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	api.stats = push.StoreStats{Pending: 2, PendingPerApp: map[uint32]int64{1: 2}, Broadcasts: 1, Saved: 3, Acked: 1, Expired: 0, Parked: 0}
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}

	msg := push.Message{ID: 11, App: 1, QoS: push.QoS1, Expire: 2000000000, Payload: []byte("hi")}
	if err := c.Save(ctx, msg, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SaveBroadcast(ctx, push.Message{ID: 12, App: 1, Broadcast: true}); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Load(ctx, "b", []uint32{1})
	if err != nil || len(msgs) != 1 || msgs[0].ID != 11 || string(msgs[0].Payload) != "b" {
		t.Fatalf("Load: %+v %v", msgs, err)
	}
	if n, err := c.Ack(ctx, "b", []uint32{1, 3}, []uint64{11, 12}); err != nil || n != 2 {
		t.Fatalf("Ack: %d %v", n, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || !reflect.DeepEqual(st, api.stats) {
		t.Fatalf("Stats: %+v %v", st, err)
	}
	if pending, parked, err := c.UserStats(ctx, "abc", 7); err != nil || pending != 3 || parked != 7 {
		t.Fatalf("UserStats: %d %d %v", pending, parked, err)
	}
	if pending, parked, err := c.UserStats(ctx, "abc", 0); err != nil || pending != 3 || parked != 0 {
		t.Fatalf("UserStats of every app: %d %d %v", pending, parked, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.bcast) != 1 || !api.bcast[0].Broadcast || !reflect.DeepEqual(api.acks, []uint64{11, 12}) ||
		!reflect.DeepEqual(api.apps, []uint32{1, 3}) {
		t.Fatalf("saver saw %+v %+v apps %v", api.bcast, api.acks, api.apps)
	}
}

func TestServeSaverStatus(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}
	st := push.MessageStatus{MsgID: 21, App: 3, Kind: push.KindMulticast, Created: 1700000000, Expires: 1700003600,
		Targets: 3, Stored: 2, Sent: 5, Acked: 1, Expired: -1, Parked: 1 << 40}
	if err := c.OpenStatus(ctx, st, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	deltas := []push.StatusDelta{{MsgID: 21, App: 3, UID: "a", Sent: 2}, {MsgID: 22, App: 4, Sent: 1000, Targets: 5000}}
	if err := c.AddSent(ctx, deltas); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Status(ctx, 3, 21)
	if err != nil || !ok || got != st {
		t.Fatalf("Status: %+v %v %v", got, ok, err)
	}
	if got, ok, err := c.Status(ctx, 4, 21); err != nil || ok || got != (push.MessageStatus{}) {
		t.Fatalf("Status of another app: %+v %v %v", got, ok, err)
	}
	if s, err := c.UserState(ctx, 3, 21, "b"); err != nil || s != "b/3/21" {
		t.Fatalf("UserState: %q %v", s, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if !reflect.DeepEqual(api.suids[21], []string{"a", "b", "c"}) || !reflect.DeepEqual(api.sent, deltas) {
		t.Fatalf("saver saw uids %v deltas %+v", api.suids[21], api.sent)
	}
}

// A request in the encoding from before apps were tenants (Ack without
// apps, UserStats with a uid alone) is refused, never served as "no app"
// or "every app".
func TestServeSaverRefusesAppless(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	cl := dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))
	old := rawMsg(appendIDs(wire.AppendString(nil, "u"), []uint64{1}))
	for _, tc := range []struct {
		name   string
		method uint16
		body   rpc.Message
	}{
		{"ack", MethodAck, old},
		{"user stats", MethodUserStats, rawMsg(wire.AppendString(nil, "u"))},
	} {
		var out intMsg
		err := call(ctx, cl, 0, tc.method, tc.body, &out)
		var re *rpc.Error
		if !errors.As(err, &re) || re.Code != rpc.CodeBadRequest {
			t.Errorf("%s of the old encoding: %v, want CodeBadRequest", tc.name, err)
		}
	}
	if n := api.count(); n != 0 {
		t.Errorf("the saver was called %d times", n)
	}
}

// rawMsg is a request body given as bytes.
type rawMsg []byte

func (m rawMsg) AppendBinary(b []byte) ([]byte, error) { return append(b, m...), nil }

// fakeCoord records its calls and returns err.
type fakeCoord struct {
	mu     sync.Mutex
	kicks  []push.Session
	ups    []push.Upstream
	events []push.StatusEvent
	err    error
}

func (f *fakeCoord) Kick(_ context.Context, old push.Session, code int, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old.IP = fmt.Sprintf("%d:%s", code, reason) // fold the arguments into what the test reads
	f.kicks = append(f.kicks, old)
	return f.err
}

func (f *fakeCoord) Upstream(_ context.Context, up push.Upstream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ups = append(f.ups, up)
	return f.err
}

func (f *fakeCoord) Status(_ context.Context, ev push.StatusEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return f.err
}

func (f *fakeCoord) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.kicks) + len(f.ups) + len(f.events)
}

func TestServeCoordinator(t *testing.T) {
	ctx := context.Background()
	api := &fakeCoord{}
	c := CoordinatorClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeCoordinator(s, api) }))}
	old := push.Session{UID: "u", Room: "r", ConnID: 3}
	up := push.Upstream{App: 1, UID: "u", Type: 7, Data: []byte("x"), TS: 5}
	ev := push.StatusEvent{App: 1, UID: "u", Event: push.EventOffline, Room: "r", TS: 6}
	if err := c.Kick(ctx, old, push.KickLoginElsewhere, "again"); err != nil {
		t.Fatal(err)
	}
	if err := c.Upstream(ctx, up); err != nil {
		t.Fatal(err)
	}
	if err := c.Status(ctx, ev); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	old.IP = "1:again"
	if !reflect.DeepEqual(api.kicks, []push.Session{old}) || !reflect.DeepEqual(api.ups, []push.Upstream{up}) ||
		!reflect.DeepEqual(api.events, []push.StatusEvent{ev}) {
		t.Fatalf("coordinator saw %+v %+v %+v", api.kicks, api.ups, api.events)
	}
}

// fakeRoom records pushes and holds sessions.
type fakeRoom struct {
	mu       sync.Mutex
	pushes   []push.Message
	targets  int
	kicked   []string
	sessions []push.Session
	deadline bool // the last Push had a ctx deadline
	bcasts   []string
	bcastDL  time.Duration // how far the last Broadcast's deadline was
}

func (f *fakeRoom) Broadcast(ctx context.Context, msg push.Message, perSec float64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		f.bcastDL = time.Until(dl)
	}
	f.bcasts = append(f.bcasts, fmt.Sprintf("%d/%d/%q/%g", msg.ID, msg.App, msg.Payload, perSec))
	return len(f.sessions), nil
}

func (f *fakeRoom) Push(ctx context.Context, msg push.Message, targets []push.Target) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, f.deadline = ctx.Deadline()
	f.pushes = append(f.pushes, msg)
	f.targets += len(targets)
	return len(targets), nil
}

func (f *fakeRoom) Kick(_ context.Context, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kicked = append(f.kicked, fmt.Sprintf("%s/%d/%v/%d/%s", uid, connID, apps, code, reason))
	return connID != 0, nil
}

func (f *fakeRoom) Sessions(context.Context) ([]push.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions, nil
}

func TestServeRoom(t *testing.T) {
	ctx := context.Background()
	api := &fakeRoom{sessions: []push.Session{{UID: "a", Room: "r", ConnID: 1}, {UID: "b", Room: "r", ConnID: 2, Apps: []uint32{4}}}}
	c := RoomClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeRoom(s, api) }))}
	msg := push.Message{ID: 1, App: 4, Payload: []byte("p")}
	if n, err := c.Push(ctx, msg, []push.Target{{UID: "a", ConnID: 1}, {UID: "b", ConnID: 2}}); err != nil || n != 2 {
		t.Fatalf("Push: %d %v", n, err)
	}
	if ok, err := c.Kick(ctx, "a", 1, []uint32{3}, push.KickAdmin, "bye"); err != nil || !ok {
		t.Fatalf("Kick: %v %v", ok, err)
	}
	ss, err := c.Sessions(ctx)
	if err != nil || !reflect.DeepEqual(ss, api.sessions) {
		t.Fatalf("Sessions: %+v %v", ss, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if !api.deadline {
		t.Error("the handler's ctx did not carry the caller's deadline (DefaultTimeout)")
	}
	if len(api.pushes) != 1 || string(api.pushes[0].Payload) != "p" || api.kicked[0] != "a/1/[3]/2/bye" {
		t.Fatalf("room saw %+v %v", api.pushes, api.kicked)
	}
}

func TestServeErrors(t *testing.T) {
	localNoCallback := errors.New("coordinator: app has no callback")
	localInvalid := errors.New("register: invalid argument")
	api := &fakeCoord{}
	c := CoordinatorClient{C: dial(t, startRPC(t, func(s *rpc.Server) {
		ServeCoordinator(s, api, MapError(localNoCallback, ErrNoCallback), MapError(localInvalid, ErrInvalid))
	}))}
	downstream := rpc.NewError(rpc.CodeUser+77, "from further away")
	for _, tc := range []struct {
		name string
		err  error
		is   []error
		not  []error
	}{
		{"overloaded", fmt.Errorf("queue full: %w", push.ErrOverloaded), []error{push.ErrOverloaded, rpc.ErrOverloaded}, []error{push.ErrUnavailable}},
		{"unavailable", fmt.Errorf("redis: %w", push.ErrUnavailable), []error{push.ErrUnavailable}, []error{push.ErrClosed}},
		{"closed", fmt.Errorf("coordinator: %w", push.ErrClosed), []error{push.ErrClosed, push.ErrUnavailable}, []error{push.ErrOverloaded}},
		{"no callback", localNoCallback, []error{ErrNoCallback}, []error{ErrInvalid, push.ErrUnavailable}},
		{"invalid", fmt.Errorf("bad uid: %w", localInvalid), []error{ErrInvalid}, []error{ErrNoCallback}},
		{"downstream code kept", fmt.Errorf("kick: %w", downstream), []error{downstream}, []error{push.ErrUnavailable}},
		{"internal", errors.New("boom"), nil, []error{push.ErrUnavailable, push.ErrOverloaded, push.ErrClosed, ErrNoCallback}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.mu.Lock()
			api.err = tc.err
			api.mu.Unlock()
			err := c.Upstream(context.Background(), push.Upstream{UID: "u"})
			if err == nil {
				t.Fatal("no error")
			}
			var re *rpc.Error
			if !errors.As(err, &re) {
				t.Fatalf("%v (%T) is not an *rpc.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("message %q lost %q", err, tc.err)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("errors.Is(%v, %v) = false", err, want)
				}
			}
			for _, not := range tc.not {
				if errors.Is(err, not) {
					t.Errorf("errors.Is(%v, %v) = true", err, not)
				}
			}
			if tc.is == nil && re.Code != rpc.CodeInternal {
				t.Errorf("code %d, want CodeInternal", re.Code)
			}
		})
	}
}

func TestServeBadRequest(t *testing.T) {
	c := dial(t, startRPC(t, func(s *rpc.Server) { ServeRegister(s, newFakeRegister()) }))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range []uint16{MethodGet, MethodRegister, MethodLookup, MethodRestore, MethodScan} {
		body := rpc.Bytes{0xff, 0xff, 0xff} // a length past the end
		if err := c.Call(ctx, m, &body, nil); !errors.Is(err, rpc.ErrBadRequest) {
			t.Errorf("method %#x: err %v, want ErrBadRequest", m, err)
		}
	}
	if err := c.Call(ctx, MethodSave, nil, nil); !errors.Is(err, rpc.ErrUnknownMethod) {
		t.Errorf("saver method on a register: err %v, want ErrUnknownMethod", err)
	}
}
