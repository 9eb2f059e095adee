// Package dispatcher owns the client entry point of the platform: given a
// uid (and its network and retry history) it answers a list of room gateway
// addresses. The first address is the room instance the uid hashes to by
// rendezvous hashing over the live rooms, so a flash reconnect lands where the
// user's state is; the rest are spread over other instances, and after a
// failure other instances (in another IDC where one exists) come first.
//
// The dispatcher is stateless: membership comes from a Members source (keeper)
// on every request, so any number of dispatchers can run side by side.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// RoleRoom is the membership role of room gateways.
const RoleRoom = "room"

// ErrConfig wraps invalid configuration values.
var ErrConfig = errors.New("dispatcher: invalid config")

// Members lists the live instances of a role (keeper membership): for rooms,
// ID, Addrs (public client addresses), IDC and Load.
type Members interface {
	Members(role string) []push.Member
}

// Config configures a dispatcher.
type Config struct {
	Addr   string // listen address, default ":8080"
	Logger *slog.Logger
	// TTL is how long, in seconds, a client may cache the answer (default 300).
	TTL int
	// MaxAddrs caps the addresses in one answer (default 8).
	MaxAddrs int
}

// Service is the dispatcher HTTP service.
type Service struct {
	cfg     Config
	log     *slog.Logger
	members Members
	handler http.Handler

	mu     sync.Mutex
	ln     net.Listener
	srv    *http.Server
	done   chan struct{} // closed when Serve returns
	closed bool
	once   sync.Once
}

// New validates cfg and returns a service; it does no I/O.
func New(cfg Config, m Members) (*Service, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil Members", ErrConfig)
	}
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 300
	}
	if cfg.MaxAddrs == 0 {
		cfg.MaxAddrs = 8
	}
	if cfg.TTL < 0 || cfg.MaxAddrs < 1 {
		return nil, fmt.Errorf("%w: negative ttl or max_addrs", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, members: m}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP API (tests may serve it with httptest).
func (s *Service) Handler() http.Handler { return s.handler }

// Start listens on cfg.Addr and serves in a goroutine owned by the service.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil || s.closed {
		return errors.New("dispatcher: already started or shut down")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dispatcher listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dispatcher serve", "err", err)
		}
	}()
	s.log.Info("dispatcher listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the bound address once started, else the configured one.
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// Shutdown stops the listener, lets in-flight requests finish within ctx and
// waits for the serve goroutine. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
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
