// Package naive is the baseline the load tool compares the room with: a
// server of the same client protocol written the obvious way, with a
// goroutine pair (reader + writer) and a buffered channel per connection —
// the design the original system abandoned. It checks tokens, answers PING,
// and pushes to every connection on an HTTP trigger shaped like the Center
// API (POST /v1/apps/{app}/broadcast and /push with {"data"|"text","qos"}),
// so the same load scenarios run against both. It also serves /metrics,
// /healthz and /debug/pprof/ on the HTTP port. Benchmarks only.
package naive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// ErrClosed is returned by Start after Shutdown.
var ErrClosed = errors.New("naive: server closed")

// Config configures the baseline server.
type Config struct {
	Addr     string            // client TCP address (default 127.0.0.1:0)
	HTTPAddr string            // trigger + metrics address (default 127.0.0.1:0)
	Secrets  map[uint32][]byte // app id -> token secret
	HB       int               // heartbeat seconds granted (default 60)
	QueueLen int               // per-connection write queue (default 64)
	Logger   *slog.Logger
}

// Server is the goroutine-per-connection baseline.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ln    net.Listener
	hln   net.Listener
	hsrv  *http.Server
	wg    sync.WaitGroup
	once  sync.Once
	ids   atomic.Uint64
	mu    sync.RWMutex
	conns map[*conn]struct{}
	byUID map[string]*conn
	quit  chan struct{}
}

type conn struct {
	nc   net.Conn
	app  uint32
	uid  string
	out  chan []byte
	done chan struct{}
}

// New validates cfg; it does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.HB <= 0 {
		cfg.HB = 60
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 64
	}
	if len(cfg.Secrets) == 0 {
		return nil, fmt.Errorf("naive: no app secrets")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, conns: map[*conn]struct{}{}, byUID: map[string]*conn{}, quit: make(chan struct{})}, nil
}

// Start listens on both ports and serves until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("naive listen %s: %w", s.cfg.Addr, err)
	}
	hln, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("naive listen %s: %w", s.cfg.HTTPAddr, err)
	}
	s.ln, s.hln = ln, hln
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apps/{app}/broadcast", s.handlePush)
	mux.HandleFunc("POST /v1/apps/{app}/push", s.handlePush)
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.hsrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.hsrv.Serve(hln) }()
	go func() { defer s.wg.Done(); s.accept() }()
	return nil
}

// Addr is the client address; HTTPAddr the trigger/metrics address.
func (s *Server) Addr() string     { return s.ln.Addr().String() }
func (s *Server) HTTPAddr() string { return s.hln.Addr().String() }

// Shutdown closes everything and waits for every goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		close(s.quit)
		if s.ln == nil {
			return
		}
		_ = s.ln.Close()
		_ = s.hsrv.Shutdown(ctx)
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // EMFILE: back off instead of dying
			continue
		}
		c := &conn{nc: nc, out: make(chan []byte, s.cfg.QueueLen), done: make(chan struct{})}
		s.wg.Add(2)
		go func() { defer s.wg.Done(); s.read(c) }()
		go func() { defer s.wg.Done(); s.write(c) }()
	}
}

// read is the per-connection reader goroutine.
func (s *Server) read(c *conn) {
	defer func() {
		close(c.done) // the writer flushes what is queued (an ERROR) and closes
		s.mu.Lock()
		delete(s.conns, c)
		if s.byUID[c.uid] == c {
			delete(s.byUID, c.uid)
		}
		s.mu.Unlock()
		connsGauge.Dec()
	}()
	connsGauge.Inc()
	dec := proto.NewDecoder(c.nc, proto.DefaultMaxLen)
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	idle := time.Duration(2*s.cfg.HB)*time.Second + 10*time.Second
	for {
		f, err := dec.Next()
		if err != nil {
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
		switch {
		case c.uid == "" && f.Op != proto.OpAuth:
			s.send(c, proto.AppendError(nil, f.Seq, proto.ErrCodeAuthRequired, "AUTH first"))
			return
		case f.Op == proto.OpAuth:
			if !s.auth(c, f) {
				return
			}
		case f.Op == proto.OpPing:
			s.send(c, proto.PongFrame)
		case f.Op == proto.OpAck:
			// nothing is stored: ACKs are accepted and dropped
		default:
			s.send(c, proto.AppendError(nil, f.Seq, proto.ErrCodeUnknownOp, "not in the baseline"))
		}
	}
}

func (s *Server) auth(c *conn, f proto.Frame) bool {
	var a proto.Auth
	secret, ok := s.cfg.Secrets[f.App]
	if !ok || proto.DecodeJSON(f.Body, &a) != nil || a.UID == "" ||
		token.Verify(secret, f.App, a.UID, a.Token, time.Now(), time.Minute) != nil {
		s.send(c, proto.AppendError(nil, f.Seq, proto.ErrCodeBadToken, "bad token"))
		return false
	}
	c.uid, c.app = a.UID, f.App
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.byUID[c.uid] = c
	s.mu.Unlock()
	s.send(c, proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK, Seq: f.Seq},
		proto.AuthOK{HB: s.cfg.HB, Room: "naive", ServerTime: time.Now().Unix()}))
	return true
}

// send queues a frame; a full queue drops it (bounded, like a careful
// naive server would).
func (s *Server) send(c *conn, b []byte) {
	select {
	case c.out <- b:
	default:
		droppedTotal.Inc()
	}
}

// write is the per-connection writer goroutine: one syscall per frame.
func (s *Server) write(c *conn) {
	for {
		select {
		case b := <-c.out:
			if _, err := c.nc.Write(b); err != nil {
				_ = c.nc.Close()
				return
			}
		case <-c.done:
			for {
				select {
				case b := <-c.out:
					_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.nc.Write(b); err != nil {
						_ = c.nc.Close()
						return
					}
				default:
					_ = c.nc.Close()
					return
				}
			}
		}
	}
}

type pushReq struct {
	UIDs []string `json:"uids"`
	Text string   `json:"text"`
	Data []byte   `json:"data"`
	QoS  *int     `json:"qos"`
	TTL  int      `json:"ttl"`
	Rate *float64 `json:"rate"`
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	app64, err := strconv.ParseUint(r.PathValue("app"), 10, 32)
	var req pushReq
	if err != nil || json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req) != nil {
		http.Error(w, `{"error":{"code":"bad_request","message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	app := uint32(app64)
	payload := req.Data
	if payload == nil {
		payload = []byte(req.Text)
	}
	qos1 := req.QoS == nil || *req.QoS == 1
	id := s.ids.Add(1)
	frame := proto.AppendPush(nil, app, qos1, id, payload)
	n := 0
	s.mu.RLock()
	if req.UIDs != nil {
		for _, u := range req.UIDs {
			if c := s.byUID[u]; c != nil && c.app == app {
				s.send(c, frame)
				n++
			}
		}
	} else {
		for c := range s.conns {
			if c.app == app {
				s.send(c, frame)
				n++
			}
		}
	}
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	if req.UIDs == nil {
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"job_id":"%d","msg_id":"%d","online":%d}`, id, id, n)
		return
	}
	fmt.Fprintf(w, `{"msg_id":"%d","online":%d,"stored":0}`, id, n)
}
