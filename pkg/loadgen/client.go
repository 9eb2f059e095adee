package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/time/rate"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// LoadConfig describes one slice of connections a process opens.
type LoadConfig struct {
	Rooms     []string `json:"rooms"`      // room addresses, used round-robin
	Sources   []string `json:"sources"`    // loopback source IPs, used round-robin
	N         int      `json:"n"`          // connections of this slice
	First     int      `json:"first"`      // index of the first uid (uid = Prefix + index)
	Prefix    string   `json:"prefix"`     // uid prefix
	App       uint32   `json:"app"`        // app id in AUTH
	Secret    string   `json:"secret"`     // app secret: tokens are signed locally
	Rate      float64  `json:"rate"`       // AUTHs started per second
	HB        int      `json:"hb"`         // heartbeat seconds asked for
	Loops     int      `json:"loops"`      // gnet event loops (default 2)
	Dialers   int      `json:"dialers"`    // goroutines that connect (default 8)
	DialTOms  int      `json:"dial_to_ms"` // connect timeout
	MaxFrame  int      `json:"max_frame"`
	NoAckQoS1 bool     `json:"no_ack"` // leave QoS 1 pushes unACKed
}

func (c *LoadConfig) defaults() {
	if c.Loops <= 0 {
		c.Loops = 2
	}
	if c.Dialers <= 0 {
		c.Dialers = 8
	}
	if c.DialTOms <= 0 {
		c.DialTOms = 5000
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = proto.DefaultMaxLen
	}
	if c.Rate <= 0 {
		c.Rate = 2000
	}
	if c.HB <= 0 {
		c.HB = 30
	}
	if c.Prefix == "" {
		c.Prefix = "lg-"
	}
	if len(c.Sources) == 0 {
		c.Sources = []string{"127.0.0.1"}
	}
}

// maxRounds bounds the fan-out rounds tracked one by one.
const maxRounds = 4096

// Stats is a snapshot of a load (one process or the sum of several).
type Stats struct {
	Target     int      `json:"target"`
	Dialed     int64    `json:"dialed"`
	Connected  int64    `json:"connected"`
	Authed     int64    `json:"authed"`
	DialErrors int64    `json:"dial_errors"`
	AuthErrors int64    `json:"auth_errors"`
	Dropped    int64    `json:"dropped"` // closed by the server after AUTH_OK
	Refused    int64    `json:"refused"` // closed by the server before AUTH_OK (e.g. over its cap)
	Open       int64    `json:"open"`
	Pushes     int64    `json:"pushes"`
	Acked      int64    `json:"acked"`
	Pings      int64    `json:"pings"`
	Pongs      int64    `json:"pongs"`
	Kicks      int64    `json:"kicks"`
	Errors     int64    `json:"errors"`
	Handshake  HistSnap `json:"handshake"`
	Latency    HistSnap `json:"latency"`
	Rounds     []Round  `json:"rounds,omitempty"`
	LastError  string   `json:"last_error,omitempty"`
	// Wall clock (unix ns) of the first dial and of the last AUTH_OK, so a
	// storm's window can be matched with CPU samples taken outside.
	FirstDialNs int64 `json:"first_dial_ns,omitempty"`
	LastAuthNs  int64 `json:"last_auth_ns,omitempty"`
}

// Round is what the clients saw of one fan-out round.
type Round struct {
	ID    int   `json:"id"`
	Count int64 `json:"count"`
	MaxNs int64 `json:"max_ns"` // time until the last client had it
}

