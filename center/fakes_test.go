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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
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
	ev         *events
	mu         sync.Mutex
	err        error
	saved      []push.Message
	savedUIDs  [][]string
	broadcasts []push.Message
	stats      push.StoreStats
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

func (f *fakeSaver) Enqueue(context.Context, push.QueuedPush) error { return nil }
func (f *fakeSaver) Dequeue(context.Context, []uint64) error        { return nil }
func (f *fakeSaver) Queued(context.Context, string, int) ([]push.QueuedPush, error) {
	return nil, nil
}
func (f *fakeSaver) QueueOwners(context.Context) ([]string, error)      { return nil, nil }
func (f *fakeSaver) Claim(context.Context, string, string) (int, error) { return 0, nil }

func (f *fakeSaver) Status(context.Context, uint32, uint64) (push.MessageStatus, bool, error) {
	return push.MessageStatus{}, false, nil
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
	down       map[string]bool // rooms that fail
	offline    map[string]bool // uids that are not really connected
	block      chan struct{}   // when set, Push and Broadcast wait on it or on ctx
	errIDs     error
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
	defer f.mu.Unlock()
	f.ev.add("broadcast:" + room)
	if f.down[room] {
		return 0, errDown
	}
	f.broadcasts = append(f.broadcasts, roomBroadcast{room, msg, perSec})
	n := 0
	f.reg.mu.Lock()
	for _, s := range f.reg.sessions {
		if s.Room == room && s.HasApp(msg.App) && !f.offline[s.UID] {
			n++
		}
	}
	f.reg.mu.Unlock()
	return n, nil
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
		store: &fakeSaver{ev: ev},
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
