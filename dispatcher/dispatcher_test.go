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

// rooms builds n room members with ports ports each, of every transport
// (tcp 70xx, ws 71xx, wss 72xx, tls 74xx); idc(i) names the IDC.
func rooms(n, ports int, idc func(i int) string) []push.Member {
	out := make([]push.Member, n)
	for i := range out {
		out[i] = push.Member{Role: RoleRoom, ID: fmt.Sprintf("room-%d", i), IDC: idc(i)}
		for p := 0; p < ports; p++ {
			m := &out[i]
			m.Addrs = append(m.Addrs, fmt.Sprintf("10.0.%d.1:%d", i, 7000+p))
			m.WSAddrs = append(m.WSAddrs, fmt.Sprintf("ws://10.0.%d.1:%d/v1/ws", i, 7100+p))
			m.WSSAddrs = append(m.WSSAddrs, fmt.Sprintf("wss://10.0.%d.1:%d/v1/ws", i, 7200+p))
			m.TLSAddrs = append(m.TLSAddrs, fmt.Sprintf("10.0.%d.1:%d", i, 7400+p))
		}
	}
	return out
}

// tcpOnly strips every transport but TCP: rooms as announced before the
// other transports existed.
func tcpOnly(ms []push.Member) []push.Member {
	for i := range ms {
		ms[i].TLSAddrs, ms[i].WSAddrs, ms[i].WSSAddrs = nil, nil, nil
	}
	return ms
}

func oneIDC(int) string { return "" }

