package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/sdkdriver"
	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// The live cross-tests: every SDK (Go, TypeScript, Java), through its
// driver (conformance/driver.md), against a running system, over each of
// its transports, plays the same scenarios.

// liveSDK is one SDK under test.
type liveSDK struct {
	name       string
	transports []string
	start      func(t *testing.T) *sdkdriver.Driver
}

// needTool fails the test under LCPUSH_INTEGRATION=1 (the test command
// builds every SDK) and skips it otherwise.
func needTool(t *testing.T, what, hint string) {
	t.Helper()
	if os.Getenv("LCPUSH_INTEGRATION") == "1" {
		t.Fatalf("LCPUSH_INTEGRATION=1 but %s is missing: %s", what, hint)
	}
	t.Skipf("%s missing (%s)", what, hint)
}

func liveSDKs() []liveSDK {
	return []liveSDK{
		{"go", []string{"tcp", "ws"}, func(t *testing.T) *sdkdriver.Driver {
			return sdkdriver.Pipe(t, "go", sdkdriver.ServeGo)
		}},
		{"ts", []string{"tcp", "ws"}, func(t *testing.T) *sdkdriver.Driver {
			node, err := exec.LookPath("node")
			if err != nil {
				needTool(t, "node", "install Node 20")
			}
			if _, err := os.Stat(filepath.Join("sdk", "typescript", "dist", "node.js")); err != nil {
				needTool(t, "the built TypeScript SDK", "cd sdk/typescript && npm ci && npm run build")
			}
			return sdkdriver.Start(t, "ts", exec.Command(node, filepath.Join("sdk", "typescript", "test", "driver.mjs")), driverLog(t, "ts"))
		}},
		{"java", []string{"tcp"}, func(t *testing.T) *sdkdriver.Driver {
			java, err := exec.LookPath("java")
			if err != nil {
				needTool(t, "java", "install a JDK 17")
			}
			build := filepath.Join("sdk", "java", "build")
			if _, err := os.Stat(filepath.Join(build, "test-classes", "io", "lcpush", "sdk", "Driver.class")); err != nil {
				needTool(t, "the built Java SDK", "bash sdk/java/build.sh")
			}
			cp := filepath.Join(build, "classes") + string(os.PathListSeparator) + filepath.Join(build, "test-classes")
			return sdkdriver.Start(t, "java", exec.Command(java, "-cp", cp, "io.lcpush.sdk.Driver"), driverLog(t, "java"))
		}},
	}
}

// driverLog is where a driver's stderr goes: the test log when it fails
// (LCPUSH_TEST_LOG=1: always to stderr).
func driverLog(t *testing.T, name string) io.Writer {
	if os.Getenv("LCPUSH_TEST_LOG") != "" {
		return os.Stderr
	}
	var mu sync.Mutex
	var b strings.Builder
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() && b.Len() > 0 {
			t.Logf("%s driver stderr:\n%s", name, b.String())
		}
	})
	return writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if b.Len() < 1<<20 {
			b.Write(p)
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestSDKLive(t *testing.T) {
	for _, s := range liveSDKs() {
		t.Run(s.name, func(t *testing.T) {
			d := s.start(t)
			for _, tr := range s.transports {
				t.Run(tr, func(t *testing.T) {
					h := newLiveHarness(t, d, tr)
					for _, sc := range liveScenarios {
						t.Run(sc.name, func(t *testing.T) { sc.run(t, h) })
					}
				})
			}
		})
	}
}

// liveHarness is one system and the helpers the scenarios share.
type liveHarness struct {
	d         *sdkdriver.Driver
	transport string
	sys       *system.System
	upstream  *testkit.Product // app 3's callback endpoint
	tokens    *tokenServer
	n         atomic.Int64
}

func newLiveHarness(t *testing.T, d *sdkdriver.Driver, transport string) *liveHarness {
	h := &liveHarness{d: d, transport: transport, upstream: testkit.NewProduct(t, testkit.Secret3), tokens: newTokenServer(t)}
	h.sys = systest.Start(t, testkit.ConfigYAML(h.upstream.URL()), func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })
	return h
}

// roomAddr is the room's address for the harness's transport.
func (h *liveHarness) roomAddr(sys *system.System) string {
	if h.transport == "ws" {
		return "ws://" + sys.RoomWSAddr() + "/v1/ws"
	}
	return sys.RoomAddr()
}

// viaAddr is the address of host:port for the harness's transport.
func (h *liveHarness) viaAddr(hostport string) string {
	if h.transport == "ws" {
		return "ws://" + hostport + "/v1/ws"
	}
	return hostport
}

