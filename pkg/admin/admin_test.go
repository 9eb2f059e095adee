package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path, key string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	ready := errors.New("starting")
	s := New(Config{
		Ready:    func(context.Context) error { return ready },
		AdminKey: func() string { return "k" },
	})
	cases := []struct {
		name, path, key string
		loopback        bool
		code            int
		body            string
	}{
		{"healthz", "/healthz", "", true, 200, "ok"},
		{"not ready", "/readyz", "", true, 503, "starting"},
		{"metrics on loopback", "/metrics", "", true, 200, "go_goroutines"},
		{"metrics elsewhere without key", "/metrics", "", false, 401, "admin key"},
		{"metrics elsewhere with wrong key", "/metrics", "x", false, 401, "admin key"},
		{"metrics elsewhere with key", "/metrics", "k", false, 200, "go_goroutines"},
		{"healthz elsewhere stays open", "/healthz", "", false, 200, "ok"},
		{"readyz elsewhere stays open", "/readyz", "", false, 503, "starting"},
		{"pprof on loopback", "/debug/pprof/", "", true, 200, "goroutine"},
		{"pprof elsewhere without key", "/debug/pprof/", "", false, 401, "admin key"},
		{"pprof elsewhere with wrong key", "/debug/pprof/", "x", false, 401, "admin key"},
		{"pprof elsewhere with key", "/debug/pprof/", "k", false, 200, "goroutine"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, s.Handler(tc.loopback), tc.path, tc.key)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("%d %q, want %d containing %q", code, body, tc.code, tc.body)
			}
		})
	}
	ready = nil
	if code, _ := get(t, s.Handler(true), "/readyz", ""); code != 200 {
		t.Fatalf("readyz %d once ready", code)
	}
	if code, _ := get(t, s.Handler(false), "/readyz", ""); code != 200 {
		t.Fatalf("readyz off loopback %d once ready", code)
	}
}

// TestNoKeyConfigured: off loopback, an empty admin key opens nothing.
func TestNoKeyConfigured(t *testing.T) {
	for _, key := range []func() string{nil, func() string { return "" }} {
		s := New(Config{AdminKey: key})
		for _, path := range []string{"/metrics", "/debug/pprof/"} {
			if code, _ := get(t, s.Handler(false), path, ""); code != 401 {
				t.Fatalf("%s without a configured key: %d, want 401", path, code)
			}
		}
		if code, _ := get(t, s.Handler(false), "/healthz", ""); code != 200 {
			t.Fatalf("healthz: %d", code)
		}
	}
}

// TestBoundOffLoopback: Start decides from the bound address; a wildcard
// bind (reachable from other hosts) needs the key for /metrics.
func TestBoundOffLoopback(t *testing.T) {
	s := New(Config{Addr: ":0", AdminKey: func() string { return "k" }})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	_, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, key string
		code      int
	}{
		{"/metrics", "", 401},
		{"/metrics", "k", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Fatalf("%s key %q: %d, want %d", tc.path, tc.key, resp.StatusCode, tc.code)
		}
	}
}

func TestStartShutdown(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0"})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}
