package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// Demo-like apps for end-to-end tests. App 3 has a callback (set per test).
const (
	secret1 = "e2e-secret-app-1-xxxxxxxx"
	secret2 = "e2e-secret-app-2-xxxxxxxx"
	secret3 = "e2e-secret-app-3-xxxxxxxx"
	key1    = "e2e-key-1"
	key2    = "e2e-key-2"
	key3    = "e2e-key-3"
	adminK  = "e2e-admin"
)

func testConfig(callbackURL string) string {
	return fmt.Sprintf(`admin_key: %s
apps:
  - {id: 1, name: one, secret: %s, api_key: %s}
  - {id: 2, name: two, secret: %s, api_key: %s}
  - {id: 3, name: three, secret: %s, api_key: %s, callback_url: %q, status_events: true}
room:
  heartbeat_min: 1
  heartbeat_max: 300
  heartbeat_default: 30
  heartbeat_grace: 500ms
  auth_deadline: 700ms
`, adminK, secret1, key1, secret2, key2, secret3, key3, callbackURL)
}

func secretOf(app uint32) string {
	switch app {
	case 1:
		return secret1
	case 2:
		return secret2
	}
	return secret3
}

func tokenFor(app uint32, uid string) string {
	return token.Sign([]byte(secretOf(app)), app, uid, time.Now().Add(time.Hour).Unix())
}

func testLogger() *slog.Logger {
	if os.Getenv("LCPUSH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startSystem starts every service in this process on random loopback ports,
// with its durable store in dataDir (a fresh temp dir when empty).
func startSystem(t *testing.T, cfgYAML, dataDir string) *System {
	t.Helper()
	return startSystemAt(t, cfgYAML, dataDir, "127.0.0.1:0")
}

// startSystemAt is startSystem with a chosen room address.
func startSystemAt(t *testing.T, cfgYAML, dataDir, roomAddr string) *System {
	t.Helper()
	return startSystemWith(t, cfgYAML, func(o *Options) { o.DataDir, o.RoomAddr = dataDir, roomAddr })
}

// startSystemWith is startSystem with options changed by mod (the store, a
// room address, ...).
func startSystemWith(t *testing.T, cfgYAML string, mod func(*Options)) *System {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := Options{
		ConfigPath:   cfgPath,
		RoomAddr:     "127.0.0.1:0",
		CenterAddr:   "127.0.0.1:0",
		DispatchAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
		ConfigPoll:   100 * time.Millisecond,
		Logger:       testLogger(),
	}
	if mod != nil {
		mod(&opts)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	sys, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start system: %v", err)
	}
	t.Cleanup(func() { stopSystem(t, sys) })
	return sys
}

func stopSystem(t *testing.T, sys *System) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// api calls the Center API and decodes the JSON answer into a map.
func api(t *testing.T, sys *System, method, path, key, body string) (int, map[string]any, http.Header) {
	t.Helper()
	return apiAt(t, sys.CenterAddr(), method, path, key, body)
}

// apiAt calls the Center API listening at hostport.
func apiAt(t *testing.T, hostport, method, path, key, body string) (int, map[string]any, http.Header) {
	t.Helper()
	code, out, h, err := apiTry(hostport, method, path, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, out, h
}

// apiTry is apiAt for goroutines other than the test's (t.Fatal must not run
// there): it returns what went wrong instead of failing the test.
func apiTry(hostport, method, path, key, body string) (int, map[string]any, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+hostport+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return resp.StatusCode, nil, resp.Header, fmt.Errorf("%s %s: answer %d is not a JSON object: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out, resp.Header, nil
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// pushText pushes text to uids through the API and returns the answer.
func pushText(t *testing.T, sys *System, app uint32, key string, uids []string, text string, qos int) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"uids": uids, "text": text, "qos": qos})
	code, out, _ := api(t, sys, "POST", fmt.Sprintf("/v1/apps/%d/push", app), key, string(body))
	if code != 200 {
		t.Fatalf("push: %d %v", code, out)
	}
	return out
}

// rawConn speaks frames by hand, for the byte-level checks.
type rawConn struct {
	t   *testing.T
	c   net.Conn
	dec *proto.Decoder
	seq uint32
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, addr, "")
}

// dialRawFrom is dialRaw from source address src (an IP; empty: the
// kernel's choice). Any address of 127.0.0.0/8 works on loopback, which is
// how tests act as several client IPs (per-IP limits).
func dialRawFrom(t *testing.T, addr, src string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, dec: proto.NewDecoder(c, 1<<20)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) send(op uint8, app uint32, flags uint16, body []byte) uint32 {
	r.seq++
	r.write(proto.AppendFrame(nil, proto.Header{Op: op, Flags: flags, Seq: r.seq, App: app}, body))
	return r.seq
}

func (r *rawConn) auth(app uint32, uid, tok string, hb int) uint32 {
	body, _ := json.Marshal(proto.Auth{UID: uid, Token: tok, HB: hb})
	return r.send(proto.OpAuth, app, 0, body)
}

// next reads one frame (copying the body) within d.
func (r *rawConn) next(d time.Duration) (proto.Frame, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	f, err := r.dec.Next()
	if err != nil {
		return f, err
	}
	f.Body = append([]byte(nil), f.Body...)
	return f, nil
}

// expect reads frames until one with op arrives (skipping PONGs) and returns it.
func (r *rawConn) expect(op uint8) proto.Frame {
	r.t.Helper()
	for {
		f, err := r.next(5 * time.Second)
		if err != nil {
			r.t.Fatalf("waiting for op 0x%02x: %v", op, err)
		}
		if f.Op == op {
			return f
		}
		if f.Op != proto.OpPong {
			r.t.Fatalf("waiting for op 0x%02x, got op 0x%02x body %q", op, f.Op, f.Body)
		}
	}
}

// expect2 reads the next frame that is one of two ops (nothing else may come).
func (r *rawConn) expect2(a, b uint8) proto.Frame {
	r.t.Helper()
	f, err := r.next(5 * time.Second)
	if err != nil {
		r.t.Fatalf("waiting for op 0x%02x or 0x%02x: %v", a, b, err)
	}
	if f.Op != a && f.Op != b {
		r.t.Fatalf("waiting for op 0x%02x or 0x%02x, got 0x%02x body %q", a, b, f.Op, f.Body)
	}
	return f
}

func (r *rawConn) expectError(code string) {
	r.t.Helper()
	f := r.expect(proto.OpError)
	var e proto.Error
	if err := json.Unmarshal(f.Body, &e); err != nil || e.Code != code {
		r.t.Fatalf("ERROR body %q, want code %s", f.Body, code)
	}
}

// expectClosed reads until the server closes the connection.
func (r *rawConn) expectClosed(within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		_ = r.c.SetReadDeadline(deadline)
		_, err := r.dec.Next()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("connection still open after %s", within)
		}
		return // EOF, reset, or a refused frame: closed
	}
}

func (r *rawConn) expectPush() (uint64, []byte, proto.Frame) {
	r.t.Helper()
	f := r.expect(proto.OpPush)
	id, payload, err := proto.ParsePush(f.Body)
	if err != nil {
		r.t.Fatalf("bad PUSH body: %v", err)
	}
	return id, payload, f
}

// login authenticates a raw connection and waits for AUTH_OK.
func login(t *testing.T, sys *System, app uint32, uid string) *rawConn {
	t.Helper()
	r := dialRaw(t, sys.RoomAddr())
	r.auth(app, uid, tokenFor(app, uid), 30)
	r.expect(proto.OpAuthOK)
	return r
}
