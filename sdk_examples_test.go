package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

// The TypeScript SDK's examples, as a user runs them: the Node program
// (sdk/typescript/example/node-receive.mjs) over raw TCP and over
// WebSocket, and the browser page (example/index.html, importing the built
// dist/index.js) in headless Chromium.

// tsBuilt fails (LCPUSH_INTEGRATION=1) or skips unless the SDK is built.
func tsBuilt(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("sdk", "typescript", "dist", "index.js")); err != nil {
		needTool(t, "the built TypeScript SDK", "cd sdk/typescript && npm ci && npm run build")
	}
}

// jsonLines runs cmd (an example program, or drive.mjs with a page) and calls on for each JSON line of its stdout
// until it exits; on's pushes run while the program waits for them.
func jsonLines(t *testing.T, cmd *exec.Cmd, on func(ev map[string]any)) []string {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("example printed %q: %v", sc.Text(), err)
		}
		on(ev)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", cmd.Args, err, strings.Join(lines, "\n"), stderr.String())
	}
	return lines
}

// expectPushes checks that lines hold the messages texts, in order.
func expectPushes(t *testing.T, lines []string, texts []string) {
	t.Helper()
	var got []string
	for _, l := range lines {
		var ev struct{ Event, Payload string }
		_ = json.Unmarshal([]byte(l), &ev)
		if ev.Event == "message" {
			got = append(got, ev.Payload)
		}
	}
	if strings.Join(got, "|") != strings.Join(texts, "|") {
		t.Fatalf("messages %q, want %q; lines:\n%s", got, texts, strings.Join(lines, "\n"))
	}
}

func TestTypeScriptNodeExample(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		needTool(t, "node", "install Node 20")
	}
	tsBuilt(t)
	sys := systest.Start(t, testkit.ConfigYAML(""), func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })
	for _, tc := range []struct{ transport, addr string }{
		{"tcp", sys.RoomAddr()},
		{"ws", "ws://" + sys.RoomWSAddr() + "/v1/ws"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			uid := "node-example-" + tc.transport
			texts := []string{"one over " + tc.transport, "two over " + tc.transport}
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join("sdk", "typescript", "example", "node-receive.mjs"),
				tc.transport, tc.addr, "1", uid, testkit.Token(1, uid), fmt.Sprint(len(texts)))
			lines := jsonLines(t, cmd, func(ev map[string]any) {
				if ev["event"] == "connected" {
					for _, s := range texts {
						testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{uid}, s, 1)
					}
				}
			})
			expectPushes(t, lines, texts)
			waitUserPending(t, sys, uid, 0) // the SDK ACKed both
		})
	}
}

func TestTypeScriptBrowserExample(t *testing.T) {
	node, chromium := browserTools(t)
	tsBuilt(t)
	// The page and the built SDK, served from their own origin as a site would.
	site := httptest.NewServer(http.FileServer(http.Dir(filepath.Join("sdk", "typescript"))))
	t.Cleanup(site.Close)
	cfg := testkit.ConfigYAML("") + fmt.Sprintf("  websocket:\n    origins: [%q]\n", site.URL)
	sys := systest.Start(t, cfg, func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })

	uid := "browser-example"
	texts := []string{"hello from the built SDK", "and a second one"}
	q := url.Values{"addr": {"ws://" + sys.RoomWSAddr() + "/v1/ws"}, "app": {"1"}, "uid": {uid},
		"token": {testkit.Token(1, uid)}, "count": {fmt.Sprint(len(texts))}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	drive, err := filepath.Abs(filepath.Join("browsertest", "drive.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, drive, site.URL+"/example/index.html?"+q.Encode(), "40000")
	cmd.Dir = "browsertest"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	pushed := false
	lines := jsonLines(t, cmd, func(ev map[string]any) {
		if ev["event"] == "state" && ev["state"] == "connected" && !pushed {
			pushed = true
			for _, s := range texts {
				testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{uid}, s, 1)
			}
		}
	})
	if !pushed {
		t.Fatalf("the page never connected:\n%s", strings.Join(lines, "\n"))
	}
	expectPushes(t, lines, texts)
	waitUserPending(t, sys, uid, 0)
}

func waitUserPending(t *testing.T, sys *system.System, uid string, want float64) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%s pending %v", uid, want), 10*time.Second, func() bool {
		code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/"+uid, testkit.Key1, "")
		p, ok := out["pending"].(float64)
		return code == 200 && ok && p == want
	})
}