// uid is a fresh uid for this SDK, transport and scenario.
func (h *liveHarness) uid(t *testing.T) string {
	return fmt.Sprintf("%s-%s-%s-%d", h.d.Name, h.transport, t.Name()[strings.LastIndex(t.Name(), "/")+1:], h.n.Add(1))
}

// client creates and connects client name for (app, uid) with the
// dispatcher and the room's address; change adjusts the config first.
func (h *liveHarness) client(t *testing.T, name string, app uint32, uid string, change func(sdkdriver.Cmd)) int {
	t.Helper()
	cfg := sdkdriver.Cmd{
		"dispatch": "http://" + h.sys.DispatchAddr(), "addrs": []string{h.roomAddr(h.sys)},
		"transport": h.transport, "app": app, "uid": uid, "token": testkit.Token(app, uid),
		"hb": 5, "backoff_min_ms": 100, "backoff_max_ms": 1000,
	}
	if change != nil {
		change(cfg)
	}
	h.d.MustDo(t, sdkdriver.Cmd{"cmd": "new", "client": name, "config": cfg})
	t.Cleanup(func() { h.d.Do(t, sdkdriver.Cmd{"cmd": "close", "client": name}) })
	mark := h.d.Mark()
	h.d.MustDo(t, sdkdriver.Cmd{"cmd": "connect", "client": name})
	return mark
}

// connected waits for client name's next connected state after mark.
func (h *liveHarness) connected(t *testing.T, name string, mark int) sdkdriver.Event {
	t.Helper()
	return h.d.Wait(t, mark, 15*time.Second, name+" connected", func(e sdkdriver.Event) bool {
		return e.Ev == "state" && e.Client == name && e.State == "connected"
	})
}

// message waits for client name's message with payload text after mark.
func (h *liveHarness) message(t *testing.T, name string, mark int, text string) sdkdriver.Event {
	t.Helper()
	return h.d.Wait(t, mark, 10*time.Second, fmt.Sprintf("%s message %q", name, text), func(e sdkdriver.Event) bool {
		return e.Ev == "message" && e.Client == name && e.Payload == text
	})
}

func (h *liveHarness) messages(name string, mark int, text string) []sdkdriver.Event {
	return h.d.Events(mark, func(e sdkdriver.Event) bool {
		return e.Ev == "message" && e.Client == name && (text == "" || e.Payload == text)
	})
}

// push sends text to uid on app (test app keys) and returns the msg id.
func (h *liveHarness) push(t *testing.T, app uint32, uid, text string, qos int) string {
	t.Helper()
	out := testkit.PushText(t, h.sys.CenterAddr(), app, appKey(app), []string{uid}, text, qos)
	id, _ := out["msg_id"].(string)
	return id
}

func appKey(app uint32) string {
	return map[uint32]string{1: testkit.Key1, 2: testkit.Key2, 3: testkit.Key3}[app]
}

// pending is uid's stored message count on app (-1 when unknown).
func (h *liveHarness) pending(t *testing.T, app uint32, uid string) int {
	t.Helper()
	code, out, _ := testkit.API(t, h.sys.CenterAddr(), "GET", fmt.Sprintf("/v1/apps/%d/users/%s", app, uid), appKey(app), "")
	p, ok := out["pending"].(float64)
	if code != 200 || !ok {
		return -1
	}
	return int(p)
}

func (h *liveHarness) waitPending(t *testing.T, app uint32, uid string, want int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%s pending %d on app %d", uid, want, app), 10*time.Second, func() bool { return h.pending(t, app, uid) == want })
}

type liveScenario struct {
	name string
	run  func(t *testing.T, h *liveHarness)
}

