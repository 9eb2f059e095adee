package center

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestPushValidation(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	long := strings.Repeat("u", 129)
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"text", `{"uids":["u1"],"text":"hi"}`, 200, ""},
		{"data", `{"uids":["u1"],"data":"aGk="}`, 200, ""},
		{"text and data", `{"uids":["u1"],"text":"hi","data":"aGk="}`, 400, "bad_request"},
		{"neither", `{"uids":["u1"],"qos":1}`, 400, "bad_request"},
		{"bad base64", `{"uids":["u1"],"data":"%%%"}`, 400, "bad_request"},
		{"text at max_payload", `{"uids":["u1"],"text":"0123456789abcdef"}`, 200, ""},
		{"text over max_payload", `{"uids":["u1"],"text":"0123456789abcdefg"}`, 413, "too_large"},
		{"data over max_payload", `{"uids":["u1"],"data":"` + base64.StdEncoding.EncodeToString(make([]byte, 17)) + `"}`, 413, "too_large"},
		{"qos 0", `{"uids":["u1"],"text":"hi","qos":0}`, 200, ""},
		{"qos 2", `{"uids":["u1"],"text":"hi","qos":2}`, 400, "bad_request"},
		{"ttl 0", `{"uids":["u1"],"text":"hi","ttl":0}`, 400, "bad_request"},
		{"ttl over max", `{"uids":["u1"],"text":"hi","ttl":604801}`, 400, "bad_request"},
		{"ttl at max", `{"uids":["u1"],"text":"hi","ttl":604800}`, 200, ""},
		{"no uids", `{"uids":[],"text":"hi"}`, 400, "bad_request"},
		{"uids missing", `{"text":"hi"}`, 400, "bad_request"},
		{"max multicast", `{"uids":["a","b","c","d","e"],"text":"hi"}`, 200, ""},
		{"over max multicast", `{"uids":["a","b","c","d","e","f"],"text":"hi"}`, 400, "bad_request"},
		{"empty uid", `{"uids":["u1",""],"text":"hi"}`, 400, "bad_request"},
		{"uid over 128 bytes", `{"uids":["` + long + `"],"text":"hi"}`, 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, "POST", "/v1/apps/1/push", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.code != "" && a.errCode(t) != tc.code {
				t.Fatalf("code %s, want %s", a.errCode(t), tc.code)
			}
		})
	}
}

// pushEnv has u1, u2 online with app 1 on two rooms, u3 online with app 2
// only, and u4 offline.
func pushEnv(t *testing.T) *env {
	e := newEnv(t, Config{}, nil)
	e.reg.add(
		session("u1", "room-a", 11, 1),
		session("u2", "room-b", 22, 2, 1),
		session("u3", "room-a", 33, 2),
	)
	return e
}

