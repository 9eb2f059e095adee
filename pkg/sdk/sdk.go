// Package sdk is the reference Go client of the push platform. It owns the
// client side of PROTOCOL.md: finding gateways (dispatcher, then static
// addresses, skipping the ones that failed), authenticating, the heartbeat,
// delivering each pushed message once (deduplicated by message id) in order,
// batched ACKs, BIND/UNBIND/UPSTREAM requests matched to their replies by Seq,
// and reconnecting with jittered exponential backoff. SDKs in other languages
// follow the same state machine.
//
// A Client runs a fixed set of goroutines, all stopped by Close: the
// connection reader (which also drives reconnects), one heartbeat ticker per
// connection, one ACK flusher and one callback goroutine. Every queue is
// bounded; a slow message handler slows the reader, which lets TCP push back
// on the server instead of buffering without limit.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the Client. A server ERROR frame surfaces as *proto.Error
// (use errors.As); a KICK as *KickError, which matches ErrKicked.
var (
	ErrClosed       = errors.New("sdk: client closed")
	ErrKicked       = errors.New("sdk: kicked")
	ErrNotConnected = errors.New("sdk: not connected")
	ErrDisconnected = errors.New("sdk: connection lost")
	ErrStarted      = errors.New("sdk: already connected")
	ErrNoAddress    = errors.New("sdk: no gateway address")
	ErrTooLarge     = errors.New("sdk: frame too large")
	ErrBusy         = errors.New("sdk: too many requests in flight")
	ErrConfig       = errors.New("sdk: invalid config")
	ErrDispatch     = errors.New("sdk: dispatch failed")
)

// KickError is a KICK received from the server. Codes 1 (login_elsewhere),
// 2 (admin) and 3 (banned) are terminal: the client stops reconnecting.
type KickError struct {
	Code   int
	Reason string
}

func (e *KickError) Error() string {
	return fmt.Sprintf("sdk: kicked: code %d %s", e.Code, e.Reason)
}

// Is makes errors.Is(err, ErrKicked) true.
func (e *KickError) Is(target error) bool { return target == ErrKicked }

// Terminal reports whether this kick stops reconnects.
func (e *KickError) Terminal() bool { return e.Code >= 1 && e.Code <= 3 }

// State is the connection state reported to Config.OnState.
type State int

