package admin

import (
	"context"
	"errors"
	"io"
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
		{"metrics", "/metrics", "", true, 200, "go_goroutines"},
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