func TestPushStoreThenSend(t *testing.T) {
	e := pushEnv(t)
	before := time.Now().Unix()
	a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1","u2","u3","u4","u1"],"text":"hello","ttl":60}`)
	if a.status != 200 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	m := a.json(t)
	if m["online"] != 2.0 || m["stored"] != 4.0 || len(m) != 3 {
		t.Fatalf("answer %s, want online 2, stored 4", a.body)
	}
	id, err := strconv.ParseUint(m["msg_id"].(string), 10, 64)
	if err != nil || id == 0 {
		t.Fatalf("msg_id %v is not a decimal id", m["msg_id"])
	}
	// Stored first, with the deduplicated uids; then looked up; then pushed.
	log := e.ev.list()
	if len(log) != 4 || log[0] != "save" || log[1] != "lookup" || !slices.Equal(sortedCopy(log[2:]), []string{"push:room-a", "push:room-b"}) {
		t.Fatalf("calls %v, want save, lookup, then one push per room", log)
	}
	msg := e.store.saved[0]
	if msg.ID != id || msg.App != 1 || msg.QoS != push.QoS1 || string(msg.Payload) != "hello" || msg.Broadcast {
		t.Fatalf("stored message %+v", msg)
	}
	if msg.Expire < before+60 || msg.Expire > time.Now().Unix()+60 {
		t.Fatalf("expire %d, want now+60", msg.Expire)
	}
	if !slices.Equal(e.store.savedUIDs[0], []string{"u1", "u2", "u3", "u4"}) {
		t.Fatalf("stored for %v", e.store.savedUIDs[0])
	}
	// u3 has only app 2 bound: not a target.
	for _, p := range e.rooms.pushed() {
		want := map[string]push.Target{"room-a": {UID: "u1", ConnID: 11}, "room-b": {UID: "u2", ConnID: 22}}[p.room]
		if len(p.targets) != 1 || p.targets[0] != want || p.msg.ID != id {
			t.Fatalf("push to %s: %+v", p.room, p)
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestPushFlows(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		setup     func(e *env)
		status    int
		online    float64
		stored    float64
		wantCalls []string // sorted
		payload   string
	}{
		{"qos 0 is not stored", `{"uids":["u1","u4"],"data":"AAEC","qos":0}`, nil, 200, 1, 0,
			[]string{"lookup", "push:room-a"}, "\x00\x01\x02"},
		{"save fails: 503 and nothing pushed", `{"uids":["u1"],"text":"x"}`,
			func(e *env) { e.store.err = errDown }, 503, 0, 0, []string{"save"}, ""},
		{"lookup fails, qos 0: 503", `{"uids":["u1"],"text":"x","qos":0}`,
			func(e *env) { e.reg.errLookup = errDown }, 503, 0, 0, []string{"lookup"}, ""},
		{"one room down", `{"uids":["u1","u2"],"text":"x"}`,
			func(e *env) { e.rooms.down = map[string]bool{"room-a": true} }, 200, 1, 2,
			[]string{"lookup", "push:room-a", "push:room-b", "save"}, "x"},
		{"room says not connected", `{"uids":["u1","u2"],"text":"x"}`,
			func(e *env) { e.rooms.offline = map[string]bool{"u2": true} }, 200, 1, 2,
			[]string{"lookup", "push:room-a", "push:room-b", "save"}, "x"},
		{"nobody online", `{"uids":["u3","u4"],"text":"x"}`, nil, 200, 0, 2, []string{"lookup", "save"}, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := pushEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			a := e.do(t, "POST", "/v1/apps/1/push", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if got := sortedCopy(e.ev.list()); !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("calls %v, want %v", got, tc.wantCalls)
			}
			if tc.status != 200 {
				if a.errCode(t) != "unavailable" || a.header.Get("Retry-After") == "" {
					t.Fatalf("answer %s %v", a.body, a.header)
				}
				return
			}
			m := a.json(t)
			if m["online"] != tc.online || m["stored"] != tc.stored {
				t.Fatalf("answer %s, want online %v stored %v", a.body, tc.online, tc.stored)
			}
			for _, p := range e.rooms.pushed() {
				if string(p.msg.Payload) != tc.payload {
					t.Fatalf("payload %q, want %q", p.msg.Payload, tc.payload)
				}
			}
		})
	}
}

// TestPushRateLimit: past the app's rate a push is queued (202), past the
// queue's bound refused (429 with Retry-After); apps have their own
// budgets and queues, a reload keeps them, and push_queue < 0 turns the
// queue off (429 at once, as before send queues).
func TestPushRateLimit(t *testing.T) {
	e := newEnv(t, Config{}, func(c *config.Config) { c.Apps[2].PushQueue = 3 })
	e.reg.add(session("u1", "room-1", 1, 3))
	body := `{"uids":["u1"],"text":"x","qos":0}`
	for i, want := range []int{200, 200, 202, 202, 202, 429} { // app 3: rate 1/s, burst 2, queue 3
		a := e.do(t, "POST", "/v1/apps/3/push", key3, body)
		if a.status != want {
			t.Fatalf("push %d: %d %s, want %d", i, a.status, a.body, want)
		}
		switch want {
		case 202:
			if m := a.json(t); m["queued"] != float64(i-1) || m["msg_id"] == "" {
				t.Fatalf("push %d: %s, want queued %d", i, a.body, i-1)
			}
		case 429:
			if a.errCode(t) != "rate_limited" {
				t.Fatalf("push %d: %s", i, a.body)
			}
			if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
				t.Fatalf("Retry-After %q, want 1..2 (one recipient to release at 1/s)", a.header.Get("Retry-After"))
			}
		}
	}
	if g := testutil.ToFloat64(queueDepth.WithLabelValues("3")); g != 3 {
		t.Fatalf("lcpush_center_push_queue_depth{app=\"3\"} = %v, want 3", g)
	}
	// Other apps have their own budget.
	if a := e.do(t, "POST", "/v1/apps/1/push", key1, body); a.status != 200 {
		t.Fatalf("app 1: %d", a.status)
	}
	// A reload keeps app 3's spent budget and queue, and serves a new app
	// without a queue.
	e.conf.Store(testConfig(t, func(c *config.Config) {
		c.Apps[2].PushQueue = 3
		c.Apps = append(c.Apps, config.App{ID: 4, Secret: "secret-of-app-four", APIKey: "key-4", PushRate: 1, PushBurst: 1, PushQueue: -1})
	}))
	if a := e.do(t, "POST", "/v1/apps/3/push", key3, body); a.status != http.StatusTooManyRequests {
		t.Fatalf("app 3 after reload: %d, want still limited", a.status)
	}
	for i, want := range []int{200, 429} {
		if a := e.do(t, "POST", "/v1/apps/4/push", "key-4", body); a.status != want {
			t.Fatalf("app 4 push %d: %d, want %d", i, a.status, want)
		}
	}
	// The queue releases at 1/s: its depth goes down, and the released
	// push reaches u1's room.
	testkit.WaitFor(t, "a release of app 3", 5*time.Second, func() bool {
		m := e.do(t, "GET", "/v1/apps/3/queue", key3, "").json(t)
		return m["depth"] == float64(2) && m["bound"] == float64(3)
	})
	testkit.WaitFor(t, "the released push in room-1", 5*time.Second, func() bool {
		n := 0
		for _, p := range e.rooms.pushed() {
			if p.msg.App == 3 {
				n++
			}
		}
		return n == 3 // two sent at once, one released
	})
	// Apps are tenants: another app's key cannot read app 3's queue.
	if a := e.do(t, "GET", "/v1/apps/3/queue", key1, ""); a.status != http.StatusForbidden {
		t.Fatalf("app 1 key on app 3's queue: %d", a.status)
	}
}

