package center

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// addUsers puts n users of app on rooms room-0..room-(rooms-1).
func addUsers(e *env, prefix string, n, rooms int, apps ...uint32) {
	for i := 0; i < n; i++ {
		e.reg.add(session(fmt.Sprintf("%s%03d", prefix, i), fmt.Sprint("room-", i%rooms), uint64(i+1), apps...))
	}
}

// startBroadcast posts a broadcast and returns its job id and msg id.
func startBroadcast(t *testing.T, e *env, app, key, body string) (string, string) {
	t.Helper()
	a := e.do(t, "POST", "/v1/apps/"+app+"/broadcast", key, body)
	if a.status != 202 {
		t.Fatalf("broadcast: %d %s", a.status, a.body)
	}
	m := a.json(t)
	job, _ := m["job_id"].(string)
	msg, _ := m["msg_id"].(string)
	if _, err := strconv.ParseUint(job, 10, 64); err != nil || len(m) != 2 {
		t.Fatalf("answer %s", a.body)
	}
	if _, err := strconv.ParseUint(msg, 10, 64); err != nil {
		t.Fatalf("answer %s", a.body)
	}
	return job, msg
}

// jobState polls the job until it leaves "running" and returns its status.
func waitJob(t *testing.T, e *env, job, key string) map[string]any {
	t.Helper()
	var m map[string]any
	testkit.WaitFor(t, "job "+job+" to finish", 5*time.Second, func() bool {
		a := e.do(t, "GET", "/v1/jobs/"+job, key, "")
		if a.status != 200 {
			t.Fatalf("job: %d %s", a.status, a.body)
		}
		m = a.json(t)
		return m["state"] != JobRunning
	})
	return m
}

func TestBroadcastJob(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		stored float64
		calls0 string
	}{
		{"qos 1 is stored first", `{"text":"news"}`, 1, "save_broadcast"},
		{"qos 0 is not stored", `{"text":"news","qos":0,"ttl":30}`, 0, "rooms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(c *config.Config) { c.Apps[0].BroadcastRate = 3000 })
			addUsers(e, "u", 25, 3, 1)
			addUsers(e, "other", 3, 3, 2)
			before := time.Now().Unix()
			job, msgID := startBroadcast(t, e, "1", key1, tc.body)
			m := waitJob(t, e, job, key1)
			want := map[string]any{"state": JobDone, "targets": 25.0, "pushed": 25.0, "stored": tc.stored}
			for k, v := range want {
				if m[k] != v {
					t.Fatalf("job %v: %s = %v, want %v", m, k, m[k], v)
				}
			}
			started, finished := m["started"].(float64), m["finished"].(float64)
			if int64(started) < before || finished < started {
				t.Fatalf("started %v finished %v", started, finished)
			}
			if m["msg_id"] != msgID || m["job_id"] != job {
				t.Fatalf("job %v", m)
			}
			log := e.ev.list()
			if log[0] != tc.calls0 {
				t.Fatalf("first call %s, want %s (calls %v)", log[0], tc.calls0, log)
			}
			// One call per room, each with its share of the app's rate.
			rooms := make(map[string]bool)
			for _, b := range e.rooms.broadcasted() {
				if !b.msg.Broadcast || strconv.FormatUint(b.msg.ID, 10) != msgID || string(b.msg.Payload) != "news" {
					t.Fatalf("broadcast message %+v", b.msg)
				}
				if b.perSec != 1000 {
					t.Fatalf("room %s paced at %v/s, want 3000/3", b.room, b.perSec)
				}
				if rooms[b.room] {
					t.Fatalf("room %s called twice", b.room)
				}
				rooms[b.room] = true
			}
			if len(rooms) != 3 || len(e.rooms.pushed()) != 0 {
				t.Fatalf("rooms called %v and %d targeted pushes; want 3 rooms, no push", rooms, len(e.rooms.pushed()))
			}
		})
	}
}

