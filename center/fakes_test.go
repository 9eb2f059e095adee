package center

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/saver"
)

var errDown = errors.New("dependency down")

// events is the ordered log of dependency calls shared by the fakes, to
// check store-then-send.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

type fakeRegister struct {
	ev        *events
	mu        sync.Mutex
	sessions  map[string]push.Session
	errGet    error
	errLookup error
	counts    push.Counts
	// unanswered uids: Lookup returns the others' sessions and a
	// partialAnswer naming these (remote.LookupError's shape).
	unanswered map[string]bool
}

// partialAnswer is a Lookup error with the uids left unanswered.
type partialAnswer struct{ uids []string }

func (p *partialAnswer) Error() string        { return "some registers did not answer" }
func (p *partialAnswer) Unanswered() []string { return p.uids }

// setLookup sets errLookup and unanswered while the center may be calling.
func (f *fakeRegister) setLookup(err error, unanswered ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errLookup = err
	f.unanswered = make(map[string]bool)
	for _, u := range unanswered {
		f.unanswered[u] = true
	}
}

func (f *fakeRegister) add(ss ...push.Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions == nil {
		f.sessions = make(map[string]push.Session)
	}
	for _, s := range ss {
		f.sessions[s.UID] = s
	}
}

func (f *fakeRegister) Get(_ context.Context, uid string, app uint32) (push.Session, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("get")
	if f.errGet != nil {
		return push.Session{}, false, f.errGet
	}
	s, ok := f.sessions[uid]
	if ok && app != 0 && !s.HasApp(app) {
		return push.Session{}, false, nil
	}
	return s, ok, nil
}

func (f *fakeRegister) Lookup(_ context.Context, uids []string) ([]push.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("lookup")
	if f.errLookup != nil {
		return nil, f.errLookup
	}
	var out []push.Session
	var miss []string
	for _, u := range uids {
		if f.unanswered[u] {
			miss = append(miss, u)
		} else if s, ok := f.sessions[u]; ok {
			out = append(out, s)
		}
	}
	if len(miss) > 0 {
		return out, &partialAnswer{miss}
	}
	return out, nil
}

func (f *fakeRegister) Counts(context.Context) (push.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errGet != nil {
		return push.Counts{}, f.errGet
	}
	return f.counts, nil
}

type fakeSaver struct {
	saver.JobBoard           // the job board, shared by the centers of a test
	board          *memBoard // the JobBoard when it is the fake's
	ev             *events
	mu             sync.Mutex
	err            error
	saved          []push.Message
	savedUIDs      [][]string
	broadcasts     []push.Message
	stats          push.StoreStats
	status         map[uint64]push.MessageStatus // delivery status records by message id
	journal        []push.QueuedPush             // the send queue journal, in write order
}

// newFakeSaver returns the fake store with board as its job board (nil:
// a memBoard).
func newFakeSaver(ev *events, board saver.JobBoard) *fakeSaver {
	f := &fakeSaver{ev: ev, JobBoard: board}
	if board == nil {
		f.board = newMemBoard()
		f.JobBoard = f.board
	}
	return f
}

func (f *fakeSaver) Save(_ context.Context, msg push.Message, uids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("save")
	if f.err != nil {
		return f.err
	}
	f.saved = append(f.saved, msg)
	f.savedUIDs = append(f.savedUIDs, slices.Clone(uids))
	return nil
}

func (f *fakeSaver) SaveBroadcast(_ context.Context, msg push.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("save_broadcast")
	if f.err != nil {
		return f.err
	}
	f.broadcasts = append(f.broadcasts, msg)
	return nil
}

func (f *fakeSaver) OpenStatus(context.Context, push.MessageStatus, []string) error { return nil }

func (f *fakeSaver) Enqueue(_ context.Context, q push.QueuedPush) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.journal = append(f.journal, q)
	return nil
}

func (f *fakeSaver) Dequeue(_ context.Context, ids []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.journal = slices.DeleteFunc(f.journal, func(q push.QueuedPush) bool { return slices.Contains(ids, q.Msg.ID) })
	return nil
}

func (f *fakeSaver) Queued(_ context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []push.QueuedPush
	for _, q := range f.journal {
		if q.Owner == owner && len(out) < limit {
			out = append(out, q)
		}
	}
	return out, nil
}
func (f *fakeSaver) QueueOwners(context.Context) ([]string, error)      { return nil, nil }
func (f *fakeSaver) Claim(context.Context, string, string) (int, error) { return 0, nil }