// Merge adds o into s.
func (s Stats) Merge(o Stats) Stats {
	s.Target += o.Target
	s.Dialed += o.Dialed
	s.Connected += o.Connected
	s.Authed += o.Authed
	s.DialErrors += o.DialErrors
	s.AuthErrors += o.AuthErrors
	s.Dropped += o.Dropped
	s.Refused += o.Refused
	s.Open += o.Open
	s.Pushes += o.Pushes
	s.Acked += o.Acked
	s.Pings += o.Pings
	s.Pongs += o.Pongs
	s.Kicks += o.Kicks
	s.Errors += o.Errors
	s.Handshake = s.Handshake.Merge(o.Handshake)
	s.Latency = s.Latency.Merge(o.Latency)
	byID := map[int]int{}
	for i, r := range s.Rounds {
		byID[r.ID] = i
	}
	for _, r := range o.Rounds {
		i, ok := byID[r.ID]
		if !ok {
			s.Rounds = append(s.Rounds, r)
			byID[r.ID] = len(s.Rounds) - 1
			continue
		}
		s.Rounds[i].Count += r.Count
		s.Rounds[i].MaxNs = max(s.Rounds[i].MaxNs, r.MaxNs)
	}
	if o.LastError != "" {
		s.LastError = o.LastError
	}
	if o.FirstDialNs != 0 && (s.FirstDialNs == 0 || o.FirstDialNs < s.FirstDialNs) {
		s.FirstDialNs = o.FirstDialNs
	}
	s.LastAuthNs = max(s.LastAuthNs, o.LastAuthNs)
	return s
}

// Round returns the stats of round id (zero when nothing arrived).
func (s Stats) Round(id int) Round {
	for _, r := range s.Rounds {
		if r.ID == id {
			return r
		}
	}
	return Round{ID: id}
}

// Load is a set of client connections multiplexed over a few gnet event
// loops: no goroutine per connection. Dialing is done by a handful of
// goroutines paced by a rate limiter; the sockets are then handed to gnet.
type Load struct {
	cfg    LoadConfig
	cli    *gnet.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   atomic.Bool
	once   sync.Once

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loopState

	dialed, connected, authed, dialErr, authErr atomic.Int64
	dropped, open, pushes, acked, pings, pongs  atomic.Int64
	kicks, errs, refused                        atomic.Int64
	firstDial, lastAuth                         atomic.Int64
	handshake, latency                          Hist
	roundCount                                  [maxRounds]atomic.Int64
	roundMax                                    [maxRounds]atomic.Int64
	lastErr                                     atomic.Value
}

// loopState is touched only on its event loop.
type loopState struct {
	conns []gnet.Conn
	acks  []uint64
	out   []byte
}

// connState is a connection's context.
type connState struct {
	uid      string
	tok      string
	start    int64 // unix nanos when the dial began
	nextPing int64
	hb       int64
	authed   bool
	slot     int        // index in loopState.conns, -1 when absent
	ls       *loopState // the loop that owns the connection
}

var pingFrame = proto.AppendHeader(nil, proto.Header{Op: proto.OpPing}, 0)

// StartLoad begins connecting cfg.N connections; it returns at once. The
// connections live until Close or ctx ends.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	cfg.defaults()
	if err := checkLoopback(cfg.Rooms...); err != nil {
		return nil, err
	}
	for _, s := range cfg.Sources {
		if ip := net.ParseIP(s); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("%w: source %q", ErrNotLoopback, s)
		}
	}
	l := &Load{cfg: cfg, loops: map[gnet.EventLoop]*loopState{}}
	cli, err := gnet.NewClient(l,
		gnet.WithNumEventLoop(cfg.Loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(quietLogger{}),
		gnet.WithReadBufferCap(64<<10),
	)
	if err != nil {
		return nil, fmt.Errorf("loadgen client: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, fmt.Errorf("loadgen client start: %w", err)
	}
	l.cli = cli
	ctx, l.cancel = context.WithCancel(ctx)

	idx := make(chan int)
	lim := rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/100)))
	l.wg.Add(1)
	go func() { // producer: paces the dials
		defer l.wg.Done()
		defer close(idx)
		for i := 0; i < cfg.N; i++ {
			if lim.Wait(ctx) != nil {
				return
			}
			select {
			case idx <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for d := 0; d < cfg.Dialers; d++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range idx {
				l.dial(ctx, i)
			}
		}()
	}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.heartbeats(ctx) }()
	return l, nil
}