func TestBroadcastFailures(t *testing.T) {
	t.Run("save fails", func(t *testing.T) {
		e := newEnv(t, Config{}, oneSlot)
		e.store.err = errDown
		a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x"}`)
		if a.status != 503 || a.errCode(t) != "unavailable" {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if log := e.ev.list(); len(log) != 1 {
			t.Fatalf("calls %v, want only the save", log)
		}
		e.store.mu.Lock()
		e.store.err = nil
		e.store.mu.Unlock()
		job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`) // the slot was given back
		waitJob(t, e, job, key1)
	})
	t.Run("room list fails", func(t *testing.T) {
		e := newEnv(t, Config{}, nil)
		addUsers(e, "u", 5, 2, 1)
		e.rooms.errIDs = errDown
		job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
		m := waitJob(t, e, job, key1)
		if m["state"] != JobFailed || m["error"] == "" || m["pushed"] != 0.0 || m["stored"] != 1.0 {
			t.Fatalf("job %v", m)
		}
	})
	t.Run("one room fails", func(t *testing.T) {
		e := newEnv(t, Config{}, nil)
		addUsers(e, "u", 6, 2, 1) // 3 on room-0, 3 on room-1
		e.rooms.down = map[string]bool{"room-1": true}
		job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
		m := waitJob(t, e, job, key1)
		errText, _ := m["error"].(string)
		if m["state"] != JobFailed || !strings.Contains(errText, "room-1") || m["pushed"] != 3.0 {
			t.Fatalf("job %v: want failed naming room-1, the other room's 3 pushed", m)
		}
	})
	t.Run("no rooms", func(t *testing.T) {
		e := newEnv(t, Config{}, nil)
		job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
		if m := waitJob(t, e, job, key1); m["state"] != JobDone || m["pushed"] != 0.0 {
			t.Fatalf("job %v", m)
		}
	})
}

func TestBroadcastValidation(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	tests := []struct {
		name, body string
		status     int
	}{
		{"rate 0", `{"text":"x","rate":0}`, 400},
		{"negative rate", `{"text":"x","rate":-5}`, 400},
		{"rate 1e-300", `{"text":"x","rate":1e-300}`, 400},
		{"rate below min_broadcast_rate", `{"text":"x","rate":9.99}`, 400},
		{"rate out of float range", `{"text":"x","rate":1e400}`, 400},
		{"rate at min_broadcast_rate", `{"text":"x","rate":10}`, 202},
		{"unknown field", `{"text":"x","uids":["u1"]}`, 400},
		{"too large", `{"text":"0123456789abcdefg"}`, 413},
		{"no payload", `{"qos":1}`, 400},
		{"ok with rate", `{"text":"x","rate":100.5}`, 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, tc.body); a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
		})
	}
}

// oneSlot lets the center run one broadcast job at a time.
func oneSlot(c *config.Config) { c.Center.MaxJobs, c.Center.MaxJobsPerApp = 1, 1 }

func TestBroadcastJobSlots(t *testing.T) {
	e := newEnv(t, Config{}, oneSlot)
	addUsers(e, "u", 3, 1, 1)
	e.rooms.block = make(chan struct{})
	job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
	a := e.do(t, "GET", "/v1/jobs/"+job, key1, "")
	m := a.json(t)
	if _, has := m["finished"]; m["state"] != JobRunning || has {
		t.Fatalf("running job %s", a.body)
	}
	a = e.do(t, "POST", "/v1/apps/2/broadcast", key2, `{"text":"x"}`)
	if a.status != 429 || a.errCode(t) != "rate_limited" || a.header.Get("Retry-After") == "" {
		t.Fatalf("second job: %d %s %v", a.status, a.body, a.header)
	}
	close(e.rooms.block)
	waitJob(t, e, job, key1)
	job2, _ := startBroadcast(t, e, "2", key2, `{"text":"x"}`)
	waitJob(t, e, job2, adminKey)
}

// Shutdown stops the center's tasks but not the job: it stays on the board,
// and a center restarted on the same store (the same member id) takes its
// task back at once and finishes it.
func TestBroadcastShutdownLeavesJobs(t *testing.T) {
	e := newEnv(t, Config{ID: "center-1"}, nil)
	e.svc.runner.timing = fastJobs
	addUsers(e, "u", 3, 1, 1)
	block := make(chan struct{})
	e.rooms.block = block
	job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
	id, _ := strconv.ParseUint(job, 10, 64)
	testkit.WaitFor(t, "center-1 to hold the task", 5*time.Second, func() bool {
		_, ts, _, _ := e.store.Job(context.Background(), id)
		return len(ts) == 1 && ts[0].State == push.TaskRunning && ts[0].Owner == "center-1"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := e.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if total, _ := e.svc.slots.running(1); total != 0 {
		t.Fatalf("%d slots still taken after shutdown", total)
	}
	if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x","qos":0}`); a.status != 503 {
		t.Fatalf("broadcast after shutdown: %d %s", a.status, a.body)
	}
	if m := e.do(t, "GET", "/v1/jobs/"+job, key1, "").json(t); m["state"] != JobRunning {
		t.Fatalf("job after shutdown %v, want still running on the board", m)
	}
	close(block)
	restarted, err := New(Config{ID: "center-1"}, Deps{Config: e.conf, IDs: e.svc.ids, Register: e.reg, Saver: e.store, Rooms: e.rooms})
	if err != nil {
		t.Fatal(err)
	}
	restarted.runner.timing = fastJobs
	restarted.startScanner()
	t.Cleanup(func() { restarted.Shutdown(context.Background()) })
	if m := waitJob(t, e, job, key1); m["state"] != JobDone || m["pushed"] != 3.0 {
		t.Fatalf("job after the restart %v", m)
	}
	if n := e.rooms.deliveredCount(); n != 3 {
		t.Fatalf("%d deliveries, want 3", n)
	}
}

func TestBroadcastPacing(t *testing.T) {
	e := newEnv(t, Config{}, func(c *config.Config) { c.Apps[1].BroadcastRate = 20 })
	addUsers(e, "u", 30, 2, 2)
	// The request asks for more than the app allows: 20/s holds, split
	// over the two rooms.
	job, _ := startBroadcast(t, e, "2", key2, `{"text":"x","rate":1000}`)
	waitJob(t, e, job, key2)
	job2, _ := startBroadcast(t, e, "2", key2, `{"text":"x","rate":16}`)
	if m := waitJob(t, e, job2, key2); m["pushed"] != 30.0 {
		t.Fatalf("job %v", m)
	}
	got := e.rooms.broadcasted()
	if len(got) != 4 {
		t.Fatalf("%d room calls, want 4", len(got))
	}
	for i, b := range got {
		want := 10.0
		if i >= 2 {
			want = 8
		}
		if b.perSec != want {
			t.Fatalf("call %d: room %s paced at %v/s, want %v", i, b.room, b.perSec, want)
		}
	}
}

func TestJobEndpoint(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
	waitJob(t, e, job, key1)
	tests := []struct {
		name, path, key string
		status          int
	}{
		{"own app", "/v1/jobs/" + job, key1, 200},
		{"admin", "/v1/jobs/" + job, adminKey, 200},
		{"other app", "/v1/jobs/" + job, key2, 403},
		{"no key", "/v1/jobs/" + job, "", 401},
		{"unknown job", "/v1/jobs/12345", key1, 404},
		{"not a number", "/v1/jobs/abc", key1, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a := e.do(t, "GET", tc.path, tc.key, ""); a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
		})
	}
}

func TestBroadcastFairSlots(t *testing.T) {
	type step struct {
		app, key string
		status   int
		msg      string // part of the 429 message
	}
	tests := []struct {
		name            string
		maxJobs, perApp int
		steps           []step
	}{
		{"one app cannot take every slot", 4, 2, []step{
			{"1", key1, 202, ""},
			{"1", key1, 202, ""},
			{"1", key1, 429, "max_jobs_per_app of 2"},
			{"2", key2, 202, ""},
			{"2", key2, 202, ""},
			{"2", key2, 429, "max_jobs_per_app"},
		}},
		{"the total cap holds", 3, 2, []step{
			{"1", key1, 202, ""},
			{"1", key1, 202, ""},
			{"2", key2, 202, ""},
			{"2", key2, 429, "max_jobs of 3"},
			{"3", key3, 429, "max_jobs of 3"},
			{"1", key1, 429, "max_jobs_per_app"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(c *config.Config) {
				c.Center.MaxJobs, c.Center.MaxJobsPerApp = tc.maxJobs, tc.perApp
			})
			addUsers(e, "a", 2, 1, 1, 2, 3)
			e.rooms.block = make(chan struct{})
			var jobs [][2]string // job id, key
			for i, st := range tc.steps {
				a := e.do(t, "POST", "/v1/apps/"+st.app+"/broadcast", st.key, `{"text":"x","qos":0}`)
				if a.status != st.status {
					t.Fatalf("step %d (app %s): %d %s, want %d", i, st.app, a.status, a.body, st.status)
				}
				if st.status == 202 {
					jobs = append(jobs, [2]string{a.json(t)["job_id"].(string), st.key})
					continue
				}
				if a.errCode(t) != "rate_limited" || a.header.Get("Retry-After") == "" || !strings.Contains(string(a.body), st.msg) {
					t.Fatalf("step %d: %s %v, want rate_limited naming %q with Retry-After", i, a.body, a.header, st.msg)
				}
			}
			if total, _ := e.svc.slots.running(1); total != len(jobs) {
				t.Fatalf("%d slots taken, want %d", total, len(jobs))
			}
			close(e.rooms.block)
			for _, j := range jobs {
				if m := waitJob(t, e, j[0], j[1]); m["state"] != JobDone {
					t.Fatalf("job %v", m)
				}
			}
			// Every slot came back once: the caps hold again, exactly.
			testkit.WaitFor(t, "slots to be free", 5*time.Second, func() bool { total, _ := e.svc.slots.running(1); return total == 0 })
			e.rooms.block = make(chan struct{})
			defer close(e.rooms.block)
			for i := range tc.perApp {
				if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x","qos":0}`); a.status != 202 {
					t.Fatalf("job %d of app 1 after the others finished: %d %s", i, a.status, a.body)
				}
			}
			if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x","qos":0}`); a.status != 429 {
				t.Fatalf("app 1 over its slots again: %d %s", a.status, a.body)
			}
		})
	}
}

