// Package httpserve owns the listen/serve/graceful-shutdown lifecycle of the
// project's HTTP servers (center, dispatcher, the admin port): listen with the
// caller's context, serve in a goroutine the Server owns, and on Shutdown let
// in-flight requests finish within the caller's deadline, force-close after
// it, and wait for that goroutine before returning.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrStarted is returned by Start when the Server was already started or has
// been shut down; a Server serves at most once.
var ErrStarted = errors.New("httpserve: already started or shut down")

// Server runs one http.Server. Set the fields before Start and do not copy a
// Server after first use. The zero value works: a server named "httpserve",
// logging nowhere, with no timeouts (as http.Server).
type Server struct {
	// Name prefixes errors and log messages, e.g. "center".
	Name string
	// Logger receives serve failures (error) and http.Server's own messages
	// such as TLS handshake or panic reports (debug); nil discards.
	Logger *slog.Logger
	// Timeouts as in http.Server; zero means none.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration

	mu     sync.Mutex
	closed bool
	ln     net.Listener
	srv    *http.Server
	done   chan struct{} // closed when Serve returns
	once   sync.Once
}

// Start listens on addr and serves h in a goroutine owned by the Server.
func (s *Server) Start(ctx context.Context, addr string, h http.Handler) error {
	return s.StartFunc(ctx, addr, func(net.Addr) http.Handler { return h })
}

// StartFunc is Start for a handler that depends on the address actually bound
// (the admin port opens pprof only when bound to loopback, which is known only
// after listening). handler is called once, before serving begins.
func (s *Server) StartFunc(ctx context.Context, addr string, handler func(bound net.Addr) http.Handler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil || s.closed {
		return fmt.Errorf("%s: %w", s.name(), ErrStarted)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listen %s: %w", s.name(), addr, err)
	}
	log := s.logger()
	srv := &http.Server{
		Handler:           handler(ln.Addr()),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	s.ln, s.srv, s.done = ln, srv, done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(s.name()+" serve", "err", err)
		}
	}()
	return nil
}

// Addr returns the bound address once started (still after Shutdown), else ""
// (callers fall back to their configured address).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections, lets in-flight requests finish within
// ctx, closes the remaining connections once ctx ends and waits for the serve
// goroutine. After it, Start fails. It is idempotent: only the first call does
// the work and reports ctx's error if requests were cut short; later calls
// return nil.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		srv, done := s.srv, s.done
		s.mu.Unlock()
		if srv == nil {
			return
		}
		if err = srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	})
	return err
}

func (s *Server) name() string {
	if s.Name == "" {
		return "httpserve"
	}
	return s.Name
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
