// Package room is the gateway: it holds the clients' TCP connections on gnet
// v2 event loops and owns the whole client session state machine of the wire
// protocol (docs/protocol.md): authentication with offline tokens, heartbeat
// negotiation and idle timeouts, app bind/unbind, ACK and upstream hand-off,
// delivery of pushes and kicks, connection admission (caps, per-IP limits,
// allow/deny lists) and graceful drain and shutdown.
//
// Event loops never block. Work that waits on another service (register,
// saver, coordinator) runs on a fixed pool of resident workers behind a
// bounded queue; results come back to the connection's own loop through
// EventLoop.Execute. Nothing outside a loop ever touches a gnet.Conn or the
// per-connection state, except the few immutable or atomic fields documented
// on connState.
//
// The session state machine knows frames, not bytes: a connection's
// transport (transport.go) turns its byte stream into decoded frames and the
// frames the room writes into the bytes on the wire. Raw TCP, the
// length-prefixed frames of the protocol back to back, is the transport of
// the main listener (Config.Addr); WebSocket is that of the second one
// (Config.WSAddr, same engine); a PROXY header from a trusted proxy comes in
// front of either (room.proxy.trusted). Each is chosen per connection at
// open, with a handshake before frames flow.
//
// Map of the package, by feature:
//   - room.go: Config, the services the room calls (Deps), Room, Start, the
//     worker pool hand-off (submit) and status events.
//   - engine.go: the gnet event handler; it only dispatches.
//   - transport.go: the transport seam and raw TCP framing.
//   - listen.go: the listeners (raw TCP, WebSocket) of the one engine.
//   - ws.go: the WebSocket transport (upgrade, one frame per message).
//   - proxy.go: the PROXY protocol (trusted proxies, the client's address).
//   - session.go: per-connection state (connState) and the session
//     lifecycle: open, handshake, end, close, linger, unregister.
//   - admit.go: admission at open (lists, caps per process and per IP).
//   - dispatch.go: the frame loop of a connection and the op dispatch.
//   - auth.go, bind.go (BIND, UNBIND), ack.go, upstream.go: each client
//     op, its loop-side handling, the worker task it hands off to and the
//     loop-side completion.
//   - limits.go: per-connection op rate limits (token buckets).
//   - write.go: the write path: frame building, output budget and
//     backpressure, per-loop push coalescing and the flush.
//   - push.go, broadcast.go: delivery of messages (targeted, app-wide);
//     bcasttask.go: the broadcast tasks the room owns, one per message id,
//     which outlive their caller and answer a repeated call without
//     writing again.
//   - kick.go: Kick (apps are tenants). shutdown.go: Drain and Shutdown.
//   - recovery.go: Sessions and Redeliver, for a register re-fill.
//   - loop.go: per-loop state, tasks on a loop, the housekeeping sweep.
//   - index.go: connections by uid. metrics.go: metrics, close reasons.
package room

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/workpool"
)

// Errors returned by the room.
var (
	// ErrConfig means New was given an unusable Config or Deps.
	ErrConfig = errors.New("room: bad config")
	// ErrStarted means Start was called twice.
	ErrStarted = errors.New("room: already started")
)

// Config is the static configuration of one room instance. Settings that may
// change at run time (limits, heartbeat bounds, deadlines) come from the
// config.Holder in Deps and are read at use time.
type Config struct {
	ID   string // instance id, default "room-1"
	Addr string // listen host:port, e.g. "127.0.0.1:0" (tests) or ":7000"
	// WSAddr, when set, is a second listen host:port on the same engine
	// whose connections speak WebSocket (PROTOCOL.md "Transports", path
	// /v1/ws), e.g. ":7001"; "" serves raw TCP only.
	WSAddr     string
	PublicAddr string // address clients use (dispatcher), default = bound addr
	NumLoops   int    // event loops, default runtime.NumCPU()
	Workers    int    // blocking-work pool size, default 64
	Queue      int    // pool queue length, default 8192
	// SendBuffer, when > 0, sets SO_SNDBUF of client sockets: the kernel's
	// share of each connection's unread output (0 keeps the system default).
	SendBuffer int
	Logger     *slog.Logger
}

// Register is the session store (register service).
type Register interface {
	// Register stores s as one of the uid's sessions. Apps are tenants: the
	// uid's other connections lose the apps s has, and the sessions that
	// lost apps are returned, each with Apps set to the apps it lost.
	Register(ctx context.Context, s push.Session) (displaced []push.Session, err error)
	// Unregister removes the uid's session only if it is still (room, connID).
	Unregister(ctx context.Context, uid, room string, connID uint64) (bool, error)
	// SetApps replaces the app set of the uid's session if it is still
	// connID; apps it gains are taken from the uid's other connections,
	// which are returned as by Register.
	SetApps(ctx context.Context, uid string, connID uint64, apps []uint32) (displaced []push.Session, ok bool, err error)
}