var liveScenarios = []liveScenario{
	{"auth", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		ev := h.connected(t, "auth", h.client(t, "auth", 1, uid, nil))
		if ev.Room == "" && h.d.Name != "go" {
			t.Errorf("connected without the room of AUTH_OK: %s", ev.Raw)
		}
		_, out, _ := testkit.API(t, h.sys.CenterAddr(), "GET", "/v1/apps/1/users/"+uid, testkit.Key1, "")
		if out["online"] != true {
			t.Fatalf("the server does not see %s online: %v", uid, out)
		}
	}},
	{"auto_ack", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "auto", 1, uid, nil)
		h.connected(t, "auto", mark)
		id := h.push(t, 1, uid, "auto-ack me", 1)
		if ev := h.message(t, "auto", mark, "auto-ack me"); ev.MsgID != id || ev.QoS != 1 || ev.App != 1 {
			t.Fatalf("message %s, want id %s qos 1 app 1", ev.Raw, id)
		}
		h.waitPending(t, 1, uid, 0)
	}},
	{"manual_ack", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "manual", 1, uid, func(c sdkdriver.Cmd) { c["manual_ack"] = true })
		h.connected(t, "manual", mark)
		ev := h.message(t, "manual", h.markAfter(t, func() { h.push(t, 1, uid, "ack me by hand", 1) }), "ack me by hand")
		// An automatic ACK would go within 10 ms: none may come in 300.
		if testkit.Poll(300*time.Millisecond, func() bool { return h.pending(t, 1, uid) != 1 }) {
			t.Fatalf("pending %d before the manual ACK, want 1", h.pending(t, 1, uid))
		}
		h.d.MustDo(t, sdkdriver.Cmd{"cmd": "ack", "client": "manual", "ids": []string{ev.MsgID}})
		h.waitPending(t, 1, uid, 0)
	}},
	{"dedup", func(t *testing.T, h *liveHarness) {
		// The client reaches the room through a forwarder the test cuts:
		// the unACKed message comes again after the reconnect.
		uid := h.uid(t)
		fwd := startForwarder(t, h.sys.RoomAddr(), h.sys.RoomWSAddr(), h.transport)
		mark := h.client(t, "dedup", 1, uid, func(c sdkdriver.Cmd) {
			c["manual_ack"] = true
			delete(c, "dispatch")
			c["addrs"] = []string{h.viaAddr(fwd.Addr())}
		})
		h.connected(t, "dedup", mark)
		h.push(t, 1, uid, "once only", 1)
		first := h.message(t, "dedup", mark, "once only")
		again := h.d.Mark()
		fwd.Cut()
		h.connected(t, "dedup", again)
		h.push(t, 1, uid, "after the cut", 1)
		h.message(t, "dedup", again, "after the cut")
		if n := len(h.messages("dedup", mark, "once only")); n != 1 {
			t.Fatalf("the redelivered message was delivered %d times, want 1", n)
		}
		ids := []string{first.MsgID}
		for _, e := range h.messages("dedup", again, "after the cut") {
			ids = append(ids, e.MsgID)
		}
		h.d.MustDo(t, sdkdriver.Cmd{"cmd": "ack", "client": "dedup", "ids": ids})
		h.waitPending(t, 1, uid, 0)
	}},
	{"offline_order", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		texts := []string{"first", "second", "third", "fourth"}
		for _, s := range texts {
			h.push(t, 1, uid, s, 1)
		}
		mark := h.client(t, "offline", 1, uid, nil)
		h.message(t, "offline", mark, texts[len(texts)-1])
		got := h.messages("offline", mark, "")
		if len(got) != len(texts) {
			t.Fatalf("%d messages, want %d", len(got), len(texts))
		}
		var last uint64
		for i, e := range got {
			id, _ := strconv.ParseUint(e.MsgID, 10, 64)
			if e.Payload != texts[i] || id <= last {
				t.Fatalf("message %d: %s (previous id %d), want %q in id order", i, e.Raw, last, texts[i])
			}
			last = id
		}
		h.waitPending(t, 1, uid, 0)
	}},
	{"bind_unbind", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "binder", 1, uid, nil)
		h.connected(t, "binder", mark)
		h.d.MustDo(t, sdkdriver.Cmd{"cmd": "bind", "client": "binder", "app": 2, "token": testkit.Token(2, uid)})
		h.push(t, 2, uid, "to app 2", 1)
		if ev := h.message(t, "binder", mark, "to app 2"); ev.App != 2 {
			t.Fatalf("message %s, want app 2", ev.Raw)
		}
		h.waitPending(t, 2, uid, 0)
		h.d.MustDo(t, sdkdriver.Cmd{"cmd": "unbind", "client": "binder", "app": 2})
		h.push(t, 2, uid, "after unbind, qos 1", 1)
		h.push(t, 2, uid, "after unbind, qos 0", 0)
		// A later push on app 1 comes after anything app 2's pushes sent.
		h.push(t, 1, uid, "still on app 1", 1)
		h.message(t, "binder", mark, "still on app 1")
		if n := len(h.messages("binder", mark, "after unbind, qos 1")) + len(h.messages("binder", mark, "after unbind, qos 0")); n != 0 {
			t.Fatalf("%d pushes of the unbound app delivered", n)
		}
		if p := h.pending(t, 2, uid); p != 1 {
			t.Fatalf("app 2 pending %d after unbind, want the QoS 1 push stored (1)", p)
		}
		// A bind with a token for another uid is refused; the connection stays.
		if ev := h.d.Do(t, sdkdriver.Cmd{"cmd": "bind", "client": "binder", "app": 2, "token": testkit.Token(2, uid+"-other")}); ev.OK || ev.Error != "bad_token" {
			t.Fatalf("bind with a foreign token: %s, want ok false, error bad_token", ev.Raw)
		}
		m2 := h.d.Mark()
		h.push(t, 1, uid, "connection kept", 0)
		h.message(t, "binder", m2, "connection kept")
	}},
	{"upstream_reply", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		h.connected(t, "up", h.client(t, "up", 3, uid, nil))
		text := "upstream from " + h.d.Name
		h.d.MustDo(t, sdkdriver.Cmd{"cmd": "upstream", "client": "up", "app": 3, "type": 7, "payload": text, "reply": true})
		testkit.WaitFor(t, "the upstream callback", 10*time.Second, func() bool {
			return slices.Contains(h.upstream.Upstreams(), testkit.Upstream{App: 3, UID: uid, Type: 7, Data: text})
		})
	}},
	{"kick", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "kicked", 1, uid, nil)
		h.connected(t, "kicked", mark)
		code, out, _ := testkit.API(t, h.sys.CenterAddr(), "POST", "/v1/apps/1/users/"+uid+"/kick", testkit.Key1, `{"reason":"test"}`)
		if code != 200 || out["kicked"] != true {
			t.Fatalf("kick: %d %v", code, out)
		}
		if ev := h.d.Wait(t, mark, 10*time.Second, "kicked", func(e sdkdriver.Event) bool { return e.Ev == "kicked" && e.Client == "kicked" }); ev.CodeInt() != 2 {
			t.Fatalf("kicked %s, want code 2", ev.Raw)
		}
		h.d.Wait(t, mark, 10*time.Second, "closed", func(e sdkdriver.Event) bool {
			return e.Ev == "state" && e.Client == "kicked" && e.State == "closed"
		})
		// closed is final: no state may follow it, within more than the
		// backoff's ceiling (a reconnect would have begun).
		states := func() []sdkdriver.Event {
			return h.d.Events(mark, func(e sdkdriver.Event) bool { return e.Ev == "state" && e.Client == "kicked" })
		}
		if testkit.Poll(1500*time.Millisecond, func() bool {
			evs := states()
			i := slices.IndexFunc(evs, func(e sdkdriver.Event) bool { return e.State == "closed" })
			return i >= 0 && i < len(evs)-1
		}) {
			t.Fatalf("the SDK went on after a final kick: %v", states())
		}
		_, out, _ = testkit.API(t, h.sys.CenterAddr(), "GET", "/v1/apps/1/users/"+uid, testkit.Key1, "")
		if out["online"] != false {
			t.Fatalf("online again after a kick: %v", out)
		}
	}},
	{"redirect", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "moved", 1, uid, func(c sdkdriver.Cmd) { delete(c, "dispatch") })
		h.connected(t, "moved", mark)
		fwd := startForwarder(t, h.sys.RoomAddr(), h.sys.RoomWSAddr(), h.transport)
		target := h.viaAddr(fwd.Addr())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		again := h.d.Mark()
		if n := h.sys.Room.Drain(ctx, map[string][]string{"tcp": {fwd.Addr()}, "ws": {target}}, 200); n < 1 {
			t.Fatalf("drain told %d clients", n)
		}
		ev := h.d.Wait(t, again, 10*time.Second, "redirected", func(e sdkdriver.Event) bool { return e.Ev == "redirected" && e.Client == "moved" })
		if len(ev.Addrs) != 1 || ev.Addrs[0] != target || ev.AfterMS != 200 {
			t.Fatalf("redirected %s, want addrs [%s] after_ms 200", ev.Raw, target)
		}
		if c := h.connected(t, "moved", again); c.Addr != target {
			t.Fatalf("connected to %q after the redirect, want %q", c.Addr, target)
		}
		if fwd.Accepted() < 1 {
			t.Fatal("the redirect target saw no connection")
		}
		m2 := h.d.Mark()
		h.push(t, 1, uid, "at the new address", 1)
		h.message(t, "moved", m2, "at the new address")
	}},
	{"token_refresh", func(t *testing.T, h *liveHarness) {
		uid := h.uid(t)
		mark := h.client(t, "refresh", 1, uid, func(c sdkdriver.Cmd) {
			delete(c, "token")
			c["token_url"] = h.tokens.url(1, uid, true)
		})
		h.connected(t, "refresh", mark)
		if n := h.tokens.calls(uid); n < 2 {
			t.Fatalf("token provider called %d times, want the expired token then a fresh one (2)", n)
		}
		m2 := h.d.Mark()
		h.push(t, 1, uid, "with a fresh token", 1)
		h.message(t, "refresh", m2, "with a fresh token")
	}},
	{"restart", liveRestart},
}

