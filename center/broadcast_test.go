package center

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
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
	waitFor(t, "job "+job+" to finish", func() bool {
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
		e := newEnv(t, Config{MaxJobs: 1}, nil)
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

func TestBroadcastJobSlots(t *testing.T) {
	e := newEnv(t, Config{MaxJobs: 1}, nil)
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

func TestBroadcastShutdownStopsJobs(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	addUsers(e, "u", 3, 1, 1)
	e.rooms.block = make(chan struct{}) // never released
	job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := e.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if m := waitJob(t, e, job, key1); m["state"] != JobFailed {
		t.Fatalf("job after shutdown %v", m)
	}
	if a := e.do(t, "POST", "/v1/apps/1/broadcast", key1, `{"text":"x","qos":0}`); a.status != 503 {
		t.Fatalf("broadcast after shutdown: %d %s", a.status, a.body)
	}
}

func TestBroadcastPacing(t *testing.T) {
	e := newEnv(t, Config{}, func(c *config.Config) { c.Apps[1].BroadcastRate = 20 })
	addUsers(e, "u", 30, 2, 2)
	// The request asks for more than the app allows: 20/s holds, split
	// over the two rooms.
	job, _ := startBroadcast(t, e, "2", key2, `{"text":"x","rate":1000}`)
	waitJob(t, e, job, key2)
	job2, _ := startBroadcast(t, e, "2", key2, `{"text":"x","rate":8}`)
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
			want = 4
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

func TestJobStoreKeepsRecent(t *testing.T) {
	st := newJobStore(3)
	running := &Job{ID: 1, state: JobRunning}
	st.add(running)
	for id := uint64(2); id <= 6; id++ {
		st.add(&Job{ID: id, state: JobDone})
	}
	for id, want := range map[uint64]bool{1: true, 2: false, 3: false, 4: false, 5: true, 6: true} {
		if _, ok := st.get(id); ok != want {
			t.Fatalf("job %d kept = %v, want %v", id, ok, want)
		}
	}
}