// Saver is the store of QoS 1 messages (saver service).
type Saver interface {
	// Load returns stored QoS 1 (and broadcast) messages in ID order.
	Load(ctx context.Context, uid string, apps []uint32) ([]push.Message, error)
	// AckMany applies ACKs in one call, as one Ack per entry in order
	// would: each deletes the entry's uid's messages with these ids that
	// belong to one of its apps (the apps bound on the ACKing connection);
	// unknown ids and ids of other apps are ignored. At most
	// push.MaxAckEntries entries and push.MaxAckIDs ids per call (ack.go).
	AckMany(ctx context.Context, acks []push.AckReq) (int, error)
	// AddSent adds the room's socket writes to the messages' delivery
	// status (batched: one call per loop per tick, sent.go).
	AddSent(ctx context.Context, deltas []push.StatusDelta) error
	// Checkpoint makes the broadcast cursors of ended sessions durable
	// (batched: one call per loop per tick, checkpoint.go).
	Checkpoint(ctx context.Context, ends []push.SessionEnd) error
}

// Coordinator routes kicks, upstream data and status events (coordinator service).
type Coordinator interface {
	// Kick takes old.Apps from old's connection wherever it is (maybe on
	// this room), and kicks it when it has no app left (Room.Kick).
	Kick(ctx context.Context, old push.Session, code int, reason string) error
	// Upstream queues client data for the product; push.ErrOverloaded when full.
	Upstream(ctx context.Context, up push.Upstream) error
	// Status reports an online/offline event.
	Status(ctx context.Context, ev push.StatusEvent) error
}

// Deps are the services the room calls.
type Deps struct {
	Config      *config.Holder
	Register    Register
	Saver       Saver
	Coordinator Coordinator
}

// callTimeout bounds each blocking call a worker makes for a connection.
const callTimeout = 5 * time.Second

// Room is one gateway instance.
type Room struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	epoch  time.Time     // base of the monotonic clock used for deadlines
	nextID atomic.Uint64 // connection ids

	idx      index
	holds    holds // sessions in their reconnect window (resume.go)
	ips      ipCounter
	conns    atomic.Int64 // open connections (admitted)
	unauthed atomic.Int64 // of them, not authenticated yet
	purgedAt atomic.Int64 // monotonic ns of the last ips.purge
	onl      atomic.Int64 // authenticated sessions

	bcasts   bcastTasks // broadcast tasks by message id (bcasttask.go)
	endRetry endRetry   // session ends a failed report gives back (checkpoint.go)

	loopsMu sync.RWMutex
	loops   map[gnet.EventLoop]*loopState
	loopSeq []*loopState // same loops, in creation order (index = loopState.idx)

	// mu orders the start/stop state against auth hand-offs: an auth is only
	// handed to the pool while !closing, so Shutdown can wait for all of them.
	mu       sync.RWMutex
	started  bool
	closing  bool
	closed   atomic.Bool  // = closing, for lock-free checks on hot paths
	authing  atomic.Int64 // AUTHs handed to workers whose result has not reached the loop
	pool     *workpool.Pool
	eng      gnet.Engine
	addr     string
	wsAddr   string // bound WebSocket address, "" when none
	lns      listeners
	wsConf   atomic.Pointer[wsConf] // the upgrade configuration (ws.go)
	booted   chan struct{}
	runDone  chan struct{}
	runErr   error
	shutOnce sync.Once
	shutErr  error

	// pickTransport, when set (tests, before Start), chooses the transport
	// of each new connection by its listener address (transportFor).
	pickTransport pickTransportFunc
}

