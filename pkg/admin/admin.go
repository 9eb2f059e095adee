// Package admin is the operator HTTP port every process runs: /healthz
// (alive), /readyz (every service started and its dependencies reachable),
// /metrics (Prometheus text format) and /debug/pprof/. /metrics and pprof
// are open when the port is bound to loopback and need the admin key
// (Authorization: Bearer) otherwise: they expose per-app volumes and the
// process's internals. /healthz and /readyz stay open for probes: they
// tell only whether the process is up and ready.
package admin

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/lcpush/lcpush/pkg/httpserve"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the admin port.
type Config struct {
	Addr string // default 127.0.0.1:9000
	// Ready reports nil when the process can serve; nil means always ready.
	Ready func(ctx context.Context) error
	// AdminKey returns the current admin key (it can be hot-reloaded).
	AdminKey func() string
	Logger   *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	cfg Config
	srv *httpserve.Server
}

// New returns an admin server; Start listens.
func New(cfg Config) *Server {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9000"
	}
	// Only a header timeout: pprof profile and trace stream for as long as
	// the operator asks (?seconds=), so no read/write deadline.
	srv := &httpserve.Server{Name: "admin", Logger: cfg.Logger, ReadHeaderTimeout: 5 * time.Second}
	return &Server{cfg: cfg, srv: srv}
}

// Handler returns the admin mux; loopback tells whether /metrics and pprof
// may skip the key.
func (s *Server) Handler(loopback bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := s.cfg.Ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", s.guard(loopback, promhttp.Handler()))
	prof := http.NewServeMux()
	prof.HandleFunc("/debug/pprof/", pprof.Index)
	prof.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
	prof.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", s.guard(loopback, prof))
	return mux
}

func (s *Server) guard(loopback bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopback {
			key := ""
			if s.cfg.AdminKey != nil {
				key = s.cfg.AdminKey()
			}
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
				http.Error(w, "admin key required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens and serves in the background. /metrics and pprof skip the
// admin key when the bound address is loopback.
func (s *Server) Start(ctx context.Context) error {
	return s.srv.StartFunc(ctx, s.cfg.Addr, func(bound net.Addr) http.Handler {
		ta, ok := bound.(*net.TCPAddr)
		return s.Handler(ok && ta.IP.IsLoopback())
	})
}

// Addr returns the bound address, or "" before Start.
func (s *Server) Addr() string { return s.srv.Addr() }

// Shutdown stops the server, lets in-flight requests finish within ctx and
// waits for the serve goroutine; it is idempotent.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
