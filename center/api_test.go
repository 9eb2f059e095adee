package center

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	push := `{"uids":["u1"],"text":"hi","qos":0}`
	tests := []struct {
		name         string
		method, path string
		key, body    string
		status       int
		code         string
	}{
		{"no key", "POST", "/v1/apps/1/push", "", push, 401, "unauthorized"},
		{"unknown key", "POST", "/v1/apps/1/push", "nope", push, 401, "unauthorized"},
		{"own key", "POST", "/v1/apps/1/push", key1, push, 200, ""},
		{"admin key", "POST", "/v1/apps/1/push", adminKey, push, 200, ""},
		{"other app's key: push", "POST", "/v1/apps/2/push", key1, push, 403, "forbidden"},
		{"other app's key: broadcast", "POST", "/v1/apps/2/broadcast", key1, `{"text":"x"}`, 403, "forbidden"},
		{"other app's key: user", "GET", "/v1/apps/2/users/u1", key1, "", 403, "forbidden"},
		{"other app's key: kick", "POST", "/v1/apps/2/users/u1/kick", key1, "", 403, "forbidden"},
		{"other app's key: tokens", "POST", "/v1/apps/2/tokens", key1, `{"uid":"u1"}`, 403, "forbidden"},
		{"unknown app", "POST", "/v1/apps/99/push", adminKey, push, 404, "not_found"},
		{"unknown app, app key", "GET", "/v1/apps/99/users/u1", key1, "", 404, "not_found"},
		{"app id not a number", "GET", "/v1/apps/one/users/u1", adminKey, "", 404, "not_found"},
		{"stats with app key", "GET", "/v1/stats", key1, "", 403, "forbidden"},
		{"stats without key", "GET", "/v1/stats", "", "", 401, "unauthorized"},
		{"stats with admin key", "GET", "/v1/stats", adminKey, "", 200, ""},
		{"unknown path", "GET", "/v1/nothing", adminKey, "", 404, "not_found"},
		{"wrong method", "GET", "/v1/apps/1/push", key1, "", 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, tc.method, tc.path, tc.key, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			if tc.code != "" {
				if got := a.errCode(t); got != tc.code {
					t.Fatalf("code %q, want %q", got, tc.code)
				}
			}
		})
	}
}

func TestAuthorizationHeaderForms(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	tests := []struct {
		header string
		status int
	}{
		{"Bearer " + key1, 200},
		{"bearer " + key1, 200},
		{"Basic " + key1, 401},
		{key1, 401},
		{"Bearer ", 401},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/apps/1/users/u1", nil)
		req.Header.Set("Authorization", tc.header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%q: status %d, want %d", tc.header, resp.StatusCode, tc.status)
		}
	}
}

func TestBodyRules(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"unknown field", `{"uids":["u1"],"text":"hi","txet":"typo"}`, 400, "bad_request"},
		{"trailing data", `{"uids":["u1"],"text":"hi"} {}`, 400, "bad_request"},
		{"trailing garbage", `{"uids":["u1"],"text":"hi"}x`, 400, "bad_request"},
		{"trailing spaces are fine", "{\"uids\":[\"u1\"],\"text\":\"hi\"}\n  ", 200, ""},
		{"empty", ``, 400, "bad_request"},
		{"not JSON", `uids=u1`, 400, "bad_request"},
		{"wrong type", `{"uids":"u1","text":"hi"}`, 400, "bad_request"},
		{"over 2 MiB", `{"uids":["u1"],"text":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, "POST", "/v1/apps/1/push", key1, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.code != "" && a.errCode(t) != tc.code {
				t.Fatalf("code %s, want %s", a.errCode(t), tc.code)
			}
		})
	}
}

func TestStartShutdown(t *testing.T) {
	e := newEnv(t, Config{Addr: "127.0.0.1:0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + e.svc.Addr() + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	for i := 0; i < 2; i++ {
		if err := e.svc.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := http.Get("http://" + e.svc.Addr() + "/v1/stats"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
	if err := e.svc.Start(ctx); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}
