package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

type fakeMembers struct {
	mu sync.Mutex
	m  []push.Member
}

func (f *fakeMembers) Members(role string) []push.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	if role != RoleRoom {
		return nil
	}
	return slices.Clone(f.m)
}

func (f *fakeMembers) set(m []push.Member) {
	f.mu.Lock()
	f.m = m
	f.mu.Unlock()
}

// rooms builds n room members with ports ports each; idc(i) names the IDC.
func rooms(n, ports int, idc func(i int) string) []push.Member {
	out := make([]push.Member, n)
	for i := range out {
		out[i] = push.Member{Role: RoleRoom, ID: fmt.Sprintf("room-%d", i), IDC: idc(i)}
		for p := 0; p < ports; p++ {
			out[i].Addrs = append(out[i].Addrs, fmt.Sprintf("10.0.%d.1:%d", i, 7000+p))
		}
	}
	return out
}

func oneIDC(int) string { return "" }

// owner maps an address back to its room id.
func owner(ms []push.Member, addr string) string {
	for _, m := range ms {
		if slices.Contains(m.Addrs, addr) {
			return m.ID
		}
	}
	return ""
}

func newTestServer(t *testing.T, fm *fakeMembers, cfg Config) *httptest.Server {
	t.Helper()
	s, err := New(cfg, fm)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, base string, q url.Values) (int, dispatchAnswer, errorBody) {
	t.Helper()
	resp, err := http.Get(base + "/v1/dispatch?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans dispatchAnswer
	var eb errorBody
	dec := json.NewDecoder(resp.Body)
	if resp.StatusCode == http.StatusOK {
		err = dec.Decode(&ans)
	} else {
		err = dec.Decode(&eb)
	}
	if err != nil {
		t.Fatalf("decode %d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, ans, eb
}

func TestDispatchHTTP(t *testing.T) {
	fm := &fakeMembers{}
	fm.set(rooms(3, 2, oneIDC))
	ts := newTestServer(t, fm, Config{TTL: 120, MaxAddrs: 4})
	tests := []struct {
		name   string
		q      url.Values
		status int
		code   string
	}{
		{"ok", url.Values{"uid": {"u1"}, "app": {"1"}, "net": {"wifi"}}, 200, ""},
		{"missing uid", url.Values{"app": {"1"}}, 400, "bad_request"},
		{"long uid", url.Values{"uid": {strings.Repeat("x", 129)}}, 400, "bad_request"},
		{"uid of 128 bytes", url.Values{"uid": {strings.Repeat("x", 128)}}, 200, ""},
		{"uid with NUL", url.Values{"uid": {"a\x00b"}}, 400, "bad_request"},
		{"uid with newline", url.Values{"uid": {"a\nb"}}, 400, "bad_request"},
		{"uid not UTF-8", url.Values{"uid": {"a\xffb"}}, 400, "bad_request"},
		{"uid with DEL", url.Values{"uid": {"a\x7f"}}, 400, "bad_request"},
		{"uid in UTF-8", url.Values{"uid": {"用户-ü"}}, 200, ""},
		{"bad app", url.Values{"uid": {"u1"}, "app": {"x"}}, 400, "bad_request"},
		{"bad retry", url.Values{"uid": {"u1"}, "retry": {"-1"}}, 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, ans, eb := get(t, ts.URL, tc.q)
			if st != tc.status {
				t.Fatalf("status %d, want %d", st, tc.status)
			}
			if tc.status != 200 {
				if eb.Error.Code != tc.code || eb.Error.Message == "" {
					t.Fatalf("error %+v, want code %s", eb, tc.code)
				}
				return
			}
			if ans.TTL != 120 || len(ans.Addrs) != 4 {
				t.Fatalf("answer %+v, want ttl 120 and 4 addrs", ans)
			}
		})
	}
	resp, err := http.Post(ts.URL+"/v1/dispatch", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d", resp.StatusCode)
	}
}

func TestNoLiveRoom(t *testing.T) {
	tests := []struct {
		name    string
		members []push.Member
	}{
		{"none", nil},
		{"no addrs", []push.Member{{Role: RoleRoom, ID: "room-1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fm := &fakeMembers{}
			fm.set(tc.members)
			ts := newTestServer(t, fm, Config{})
			st, _, eb := get(t, ts.URL, url.Values{"uid": {"u1"}})
			if st != http.StatusServiceUnavailable || eb.Error.Code != "unavailable" {
				t.Fatalf("got %d %+v, want 503 unavailable", st, eb)
			}
		})
	}
}

func TestStability(t *testing.T) {
	ms := rooms(5, 2, oneIDC)
	first := func(ms []push.Member, uid string) string {
		return pick(ms, request{uid: uid}, 8)[0]
	}
	before := make(map[string]string)
	for i := 0; i < 2000; i++ {
		uid := fmt.Sprintf("user-%d", i)
		before[uid] = first(ms, uid)
		// Same answer again, and whatever order membership is listed in.
		rev := slices.Clone(ms)
		slices.Reverse(rev)
		if a, b := first(ms, uid), first(rev, uid); a != before[uid] || b != before[uid] {
			t.Fatalf("%s: unstable first address %s %s %s", uid, before[uid], a, b)
		}
	}
	// A sixth room joins: users either stay or move to the newcomer.
	grown := append(slices.Clone(ms), rooms(6, 2, oneIDC)[5])
	moved := 0
	for uid, was := range before {
		now := first(grown, uid)
		if now == was {
			continue
		}
		moved++
		if owner(grown, now) != "room-5" {
			t.Fatalf("%s moved from %s to %s, not to the new room", uid, was, now)
		}
	}
	if moved < 2000/6/2 || moved > 2000/6*2 {
		t.Fatalf("%d of 2000 users moved to the new room, want about 1/6", moved)
	}
	// room-2 leaves: only its users move.
	shrunk := slices.DeleteFunc(slices.Clone(ms), func(m push.Member) bool { return m.ID == "room-2" })
	for uid, was := range before {
		if owner(ms, was) != "room-2" && first(shrunk, uid) != was {
			t.Fatalf("%s moved although its room stayed", uid)
		}
	}
}

func TestSpread(t *testing.T) {
	ms := rooms(4, 3, oneIDC)
	perRoom := make(map[string]int)
	perAddr := make(map[string]int)
	const users = 8000
	for i := 0; i < users; i++ {
		addrs := pick(ms, request{uid: fmt.Sprintf("u%d", i)}, 8)
		if len(addrs) != 8 {
			t.Fatalf("%d addrs, want 8", len(addrs))
		}
		seen := make(map[string]bool)
		for j, a := range addrs {
			if seen[a] {
				t.Fatalf("duplicate address %s in %v", a, addrs)
			}
			seen[a] = true
			if j < 4 { // round 1: one address per instance
				if o := owner(ms, a); seen[o] {
					t.Fatalf("instance %s twice in the first round: %v", o, addrs)
				} else {
					seen[o] = true
				}
			}
		}
		perRoom[owner(ms, addrs[0])]++
		perAddr[addrs[0]]++
	}
	for id, n := range perRoom {
		if n < users/4*8/10 || n > users/4*12/10 {
			t.Fatalf("room %s is first for %d of %d users, want about a quarter", id, n, users)
		}
	}
	if len(perAddr) != 12 {
		t.Fatalf("first addresses use %d ports, want all 12", len(perAddr))
	}
}

func TestRetry(t *testing.T) {
	idc := func(i int) string { return []string{"east", "west"}[i%2] }
	ms := rooms(6, 2, idc)
	for i := 0; i < 300; i++ {
		uid := fmt.Sprintf("u%d", i)
		normal := pick(ms, request{uid: uid}, 12)
		home := owner(ms, normal[0])
		homeIDC := idcOf(ms, home)
		// The first address failed: it is left out, another IDC comes first.
		got := pick(ms, request{uid: uid, retry: 1, failed: map[string]bool{normal[0]: true}}, 12)
		if slices.Contains(got, normal[0]) {
			t.Fatalf("failed address %s returned: %v", normal[0], got)
		}
		if len(got) != 11 {
			t.Fatalf("%d addrs, want 11", len(got))
		}
		for j := 0; j < 3; j++ { // the 3 instances of the other IDC
			if o := owner(ms, got[j]); o == home || idcOf(ms, o) == homeIDC {
				t.Fatalf("addr %d %s (instance %s) is in the failed IDC %s: %v", j, got[j], o, homeIDC, got)
			}
		}
		if o := owner(ms, got[len(got)-1]); o != home {
			t.Fatalf("failed instance %s should come last, got %s", home, o)
		}
		// A retry without a list treats the uid's own instance as failed.
		got = pick(ms, request{uid: uid, retry: 2}, 12)
		if len(got) != 12 || owner(ms, got[0]) == home || idcOf(ms, owner(ms, got[0])) == homeIDC {
			t.Fatalf("retry without list: %v (home %s)", got, home)
		}
	}
	// Everything failed: the full list rather than nothing.
	all := make(map[string]bool)
	for _, m := range ms {
		for _, a := range m.Addrs {
			all[a] = true
		}
	}
	if got := pick(ms, request{uid: "u", failed: all}, 8); len(got) != 8 {
		t.Fatalf("all failed: %v", got)
	}
}

func idcOf(ms []push.Member, id string) string {
	for _, m := range ms {
		if m.ID == id {
			return m.IDC
		}
	}
	return ""
}

func TestRetryHTTP(t *testing.T) {
	fm := &fakeMembers{}
	fm.set(rooms(3, 1, oneIDC))
	ts := newTestServer(t, fm, Config{})
	_, ans, _ := get(t, ts.URL, url.Values{"uid": {"u9"}})
	failed := ans.Addrs[0] + ", " + ans.Addrs[1]
	_, got, _ := get(t, ts.URL, url.Values{"uid": {"u9"}, "failed": {failed}, "retry": {"1"}})
	if len(got.Addrs) != 1 || got.Addrs[0] != ans.Addrs[2] {
		t.Fatalf("after failing %s: %v, want [%s]", failed, got.Addrs, ans.Addrs[2])
	}
}

func TestStartShutdown(t *testing.T) {
	fm := &fakeMembers{}
	fm.set(rooms(2, 1, oneIDC))
	s, err := New(Config{Addr: "127.0.0.1:0"}, fm)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, ans, _ := get(t, "http://"+s.Addr(), url.Values{"uid": {"u1"}})
	if st != 200 || len(ans.Addrs) != 2 || ans.TTL != 300 {
		t.Fatalf("got %d %+v", st, ans)
	}
	for i := 0; i < 2; i++ {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := http.Get("http://" + s.Addr() + "/v1/dispatch?uid=u1"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{4, 32, 128} {
		ms := rooms(n, 2, func(i int) string { return fmt.Sprint("idc", i%3) })
		b.Run(fmt.Sprint("rooms=", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pick(ms, request{uid: "user-12345678"}, 8)
			}
		})
	}
}
