package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Message is a request or reply that encodes itself: it appends its binary
// form to dst and returns the extended slice (the encoding.BinaryAppender
// contract). Encoding must be a pure byte function; it runs on the caller's
// goroutine.
type Message interface {
	AppendBinary(dst []byte) ([]byte, error)
}

// Unmarshaler decodes a reply (the encoding.BinaryUnmarshaler contract). data
// is only valid during the call: copy what you keep.
type Unmarshaler interface {
	UnmarshalBinary(data []byte) error
}

// ClientConfig configures a Client. Zero fields take the defaults shown.
type ClientConfig struct {
	Addr string // host:port of the server; required

	// Conns is the number of TCP connections to Addr; calls are spread over
	// them round-robin. Default 2.
	Conns int
	// MaxInFlight bounds the calls in flight over all connections. A call
	// past it fails at once with ErrOverloaded. Default 1024.
	MaxInFlight int
	// MaxFrame is the largest request or reply frame, 20-byte header
	// included. Default DefaultMaxFrame (4 MiB). Use the server's value: a
	// reply over it breaks the connection (ErrConnLost for its calls).
	MaxFrame int
	// DialTimeout bounds one connection attempt. Default 2s.
	DialTimeout time.Duration
	// WriteTimeout breaks a connection whose write makes no progress this
	// long. Default 10s.
	WriteTimeout time.Duration
	// BackoffMin is the wait before redialing a broken connection; each
	// failed dial doubles it, up to BackoffMax. Every wait is jittered
	// (a random value between half and all of it), so clients of a
	// restarting server do not all come back at once. Defaults 50ms, 5s.
	BackoffMin time.Duration
	BackoffMax time.Duration

	Logger *slog.Logger // nil: discard
}

