package testkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// API calls the Center API at hostport (method, path, bearer key, JSON
// body; empty key or body: none) and decodes the JSON answer into a map.
func API(t testing.TB, hostport, method, path, key, body string) (int, map[string]any, http.Header) {
	t.Helper()
	code, out, h, err := TryAPI(hostport, method, path, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, out, h
}

// TryAPI is API for goroutines other than the test's (t.Fatal must not run
// there): it returns what went wrong instead of failing the test.
func TryAPI(hostport, method, path, key, body string) (int, map[string]any, http.Header, error) {
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

// ErrCode is the code of an error answer {"error":{"code":...}} ("" if none).
func ErrCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// PushText pushes text to uids through the Center API at hostport and
// requires 200 (sent) or 202 (queued in the app's send queue, API.md
// "Send queues"); it returns the answer.
func PushText(t testing.TB, hostport string, app uint32, key string, uids []string, text string, qos int) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"uids": uids, "text": text, "qos": qos})
	code, out, _ := API(t, hostport, "POST", fmt.Sprintf("/v1/apps/%d/push", app), key, string(body))
	if code != 200 && code != 202 {
		t.Fatalf("push app %d to %v: %d %v", app, uids, code, out)
	}
	return out
}