func (f *fakeSaver) Status(_ context.Context, app uint32, id uint64) (push.MessageStatus, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[id]
	if !ok || (app != 0 && st.App != app) {
		return push.MessageStatus{}, false, nil
	}
	return st, true, nil
}

// setStatus sets a message's delivery status record (what the rooms count).
func (f *fakeSaver) setStatus(st push.MessageStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = make(map[uint64]push.MessageStatus)
	}
	f.status[st.MsgID] = st
}

func (f *fakeSaver) UserState(context.Context, uint32, uint64, string) (string, error) {
	return push.StateUnknown, nil
}

func (f *fakeSaver) Stats(context.Context) (push.StoreStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats, f.err
}

// UserStats counts the messages of app (0: every app) saved for uid; none
// are parked.
func (f *fakeSaver) UserStats(_ context.Context, uid string, app uint32) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i, uids := range f.savedUIDs {
		if (app == 0 || f.saved[i].App == app) && slices.Contains(uids, uid) {
			n++
		}
	}
	return n, 0, f.err
}

type roomPush struct {
	room    string
	msg     push.Message
	targets []push.Target
}

type kickCall struct {
	room, uid, reason string
	connID            uint64
	code              int
	apps              []uint32 // the apps taken; the kick is through one app
}

type fakeRooms struct {
	ev         *events
	reg        *fakeRegister // who is connected where, for Broadcast
	mu         sync.Mutex
	pushes     []roomPush
	kicks      []kickCall
	broadcasts []roomBroadcast
	down       map[string]bool          // rooms that fail
	offline    map[string]bool          // uids that are not really connected
	block      chan struct{}            // when set, Push and Broadcast wait on it or on ctx
	slowApp    map[uint32]chan struct{} // Broadcast of these apps' messages waits on it or on ctx
	failNext   map[string][]error       // room -> errors its next Broadcast calls return, one each
	errIDs     error
	reached    map[string]int // room/msg id -> connections its broadcast reached
	delivered  int            // connections reached by broadcasts, in all
}

type roomBroadcast struct {
	room   string
	msg    push.Message
	perSec float64
}

