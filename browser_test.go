package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// browserTools returns node and the chromium binary the browser test drives,
// skipping without them unless LCPUSH_INTEGRATION=1 (the test command
// installs both: then a missing one is a failure).
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	need := func(what, hint string) {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatalf("LCPUSH_INTEGRATION=1 but %s is missing: %s", what, hint)
		}
		t.Skipf("%s missing (%s)", what, hint)
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		need("chromium", "scripts/services.sh install chromium")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need("node", "install Node 20")
	}
	if _, err := os.Stat(filepath.Join("browsertest", "node_modules", "playwright-core")); err != nil {
		need("playwright-core", "cd browsertest && npm ci")
	}
	return node, chromium
}

// tlsFront is what scripts/tls.sh started.
type tlsFront struct {
	TLS, WSS string // host:port of the TLS and WSS frontends
	CA       string // the self-signed certificate (for localhost and 127.0.0.1)
}

// startTLS runs scripts/tls.sh (HAProxy terminating TLS) in front of the
// room's raw TCP listener and WebSocket listener ws (host:port), connecting
// to the room from 127.0.0.2 (the trusted proxy) with PROXY v2.
func startTLS(t *testing.T, roomTCP, ws string) tlsFront {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatal("LCPUSH_INTEGRATION=1 but haproxy is missing: scripts/services.sh install haproxy")
		}
		t.Skip("haproxy missing (scripts/services.sh install haproxy)")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "scripts/tls.sh", "start")
	cmd.Env = append(os.Environ(), "TLS_DIR="+dir, "ROOM_TCP="+roomTCP, "ROOM_WS="+ws, "TLS_SOURCE=127.0.0.2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/tls.sh start: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop := exec.Command("bash", "scripts/tls.sh", "stop")
		stop.Env = append(os.Environ(), "TLS_DIR="+dir)
		_ = stop.Run()
	})
	var f tlsFront
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		v = strings.Trim(v, "'")
		switch k {
		case "TLS_ADDR":
			f.TLS = v
		case "WSS_ADDR":
			f.WSS = v
		case "TLS_CA":
			f.CA = v
		}
	}
	if f.TLS == "" || f.WSS == "" || f.CA == "" {
		t.Fatalf("scripts/tls.sh printed no TLS_ADDR, WSS_ADDR or TLS_CA:\n%s", out)
	}
	return f
}

// A real browser (headless Chromium, driven by playwright-core) opens a
// WebSocket to the room, authenticates with a token from the Center API,
// receives a QoS 1 push sent through the API and ACKs it; the message is
// then gone from storage. Over plain ws, and over wss through HAProxy
// terminating TLS and speaking PROXY v2 to the room.
func TestBrowserWebSocket(t *testing.T) {
	node, chromium := browserTools(t)

	// The page is served from its own origin, which the room allows.
	page, err := os.ReadFile(filepath.Join("browsertest", "page.html"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}))
	t.Cleanup(hs.Close)

	cfg := testkit.ConfigYAML("") + fmt.Sprintf("  websocket:\n    origins: [%q]\n  proxy:\n    trusted: [127.0.0.2/32]\n", hs.URL)
	sys := systest.Start(t, cfg, func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })

	wsURL := dispatchAddr(t, sys, "alice", "ws")
	u, err := url.Parse(wsURL)
	if err != nil || u.Scheme != "ws" || u.Path != "/v1/ws" {
		t.Fatalf("dispatcher ws address %q: %v", wsURL, err)
	}
	front := startTLS(t, sys.RoomAddr(), u.Host)
	_, wssPort, _ := net.SplitHostPort(front.WSS)

	for _, tc := range []struct{ name, uid, ws string }{
		{"ws", "web-alice", wsURL},
		{"wss", "web-bob", "wss://localhost:" + wssPort + "/v1/ws"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runBrowserSession(t, sys, node, chromium, hs.URL, tc.uid, tc.ws)
		})
	}
}

// dispatchAddr asks the dispatcher for uid's first address of transport.
func dispatchAddr(t *testing.T, sys *system.System, uid, transport string) string {
	t.Helper()
	code, out, _ := testkit.API(t, sys.DispatchAddr(), "GET", "/v1/dispatch?app=1&uid="+uid+"&transport="+transport, "", "")
	addrs, _ := out["addrs"].([]any)
	if code != 200 || len(addrs) == 0 {
		t.Fatalf("dispatch transport=%s: %d %v", transport, code, out)
	}
	return addrs[0].(string)
}

func runBrowserSession(t *testing.T, sys *system.System, node, chromium, pageURL, uid, ws string) {
	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/tokens", testkit.Key1, fmt.Sprintf(`{"uid":%q,"ttl":600}`, uid))
	token, _ := out["token"].(string)
	if code != 200 || token == "" {
		t.Fatalf("token from the Center API: %d %v", code, out)
	}
	q := url.Values{"ws": {ws}, "app": {"1"}, "uid": {uid}, "token": {token}, "want": {"1"}}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "drive.mjs", pageURL+"/?"+q.Encode(), "40000")
	cmd.Dir = "browsertest"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	const text = "hello, browser"
	var msgID string
	events := jsonLines(t, cmd, func(ev map[string]any) {
		switch ev["event"] {
		case "open":
			if ev["protocol"] != "lcpush.v1" {
				t.Errorf("subprotocol %v, want lcpush.v1", ev["protocol"])
			}
		case "authed":
			res := testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{uid}, text, 1)
			msgID, _ = res["msg_id"].(string)
		case "push":
			if ev["payload"] != text || ev["qos"] != float64(1) || ev["id"] != msgID {
				t.Errorf("push %v, want id %s qos 1 %q", ev, msgID, text)
			}
		}
	})
	if msgID == "" {
		t.Fatalf("the page never authenticated; events:\n%s", strings.Join(events, "\n"))
	}
	// The ACK deleted the stored message.
	testkit.WaitFor(t, "the ACKed message to leave storage", testkit.Timeout, func() bool {
		code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/"+uid, testkit.Key1, "")
		p, ok := out["pending"].(float64)
		return code == 200 && ok && p == 0
	})
}
