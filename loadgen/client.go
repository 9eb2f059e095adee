package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

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
	Loops     int      `json:"loops"`      // event loops (default 2); they also dial
	Dialers   int      `json:"dialers"`    // unused: the event loops dial (kept for old configs)
	DialTOms  int      `json:"dial_to_ms"` // connect timeout
	MaxFrame  int      `json:"max_frame"`
	NoAckQoS1 bool     `json:"no_ack"` // leave QoS 1 pushes unACKed
	// Retry is how many times a connection the server closed before
	// AUTH_OK (refused: over a cap, overloaded) dials again, backing off
	// (0: never; the refusal is counted in Refused).
	Retry int `json:"retry,omitempty"`
	// Transport is "tcp" (the default: raw frames) or "ws": WebSocket to
	// the room's ws listener (Rooms are then its addresses), path /v1/ws,
	// subprotocol lcpush.v1, one frame per binary message (wsclient.go).
	Transport string `json:"transport,omitempty"`
}

func (c *LoadConfig) defaults() {
	if c.Loops <= 0 {
		c.Loops = 2
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

// maxRounds bounds the fan-out rounds tracked one by one (sustain gives
// every message of a 10 s closed-loop stream its own).
const maxRounds = 1 << 14

// Stats is a snapshot of a load (one process or the sum of several).
type Stats struct {
	Target     int   `json:"target"`
	Dialed     int64 `json:"dialed"`
	Connected  int64 `json:"connected"`
	Authed     int64 `json:"authed"`
	DialErrors int64 `json:"dial_errors"`
	AuthErrors int64 `json:"auth_errors"`
	Dropped    int64 `json:"dropped"`            // closed by the server after AUTH_OK
	Refused    int64 `json:"refused"`            // closed by the server before AUTH_OK (e.g. over its cap)
	Retried    int64 `json:"retried,omitempty"`  // refusals dialed again (LoadConfig.Retry)
	Retrying   int64 `json:"retrying,omitempty"` // of those, waiting to dial
	Open       int64 `json:"open"`
	Pushes     int64 `json:"pushes"`
	Acked      int64 `json:"acked"`
	Pings      int64 `json:"pings"`
	Pongs      int64 `json:"pongs"`
	Kicks      int64 `json:"kicks"`
	Errors     int64 `json:"errors"`
	// Dups counts pushes of a round a connection already had (a QoS 1
	// redelivery); Rounds count each connection once.
	Dups      int64    `json:"dups,omitempty"`
	Handshake HistSnap `json:"handshake"`
	Latency   HistSnap `json:"latency"`
	Rounds    []Round  `json:"rounds,omitempty"`
	LastError string   `json:"last_error,omitempty"`
	// Wall clock (unix ns) of the first dial and of the last AUTH_OK, so a
	// storm's window can be matched with CPU samples taken outside.
	FirstDialNs int64 `json:"first_dial_ns,omitempty"`
	LastAuthNs  int64 `json:"last_auth_ns,omitempty"`
}

// Round is what the clients saw of one fan-out round.
type Round struct {
	ID    int   `json:"id"`
	Count int64 `json:"count"`            // connections that had it (each once)
	MaxNs int64 `json:"max_ns"`           // time until the last client had it
	MinNs int64 `json:"min_ns,omitempty"` // time until the first client had it
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
	s.Retried += o.Retried
	s.Retrying += o.Retrying
	s.Open += o.Open
	s.Pushes += o.Pushes
	s.Acked += o.Acked
	s.Pings += o.Pings
	s.Pongs += o.Pongs
	s.Kicks += o.Kicks
	s.Errors += o.Errors
	s.Dups += o.Dups
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
		if r.MinNs > 0 && (s.Rounds[i].MinNs == 0 || r.MinNs < s.Rounds[i].MinNs) {
			s.Rounds[i].MinNs = r.MinNs
		}
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

// Load is a set of client connections multiplexed over a few event loops
// of its own (loop.go): no goroutine per connection, no goroutine per
// dial. The loops dial with raw non-blocking sockets at the pace asked and
// register them with their epoll; tokens and AUTH frames are built before
// the first dial.
type Load struct {
	cfg    LoadConfig
	loops  []*loop
	rooms  []roomAddr
	srcs   []syscall.Sockaddr
	ws     bool    // cfg.Transport == "ws"
	auth   []byte  // the AUTH frames of every connection, back to back (ws: upgrade request + AUTH message)
	authAt []int32 // AUTH frame i is auth[authAt[i]:authAt[i+1]]
	t0     time.Time
	burst  int          // dials allowed at once (the pacing's bucket)
	next   atomic.Int64 // index of the next connection to dial
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   atomic.Bool
	once   sync.Once

	dialed, connected, authed, dialErr, authErr atomic.Int64
	dropped, open, pushes, acked, pings, pongs  atomic.Int64
	kicks, errs, refused, dups                  atomic.Int64
	retried, retrying                           atomic.Int64
	firstDial, lastAuth                         atomic.Int64
	handshake, latency                          Hist
	roundCount                                  [maxRounds]atomic.Int64
	roundMax                                    [maxRounds]atomic.Int64
	roundMin                                    [maxRounds]atomic.Int64 // 0: none yet; else >= 1
	lastErr                                     atomic.Value
}

type roomAddr struct {
	sa     syscall.Sockaddr
	family int
}

var pingFrame = proto.AppendHeader(nil, proto.Header{Op: proto.OpPing}, 0)

// StartLoad begins connecting cfg.N connections; it returns once the AUTH
// frames are built, before the first dial. The connections live until
// Close; when ctx ends the dialing and the heartbeats stop.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	cfg.defaults()
	if err := checkLoopback(cfg.Rooms...); err != nil {
		return nil, err
	}
	if len(cfg.Rooms) == 0 {
		return nil, fmt.Errorf("%w: no room address", ErrUsage)
	}
	for _, s := range cfg.Sources {
		if ip := net.ParseIP(s); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("%w: source %q", ErrNotLoopback, s)
		}
	}
	switch cfg.Transport {
	case "", transportTCP:
	case transportWS:
	default:
		return nil, fmt.Errorf("%w: transport %q (tcp or ws)", ErrUsage, cfg.Transport)
	}
	l := &Load{cfg: cfg, burst: max(1, int(cfg.Rate/100)), ws: cfg.Transport == transportWS}
	for _, r := range cfg.Rooms {
		sa, fam, err := sockaddr(r)
		if err != nil {
			return nil, err
		}
		l.rooms = append(l.rooms, roomAddr{sa, fam})
	}
	for _, s := range spreadSources(cfg.Sources, cfg.N, len(cfg.Rooms), perSourceBudget()) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			l.srcs = append(l.srcs, &syscall.SockaddrInet4{Addr: ip.As4()})
		}
	}
	l.buildAuth()
	for range cfg.Loops {
		lp, err := newLoop(l)
		if err != nil {
			for _, lp := range l.loops {
				lp.closeAll()
			}
			return nil, fmt.Errorf("loadgen client: %w", err)
		}
		l.loops = append(l.loops, lp)
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.t0 = time.Now()
	for _, lp := range l.loops {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); lp.run(ctx) }()
	}
	return l, nil
}