func (l *Load) dial(ctx context.Context, i int) {
	cfg := &l.cfg
	room := cfg.Rooms[i%len(cfg.Rooms)]
	src := cfg.Sources[i%len(cfg.Sources)]
	uid := cfg.Prefix + strconv.Itoa(cfg.First+i)
	st := &connState{
		uid:   uid,
		tok:   token.Sign([]byte(cfg.Secret), cfg.App, uid, time.Now().Add(24*time.Hour).Unix()),
		start: time.Now().UnixNano(),
		slot:  -1,
	}
	d := net.Dialer{
		Timeout:   time.Duration(cfg.DialTOms) * time.Millisecond,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
		Control:   bindNoPort,
	}
	l.dialed.Add(1)
	l.firstDial.CompareAndSwap(0, st.start)
	c, err := d.DialContext(ctx, "tcp", room)
	if err != nil {
		l.dialErr.Add(1)
		l.lastErr.Store("dial: " + err.Error())
		return
	}
	if _, err := l.cli.EnrollContext(c, st); err != nil {
		l.dialErr.Add(1)
		l.lastErr.Store("enroll: " + err.Error())
	}
}

// heartbeats sends PING on every authenticated connection at its negotiated
// interval: one Execute per loop per tick walks that loop's connections.
func (l *Load) heartbeats(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		for el, ls := range l.loops {
			_ = el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
				now := time.Now().UnixNano()
				for _, c := range ls.conns {
					st := c.Context().(*connState)
					if st.authed && now >= st.nextPing {
						st.nextPing = now + st.hb
						if _, err := c.Write(pingFrame); err == nil {
							l.pings.Add(1)
						}
					}
				}
				return nil
			}))
		}
		l.mu.Unlock()
	}
}

func (l *Load) loop(c gnet.Conn) *loopState {
	el := c.EventLoop()
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.loops[el]
	if ls == nil {
		ls = &loopState{}
		l.loops[el] = ls
	}
	return ls
}

// OnBoot implements gnet.EventHandler.
func (l *Load) OnBoot(gnet.Engine) gnet.Action { return gnet.None }

// OnShutdown implements gnet.EventHandler.
func (l *Load) OnShutdown(gnet.Engine) {}

// OnTick implements gnet.EventHandler (unused).
func (l *Load) OnTick() (time.Duration, gnet.Action) { return time.Hour, gnet.None }

// OnOpen sends AUTH.
func (l *Load) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	st, ok := c.Context().(*connState)
	if !ok {
		return nil, gnet.Close
	}
	l.connected.Add(1)
	l.open.Add(1)
	ls := l.loop(c)
	st.ls = ls
	st.slot = len(ls.conns)
	ls.conns = append(ls.conns, c)
	out := proto.AppendJSON(nil, proto.Header{Op: proto.OpAuth, App: l.cfg.App},
		proto.Auth{UID: st.uid, Token: st.tok, HB: l.cfg.HB, SDK: "loadgen"})
	return out, gnet.None
}

// OnClose forgets the connection.
func (l *Load) OnClose(c gnet.Conn, _ error) gnet.Action {
	st, ok := c.Context().(*connState)
	if !ok {
		return gnet.None
	}
	l.open.Add(-1)
	switch {
	case l.stop.Load():
	case st.authed:
		l.dropped.Add(1)
	default:
		l.refused.Add(1)
	}
	if ls := st.ls; ls != nil && st.slot >= 0 {
		last := len(ls.conns) - 1
		if st.slot <= last {
			moved := ls.conns[last]
			ls.conns[st.slot] = moved
			moved.Context().(*connState).slot = st.slot
			ls.conns[last] = nil
			ls.conns = ls.conns[:last]
		}
		st.slot = -1
	}
	return gnet.None
}

// OnTraffic decodes every whole frame, then answers with one batched ACK.
func (l *Load) OnTraffic(c gnet.Conn) gnet.Action {
	st := c.Context().(*connState)
	buf, _ := c.Peek(-1)
	ls := st.ls
	ls.acks = ls.acks[:0]
	used := 0
	action := gnet.None
	now := time.Now()
	for {
		f, n, err := proto.Parse(buf[used:], l.cfg.MaxFrame)
		if err != nil {
			l.errs.Add(1)
			l.lastErr.Store("parse: " + err.Error())
			return gnet.Close
		}
		if n == 0 {
			break
		}
		used += n
		if l.frame(st, f, now, ls) {
			action = gnet.Close
			break
		}
	}
	_, _ = c.Discard(used)
	if len(ls.acks) > 0 && action == gnet.None {
		ls.out = proto.AppendAck(ls.out[:0], 0, ls.acks)
		if _, err := c.Write(ls.out); err == nil {
			l.acked.Add(int64(len(ls.acks)))
		}
	}
	return action
}