// markAfter runs f and returns the mark from before it.
func (h *liveHarness) markAfter(t *testing.T, f func()) int {
	m := h.d.Mark()
	f()
	return m
}

// liveRestart: a system of its own stops; while it is down the SDK's
// connection attempts on its address are counted (backoff, not a tight
// loop); it comes back on the same ports and the SDK logs in again.
func liveRestart(t *testing.T, h *liveHarness) {
	dir := t.TempDir()
	sys := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir), func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })
	tcpAddr, wsAddr := sys.RoomAddr(), sys.RoomWSAddr()
	uid := h.uid(t)
	mark := h.client(t, "phoenix", 1, uid, func(c sdkdriver.Cmd) {
		c["dispatch"] = "http://" + sys.DispatchAddr()
		c["addrs"] = []string{h.roomAddr(sys)}
	})
	h.connected(t, "phoenix", mark)
	down := h.d.Mark()
	systest.Stop(t, sys)
	listen := tcpAddr
	if h.transport == "ws" {
		listen = wsAddr
	}
	const downFor = 3 * time.Second
	n := countConnects(t, listen, downFor)
	// Backoff 100 ms .. 1 s with full jitter: about 8 attempts in 3 s; a
	// tight loop would make hundreds.
	if n < 2 || n > 25 {
		t.Fatalf("%d connection attempts in %v while the server was down, want 2..25 (backoff)", n, downFor)
	}
	t.Logf("%d connection attempts in %v while down", n, downFor)
	sys2 := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir), systest.RoomAddr(tcpAddr), func(o *system.Options) { o.WSAddr = wsAddr })
	h.connected(t, "phoenix", down)
	m2 := h.d.Mark()
	testkit.PushText(t, sys2.CenterAddr(), 1, testkit.Key1, []string{uid}, "after the restart", 1)
	h.message(t, "phoenix", m2, "after the restart")
}