// buildAuth signs every token and encodes every AUTH frame up front: HMAC
// and JSON are not part of what a connect storm measures.
func (l *Load) buildAuth() {
	cfg := &l.cfg
	exp := time.Now().Add(24 * time.Hour).Unix()
	l.authAt = make([]int32, 0, cfg.N+1)
	per := 160 + len(cfg.Prefix)
	if l.ws {
		per += 200
	}
	l.auth = make([]byte, 0, cfg.N*per)
	var frame []byte
	for i := range cfg.N {
		uid := cfg.Prefix + strconv.Itoa(cfg.First+i)
		tok := token.Sign([]byte(cfg.Secret), cfg.App, uid, exp)
		l.authAt = append(l.authAt, int32(len(l.auth)))
		frame = proto.AppendJSON(frame[:0], proto.Header{Op: proto.OpAuth, App: cfg.App},
			proto.Auth{UID: uid, Token: tok, HB: cfg.HB, SDK: "loadgen"})
		if l.ws {
			l.auth = appendWSUpgrade(l.auth, cfg.Rooms[i%len(cfg.Rooms)])
			l.auth = appendWSMasked(l.auth, ws.OpBinary, frame)
		} else {
			l.auth = append(l.auth, frame...)
		}
	}
	l.authAt = append(l.authAt, int32(len(l.auth)))
}

// authFrame is connection i's AUTH, capped so that an append copies.
func (l *Load) authFrame(i int) []byte {
	a, b := l.authAt[i], l.authAt[i+1]
	return l.auth[a:b:b]
}

