package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/proto"
)

// typeData lists p's upstream events as "type:data".
func typeData(p *testkit.Product) []string {
	var out []string
	for _, u := range p.Upstreams() {
		out = append(out, fmt.Sprintf("%d:%s", u.Type, u.Data))
	}
	return out
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
	p := testkit.NewProduct(t, testkit.Secret3)
	sys := systest.Start(t, callbackConfig(p.URL(), fmt.Sprintf("callback_batch: %d, callback_queue: 20000", batch)))
	t0 := time.Now()
	conns := make([]*testkit.Conn, n)
	for i := range conns {
		conns[i] = testkit.Login(t, sys.RoomAddr(), 3, fmt.Sprintf("bulk-%d", i))
	}
	testkit.WaitFor(t, "5000 online events", 10*time.Second, func() bool {
		by, _ := p.Status("online")
		return len(by) == n
	})
	_, onlinePosts := p.Status("online")
	t.Logf("%d logins and their online events in %v, %d POSTs", n, time.Since(t0).Round(time.Millisecond), onlinePosts)

	t1 := time.Now()
	for _, c := range conns {
		c.Close()
	}
	testkit.WaitFor(t, "5000 offline events", 10*time.Second, func() bool {
		by, _ := p.Status("offline")
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
		by, _ := p.Status("offline")
		for _, evs := range by {
			if len(evs) > 2 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("a uid got more than its online and offline events")
	}
	p.CheckSignatures()
	by, posts := p.Status("offline")
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
	if m := p.LargestPost(); m > batch {
		t.Fatalf("a POST carried %d events, above callback_batch %d", m, batch)
	}
}

// TestCallbacksStatusDebounce: a client that reconnects within
// status_debounce produces no events; one that stays away gets its
// offline after the window.
func TestCallbacksStatusDebounce(t *testing.T) {
	const window = 2 * time.Second
	p := testkit.NewProduct(t, testkit.Secret3)
	sys := systest.Start(t, callbackConfig(p.URL(), "status_debounce: 2s"))
	offline := func(uid string) bool {
		code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/3/users/"+uid, testkit.Key3, "")
		return code == 200 && out["online"] == false
	}

	debounced0 := testkit.Counter(t, "lcpush_coordinator_debounced_total", map[string]string{"app": "3"})
	flash := testkit.Login(t, sys.RoomAddr(), 3, "flash")
	gone := testkit.Login(t, sys.RoomAddr(), 3, "gone")
	testkit.WaitFor(t, "online events", 5*time.Second, func() bool {
		by, _ := p.Status("online")
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
		by, _ := p.Status("offline")
		return len(by["gone"]) == 2
	})
	if d := time.Since(t0); d < window-100*time.Millisecond {
		t.Fatalf("offline came %v after the disconnect, before the %v window", d, window)
	}
	// The reconnect cancelled the held offline: both events counted as
	// debounced, so nothing of the flash uid can come any more.
	testkit.WaitFor(t, "the flash uid's events debounced", window, func() bool {
		return testkit.Counter(t, "lcpush_coordinator_debounced_total", map[string]string{"app": "3"})-debounced0 >= 2
	})
	by, _ := p.Status("offline")
	if got := strings.Join(by["flash"], ","); got != "online" {
		t.Fatalf("reconnected uid got %q, want only its first online", got)
	}
	if got := strings.Join(by["gone"], ","); got != "online,offline" {
		t.Fatalf("gone uid got %q", got)
	}
	if d := testkit.Counter(t, "lcpush_coordinator_debounced_total", map[string]string{"app": "3"}) - debounced0; d != 2 {
		t.Fatalf("lcpush_coordinator_debounced_total{app=\"3\"} rose by %v, want 2 (the offline and the online)", d)
	}

	// An online followed by an offline is reported: the reconnected
	// session leaves for good.
	again.Close()
	testkit.WaitFor(t, "offline after the window", 2*window, func() bool {
		by, _ := p.Status("offline")
		return len(by["flash"]) == 2
	})
	p.CheckSignatures()
}

// TestCallbacksUpstreamRoutes: types 7 and 8 go to their routes' URLs,
// type 9 (unlisted) and status events to callback_url.
func TestCallbacksUpstreamRoutes(t *testing.T) {
	main, r7, r8 := testkit.NewProduct(t, testkit.Secret3), testkit.NewProduct(t, testkit.Secret3), testkit.NewProduct(t, testkit.Secret3)
	routes := fmt.Sprintf("callback_routes: [{types: [7], url: %q}, {types: [8, 80], url: %q}]", r7.URL(), r8.URL())
	sys := systest.Start(t, callbackConfig(main.URL(), routes))
	c := testkit.Login(t, sys.RoomAddr(), 3, "router")
	for _, tp := range []byte{7, 8, 9, 7} {
		seq := c.Send(proto.OpUpstream, 3, proto.FlagReplyWanted, append([]byte{0, tp}, fmt.Sprint("to-", tp)...))
		if f := c.Expect(proto.OpUpstreamOK); f.Seq != seq {
			t.Fatalf("UPSTREAM_OK seq %d, want %d", f.Seq, seq)
		}
	}
	testkit.WaitFor(t, "routed upstream", 5*time.Second, func() bool {
		return len(typeData(r7)) == 2 && len(typeData(r8)) == 1 && len(typeData(main)) == 1
	})
	testkit.WaitFor(t, "online event on callback_url", 5*time.Second, func() bool {
		by, _ := main.Status("online")
		return len(by["router"]) == 1
	})
	if testkit.Poll(100*time.Millisecond, func() bool { // an extra callback fails at once
		return len(typeData(r7)) > 2 || len(typeData(r8)) > 1 || len(typeData(main)) > 1
	}) {
		t.Fatal("more upstream callbacks than upstream frames")
	}
	tests := []struct {
		name string
		p    *testkit.Product
		want string
	}{
		{"type 7 route", r7, "7:to-7 7:to-7"},
		{"type 8 route", r8, "8:to-8"},
		{"unlisted type on callback_url", main, "9:to-9"},
	}
	for _, tc := range tests {
		if got := strings.Join(typeData(tc.p), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		tc.p.CheckSignatures()
	}
	for _, p := range []*testkit.Product{r7, r8} {
		if by, _ := p.Status("online"); len(by) != 0 {
			t.Errorf("status events on a route URL: %v", by)
		}
	}
}