// Connection states.
const (
	StateConnecting State = iota + 1
	StateConnected
	StateDisconnected
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateClosed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Message is one pushed message. Payload is owned by the receiver.
type Message struct {
	ID      uint64
	App     uint32
	QoS1    bool
	Payload []byte
}

// Config configures a Client. UID, a token source and at least one of
// DispatchURL and Addrs are required; everything else has a default.
//
// Callbacks (OnMessage, OnKick, OnState) run one at a time, in order, on the
// Client's callback goroutine. They may call Close and Ack. They should not
// wait for Bind, Unbind or Upstream replies without a deadline: while a
// callback runs, at most one queue (256 events) of further frames is read.
type Config struct {
	// DispatchURL, when set, is asked for gateway addresses before each
	// (re)connect: GET {DispatchURL}/v1/dispatch?uid&app&net&retry&failed.
	DispatchURL string
	// Addrs are static gateway addresses (host:port), tried after the dispatched ones.
	Addrs []string
	App   uint32
	UID   string
	// Token authenticates UID for App; TokenFunc, if set, is called instead
	// before each (re)connect so an expired token can be refreshed.
	Token     string
	TokenFunc func(ctx context.Context) (string, error)
	Device    string
	Net       string // network type sent to the dispatcher and the server, e.g. "wifi"
	SDKName   string // default "lcpush-go"
	// Heartbeat is the requested interval (default 30s); the server's value is used.
	Heartbeat time.Duration
	// ManualAck disables the automatic ACK of QoS 1 messages after OnMessage
	// returns (or after the message is handed to Messages()); call Ack instead.
	ManualAck bool
	// OnMessage receives each new message. When nil, messages go to Messages().
	OnMessage func(Message)
	// OnKick is called when the server kicks this connection.
	OnKick func(code int, reason string)
	// OnState is called on each state change; StateClosed comes last.
	OnState func(State)
	// NoReconnect makes a lost connection final.
	NoReconnect bool
	// BackoffMin and BackoffMax bound the reconnect delay (default 500ms, 30s):
	// exponential growth, full jitter.
	BackoffMin, BackoffMax time.Duration
	// DialTimeout bounds one dial plus AUTH, one dispatch call and one write (default 5s).
	DialTimeout time.Duration
	// DedupSize is how many recent message ids are remembered (default 4096).
	DedupSize int
	Logger    *slog.Logger
}

// Limits that keep every queue bounded.
const (
	eventQueue      = 256 // callback queue, also the Messages() buffer
	ackBatch        = 64  // ids per ACK frame
	ackDelay        = 10 * time.Millisecond
	maxPendingAcks  = 4096 // ids waiting for a connection; the oldest are dropped (the server redelivers)
	maxPending      = 1024 // requests waiting for a reply
	maxBinds        = 256
	maxAddrs        = 32 // candidate addresses per connect attempt
	maxFailed       = 16 // addresses remembered as failed
	failedTTL       = 5 * time.Minute
	maxFrameIn      = 4 << 20 // largest frame accepted from the server
	maxRedirectWait = 5 * time.Minute
)

func (c *Config) fill() error {
	if c.UID == "" {
		return fmt.Errorf("%w: UID is empty", ErrConfig)
	}
	if c.Token == "" && c.TokenFunc == nil {
		return fmt.Errorf("%w: need Token or TokenFunc", ErrConfig)
	}
	if c.DispatchURL == "" && len(c.Addrs) == 0 {
		return fmt.Errorf("%w: need DispatchURL or Addrs", ErrConfig)
	}
	if c.DispatchURL != "" {
		u, err := url.Parse(c.DispatchURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: DispatchURL %q is not an http(s) URL", ErrConfig, c.DispatchURL)
		}
	}
	if c.SDKName == "" {
		c.SDKName = "lcpush-go"
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 30 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.DedupSize <= 0 {
		c.DedupSize = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Client is one device's connection to the platform. It is safe for
// concurrent use.
type Client struct {
	cfg   Config
	log   *slog.Logger
	hbReq int // requested heartbeat, seconds

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	seq    atomic.Uint32
	httpc  *http.Client
	httpT  *http.Transport

	events     chan event
	msgs       chan Message
	dedup      *dedup
	acks       ackQueue
	inCallback atomic.Bool
	stopped    chan struct{} // closed when the client stops for good
	stopOnce   sync.Once

	loopWG    sync.WaitGroup // the reader / reconnect loop
	ackWG     sync.WaitGroup // the ACK flusher
	deliverWG sync.WaitGroup // the callback goroutine

	mu         sync.Mutex
	state      State
	closed     bool
	connecting bool
	started    bool // a Connect succeeded: the loop owns the connection from now on
	bgStarted  bool
	err        error // why the loop stopped for good
	sess       *session
	hb         time.Duration
	room       string
	pending    map[uint32]pendingReq
	binds      map[uint32]string
	failed     []failedAddr
	cache      dispatchCache
}

// New validates cfg and returns a Client. It does no I/O; call Connect.
func New(cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Dispatch is called once per reconnect: idle keep-alive connections
	// would only hold goroutines and sockets between calls.
	transport.DisableKeepAlives = true
	ctx, cancel := context.WithCancel(context.Background())
	msgsCap := 0
	if cfg.OnMessage == nil {
		msgsCap = eventQueue
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		hbReq:   max(1, int((cfg.Heartbeat+time.Second/2)/time.Second)),
		ctx:     ctx,
		cancel:  cancel,
		httpT:   transport,
		httpc:   &http.Client{Transport: transport, Timeout: cfg.DialTimeout},
		events:  make(chan event, eventQueue),
		msgs:    make(chan Message, msgsCap),
		dedup:   newDedup(cfg.DedupSize),
		stopped: make(chan struct{}),
		pending: make(map[uint32]pendingReq),
		binds:   make(map[uint32]string),
		hb:      cfg.Heartbeat,
	}
	c.acks.init()
	return c, nil
}

// Messages returns the channel that receives messages when Config.OnMessage
// is nil. It is closed after Close.
func (c *Client) Messages() <-chan Message { return c.msgs }

// HB returns the heartbeat interval negotiated with the server (the requested
// one before the first AUTH_OK).
func (c *Client) HB() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hb
}

// Room returns the id of the room instance of the last AUTH_OK.
func (c *Client) Room() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.room
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the client stops for good: after Close, a terminal
// kick, a rejected token on reconnect, or a lost connection with NoReconnect.
func (c *Client) Done() <-chan struct{} { return c.stopped }

// Err returns why the client stopped on its own (a *KickError, a
// *proto.Error, ...), or nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) nextSeq() uint32 {
	for {
		if v := c.seq.Add(1); v != 0 { // Seq 0 is reserved for server-initiated frames
			return v
		}
	}
}

// Close closes the connection and stops every goroutine of the client. Queued
// ACKs are flushed first (best effort). It is idempotent and may be called
// from a callback; when called while a callback is running, it does not wait
// for that callback to return.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.sess
	bg := c.bgStarted
	c.mu.Unlock()

	c.failPending(nil, ErrClosed)
	c.cancel()
	c.ackWG.Wait() // the flusher's last flush still uses s
	if s != nil {
		s.close()
	}
	c.loopWG.Wait()
	c.httpT.CloseIdleConnections()
	if bg {
		if !c.inCallback.Load() {
			c.deliverWG.Wait()
		}
	} else {
		c.reportClosed()
		close(c.msgs)
	}
	c.stopOnce.Do(func() { close(c.stopped) })
	return nil
}

// stop ends the client's background work for good because of err.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.log.Warn("sdk: stopped", "uid", c.cfg.UID, "err", err)
	c.stopOnce.Do(func() { close(c.stopped) })
}