func TestBroadcastMinRate(t *testing.T) {
	tests := []struct {
		name    string
		minRate float64
		body    string
		status  int
	}{
		{"default minimum 10/s", 0, `{"text":"x","rate":9}`, 400},
		{"at the default minimum", 0, `{"text":"x","rate":10}`, 202},
		{"tiny rate", 0, `{"text":"x","rate":1e-300}`, 400},
		{"configured minimum", 100, `{"text":"x","rate":50}`, 400},
		{"above the configured minimum", 100, `{"text":"x","rate":150}`, 202},
		{"no rate: the app's", 100, `{"text":"x"}`, 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(c *config.Config) { c.Center.MinBroadcastRate = tc.minRate })
			a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status == 400 && (a.errCode(t) != "bad_request" || !strings.Contains(string(a.body), "min_broadcast_rate")) {
				t.Fatalf("%s: want bad_request naming min_broadcast_rate", a.body)
			}
		})
	}
}

func TestCheckRate(t *testing.T) {
	for _, tc := range []struct {
		rate, min float64
		ok        bool
	}{
		{math.NaN(), 10, false},
		{math.Inf(1), 10, false},
		{math.Inf(-1), 10, false},
		{0, 0, false},
		{-1, 0, false},
		{1e-300, 0, true}, // min_broadcast_rate 0 allows any positive rate
		{1e-300, 10, false},
		{10, 10, true},
		{1e9, 10, true},
	} {
		if got := checkRate(tc.rate, tc.min) == nil; got != tc.ok {
			t.Errorf("checkRate(%v, %v) ok = %v, want %v", tc.rate, tc.min, got, tc.ok)
		}
	}
}