// claim reserves up to most connection indexes due at now (cfg.Rate per
// second since the start, plus a bucket of burst); when none is due it
// returns how long until the next one is (-1: all are dialed).
func (l *Load) claim(now time.Time, most int) (first, k int, wait time.Duration) {
	n := l.cfg.N
	el := now.Sub(l.t0)
	for {
		next := int(l.next.Load())
		if next >= n {
			return 0, 0, -1
		}
		due := min(n, l.burst+int(el.Seconds()*l.cfg.Rate))
		if due <= next {
			at := time.Duration(float64(next+1-l.burst) / l.cfg.Rate * 1e9)
			return 0, 0, max(at-el, 100*time.Microsecond)
		}
		k = min(due-next, most)
		if l.next.CompareAndSwap(int64(next), int64(next+k)) {
			return next, k, 0
		}
	}
}

// frame handles one frame; it returns true to close the connection.
func (l *Load) frame(st *conn, f proto.Frame, now time.Time, lp *loop) bool {
	switch f.Op {
	case proto.OpAuthOK:
		hb := authOKHB(f.Body)
		if hb <= 0 {
			hb = l.cfg.HB
		}
		st.authed = true
		st.hb = int64(hb) * int64(time.Second)
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
						if st.markSeen(int(r)) {
							l.roundCount[r].Add(1)
							atomicMax(&l.roundMax[r], lat)
							atomicMinPos(&l.roundMin[r], lat)
						} else {
							l.dups.Add(1)
						}
					}
				}
			}
		}
		if f.Flags&proto.FlagAckRequired != 0 && !l.cfg.NoAckQoS1 && len(lp.acks) < proto.MaxAckIDs {
			lp.acks = append(lp.acks, id)
		}
	case proto.OpKick:
		l.kicks.Add(1)
	case proto.OpError:
		var e proto.Error
		_ = proto.DecodeJSON(f.Body, &e)
		l.errs.Add(1)
		if !st.authed && st.tries >= l.cfg.Retry {
			l.authErr.Add(1) // else the close that follows dials again
		}
		l.lastErr.Store("server error: " + e.Code + " " + e.Message)
	}
	return false
}

// authOKHB is the "hb" of an AUTH_OK body. A storm reads 10k+ of them a
// second and encoding/json was 8% of the tool's CPU there, so the number
// is scanned for; anything unusual goes through the JSON decoder.
func authOKHB(body []byte) int {
	if i := bytes.Index(body, []byte(`"hb":`)); i >= 0 && bytes.Count(body, []byte(`"hb"`)) == 1 {
		rest := body[i+5:]
		v, n := 0, 0
		for n < len(rest) && n < 9 && rest[n] >= '0' && rest[n] <= '9' {
			v, n = v*10+int(rest[n]-'0'), n+1
		}
		if n > 0 && n < len(rest) && (rest[n] == ',' || rest[n] == '}') {
			return v
		}
	}
	var ok proto.AuthOK
	if proto.DecodeJSON(body, &ok) != nil {
		return 0
	}
	return ok.HB
}

// atomicMinPos lowers a to v (at least 1), a being 0 when unset.
func atomicMinPos(a *atomic.Int64, v int64) {
	v = max(v, 1)
	for {
		cur := a.Load()
		if (cur != 0 && v >= cur) || a.CompareAndSwap(cur, v) {
			return
		}
	}
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
		Retried:     l.retried.Load(),
		Retrying:    l.retrying.Load(),
		Open:        l.open.Load(),
		Pushes:      l.pushes.Load(),
		Acked:       l.acked.Load(),
		Pings:       l.pings.Load(),
		Pongs:       l.pongs.Load(),
		Kicks:       l.kicks.Load(),
		Errors:      l.errs.Load(),
		Dups:        l.dups.Load(),
		Handshake:   l.handshake.Snapshot(),
		Latency:     l.latency.Snapshot(),
		FirstDialNs: l.firstDial.Load(),
		LastAuthNs:  l.lastAuth.Load(),
	}
	for i := 1; i < maxRounds; i++ {
		if n := l.roundCount[i].Load(); n > 0 {
			s.Rounds = append(s.Rounds, Round{ID: i, Count: n, MaxNs: l.roundMax[i].Load(), MinNs: l.roundMin[i].Load()})
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
		l.wg.Wait() // each loop closes its connections as it leaves
	})
	return err
}
