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
//
// # Transports
//
// The frames are the same bytes on every transport (PROTOCOL.md,
// "Transports"); Config.Transport picks one, and the dispatcher is asked for
// addresses of it (transport=tcp|tls|ws|wss):
//
//   - tcp (default): frames back to back on a TCP stream; addresses host:port.
//   - tls: the same stream inside TLS; addresses host:port.
//   - ws: WebSocket (RFC 6455); addresses ws://host:port/v1/ws. The upgrade
//     is GET on the URL's path (WSPath when the address is a bare host:port
//     or has no path) and offers the subprotocol lcpush.v1 (WSSubprotocol);
//     no Origin header is sent. Each frame the client writes is one masked
//     binary message; each message received must hold exactly one frame
//     (Len included): a text message, or one holding more or less than a
//     frame or more than the maximum, drops the connection (then reconnect).
//     Server pings are answered with pongs of the same payload by the
//     reader; a server close frame is echoed and ends the connection. After
//     a KICK the disconnect reason is the *KickError, after a lone ERROR it
//     wraps that *proto.Error and the *CloseError (code 1008 from the room);
//     Close sends a close frame with code 1000.
//   - wss: WebSocket over TLS; addresses wss://host:port/v1/ws.
//
// An address that is a URL (ws://, wss://, tcp://, tls://) is dialed as its
// scheme says, whatever Transport is; a bare host:port is dialed with
// Transport. The dispatcher's failed list always names host:port.
//
// TLS (tls and wss) verifies the server's chain against Config.RootCAs (the
// system roots when nil) and the name Config.ServerName (default: the
// address's host, also sent as SNI unless it is an IP address). Config.Pins
// adds public-key pinning in the HPKP / OkHttp style ("sha256/<base64>" of
// a SubjectPublicKeyInfo, see PinOf): any certificate of the verified chain
// with a pinned key passes; none fails the connection with an error
// wrapping ErrPinMismatch, which is retried like an unreachable gateway.
// Dial, TLS handshake, upgrade and AUTH share one Config.DialTimeout and
// the Connect context.
//
// The transport sits behind a small seam (frameConn: next frame, write one
// frame, close), so the session logic — AUTH, heartbeat, ACKs, requests,
// reconnects — is the same on all four. The WebSocket transport uses
// github.com/gobwas/ws and adds no goroutine.
package sdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	// (re)connect: GET {DispatchURL}/v1/dispatch?uid&app&net&retry&failed&transport.
	DispatchURL string
	// Addrs are static gateway addresses, tried after the dispatched ones:
	// host:port (dialed with Transport), or URLs that name their own
	// transport: ws://host:port/v1/ws, wss://host:port/v1/ws, tcp://host:port,
	// tls://host:port.
	Addrs []string
	// Transport is how gateways are reached: TransportTCP (the default),
	// TransportTLS, TransportWS or TransportWSS. The dispatcher is asked
	// for addresses of this transport (transport=...), and a bare host:port
	// (in Addrs, a dispatcher answer or a REDIRECT) is dialed with it; for
	// ws and wss it means the URL scheme://host:port/v1/ws.
	Transport Transport

	// TLS, used by every tls and wss address. The handshake shares the
	// DialTimeout of the connect attempt.

	// ServerName is the name sent as SNI and verified against the server's
	// certificate. Default: the host of each address.
	ServerName string
	// RootCAs verifies the server's chain; nil means the system roots.
	RootCAs *x509.CertPool
	// Pins, when set, pins the server's public key on top of the normal
	// verification: each pin is "sha256/" + base64(SHA-256 of a
	// certificate's SubjectPublicKeyInfo), as HPKP and OkHttp's
	// CertificatePinner write them (see PinOf). A connection passes when any
	// certificate of the verified chain (leaf, intermediate or root) has a
	// pinned key; otherwise it fails with an error wrapping ErrPinMismatch.
	// That failure is treated like an unreachable gateway: the next address
	// is tried and the background loop keeps retrying with backoff (another
	// path may not be intercepted, and a fixed deployment heals), so watch
	// Connect's error and the logs for it. Pin a backup key too. With Pins
	// set the client speaks only TLS: Transport must be tls or wss, and a
	// plaintext address (in Addrs, or later from the dispatcher or a
	// REDIRECT) is refused.
	Pins []string

	App uint32
	UID string
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
	// OnRedirect is called when the server sends REDIRECT (a drain), before
	// the client follows it to one of addrs after a delay in [0, afterMS].
	OnRedirect func(addrs []string, afterMS int)
	// NoReconnect makes a lost connection final.
	NoReconnect bool
	// BackoffMin and BackoffMax bound the reconnect delay (default 500ms, 30s):
	// exponential growth, full jitter.
	BackoffMin, BackoffMax time.Duration
	// DialTimeout bounds one connect attempt (TCP dial, TLS handshake,
	// WebSocket upgrade and AUTH together), one dispatch call and one write
	// (default 5s).
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
	if c.Transport == "" {
		c.Transport = TransportTCP
	}
	if !c.Transport.valid() {
		return fmt.Errorf("%w: unknown Transport %q (tcp, tls, ws, wss)", ErrConfig, c.Transport)
	}
	if _, err := parsePins(c.Pins); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if len(c.Pins) > 0 && !c.Transport.secure() {
		return fmt.Errorf("%w: Pins need Transport tls or wss", ErrConfig)
	}
	for _, a := range c.Addrs {
		if a == "" {
			continue
		}
		ep, err := parseAddr(a, c.Transport)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if len(c.Pins) > 0 && !ep.transport.secure() {
			return fmt.Errorf("%w: Pins set, but address %q is not TLS", ErrConfig, a)
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

	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	seq     atomic.Uint32
	httpc   *http.Client
	httpT   *http.Transport
	tlsConf *tls.Config // template for tls and wss connections

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
	lastGood   string // the address of the last AUTH_OK
}

// New validates cfg and returns a Client. It does no I/O; call Connect.
func New(cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	pins, _ := parsePins(cfg.Pins) // checked by fill
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
		tlsConf: newTLSConfig(&cfg, pins),
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

// Addr returns the gateway address of the current connection, as dialed
// ("" when not connected).
func (c *Client) Addr() string {
	if s := c.current(); s != nil {
		return s.addr
	}
	return ""
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
