package httpserve

import (
	"context"
	"errors"
	"github.com/lcpush/lcpush/internal/testkit"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func hello() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
}

func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &Server{Name: "test", ReadHeaderTimeout: time.Second}
	if a := s.Addr(); a != "" {
		t.Fatalf("Addr before Start = %q, want empty", a)
	}
	if err := s.Start(ctx, "127.0.0.1:0", hello()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if host, port, _ := net.SplitHostPort(addr); host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("Addr = %q, want 127.0.0.1:<bound port>", addr)
	}
	if st, body, err := get(addr, "/"); err != nil || st != 200 || body != "hello" {
		t.Fatalf("GET = %d %q %v", st, body, err)
	}
	if err := s.Start(ctx, "127.0.0.1:0", hello()); !errors.Is(err, ErrStarted) || !strings.HasPrefix(err.Error(), "test: ") {
		t.Fatalf("second Start = %v, want test: ErrStarted", err)
	}
	for i := range 3 {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
	if _, _, err := get(addr, "/"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
	if s.Addr() != addr {
		t.Fatalf("Addr after Shutdown = %q, want %q", s.Addr(), addr)
	}
	if err := s.Start(ctx, "127.0.0.1:0", hello()); !errors.Is(err, ErrStarted) {
		t.Fatalf("Start after Shutdown = %v, want ErrStarted", err)
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	var s Server // zero value is usable
	for range 2 {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Start(context.Background(), "127.0.0.1:0", hello()); !errors.Is(err, ErrStarted) {
		t.Fatalf("Start after Shutdown = %v, want ErrStarted", err)
	}
	if a := s.Addr(); a != "" {
		t.Fatalf("Addr = %q, want empty", a)
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		addr string
	}{
		{"address in use", busy.Addr().String()},
		{"bad port", "127.0.0.1:notaport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Name: "svc"}
			err := s.Start(context.Background(), tc.addr, hello())
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("Start succeeded")
			}
			if want := "svc listen " + tc.addr + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err = %q, want prefix %q", err, want)
			}
			if s.Addr() != "" {
				t.Fatalf("Addr after failed Start = %q", s.Addr())
			}
			// A failed Start leaves the server startable.
			if err := s.Start(context.Background(), "127.0.0.1:0", hello()); err != nil {
				t.Fatal(err)
			}
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStartFuncSeesBoundAddr(t *testing.T) {
	var s Server
	var seen net.Addr
	err := s.StartFunc(context.Background(), "127.0.0.1:0", func(bound net.Addr) http.Handler {
		seen = bound
		return hello()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if seen == nil || seen.String() != s.Addr() {
		t.Fatalf("handler saw %v, Addr = %s", seen, s.Addr())
	}
}

// TestShutdownDrains: a request in flight when Shutdown begins completes, and
// Shutdown returns only after it.
func TestShutdownDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	var s Server
	if err := s.Start(context.Background(), "127.0.0.1:0", h); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		st, body, err := get(addr, "/")
		got <- result{st, body, err}
	}()
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	testkit.WaitFor(t, "listener closed", 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if r := <-got; r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request = %+v", r)
	}
}

// TestShutdownDeadline: a request that outlives ctx is cut off and Shutdown
// reports ctx's error instead of hanging.
func TestShutdownDeadline(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	})
	var s Server
	if err := s.Start(context.Background(), "127.0.0.1:0", h); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, _, err := get(s.Addr(), "/")
		got <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if err := <-got; err == nil {
		t.Fatal("cut-off request succeeded")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// recorder is a slog.Handler that keeps the records it gets.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) find(substr string) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if strings.Contains(rec.Message, substr) {
			return rec, true
		}
	}
	return slog.Record{}, false
}

// TestErrorLogAtDebug: net/http's own messages (here a handler panic) go to
// the injected logger at debug level, not to stderr.
func TestErrorLogAtDebug(t *testing.T) {
	rec := &recorder{}
	s := &Server{Logger: slog.New(rec)}
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	if err := s.Start(context.Background(), "127.0.0.1:0", h); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if _, _, err := get(s.Addr(), "/"); err == nil {
		t.Fatal("panicking handler answered")
	}
	var r slog.Record
	testkit.WaitFor(t, "panic logged", 5*time.Second, func() bool {
		var ok bool
		r, ok = rec.find("panic serving")
		return ok
	})
	if r.Level != slog.LevelDebug {
		t.Fatalf("logged at %v, want debug", r.Level)
	}
}