// wait holds a call while block is set, until it is closed or ctx ends.
func (f *fakeRooms) wait(ctx context.Context) error {
	if f.block == nil {
		return nil
	}
	select {
	case <-f.block:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Broadcast reaches the register's sessions on room that have msg.App.
func (f *fakeRooms) Broadcast(ctx context.Context, room string, msg push.Message, perSec float64) (int, error) {
	if err := f.wait(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	slow := f.slowApp[msg.App]
	f.mu.Unlock()
	if slow != nil {
		select {
		case <-slow:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("broadcast:" + room)
	if errs := f.failNext[room]; len(errs) > 0 {
		f.failNext[room] = errs[1:]
		f.broadcasts = append(f.broadcasts, roomBroadcast{room, msg, perSec})
		return 0, errs[0]
	}
	if f.down[room] {
		return 0, errDown
	}
	f.broadcasts = append(f.broadcasts, roomBroadcast{room, msg, perSec})
	// Like a room, once per message: a second call answers the count of
	// the first and delivers nothing more.
	key := room + "/" + strconv.FormatUint(msg.ID, 10)
	if n, ok := f.reached[key]; ok {
		return n, nil
	}
	n := 0
	f.reg.mu.Lock()
	for _, s := range f.reg.sessions {
		if s.Room == room && s.HasApp(msg.App) && !f.offline[s.UID] {
			n++
		}
	}
	f.reg.mu.Unlock()
	if f.reached == nil {
		f.reached = make(map[string]int)
	}
	f.reached[key] = n
	f.delivered += n
	return n, nil
}

// deliveredCount is how many connections got a broadcast, all calls together.
func (f *fakeRooms) deliveredCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered
}

// IDs lists the rooms of the register's sessions, and the down ones.
func (f *fakeRooms) IDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("rooms")
	if f.errIDs != nil {
		return nil, f.errIDs
	}
	set := make(map[string]bool)
	for r := range f.down {
		set[r] = true
	}
	f.reg.mu.Lock()
	for _, s := range f.reg.sessions {
		set[s.Room] = true
	}
	f.reg.mu.Unlock()
	return slices.Sorted(maps.Keys(set)), nil
}

func (f *fakeRooms) broadcasted() []roomBroadcast {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.broadcasts)
}

func (f *fakeRooms) Push(ctx context.Context, room string, msg push.Message, targets []push.Target) (int, error) {
	if err := f.wait(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("push:" + room)
	if f.down[room] {
		return 0, errDown
	}
	f.pushes = append(f.pushes, roomPush{room, msg, slices.Clone(targets)})
	n := 0
	for _, t := range targets {
		if !f.offline[t.UID] {
			n++
		}
	}
	return n, nil
}

func (f *fakeRooms) Kick(_ context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ev.add("kick:" + room)
	if f.down[room] {
		return false, errDown
	}
	f.kicks = append(f.kicks, kickCall{room, uid, reason, connID, code, slices.Clone(apps)})
	return true, nil
}

func (f *fakeRooms) pushed() []roomPush {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pushes)
}

// env is a center behind httptest with its fakes.
type env struct {
	svc   *Service
	srv   *httptest.Server
	conf  *config.Holder
	ev    *events
	reg   *fakeRegister
	store *fakeSaver
	rooms *fakeRooms
}

const (
	adminKey = "admin-key"
	key1     = "key-1"
	key2     = "key-2"
	key3     = "key-3"
)

func testConfig(t testing.TB, mutate func(*config.Config)) *config.Config {
	t.Helper()
	c := &config.Config{
		AdminKey: adminKey,
		Apps: []config.App{
			{ID: 1, Secret: "secret-of-app-one", APIKey: key1, MaxPayload: 16, MaxMulticast: 5},
			{ID: 2, Secret: "secret-of-app-two", APIKey: key2},
			{ID: 3, Secret: "secret-of-app-three", APIKey: key3, PushRate: 1, PushBurst: 2},
		},
	}
	if mutate != nil {
		mutate(c)
	}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t testing.TB, cfg Config, mutate func(*config.Config)) *env {
	t.Helper()
	ev := &events{}
	reg := &fakeRegister{ev: ev}
	e := &env{
		conf:  config.NewHolder(testConfig(t, mutate)),
		ev:    ev,
		reg:   reg,
		store: newFakeSaver(ev, nil),
		rooms: &fakeRooms{ev: ev, reg: reg},
	}
	ids, err := idgen.New(1)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(cfg, Deps{Config: e.conf, IDs: ids, Register: e.reg, Saver: e.store, Rooms: e.rooms})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.svc.Handler())
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.svc.Shutdown(ctx)
	})
	return e
}

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d %q is not JSON: %v", a.status, a.body, err)
	}
	return m
}