func TestBroadcastJobDeadline(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
		body   string
	}{
		{"center.job_deadline", func(c *config.Config) { c.Center.JobDeadline = time.Second }, `{"text":"x"}`},
		// ttl 2: the expiry is a whole second, 1..2s from now.
		{"the message ttl comes first", nil, `{"text":"x","ttl":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{}, func(c *config.Config) {
				c.Center.MaxJobs, c.Center.MaxJobsPerApp = 2, 1
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			addUsers(e, "u", 4, 2, 1)
			e.rooms.block = make(chan struct{}) // rooms answer only when ctx ends
			defer close(e.rooms.block)
			t0 := time.Now()
			job, _ := startBroadcast(t, e, "1", key1, tc.body)
			if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x"}`); a.status != 429 {
				t.Fatalf("second job of app 1 while the first runs: %d %s", a.status, a.body)
			}
			m := waitJob(t, e, job, key1)
			errText, _ := m["error"].(string)
			if m["state"] != JobFailed || !strings.Contains(errText, "deadline") {
				t.Fatalf("job %v: want failed at its deadline", m)
			}
			if d := time.Since(t0); d > 3500*time.Millisecond {
				t.Fatalf("job ended after %v, want 1..2s", d)
			}
			if dl, _ := m["deadline"].(float64); dl < float64(t0.Unix()+1) || dl > float64(t0.Unix()+2) {
				t.Fatalf("deadline %v, want start+1..2s", m["deadline"])
			}
			testkit.WaitFor(t, "the slot to be free", 5*time.Second, func() bool { _, n := e.svc.slots.running(1); return n == 0 })
			// The slot is free again: app 1 (1 slot) can start a new job.
			startBroadcast(t, e, "1", key1, `{"text":"x","qos":0}`)
			if total, _ := e.svc.slots.running(1); total != 1 {
				t.Fatalf("%d slots taken, want 1", total)
			}
		})
	}
}

func TestJobSlotsReleaseOnce(t *testing.T) {
	var js jobSlots
	r1, why := js.acquire(1, 2, 1)
	if r1 == nil || why != "" {
		t.Fatalf("first slot refused: %s", why)
	}
	if r, why := js.acquire(1, 2, 1); r != nil || why != slotsOfApp {
		t.Fatalf("second slot of app 1: %v %q, want refused %s", r != nil, why, slotsOfApp)
	}
	r2, _ := js.acquire(2, 2, 1)
	if r, why := js.acquire(3, 2, 1); r != nil || why != slotsOfTotal {
		t.Fatalf("third slot: %v %q, want refused %s", r != nil, why, slotsOfTotal)
	}
	r1()
	r1() // a second release gives nothing back
	if total, of1 := js.running(1); total != 1 || of1 != 0 {
		t.Fatalf("after release: total %d, app 1 %d; want 1, 0", total, of1)
	}
	r2()
	if total, _ := js.running(2); total != 0 || len(js.perApp) != 0 {
		t.Fatalf("after all releases: total %d, per app %v", total, js.perApp)
	}
}