// frame handles one frame; it returns true to close the connection.
func (l *Load) frame(st *connState, f proto.Frame, now time.Time, ls *loopState) bool {
	switch f.Op {
	case proto.OpAuthOK:
		var ok proto.AuthOK
		if err := proto.DecodeJSON(f.Body, &ok); err != nil || ok.HB <= 0 {
			ok.HB = l.cfg.HB
		}
		st.authed = true
		st.hb = int64(ok.HB) * int64(time.Second)
		st.nextPing = now.UnixNano() + st.hb
		l.authed.Add(1)
		atomicMax(&l.lastAuth, now.UnixNano())
		l.handshake.Record(time.Duration(now.UnixNano() - st.start))
	case proto.OpPong:
		l.pongs.Add(1)
	case proto.OpPush:
		id, payload, err := proto.ParsePush(f.Body)
		if err != nil {
			l.errs.Add(1)
			return true
		}
		l.pushes.Add(1)
		if len(payload) >= 8 {
			if ts := int64(binary.BigEndian.Uint64(payload)); ts > 0 {
				lat := now.UnixNano() - ts
				l.latency.Record(time.Duration(lat))
				if len(payload) >= 16 {
					if r := binary.BigEndian.Uint64(payload[8:]); r > 0 && r < maxRounds {
						l.roundCount[r].Add(1)
						atomicMax(&l.roundMax[r], lat)
					}
				}
			}
		}
		if f.Flags&proto.FlagAckRequired != 0 && !l.cfg.NoAckQoS1 && len(ls.acks) < proto.MaxAckIDs {
			ls.acks = append(ls.acks, id)
		}
	case proto.OpKick:
		l.kicks.Add(1)
	case proto.OpError:
		var e proto.Error
		_ = proto.DecodeJSON(f.Body, &e)
		l.errs.Add(1)
		if !st.authed {
			l.authErr.Add(1)
		}
		l.lastErr.Store("server error: " + e.Code + " " + e.Message)
	}
	return false
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Stats returns a snapshot.
func (l *Load) Stats() Stats {
	s := Stats{
		Target:      l.cfg.N,
		Dialed:      l.dialed.Load(),
		Connected:   l.connected.Load(),
		Authed:      l.authed.Load(),
		DialErrors:  l.dialErr.Load(),
		AuthErrors:  l.authErr.Load(),
		Dropped:     l.dropped.Load(),
		Refused:     l.refused.Load(),
		Open:        l.open.Load(),
		Pushes:      l.pushes.Load(),
		Acked:       l.acked.Load(),
		Pings:       l.pings.Load(),
		Pongs:       l.pongs.Load(),
		Kicks:       l.kicks.Load(),
		Errors:      l.errs.Load(),
		Handshake:   l.handshake.Snapshot(),
		Latency:     l.latency.Snapshot(),
		FirstDialNs: l.firstDial.Load(),
		LastAuthNs:  l.lastAuth.Load(),
	}
	for i := 1; i < maxRounds; i++ {
		if n := l.roundCount[i].Load(); n > 0 {
			s.Rounds = append(s.Rounds, Round{ID: i, Count: n, MaxNs: l.roundMax[i].Load()})
		}
	}
	if e, ok := l.lastErr.Load().(string); ok {
		s.LastError = e
	}
	return s
}

// Close stops dialing, closes every connection and waits for the goroutines.
func (l *Load) Close() error {
	var err error
	l.once.Do(func() {
		l.stop.Store(true)
		l.cancel()
		l.wg.Wait()
		err = l.cli.Stop()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	})
	return err
}

// quietLogger silences gnet.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}