// countConnects listens on addr for d, closing every connection at once,
// and returns how many there were.
func countConnects(t *testing.T, addr string, d time.Duration) int {
	t.Helper()
	var ln net.Listener
	var err error
	// The stopped system's listener may take a moment to free the port.
	testkit.Poll(2*time.Second, func() bool { ln, err = net.Listen("tcp", addr); return err == nil })
	if err != nil {
		t.Fatalf("listen on the stopped room's address %s: %v", addr, err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	time.Sleep(d)
	ln.Close()
	return int(n.Load())
}

// forwarder relays TCP connections to the room (its raw TCP or WebSocket
// listener, by transport), counts them, and can cut them all.
type forwarder struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func startForwarder(t *testing.T, tcpAddr, wsAddr, transport string) *forwarder {
	t.Helper()
	to := tcpAddr
	if transport == "ws" {
		to = wsAddr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln}
	t.Cleanup(func() { ln.Close(); f.Cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return f
}

func (f *forwarder) Addr() string    { return f.ln.Addr().String() }
func (f *forwarder) Accepted() int64 { return f.accepted.Load() }

// Cut closes every relayed connection (a network drop for both ends).
func (f *forwarder) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// tokenServer is the token provider's back end: GET /token?app&uid&expired
// answers {"token":...}; with expired=1 the first answer for a uid is a
// token that expired an hour ago.
type tokenServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{n: map[string]int{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		app, _ := strconv.ParseUint(q.Get("app"), 10, 32)
		uid := q.Get("uid")
		ts.mu.Lock()
		ts.n[uid]++
		first := ts.n[uid] == 1
		ts.mu.Unlock()
		exp := time.Now().Add(time.Hour)
		if first && q.Get("expired") == "1" {
			exp = time.Now().Add(-time.Hour)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": testkit.TokenUntil(uint32(app), uid, exp)})
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) url(app uint32, uid string, expiredFirst bool) string {
	e := "0"
	if expiredFirst {
		e = "1"
	}
	return fmt.Sprintf("%s/token?app=%d&uid=%s&expired=%s", ts.srv.URL, app, uid, e)
}

func (ts *tokenServer) calls(uid string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.n[uid]
}