// owner maps an address of any transport back to its room id.
func owner(ms []push.Member, addr string) string {
	for _, m := range ms {
		for _, tr := range push.Transports {
			if slices.Contains(m.TransportAddrs(tr), addr) {
				return m.ID
			}
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

// forEachTransport runs f as a subtest per transport.
func forEachTransport(t *testing.T, f func(t *testing.T, tr string)) {
	for _, tr := range push.Transports {
		t.Run(tr, func(t *testing.T) { f(t, tr) })
	}
}

func TestSpread(t *testing.T) { forEachTransport(t, testSpread) }

func testSpread(t *testing.T, tr string) {
	ms := rooms(4, 3, oneIDC)
	perRoom := make(map[string]int)
	perAddr := make(map[string]int)
	const users = 8000
	for i := 0; i < users; i++ {
		addrs := pick(ms, request{uid: fmt.Sprintf("u%d", i), transport: tr}, 8)
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

func TestRetry(t *testing.T) { forEachTransport(t, testRetry) }

func testRetry(t *testing.T, tr string) {
	idc := func(i int) string { return []string{"east", "west"}[i%2] }
	ms := rooms(6, 2, idc)
	for i := 0; i < 300; i++ {
		uid := fmt.Sprintf("u%d", i)
		normal := pick(ms, request{uid: uid, transport: tr}, 12)
		home := owner(ms, normal[0])
		homeIDC := idcOf(ms, home)
		// The first address failed (named host:port, whatever the
		// transport): it is left out, another IDC comes first.
		got := pick(ms, request{uid: uid, transport: tr, retry: 1, failed: map[string]bool{push.HostPort(normal[0]): true}}, 12)
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
		got = pick(ms, request{uid: uid, transport: tr, retry: 2}, 12)
		if len(got) != 12 || owner(ms, got[0]) == home || idcOf(ms, owner(ms, got[0])) == homeIDC {
			t.Fatalf("retry without list: %v (home %s)", got, home)
		}
	}
	// Everything failed: the full list rather than nothing.
	all := make(map[string]bool)
	for _, m := range ms {
		for _, a := range m.TransportAddrs(tr) {
			all[push.HostPort(a)] = true
		}
	}
	if got := pick(ms, request{uid: "u", transport: tr, failed: all}, 8); len(got) != 8 {
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

// serves reports whether addr is one of the transport tr addresses of its room.
func serves(ms []push.Member, tr, addr string) bool {
	for _, m := range ms {
		if slices.Contains(m.TransportAddrs(tr), addr) {
			return true
		}
	}
	return false
}

func TestTransportHTTP(t *testing.T) {
	all := rooms(3, 2, oneIDC)
	// room-2 is a member announced before the other transports: TCP only.
	mixed := rooms(3, 2, oneIDC)
	tcpOnly(mixed[2:])
	type check func(t *testing.T, ms []push.Member, ans dispatchAnswer)
	want := func(tr string, n int, prefix string) check {
		return func(t *testing.T, ms []push.Member, ans dispatchAnswer) {
			if len(ans.Addrs) != n {
				t.Fatalf("%d addrs %v, want %d", len(ans.Addrs), ans.Addrs, n)
			}
			for _, a := range ans.Addrs {
				if !serves(ms, tr, a) || !strings.HasPrefix(a, prefix) {
					t.Fatalf("%s is not a %s address (%v)", a, tr, ans.Addrs)
				}
				if (tr == push.TransportWS || tr == push.TransportWSS) && !strings.HasSuffix(a, "/v1/ws") {
					t.Fatalf("%s is not a WebSocket URL", a)
				}
			}
		}
	}
	tests := []struct {
		name    string
		members []push.Member
		q       url.Values
		status  int
		code    string
		msg     string // in the error message
		check   check
	}{
		{"default is tcp", all, url.Values{}, 200, "", "", want(push.TransportTCP, 6, "10.0.")},
		{"tcp", all, url.Values{"transport": {"tcp"}}, 200, "", "", want(push.TransportTCP, 6, "10.0.")},
		{"ws", all, url.Values{"transport": {"ws"}}, 200, "", "", want(push.TransportWS, 6, "ws://10.0.")},
		{"tls", all, url.Values{"transport": {"tls"}}, 200, "", "", want(push.TransportTLS, 6, "10.0.")},
		{"wss", all, url.Values{"transport": {"wss"}}, 200, "", "", want(push.TransportWSS, 6, "wss://10.0.")},
		{"case-insensitive", all, url.Values{"transport": {"WSS"}}, 200, "", "", want(push.TransportWSS, 6, "wss://")},
		{"mixed tcp: every room", mixed, url.Values{"transport": {"tcp"}}, 200, "", "", want(push.TransportTCP, 6, "10.0.")},
		{"mixed ws: only rooms that serve it", mixed, url.Values{"transport": {"ws"}}, 200, "", "", want(push.TransportWS, 4, "ws://")},
		{"unknown", all, url.Values{"transport": {"quic"}}, 400, "bad_request", `transport must be one of tcp, ws, tls, wss (default tcp), not "quic"`, nil},
		{"list", all, url.Values{"transport": {"tcp,ws"}}, 400, "bad_request", "transport", nil},
		{"url", all, url.Values{"transport": {"ws://"}}, 400, "bad_request", "transport", nil},
		{"bad before transport", all, url.Values{"transport": {"quic"}, "retry": {"x"}}, 400, "bad_request", "retry", nil},
		{"none serves ws", tcpOnly(rooms(2, 1, oneIDC)), url.Values{"transport": {"ws"}}, 503, "unavailable", "no live room serves transport ws", nil},
		{"none serves tls", tcpOnly(rooms(2, 1, oneIDC)), url.Values{"transport": {"tls"}}, 503, "unavailable", "no live room serves transport tls", nil},
		{"no room at all, ws", nil, url.Values{"transport": {"wss"}}, 503, "unavailable", "no live room serves transport wss", nil},
		{"no room at all, tcp", nil, url.Values{}, 503, "unavailable", "no live room", nil},
		{"none serves tcp", []push.Member{{Role: RoleRoom, ID: "r", WSAddrs: []string{"ws://h:1/v1/ws"}}}, url.Values{}, 503, "unavailable", "no live room serves transport tcp", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fm := &fakeMembers{}
			fm.set(tc.members)
			ts := newTestServer(t, fm, Config{})
			tc.q.Set("uid", "u1")
			st, ans, eb := get(t, ts.URL, tc.q)
			if st != tc.status {
				t.Fatalf("status %d (%+v), want %d", st, eb, tc.status)
			}
			if tc.status != 200 {
				if eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.msg) {
					t.Fatalf("error %+v, want code %s and message with %q", eb, tc.code, tc.msg)
				}
				return
			}
			tc.check(t, tc.members, ans)
		})
	}
}

// TestSameInstanceEveryTransport: the uid's own instance does not depend on
// the transport when every room serves them all.
func TestSameInstanceEveryTransport(t *testing.T) {
	ms := rooms(5, 2, oneIDC)
	for i := 0; i < 500; i++ {
		uid := fmt.Sprintf("user-%d", i)
		home := owner(ms, pick(ms, request{uid: uid}, 8)[0])
		for _, tr := range push.Transports {
			if got := owner(ms, pick(ms, request{uid: uid, transport: tr}, 8)[0]); got != home {
				t.Fatalf("%s: first instance over %s is %s, over tcp %s", uid, tr, got, home)
			}
		}
	}
}

// TestFailedHTTPEveryTransport: the failed list is host:port whatever the
// transport; URLs in it are understood as their host:port.
func TestFailedHTTPEveryTransport(t *testing.T) {
	fm := &fakeMembers{}
	fm.set(rooms(3, 1, oneIDC))
	ts := newTestServer(t, fm, Config{})
	for _, tr := range push.Transports {
		t.Run(tr, func(t *testing.T) {
			_, ans, _ := get(t, ts.URL, url.Values{"uid": {"u9"}, "transport": {tr}})
			if len(ans.Addrs) != 3 {
				t.Fatalf("answer %v, want 3 addrs", ans.Addrs)
			}
			tests := []struct {
				name   string
				failed string
				want   []string
			}{
				{"host:port", push.HostPort(ans.Addrs[0]) + ", " + push.HostPort(ans.Addrs[1]), ans.Addrs[2:]},
				{"as given", ans.Addrs[0] + "," + ans.Addrs[1], ans.Addrs[2:]},
				{"one", push.HostPort(ans.Addrs[1]), []string{ans.Addrs[0], ans.Addrs[2]}},
				{"all: the full list", push.HostPort(ans.Addrs[0]) + "," + push.HostPort(ans.Addrs[1]) + "," + push.HostPort(ans.Addrs[2]), ans.Addrs},
			}
			for _, tc := range tests {
				_, got, _ := get(t, ts.URL, url.Values{"uid": {"u9"}, "transport": {tr}, "failed": {tc.failed}, "retry": {"1"}})
				if !slices.Equal(got.Addrs, tc.want) {
					t.Fatalf("%s: failed %s: %v, want %v", tc.name, tc.failed, got.Addrs, tc.want)
				}
			}
		})
	}
	// A failed address of another transport (same host, another port)
	// fails nothing of this one: a plain retry, the uid's instance last.
	_, ws, _ := get(t, ts.URL, url.Values{"uid": {"u9"}, "transport": {"ws"}})
	_, tcp, _ := get(t, ts.URL, url.Values{"uid": {"u9"}})
	_, got, _ := get(t, ts.URL, url.Values{"uid": {"u9"}, "transport": {"ws"}, "failed": {tcp.Addrs[1]}, "retry": {"1"}})
	if want := []string{ws.Addrs[1], ws.Addrs[2], ws.Addrs[0]}; !slices.Equal(got.Addrs, want) {
		t.Fatalf("ws after a failed tcp address: %v, want %v", got.Addrs, want)
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