func TestGroupByRoom(t *testing.T) {
	ss := []push.Session{
		session("a", "r1", 1, 1), session("b", "r2", 2, 1), session("c", "r1", 3, 1, 2),
		session("d", "r3", 4, 2), {UID: "e", ConnID: 5, Apps: []uint32{1}},
	}
	got := groupByRoom(ss, 1)
	want := []roomTargets{
		{"r1", []push.Target{{UID: "a", ConnID: 1}, {UID: "c", ConnID: 3}}},
		{"r2", []push.Target{{UID: "b", ConnID: 2}}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func BenchmarkPush(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint("uids=", n), func(b *testing.B) {
			e := newEnv(b, Config{}, func(c *config.Config) {
				c.Apps[1].PushRate, c.Apps[1].PushBurst = 1e9, 1e9
			})
			var uids []string
			for i := 0; i < n; i++ {
				uid := fmt.Sprint("user-", i)
				uids = append(uids, `"`+uid+`"`)
				e.reg.add(session(uid, fmt.Sprint("room-", i%8), uint64(i), 2))
			}
			body := `{"uids":[` + strings.Join(uids, ",") + `],"text":"hello","qos":0}`
			h := e.svc.Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/apps/2/push", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key2)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d %s", w.Code, w.Body)
				}
				e.rooms.mu.Lock()
				e.rooms.pushes = e.rooms.pushes[:0]
				e.rooms.mu.Unlock()
				e.ev.mu.Lock()
				e.ev.log = e.ev.log[:0]
				e.ev.mu.Unlock()
			}
		})
	}
}
