package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// product is a product's callback endpoint for app 3: it checks every
// signature and records each POST's events (a batched body's "events", or
// the one event of a plain body).
type product struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	posts  [][]map[string]any // events of each signed POST
	badSig int
}

func newProduct(t *testing.T) *product {
	p := &product{t: t}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(testkit.Secret3))
		mac.Write(body)
		want := hex.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("X-Push-Signature")), []byte(want)) {
			p.mu.Lock()
			p.badSig++
			p.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var events []map[string]any
		if strings.HasPrefix(string(body), `{"events":`) {
			var b struct {
				Events []map[string]any `json:"events"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			events = b.Events
		} else {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			events = []map[string]any{m}
		}
		p.mu.Lock()
		p.posts = append(p.posts, events)
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// status returns, per uid, the events ("online"/"offline") received for
// it in order, and the number of POSTs that carried at least one event
// named which.
func (p *product) status(which string) (byUID map[string][]string, posts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byUID = map[string][]string{}
	for _, evs := range p.posts {
		has := false
		for _, e := range evs {
			if ev, ok := e["event"].(string); ok {
				uid := fmt.Sprint(e["uid"])
				byUID[uid] = append(byUID[uid], ev)
				has = has || ev == which
			}
		}
		if has {
			posts++
		}
	}
	return byUID, posts
}

// upstream returns the upstream events received, as "type:data".
func (p *product) upstream() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, evs := range p.posts {
		for _, e := range evs {
			if tp, ok := e["type"].(float64); ok {
				data, _ := base64.StdEncoding.DecodeString(fmt.Sprint(e["data"]))
				out = append(out, fmt.Sprintf("%d:%s", int(tp), data))
			}
		}
	}
	return out
}

func (p *product) checkSignatures() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.badSig != 0 {
		p.t.Fatalf("%d callbacks with a bad signature", p.badSig)
	}
}

// callbackConfig is the base test configuration with app 3's line
// extended by app3 (YAML flow fields) and the room's per-IP limits
// opened for many local clients.
func callbackConfig(url, app3 string) string {
	c := testkit.ConfigYAML(url)
	c = strings.Replace(c, "status_events: true}", "status_events: true, "+app3+"}", 1)
	return c + "  max_conns_per_ip: 19000\n  max_unauthed_per_ip: 4096\n  connect_rate_per_ip: -1\n"
}

// TestCallbacksBatchedOffline: 5,000 clients of app 3 (callback_batch 500)
// disconnect at once; their offline events reach the product in at most 20
// signed POSTs, every uid's offline exactly once.
func TestCallbacksBatchedOffline(t *testing.T) {
	const n, batch = 5000, 500
	p := newProduct(t)
	sys := systest.Start(t, callbackConfig(p.srv.URL, fmt.Sprintf("callback_batch: %d, callback_queue: 20000", batch)))
	t0 := time.Now()
	conns := make([]*testkit.Conn, n)
	for i := range conns {
		conns[i] = testkit.Login(t, sys.RoomAddr(), 3, fmt.Sprintf("bulk-%d", i))
	}
	testkit.WaitFor(t, "5000 online events", 10*time.Second, func() bool {
		by, _ := p.status("online")
		return len(by) == n
	})
	_, onlinePosts := p.status("online")
	t.Logf("%d logins and their online events in %v, %d POSTs", n, time.Since(t0).Round(time.Millisecond), onlinePosts)

	t1 := time.Now()
	for _, c := range conns {
		c.Close()
	}
	testkit.WaitFor(t, "5000 offline events", 10*time.Second, func() bool {
		by, _ := p.status("offline")
		off := 0
		for _, evs := range by {
			if evs[len(evs)-1] == "offline" {
				off++
			}
		}
		return off == n
	})
	took := time.Since(t1)
	// A late duplicate fails at once; none within 200 ms lets the exact checks below run.
	if testkit.Poll(200*time.Millisecond, func() bool {
		by, _ := p.status("offline")
		for _, evs := range by {
			if len(evs) > 2 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("a uid got more than its online and offline events")
	}
	p.checkSignatures()
	by, posts := p.status("offline")
	t.Logf("%d offline events in %d POSTs, %v after the disconnects", n, posts, took.Round(time.Millisecond))
	if posts > n/batch*2 {
		t.Fatalf("offline events came in %d POSTs, want at most %d", posts, n/batch*2)
	}
	for i := 0; i < n; i++ {
		uid := fmt.Sprintf("bulk-%d", i)
		if got := strings.Join(by[uid], ","); got != "online,offline" {
			t.Fatalf("uid %s got %q, want online,offline exactly once each", uid, got)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, evs := range p.posts {
		if len(evs) > batch {
			t.Fatalf("a POST carried %d events, above callback_batch %d", len(evs), batch)
		}
	}
}

// TestCallbacksStatusDebounce: a client that reconnects within
// status_debounce produces no events; one that stays away gets its
// offline after the window.
func TestCallbacksStatusDebounce(t *testing.T) {
	const window = 2 * time.Second
	p := newProduct(t)
	sys := systest.Start(t, callbackConfig(p.srv.URL, "status_debounce: 2s"))
	offline := func(uid string) bool {
		code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/3/users/"+uid, testkit.Key3, "")
		return code == 200 && out["online"] == false
	}

	debounced0 := debouncedEvents(t)
	flash := testkit.Login(t, sys.RoomAddr(), 3, "flash")
	gone := testkit.Login(t, sys.RoomAddr(), 3, "gone")
	testkit.WaitFor(t, "online events", 5*time.Second, func() bool {
		by, _ := p.status("online")
		return len(by["flash"]) == 1 && len(by["gone"]) == 1
	})
	t0 := time.Now()
	flash.Close()
	gone.Close()
	testkit.WaitFor(t, "both offline in register", 5*time.Second, func() bool { return offline("flash") && offline("gone") })
	again := testkit.Login(t, sys.RoomAddr(), 3, "flash")
	if d := time.Since(t0); d > window/2 {
		t.Fatalf("reconnect took %v, too slow for a %v window", d, window)
	}
	testkit.WaitFor(t, "offline of the uid that stayed away", 2*window, func() bool {
		by, _ := p.status("offline")
		return len(by["gone"]) == 2
	})
	if d := time.Since(t0); d < window-100*time.Millisecond {
		t.Fatalf("offline came %v after the disconnect, before the %v window", d, window)
	}
	// The reconnect cancelled the held offline: both events counted as
	// debounced, so nothing of the flash uid can come any more.
	testkit.WaitFor(t, "the flash uid's events debounced", window, func() bool { return debouncedEvents(t)-debounced0 >= 2 })
	by, _ := p.status("offline")
	if got := strings.Join(by["flash"], ","); got != "online" {
		t.Fatalf("reconnected uid got %q, want only its first online", got)
	}
	if got := strings.Join(by["gone"], ","); got != "online,offline" {
		t.Fatalf("gone uid got %q", got)
	}
	if d := debouncedEvents(t) - debounced0; d != 2 {
		t.Fatalf("lcpush_coordinator_debounced_total{app=\"3\"} rose by %v, want 2 (the offline and the online)", d)
	}

	// An online followed by an offline is reported: the reconnected
	// session leaves for good.
	again.Close()
	testkit.WaitFor(t, "offline after the window", 2*window, func() bool {
		by, _ := p.status("offline")
		return len(by["flash"]) == 2
	})
	p.checkSignatures()
}

// TestCallbacksUpstreamRoutes: types 7 and 8 go to their routes' URLs,
// type 9 (unlisted) and status events to callback_url.
func TestCallbacksUpstreamRoutes(t *testing.T) {
	main, r7, r8 := newProduct(t), newProduct(t), newProduct(t)
	routes := fmt.Sprintf("callback_routes: [{types: [7], url: %q}, {types: [8, 80], url: %q}]", r7.srv.URL, r8.srv.URL)
	sys := systest.Start(t, callbackConfig(main.srv.URL, routes))
	c := testkit.Login(t, sys.RoomAddr(), 3, "router")
	for _, tp := range []byte{7, 8, 9, 7} {
		seq := c.Send(proto.OpUpstream, 3, proto.FlagReplyWanted, append([]byte{0, tp}, fmt.Sprint("to-", tp)...))
		if f := c.Expect(proto.OpUpstreamOK); f.Seq != seq {
			t.Fatalf("UPSTREAM_OK seq %d, want %d", f.Seq, seq)
		}
	}
	testkit.WaitFor(t, "routed upstream", 5*time.Second, func() bool {
		return len(r7.upstream()) == 2 && len(r8.upstream()) == 1 && len(main.upstream()) == 1
	})
	testkit.WaitFor(t, "online event on callback_url", 5*time.Second, func() bool {
		by, _ := main.status("online")
		return len(by["router"]) == 1
	})
	if testkit.Poll(100*time.Millisecond, func() bool { // an extra callback fails at once
		return len(r7.upstream()) > 2 || len(r8.upstream()) > 1 || len(main.upstream()) > 1
	}) {
		t.Fatal("more upstream callbacks than upstream frames")
	}
	tests := []struct {
		name string
		p    *product
		want string
	}{
		{"type 7 route", r7, "7:to-7 7:to-7"},
		{"type 8 route", r8, "8:to-8"},
		{"unlisted type on callback_url", main, "9:to-9"},
	}
	for _, tc := range tests {
		if got := strings.Join(tc.p.upstream(), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		tc.p.checkSignatures()
	}
	for _, p := range []*product{r7, r8} {
		if by, _ := p.status("online"); len(by) != 0 {
			t.Errorf("status events on a route URL: %v", by)
		}
	}
}

// debouncedEvents reads lcpush_coordinator_debounced_total of app 3 from
// this process's metrics (the system runs in it).
func debouncedEvents(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lcpush_coordinator_debounced_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" && l.GetValue() == "3" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
