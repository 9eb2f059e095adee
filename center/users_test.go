package center

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/token"
)

func TestUserStatus(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.reg.add(session("u1", "room-a", 7, 1, 2), session("u3", "room-a", 9, 2))
	tests := []struct {
		name   string
		path   string
		setup  func()
		status int
		body   string
	}{
		{"online", "/v1/apps/1/users/u1", nil, 200, `{"online":true,"room":"room-a","since":1700000000,"apps":[1],"pending":0,"parked":0}`},
		{"offline", "/v1/apps/1/users/u2", nil, 200, `{"online":false,"pending":0,"parked":0}`},
		{"online with other apps only", "/v1/apps/1/users/u3", nil, 200, `{"online":false,"pending":0,"parked":0}`},
		{"uid too long", "/v1/apps/1/users/" + strings.Repeat("x", 129), nil, 400, ""},
		{"escaped uid", "/v1/apps/1/users/a%2Fb", nil, 200, `{"online":false,"pending":0,"parked":0}`},
		{"registry down", "/v1/apps/1/users/u1", func() { e.reg.errGet = errDown }, 503, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			a := e.do(t, "GET", tc.path, key1, "")
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.body != "" && strings.TrimSpace(string(a.body)) != tc.body {
				t.Fatalf("body %s, want %s", a.body, tc.body)
			}
		})
	}
}

