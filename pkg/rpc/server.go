package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/workpool"
)

// Handler serves one method. req is the request body, valid only until the
// handler returns. The handler writes its reply body into rep (Encode or
// Write) and returns nil, or returns an error that the caller receives as an
// *Error: an *Error is sent as it is; errors wrapping push.ErrOverloaded,
// push.ErrUnavailable, ErrBadRequest or wire.ErrMalformed get their codes;
// anything else is CodeInternal with err.Error() as the message. A panic is
// recovered and answered as CodeInternal.
//
// ctx is the server's: it is canceled only when a Shutdown runs out of time.
// The caller's deadline is rep.Deadline().
type Handler func(ctx context.Context, req []byte, rep *Reply) error

// Reply collects a handler's reply body.
type Reply struct {
	buf      []byte // the reply frame being built, header first
	deadline int64  // unix nanoseconds; 0: none
}

// Write appends p to the reply body. It never fails.
func (r *Reply) Write(p []byte) (int, error) {
	r.buf = append(r.buf, p...)
	return len(p), nil
}

// Encode appends m's binary form to the reply body.
func (r *Reply) Encode(m Message) error {
	b, err := m.AppendBinary(r.buf)
	if err != nil {
		return err
	}
	r.buf = b
	return nil
}

// Deadline returns the caller's deadline, if its ctx had one.
func (r *Reply) Deadline() (time.Time, bool) {
	if r.deadline == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, r.deadline), true
}

// ServerConfig configures a Server. Zero fields take the defaults shown.
type ServerConfig struct {
	Addr string // listen address; ":0" or "127.0.0.1:0" picks a port

	// Workers is the number of resident goroutines that run handlers.
	// Default 64 (handlers usually wait on Redis or another service).
	Workers int
	// QueueLen bounds the requests waiting for a worker; past it a request
	// is answered CodeOverloaded at once. Default 1024.
	QueueLen int
	// MaxFrame is the largest request or reply frame, header included.
	// Default DefaultMaxFrame (4 MiB).
	MaxFrame int
	// MaxConns bounds open connections; more are closed on accept.
	// Default 4096.
	MaxConns int
	// WriteTimeout breaks a connection whose write makes no progress this
	// long. Default 10s.
	WriteTimeout time.Duration

	Logger *slog.Logger // nil: discard
}

func (cfg *ServerConfig) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Workers, 64)
	def(&cfg.QueueLen, 1024)
	def(&cfg.MaxFrame, DefaultMaxFrame)
	if cfg.MaxFrame < headerSize+maxErrMsg {
		cfg.MaxFrame = headerSize + maxErrMsg
	}
	def(&cfg.MaxConns, 4096)
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server serves registered methods to RPC clients.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	handlers map[uint16]Handler // frozen by Start
	started  atomic.Bool

	ln     net.Listener
	pool   *workpool.Pool
	ctx    context.Context // handlers' ctx; canceled when Shutdown runs out of time
	cancel context.CancelFunc

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	draining atomic.Bool
	quit     chan struct{} // closed when Shutdown begins
	wg       sync.WaitGroup

	shutOnce sync.Once
	drained  chan struct{} // closed when every queued and running handler finished
}

// NewServer returns a server; it does no I/O. Register methods with Handle,
// then Start.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg.setDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		handlers: make(map[uint16]Handler),
		conns:    make(map[*serverConn]struct{}),
		quit:     make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Handle registers h for method. It must be called before Start, once per
// method; anything else is a programming error and panics.
func (s *Server) Handle(method uint16, h Handler) {
	if s.started.Load() {
		panic("rpc: Handle after Start")
	}
	if h == nil {
		panic("rpc: nil handler")
	}
	if _, dup := s.handlers[method]; dup {
		panic(fmt.Sprintf("rpc: method %d registered twice", method))
	}
	s.handlers[method] = h
}

// Start listens on cfg.Addr and serves in the background. ctx bounds only
// the start; Shutdown stops the server.
func (s *Server) Start(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("rpc: server started twice")
	}
	if s.draining.Load() {
		return ErrClosed
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("rpc listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.pool = workpool.New(s.cfg.Workers, s.cfg.QueueLen)
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr returns the listening address once started (cfg.Addr before).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of files and the like: wait, do not spin or die.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("rpc accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.quit:
				return
			}
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.draining.Load() || len(s.conns) >= s.cfg.MaxConns {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		sc := &serverConn{s: s, nc: nc, out: newOutbox()}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		serverConns.Inc()
		go sc.serve()
	}
}

// goAwayFrame tells a client to send no new calls on the connection.
var goAwayFrame = func() []byte {
	b := appendHeader(nil, header{kind: kindGoAway})
	_ = finishFrame(b, 0, headerSize)
	return b
}()

// Shutdown drains the server: it stops accepting connections and tells
// clients to send no new calls here (new calls that still arrive are
// answered CodeUnavailable), lets every queued and running call finish and
// its reply be written, then closes the connections. If ctx ends first, the
// handlers' ctx is canceled and the connections are closed at once;
// Shutdown still waits for its goroutines (handlers must honour ctx) and
// returns ctx.Err(). It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.draining.Store(true)
		close(s.quit)
		s.drained = make(chan struct{})
		if s.ln == nil { // never started
			close(s.drained)
			return
		}
		_ = s.ln.Close()
		s.mu.Lock()
		for sc := range s.conns {
			sc.out.add(goAwayFrame)
		}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.pool.Close() // runs what is queued, waits for the workers
			close(s.drained)
		}()
	})
	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.forceClose()
		<-s.drained
	}
	// Every reply is queued: let the writers flush and close.
	s.mu.Lock()
	for sc := range s.conns {
		sc.out.close()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
			s.forceClose()
		}
		<-done
	}
	return err
}

// forceClose cancels the handlers' ctx and closes every connection.
func (s *Server) forceClose() {
	s.cancel()
	s.mu.Lock()
	for sc := range s.conns {
		_ = sc.nc.Close()
	}
	s.mu.Unlock()
}
