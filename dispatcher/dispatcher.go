// Package dispatcher owns the client entry point of the platform: given a
// uid (and its network and retry history) it answers a list of room gateway
// addresses. The first address is the room instance the uid hashes to by
// rendezvous hashing over the live rooms, so a flash reconnect lands where the
// user's state is; the rest are spread over other instances, and after a
// failure other instances (in another IDC where one exists) come first. The
// transport parameter (tcp, the default, ws, tls or wss) picks which of the
// rooms' announced addresses are handed out (PROTOCOL.md, "Transports").
//
// The dispatcher is stateless: membership comes from a Members source (keeper)
// on every request, so any number of dispatchers can run side by side.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/lcpush/lcpush/pkg/httpserve"
	"github.com/lcpush/lcpush/pkg/push"
)

// RoleRoom is the membership role of room gateways.
const RoleRoom = "room"

// ErrConfig wraps invalid configuration values.
var ErrConfig = errors.New("dispatcher: invalid config")

// Members lists the live instances of a role (keeper membership): for rooms,
// ID, the public client addresses per transport (Addrs for TCP, TLSAddrs,
// WSAddrs, WSSAddrs), IDC and Load.
type Members interface {
	Members(role string) []push.Member
}

// Config configures a dispatcher.
type Config struct {
	// Addr is the listen address, default ":8001" (the port of the lcpush
	// binary's -dispatch-addr, which always sets it).
	Addr   string
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
	srv     *httpserve.Server
}

// New validates cfg and returns a service; it does no I/O.
func New(cfg Config, m Members) (*Service, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil Members", ErrConfig)
	}
	if cfg.Addr == "" {
		cfg.Addr = ":8001"
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
	s.srv = &httpserve.Server{
		Name:              "dispatcher",
		Logger:            cfg.Logger,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return s, nil
}

// Handler returns the HTTP API (tests may serve it with httptest).
func (s *Service) Handler() http.Handler { return s.handler }

// Start listens on cfg.Addr and serves in a goroutine owned by the service.
func (s *Service) Start(ctx context.Context) error {
	if err := s.srv.Start(ctx, s.cfg.Addr, s.handler); err != nil {
		return err
	}
	s.log.Info("dispatcher listening", "addr", s.srv.Addr())
	return nil
}

// Addr returns the bound address once started, else the configured one.
func (s *Service) Addr() string {
	if a := s.srv.Addr(); a != "" {
		return a
	}
	return s.cfg.Addr
}

// Shutdown stops the listener, lets in-flight requests finish within ctx and
// waits for the serve goroutine. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