func TestKick(t *testing.T) {
	tests := []struct {
		name   string
		uid    string
		body   string
		down   bool
		status int
		kicked bool
		reason string
	}{
		{"empty body", "u1", "", false, 200, true, "admin"},
		{"empty object", "u1", "{}", false, 200, true, "admin"},
		{"with reason", "u1", `{"reason":"banned for spam"}`, false, 200, true, "banned for spam"},
		{"offline", "u2", "", false, 200, false, ""},
		{"other apps only", "u3", "", false, 200, false, ""},
		{"unknown field", "u1", `{"code":3}`, false, 400, false, ""},
		{"reason too long", "u1", `{"reason":"` + strings.Repeat("r", 257) + `"}`, false, 400, false, ""},
		{"room down", "u1", "", true, 503, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, nil)
			e.reg.add(session("u1", "room-a", 7, 1), session("u3", "room-a", 9, 2))
			if tc.down {
				e.rooms.down = map[string]bool{"room-a": true}
			}
			a := e.do(t, "POST", "/v1/apps/1/users/"+tc.uid+"/kick", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if m := a.json(t); m["kicked"] != tc.kicked || len(m) != 1 {
				t.Fatalf("answer %s", a.body)
			}
			if !tc.kicked {
				if len(e.rooms.kicks) != 0 {
					t.Fatalf("kicks %v", e.rooms.kicks)
				}
				return
			}
			want := kickCall{room: "room-a", uid: "u1", connID: 7, code: push.KickAdmin, reason: tc.reason, apps: []uint32{1}}
			if len(e.rooms.kicks) != 1 || !reflect.DeepEqual(e.rooms.kicks[0], want) {
				t.Fatalf("kicks %+v, want %+v", e.rooms.kicks, want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	tests := []struct {
		name   string
		body   string
		status int
		ttl    int64
	}{
		{"default ttl", `{"uid":"u1"}`, 200, 86400},
		{"ttl", `{"uid":"u1","ttl":60}`, 200, 60},
		{"30 days", `{"uid":"u1","ttl":2592000}`, 200, 2592000},
		{"over 30 days", `{"uid":"u1","ttl":2592001}`, 400, 0},
		{"ttl 0", `{"uid":"u1","ttl":0}`, 400, 0},
		{"no uid", `{"ttl":60}`, 400, 0},
		{"uid too long", `{"uid":"` + strings.Repeat("x", 129) + `"}`, 400, 0},
		{"unknown field", `{"uid":"u1","app":1}`, 400, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			a := e.do(t, "POST", "/v1/apps/1/tokens", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status != 200 {
				return
			}
			m := a.json(t)
			tok, _ := m["token"].(string)
			exp := int64(m["expiry"].(float64))
			if exp < now.Unix()+tc.ttl || exp > time.Now().Unix()+tc.ttl {
				t.Fatalf("expiry %d, want now+%d", exp, tc.ttl)
			}
			if err := token.Verify([]byte("secret-of-app-one"), 1, "u1", tok, time.Now(), 0); err != nil {
				t.Fatalf("token %q does not verify: %v", tok, err)
			}
			if err := token.Verify([]byte("secret-of-app-one"), 2, "u1", tok, time.Now(), 0); err == nil {
				t.Fatal("token verifies for another app")
			}
		})
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.reg.counts = push.Counts{Total: 3, PerApp: map[uint32]int{1: 2, 2: 1}, PerRoom: map[string]int{"room-1": 3}}
	e.store.stats = push.StoreStats{Pending: 5, PendingPerApp: map[uint32]int64{1: 5}, Broadcasts: 1, Saved: 9, Acked: 3, Expired: 1}
	e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x"}`)
	e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x","qos":0}`)
	job, _ := startBroadcast(t, e, "1", key1, `{"text":"x"}`)
	waitJob(t, e, job, key1)
	a := e.do(t, "GET", "/v1/stats", adminKey, "")
	want := `{"online":{"total":3,"apps":{"1":2,"2":1},"rooms":{"room-1":3}},` +
		`"messages":{"pending":5,"pending_per_app":{"1":5},"broadcasts":1,"saved":9,"acked":3,"expired":1,"parked":0},` +
		`"api":{"pushes":2,"broadcasts":1},"queues":{}}`
	if a.status != 200 || strings.TrimSpace(string(a.body)) != want {
		t.Fatalf("stats %d\n%s\nwant\n%s", a.status, a.body, want)
	}

	empty := newEnv(t, Config{}, nil)
	a = empty.do(t, "GET", "/v1/stats", adminKey, "")
	want = `{"online":{"total":0,"apps":{},"rooms":{}},` +
		`"messages":{"pending":0,"pending_per_app":{},"broadcasts":0,"saved":0,"acked":0,"expired":0,"parked":0},` +
		`"api":{"pushes":0,"broadcasts":0},"queues":{}}`
	if strings.TrimSpace(string(a.body)) != want {
		t.Fatalf("empty stats %s", a.body)
	}
	empty.store.err = errDown
	if a := empty.do(t, "GET", "/v1/stats", adminKey, ""); a.status != 503 {
		t.Fatalf("store down: %d", a.status)
	}
}

// TestUIDRule: every endpoint that takes a uid applies push.CheckUID and
// answers 400 bad_request naming the rule, never 503 later on.
func TestUIDRule(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.reg.add(session("u1", "room-a", 7, 1))
	bad := []struct {
		name string
		uid  string
		json string // the uid as JSON text; "" means json.Marshal(uid)
	}{
		{"NUL byte", "a\x00b", ""},
		{"newline", "a\nb", ""},
		{"DEL", "a\x7f", ""},
		{"C1 control", "a\u0085b", ""},
		{"invalid UTF-8", "a\xffb", "\"a\xffb\""}, // json.Marshal would repair it
		{"lone surrogate escape", "", `"a\ud800b"`},
		{"129 bytes", strings.Repeat("x", 129), ""},
		{"empty", "", `""`},
	}
	for _, tc := range bad {
		js := tc.json
		if js == "" {
			b, _ := json.Marshal(tc.uid)
			js = string(b)
		}
		reqs := []struct{ endpoint, method, path, body string }{
			{"push", "POST", "/v1/apps/1/push", `{"uids":["u1",` + js + `],"text":"x"}`},
			{"tokens", "POST", "/v1/apps/1/tokens", `{"uid":` + js + `}`},
		}
		if tc.uid != "" { // in the path: an empty uid is another route
			reqs = append(reqs,
				struct{ endpoint, method, path, body string }{"users", "GET", "/v1/apps/1/users/" + url.PathEscape(tc.uid), ""},
				struct{ endpoint, method, path, body string }{"kick", "POST", "/v1/apps/1/users/" + url.PathEscape(tc.uid) + "/kick", ""},
			)
		}
		for _, rq := range reqs {
			t.Run(tc.name+"/"+rq.endpoint, func(t *testing.T) {
				a := e.do(t, rq.method, rq.path, key1, rq.body)
				if a.status != 400 || a.errCode(t) != "bad_request" || !strings.Contains(string(a.body), "uid") {
					t.Fatalf("%d %s, want 400 bad_request about the uid", a.status, a.body)
				}
			})
		}
	}
	// Nothing reached the dependencies.
	if log := e.ev.list(); len(log) != 0 {
		t.Fatalf("calls %v for refused uids", log)
	}
	good := []string{strings.Repeat("x", 128), "用户-ü", "a b", "\ufffd"}
	for _, uid := range good {
		js, _ := json.Marshal(uid)
		for _, rq := range []struct{ method, path, body string }{
			{"POST", "/v1/apps/1/push", `{"uids":[` + string(js) + `],"text":"x","qos":0}`},
			{"POST", "/v1/apps/1/tokens", `{"uid":` + string(js) + `}`},
			{"GET", "/v1/apps/1/users/" + url.PathEscape(uid), ""},
			{"POST", "/v1/apps/1/users/" + url.PathEscape(uid) + "/kick", ""},
		} {
			if a := e.do(t, rq.method, rq.path, key1, rq.body); a.status != 200 {
				t.Fatalf("uid %q: %s %s: %d %s, want 200", uid, rq.method, rq.path, a.status, a.body)
			}
		}
	}
}

func TestTokenLifetime(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration // room.max_token_lifetime; 0: the default 30 days
		body     string
		status   int
		ttl      int64
	}{
		{"default: 30 days is the max", 0, `{"uid":"u1","ttl":2592000}`, 200, 2592000},
		{"default: over 30 days", 0, `{"uid":"u1","ttl":2592001}`, 400, 0},
		{"one hour max", time.Hour, `{"uid":"u1","ttl":3600}`, 200, 3600},
		{"one hour max: a day", time.Hour, `{"uid":"u1","ttl":86400}`, 400, 0},
		{"one hour max: default ttl shortened", time.Hour, `{"uid":"u1"}`, 200, 3600},
		{"a year allowed", 365 * 24 * time.Hour, `{"uid":"u1","ttl":31536000}`, 200, 31536000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(c *config.Config) { c.Room.MaxTokenLifetime = tc.lifetime })
			now := time.Now().Unix()
			a := e.do(t, "POST", "/v1/apps/1/tokens", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status != 200 {
				if a.errCode(t) != "bad_request" || !strings.Contains(string(a.body), "max_token_lifetime") {
					t.Fatalf("%s: want bad_request naming max_token_lifetime", a.body)
				}
				return
			}
			if exp := int64(a.json(t)["expiry"].(float64)); exp < now+tc.ttl || exp > time.Now().Unix()+tc.ttl {
				t.Fatalf("expiry %d, want now+%d", exp, tc.ttl)
			}
		})
	}
}

// TestUserShowsOnlyThisApp: the users answer of app 1 shows neither the
// other apps bound on the uid's connection nor their stored messages.
func TestUserShowsOnlyThisApp(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.reg.add(session("both", "room-a", 7, 2, 1), session("only2", "room-a", 8, 2))
	for _, p := range []struct{ app, key, uid string }{
		{"2", key2, "both"}, {"2", key2, "both"}, {"1", key1, "both"}, {"2", key2, "only2"},
	} {
		if a := e.do(t, "POST", "/v1/apps/"+p.app+"/push", p.key, `{"uids":["`+p.uid+`"],"text":"x"}`); a.status != 200 {
			t.Fatalf("push: %d %s", a.status, a.body)
		}
	}
	tests := []struct {
		name, path, key, body string
	}{
		{"app 1 on a shared connection", "/v1/apps/1/users/both", key1,
			`{"online":true,"room":"room-a","since":1700000000,"apps":[1],"pending":1,"parked":0}`},
		{"app 2 on the same connection", "/v1/apps/2/users/both", key2,
			`{"online":true,"room":"room-a","since":1700000000,"apps":[2],"pending":2,"parked":0}`},
		{"app 1: a uid online with app 2 only", "/v1/apps/1/users/only2", key1,
			`{"online":false,"pending":0,"parked":0}`},
		{"admin key asks as app 1", "/v1/apps/1/users/both", adminKey,
			`{"online":true,"room":"room-a","since":1700000000,"apps":[1],"pending":1,"parked":0}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, "GET", tc.path, tc.key, "")
			if a.status != 200 || strings.TrimSpace(string(a.body)) != tc.body {
				t.Fatalf("%d %s, want %s", a.status, a.body, tc.body)
			}
		})
	}
}