// New validates cfg and deps and returns a room that is not yet listening.
func New(cfg Config, deps Deps) (*Room, error) {
	if cfg.ID == "" {
		cfg.ID = "room-1"
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: empty Addr", ErrConfig)
	}
	if cfg.WSAddr != "" && cfg.WSAddr == cfg.Addr && !zeroPort(cfg.Addr) {
		return nil, fmt.Errorf("%w: WSAddr %s is Addr", ErrConfig, cfg.WSAddr)
	}
	if cfg.NumLoops <= 0 {
		cfg.NumLoops = runtime.NumCPU()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case deps.Config == nil || deps.Config.Load() == nil:
		return nil, fmt.Errorf("%w: no config holder", ErrConfig)
	case deps.Register == nil:
		return nil, fmt.Errorf("%w: no Register", ErrConfig)
	case deps.Saver == nil:
		return nil, fmt.Errorf("%w: no Saver", ErrConfig)
	case deps.Coordinator == nil:
		return nil, fmt.Errorf("%w: no Coordinator", ErrConfig)
	}
	r := &Room{
		cfg:     cfg,
		deps:    deps,
		log:     cfg.Logger,
		epoch:   time.Now(),
		loops:   make(map[gnet.EventLoop]*loopState),
		booted:  make(chan struct{}),
		runDone: make(chan struct{}),
	}
	r.idx.init()
	r.ips.init()
	// Connection ids start at the wall clock in nanoseconds: a restarted room
	// starts far above every id its previous run handed out, so register never
	// confuses a new connection with a stale session of the old process.
	r.nextID.Store(uint64(time.Now().UnixNano()))
	return r, nil
}

// Start listens and starts the event loops and workers. It returns once the
// listener is bound (Addr is then valid) or on error.
func (r *Room) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return fmt.Errorf("room start: %w", push.ErrClosed)
	}
	if r.started {
		r.mu.Unlock()
		return ErrStarted
	}
	r.started = true
	r.pool = workpool.New(r.cfg.Workers, r.cfg.Queue)
	r.mu.Unlock()
	r.lns = newListeners(r.cfg.Addr, r.cfg.WSAddr)

	h := &events{r: r}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(r.cfg.NumLoops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(true),
		gnet.WithReuseAddr(true), // a restarted room binds its port at once, despite TIME_WAIT
		gnet.WithLogger(gnetLogger{r.log}),
	}
	if r.cfg.SendBuffer > 0 {
		opts = append(opts, gnet.WithSocketSendBuffer(r.cfg.SendBuffer))
	}
	go func() {
		defer close(r.runDone)
		err := gnet.Rotate(h, r.lns.gnetAddrs(), opts...)
		if err != nil {
			r.log.Error("gnet engine stopped", "err", err)
		}
		r.runErr = err
	}()
	select {
	case <-r.booted:
		r.log.Info("listening", "addr", r.addr, "ws_addr", r.wsAddr, "loops", r.cfg.NumLoops)
		return nil
	case <-r.runDone:
		return fmt.Errorf("room listen %s: %w", r.cfg.Addr, r.runErr)
	case <-ctx.Done():
		return fmt.Errorf("room start: %w", ctx.Err())
	}
}

// Addr returns the bound listen address (host:port), "" before Start.
func (r *Room) Addr() string {
	select {
	case <-r.booted:
		return r.addr
	default:
		return ""
	}
}

// WSAddr returns the bound WebSocket listen address (host:port), "" before
// Start or when the room serves no WebSocket.
func (r *Room) WSAddr() string {
	select {
	case <-r.booted:
		return r.wsAddr
	default:
		return ""
	}
}

// PublicAddr returns the address clients should use: Config.PublicAddr, or
// the bound address when that is empty.
func (r *Room) PublicAddr() string {
	if r.cfg.PublicAddr != "" {
		return r.cfg.PublicAddr
	}
	return r.Addr()
}

// ID returns the instance id.
func (r *Room) ID() string { return r.cfg.ID }

// Online returns the number of authenticated sessions held here.
func (r *Room) Online() int { return int(r.onl.Load()) }

// isClosing reports whether Shutdown has begun.
func (r *Room) isClosing() bool { return r.closed.Load() }

func nowMilli() int64 { return time.Now().UnixMilli() }

// now is a monotonic clock in nanoseconds, immune to wall-clock steps.
func (r *Room) now() int64 { return int64(time.Since(r.epoch)) }

// status reports an online/offline event (worker); a failure is logged,
// never fatal.
func (r *Room) status(ctx context.Context, uid string, app uint32, event string) {
	mBackendCalls.WithLabelValues("status").Inc()
	ev := push.StatusEvent{App: app, UID: uid, Event: event, Room: r.cfg.ID, TS: nowMilli()}
	if err := r.deps.Coordinator.Status(ctx, ev); err != nil {
		r.log.Debug("status event not sent", "uid", uid, "app", app, "event", event, "err", err)
	}
}

// submit hands f to the worker pool; false when the pool is full or closed.
func (r *Room) submit(f func()) bool {
	r.mu.RLock()
	p := r.pool
	r.mu.RUnlock()
	return p != nil && p.TrySubmit(f)
}