func (cfg *ClientConfig) setDefaults() error {
	if cfg.Addr == "" {
		return errors.New("rpc: client: empty Addr")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Conns, 2)
	def(&cfg.MaxInFlight, 1024)
	def(&cfg.MaxFrame, DefaultMaxFrame)
	if cfg.MaxFrame < headerSize {
		cfg.MaxFrame = headerSize
	}
	defDur(&cfg.DialTimeout, 2*time.Second)
	defDur(&cfg.WriteTimeout, 10*time.Second)
	defDur(&cfg.BackoffMin, 50*time.Millisecond)
	defDur(&cfg.BackoffMax, 5*time.Second)
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Client calls one target (one server address) over a few long-lived
// connections. It is safe for concurrent use; make one per target and share
// it.
type Client struct {
	cfg   ClientConfig
	log   *slog.Logger
	slots []*slot
	rr    atomic.Uint32

	inflight atomic.Int64
	late     atomic.Uint64 // replies dropped because their call had given up

	// stateCh is closed and replaced whenever a connection changes state,
	// waking calls that wait for a connection being dialed.
	stateMu sync.Mutex
	stateCh atomic.Pointer[chan struct{}]

	ctx       context.Context // canceled by Close: aborts dials and backoff waits
	cancel    context.CancelFunc
	mu        sync.Mutex // orders Close against a slot publishing a new link
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewClient returns a client for cfg.Addr. It does not wait for a
// connection: one goroutine per connection starts dialing in the background,
// and calls made while the first dials are under way wait for them (within
// their ctx). Close stops everything.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With("rpc_target", cfg.Addr)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ch := make(chan struct{})
	c.stateCh.Store(&ch)
	c.slots = make([]*slot, cfg.Conns)
	for i := range c.slots {
		s := &slot{c: c}
		s.state.Store(stateConnecting)
		c.slots[i] = s
	}
	c.wg.Add(len(c.slots))
	for _, s := range c.slots {
		go s.run()
	}
	return c, nil
}

// Addr returns the target address.
func (c *Client) Addr() string { return c.cfg.Addr }

// InFlight returns the number of calls in flight.
func (c *Client) InFlight() int { return int(c.inflight.Load()) }

// Ready reports whether at least one connection is up and accepting calls.
func (c *Client) Ready() bool { return c.pick() != nil }

// Call sends req to method and decodes the reply into resp. req and resp may
// be nil (an empty request; a reply that is ignored).
//
// It returns nil; an *Error from the server (errors.Is matches it to
// ErrOverloaded, ErrUnavailable, ErrUnknownMethod, ... and to the pkg/push
// sentinels); ctx.Err() as soon as ctx ends (a reply that comes later is
// dropped); ErrOverloaded at once when MaxInFlight calls are in flight;
// ErrUnavailable at once when no connection is up and none is being dialed;
// ErrConnLost when the connection broke with the call in flight; ErrClosed;
// ErrTooLarge; or an encoding or decoding error.
//
// The deadline of ctx travels with the request: the server skips a call
// whose deadline passed while it waited in the queue.
func (c *Client) Call(ctx context.Context, method uint16, req Message, resp Unmarshaler) error {
	if err := ctx.Err(); err != nil {
		mCallCanceled.Inc()
		return err
	}
	if c.inflight.Add(1) > int64(c.cfg.MaxInFlight) {
		c.inflight.Add(-1)
		mCallOverloaded.Inc()
		return ErrOverloaded
	}
	cl := getCall()
	err := c.do(ctx, cl, method, req, resp)
	putCall(cl)
	c.inflight.Add(-1)
	countCall(err)
	return err
}

func (c *Client) do(ctx context.Context, cl *call, method uint16, req Message, resp Unmarshaler) error {
	var aux uint32
	if dl, ok := ctx.Deadline(); ok {
		aux = timeoutMS(time.Until(dl))
	}
	// Encode outside any lock; register() stamps the id and queues a copy.
	b := appendHeader(cl.req[:0], header{kind: kindRequest, method: method, aux: aux})
	if req != nil {
		var err error
		if b, err = req.AppendBinary(b); err != nil {
			return fmt.Errorf("rpc: encode request: %w", err)
		}
	}
	cl.req = b
	if finishFrame(b, 0, c.cfg.MaxFrame) != nil {
		return ErrTooLarge
	}
	l, err := c.send(ctx, cl)
	if err != nil {
		return err
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		if l.cancel(cl) {
			return ctx.Err()
		}
		<-cl.done // the reply is being delivered right now
	}
	if cl.err != nil {
		return cl.err
	}
	if resp != nil {
		if err := resp.UnmarshalBinary(cl.body); err != nil {
			return fmt.Errorf("rpc: decode reply: %w", err)
		}
	}
	return nil
}

// send registers cl on a usable connection and queues its frame. With no
// usable connection it waits while one is being dialed, and fails fast
// otherwise.
func (c *Client) send(ctx context.Context, cl *call) (*link, error) {
	for {
		ch := *c.stateCh.Load() // before pick: a change after it wakes us
		if l := c.pick(); l != nil {
			if l.register(cl) {
				return l, nil
			}
			continue // it failed between pick and register
		}
		if c.closed.Load() {
			return nil, ErrClosed
		}
		if !c.connecting() {
			return nil, ErrUnavailable
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pick returns a usable connection, round-robin, or nil.
func (c *Client) pick() *link {
	n := uint32(len(c.slots))
	if n == 1 {
		if l := c.slots[0].link.Load(); l != nil && l.usable.Load() {
			return l
		}
		return nil
	}
	i := c.rr.Add(1)
	for k := uint32(0); k < n; k++ {
		if l := c.slots[(i+k)%n].link.Load(); l != nil && l.usable.Load() {
			return l
		}
	}
	return nil
}

// connecting reports whether some connection is being dialed.
func (c *Client) connecting() bool {
	for _, s := range c.slots {
		if s.state.Load() == stateConnecting {
			return true
		}
	}
	return false
}

// notify wakes the calls waiting for a connection.
func (c *Client) notify() {
	c.stateMu.Lock()
	ch := make(chan struct{})
	old := c.stateCh.Swap(&ch)
	close(*old)
	c.stateMu.Unlock()
}

// Close fails the calls in flight with ErrClosed, closes the connections and
// waits for every goroutine of the client. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed.Store(true)
		for _, s := range c.slots {
			if l := s.link.Load(); l != nil {
				_ = l.nc.Close()
			}
		}
		c.mu.Unlock()
		c.cancel()
		c.notify()
	})
	c.wg.Wait()
	return nil
}

// call is one call in flight; calls are pooled and reused.
type call struct {
	id   uint64
	done chan struct{} // cap 1: the reader or a failing connection signals once
	err  error         // set before done is signalled
	body []byte        // reply body, set before done is signalled
	req  []byte        // the encoded request frame
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// maxKeep is the largest buffer a pooled object keeps.
const maxKeep = 64 << 10

func getCall() *call { return callPool.Get().(*call) }

func putCall(cl *call) {
	cl.err = nil
	if cap(cl.body) > maxKeep {
		cl.body = nil
	}
	if cap(cl.req) > maxKeep {
		cl.req = nil
	}
	callPool.Put(cl)
}

func countCall(err error) {
	if err == nil {
		mCallOK.Inc()
		return
	}
	countFailure(err)
}

// countFailure is apart from countCall so that its errors.As target is not
// allocated on the path of a successful call.
func countFailure(err error) {
	var re *Error
	switch {
	case errors.As(err, &re):
		mCallRemoteErr.Inc()
	case err == ErrOverloaded:
		mCallOverloaded.Inc()
	case err == ErrUnavailable:
		mCallUnavailable.Inc()
	case err == ErrConnLost:
		mCallConnLost.Inc()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		mCallCanceled.Inc()
	default:
		mCallOther.Inc()
	}
}

// timeoutMS converts what is left of a deadline to the request's timeout
// field: at least 1 (0 means none), rounded up.
func timeoutMS(d time.Duration) uint32 {
	if d <= 0 {
		return 1
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// stampID writes a call id into an encoded request frame.
func stampID(frame []byte, id uint64) { binary.BigEndian.PutUint64(frame[offID:], id) }

// dialer is shared: its settings never change.
var dialer = net.Dialer{KeepAlive: 15 * time.Second}