// errCode checks the error form {"error":{"code","message"}} and returns the code.
func (a answer) errCode(t *testing.T) string {
	t.Helper()
	var eb struct {
		Error map[string]string `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(string(a.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil || len(eb.Error) != 2 || eb.Error["message"] == "" {
		t.Fatalf("answer %d %q is not the error form: %v", a.status, a.body, err)
	}
	return eb.Error["code"]
}

func (e *env) do(t *testing.T, method, path, key, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// session returns a session of uid on room with apps bound.
func session(uid, room string, conn uint64, apps ...uint32) push.Session {
	return push.Session{UID: uid, Room: room, ConnID: conn, Apps: apps, Since: 1700000000, IP: "10.0.0.1"}
}

// memBoard is an in-memory job board with saver.JobBoard's contract.
type memBoard struct {
	mu   sync.Mutex
	jobs map[uint64]*boardJob
	skew time.Duration // added to the clock that drops jobs past Keep
}

type boardJob struct {
	job   push.Job
	tasks []push.JobTask // by room, ascending
}

func newMemBoard() *memBoard { return &memBoard{jobs: make(map[uint64]*boardJob)} }

// get returns the job, dropping it when past its Keep; call with mu held.
func (b *memBoard) get(id uint64) *boardJob {
	j := b.jobs[id]
	if j != nil && j.job.Keep > 0 && time.Now().Add(b.skew).UnixMilli() >= j.job.Keep {
		delete(b.jobs, id)
		return nil
	}
	return j
}

func (b *memBoard) CreateJob(_ context.Context, j push.Job, rooms []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.jobs[j.ID] != nil {
		return nil
	}
	bj := &boardJob{job: j}
	bj.job.State = push.JobRunning
	for _, r := range slices.Sorted(slices.Values(rooms)) {
		bj.tasks = append(bj.tasks, push.JobTask{Room: r, State: push.TaskPending})
	}
	b.jobs[j.ID] = bj
	return nil
}

func (b *memBoard) Job(_ context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	j := b.get(id)
	if j == nil {
		return push.Job{}, nil, false, nil
	}
	return j.job, slices.Clone(j.tasks), true, nil
}

func (b *memBoard) RunningJobs(context.Context) ([]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []uint64
	for id, j := range b.jobs {
		if j.job.State == push.JobRunning {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (b *memBoard) task(id uint64, room string) (*boardJob, *push.JobTask) {
	j := b.get(id)
	if j == nil || j.job.State != push.JobRunning {
		return nil, nil
	}
	for i := range j.tasks {
		if j.tasks[i].Room == room {
			return j, &j.tasks[i]
		}
	}
	return j, nil
}

func (b *memBoard) ClaimTask(_ context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, t := b.task(id, room)
	if t == nil {
		return false, nil
	}
	switch {
	case t.State == push.TaskPending,
		t.State == push.TaskRunning && (t.Owner == owner || now.UnixMilli() > t.Lease):
		t.State, t.Owner, t.Lease = push.TaskRunning, owner, now.Add(lease).UnixMilli()
		return true, nil
	}
	return false, nil
}

func (b *memBoard) UpdateTask(_ context.Context, id uint64, u push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, t := b.task(id, u.Room)
	if t == nil || t.State != push.TaskRunning || t.Owner != u.Owner || now.UnixMilli() > t.Lease {
		return false, nil
	}
	t.Targets, t.Pushed, t.Error, t.State = u.Targets, u.Pushed, u.Error, u.State
	if u.State == push.TaskRunning {
		t.Lease = now.Add(lease).UnixMilli()
	}
	return true, nil
}

func (b *memBoard) FinishJob(_ context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	j := b.get(id)
	if j == nil || j.job.State != push.JobRunning {
		return false, nil
	}
	j.job.State, j.job.Error, j.job.Finished, j.job.Keep = state, errMsg, now.UnixMilli(), now.Add(keep).UnixMilli()
	j.job.Msg.Payload = nil
	return true, nil
}

// liveSet is the membership of a test's centers (Deps.CenterIDs).
type liveSet struct {
	mu  sync.Mutex
	ids []string
}

func (l *liveSet) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

func (l *liveSet) set(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = ids
}

// fastJobs is the job board's timing in tests: a lease of 1.5 s renewed
// every 100 ms (a loaded machine may stall a renewal for a while), and a
// second for a task's preferred center to claim it.
var fastJobs = jobTiming{
	scan:   50 * time.Millisecond,
	lease:  1500 * time.Millisecond,
	renew:  100 * time.Millisecond,
	prefer: time.Second,
	grace:  200 * time.Millisecond,
}

// newCluster returns one center per member id on the same fakes (one
// store and job board, the same register and rooms), each behind its own
// httptest server, with the job board's timing shortened, and their
// membership (all of them live).
func newCluster(t testing.TB, mutate func(*config.Config), ids ...string) ([]*env, *liveSet) {
	t.Helper()
	return newClusterOn(t, nil, mutate, ids...)
}

// newClusterOn is newCluster on board (nil: a memBoard).
func newClusterOn(t testing.TB, board saver.JobBoard, mutate func(*config.Config), ids ...string) ([]*env, *liveSet) {
	t.Helper()
	first := newEnv(t, Config{}, mutate) // the shared fakes; its own center is not used
	if board != nil {
		first.store = newFakeSaver(first.ev, board)
	}
	live := &liveSet{ids: slices.Clone(ids)}
	var out []*env
	for i, id := range ids {
		e := *first
		gen, err := idgen.New(i + 2)
		if err != nil {
			t.Fatal(err)
		}
		e.svc, err = New(Config{ID: id}, Deps{Config: e.conf, IDs: gen, Register: e.reg, Saver: e.store, Rooms: e.rooms, CenterIDs: live.list})
		if err != nil {
			t.Fatal(err)
		}
		e.svc.runner.timing = fastJobs
		e.svc.startScanner()
		e.srv = httptest.NewServer(e.svc.Handler())
		svc, srv := e.svc, e.srv
		t.Cleanup(func() {
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			svc.Shutdown(ctx)
		})
		out = append(out, &e)
	}
	return out, live
}
