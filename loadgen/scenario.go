package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Result is what a run writes as result.json.
type Result struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Args     []string  `json:"args"` // the load tool's arguments (after "bench")
	// Command re-runs this measurement from the module root, with lcpush
	// the binary of the tree (go build -o lcpush .): the tool's own
	// arguments after "lcpush" and -self-args, shell quoted.
	Command   string           `json:"command"`
	Machine   Machine          `json:"machine"`
	Target    *Target          `json:"target"`
	N         int              `json:"n"`
	Processes int              `json:"client_processes"`
	Connect   ConnectResult    `json:"connect"`
	Idle      *IdleResult      `json:"idle,omitempty"`
	Fanout    *FanoutResult    `json:"fanout,omitempty"`
	Stream    *StreamResult    `json:"stream,omitempty"`
	Storm     *StormResult     `json:"storm,omitempty"`
	Unicast   []UnicastStep    `json:"unicast,omitempty"`
	QoSStream *QoSStreamResult `json:"qos_stream,omitempty"`
	Bcast     *BcastResult     `json:"bcast,omitempty"`
	Sustain   *SustainResult   `json:"sustain,omitempty"`
	Final     Stats            `json:"final"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs int    `json:"cpus"`
	Go   string `json:"go"`
	OS   string `json:"os"`
}

// ConnectResult is the connection phase.
type ConnectResult struct {
	Authed     int64   `json:"authed"`
	DialErrors int64   `json:"dial_errors"`
	AuthErrors int64   `json:"auth_errors"`
	Seconds    float64 `json:"seconds"`
	Refused    int64   `json:"refused"`           // closed by the server before AUTH_OK
	Retried    int64   `json:"retried,omitempty"` // refusals dialed again (-retry)
	AuthedSec  float64 `json:"authed_seconds"`    // first dial to the last AUTH_OK
	PerSec     float64 `json:"authed_per_sec"`    // Authed / AuthedSec
	Handshake  Summary `json:"handshake"`
}

// IdleResult is scenario (a).
type IdleResult struct {
	Before            Mem     `json:"before"`
	After             Mem     `json:"after"`
	RSSPerConn        float64 `json:"rss_per_conn_bytes"`
	HeapPerConn       float64 `json:"heap_per_conn_bytes"`
	KernelPerConn     float64 `json:"kernel_tcp_per_conn_bytes"`  // both ends of each loopback connection
	SlabPerConn       float64 `json:"kernel_slab_per_conn_bytes"` // machine Slab delta: both ends, clients' epoll too
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// FanoutResult is scenario (c), the rounds.
type FanoutResult struct {
	Rounds    []RoundResult `json:"rounds"`
	P50LastMs float64       `json:"p50_last_ms"`
	P99LastMs float64       `json:"p99_last_ms"`
	MaxLastMs float64       `json:"max_last_ms"`
	Latency   Summary       `json:"latency"` // every delivery of every round
	Complete  int           `json:"complete_rounds"`
}

// RoundResult is one broadcast round.
type RoundResult struct {
	ID       int     `json:"id"`
	Received int64   `json:"received"`
	LastMs   float64 `json:"last_ms"` // time until the last client had it
}

// StreamResult is scenario (c), the sustained stream.
type StreamResult struct {
	Seconds         float64  `json:"seconds"`
	Rate            float64  `json:"broadcasts_per_sec"`
	Sent            int64    `json:"sent"`
	RateLimited     int64    `json:"rate_limited"`
	Failed          int64    `json:"failed"`
	Skipped         int64    `json:"skipped"` // not sent: 16 API calls already in flight
	Expected        int64    `json:"expected_deliveries"`
	Delivered       int64    `json:"delivered"`
	DeliveredPerSec float64  `json:"delivered_per_sec"`
	DrainMs         float64  `json:"drain_ms"` // after the stream, until backlog was 0
	Drained         bool     `json:"drained"`
	Samples         []Sample `json:"samples"`
	Latency         Summary  `json:"latency"`
}

// Sample is one second of the stream.
type Sample struct {
	T          float64 `json:"t"`
	PerSec     float64 `json:"delivered_per_sec"`
	Backlog    int64   `json:"backlog"` // sent x online - delivered
	CumSent    int64   `json:"sent"`
	CumDeliver int64   `json:"delivered"`
}

// runOpts are the flags shared by the scenarios.
type runOpts struct {
	Scenario   string
	TargetKind string
	Bin        string
	SelfArgs   []string
	Load       LoadConfig
	PerProc    int
	Timeout    time.Duration
	Out        string
	Quiet      bool
	External   *Target
	Rounds     int
	QoS        int
	Gap        time.Duration
	RoundTO    time.Duration
	StreamDur  time.Duration
	StreamRate float64
	PayloadLen int
	Settle     time.Duration
	MaxConns   int           // room cap of a started lcpush
	ServerCPU  string        // taskset -c list for a started server ("": not pinned)
	Store      string        // -store of a started lcpush: memory or bolt
	Rates      []float64     // unicast: pushes per second, one step each
	StepDur    time.Duration // unicast: duration of each rate step
	Senders    int           // unicast: concurrent API requests at most
	BcastRate  float64       // bcast: deliveries per second asked (0: the app's broadcast_rate)
	Drain      time.Duration // qos-stream, bcast: how long to wait for the last deliveries / the job
	Hold       time.Duration // bcast: keep the connections this long after the job before closing them
	TTL        int           // bcast: the broadcast's ttl in seconds (0: 60)
	Publishers int           // sustain: calls in flight (lcpush: HTTP connections)
	NATSWindow int           // sustain: nats PINGs unanswered at most
}

// run executes one scenario and returns its result.
func run(ctx context.Context, o runOpts, stderr io.Writer) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res := &Result{Scenario: o.Scenario, Started: time.Now(), N: o.Load.N,
		Machine: Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}}
	t := o.External
	if t == nil {
		var err error
		ws := o.Load.Transport == transportWS
		switch o.TargetKind {
		case "nats", "mqtt", "centrifugo":
			if ws && o.TargetKind != "centrifugo" {
				return nil, fmt.Errorf("%w: -transport ws is for lcpush (centrifugo speaks WebSocket anyway)", ErrUsage)
			}
			t, err = startPeer(ctx, o.TargetKind, o.ServerCPU, stderr)
			if err != nil {
				return nil, err
			}
		default:
			if ws && o.TargetKind != "lcpush" {
				return nil, fmt.Errorf("%w: -transport ws needs -target lcpush", ErrUsage)
			}
			if t, err = startTarget(ctx, o.TargetKind, o.Bin, o.SelfArgs, o.MaxConns, o.ServerCPU, o.Store, ws, stderr); err != nil {
				return nil, err
			}
		}
		defer t.Stop()
	}
	res.Target = t
	o.Load.Rooms, o.Load.App, o.Load.Secret = t.Rooms, t.App, t.Secret
	if len(t.WSRooms) > 0 && o.Load.Transport == transportWS {
		o.Load.Rooms = t.WSRooms
	}
	if o.Scenario == "idle" {
		settle(ctx, o.Settle)
		m, err := t.Memory(ctx)
		if err != nil {
			return nil, err
		}
		res.Idle = &IdleResult{Before: m}
	}
	var fleet Fleet
	var err error
	if t.publish != nil {
		fleet = startPeerLoad(ctx, t.Kind, o.Load)
	} else if fleet, err = startFleet(ctx, o.Load, fleetOpts{PerProc: o.PerProc, Self: o.Bin, SelfArgs: o.SelfArgs, Stderr: stderr}); err != nil {
		return nil, err
	}
	defer fleet.Close()
	res.Processes = 1
	if rf, ok := fleet.(*remoteFleet); ok {
		res.Processes = len(rf.procs)
	}
	probe := stormBegin(ctx, t, o, stderr) // nil unless the storm scenario
	if err := connectPhase(ctx, fleet, o, res, stderr); err != nil {
		return res, err
	}
	switch o.Scenario {
	case "idle":
		settle(ctx, o.Settle)
		m, err := t.Memory(ctx)
		if err != nil {
			return res, err
		}
		idle := res.Idle
		idle.After = m
		if n := float64(res.Connect.Authed); n > 0 {
			idle.RSSPerConn = float64(m.RSS-idle.Before.RSS) / n
			idle.HeapPerConn = float64(m.HeapInuse-idle.Before.HeapInuse) / n
			idle.KernelPerConn = float64(m.SockMem-idle.Before.SockMem) / n
			idle.SlabPerConn = float64(m.Slab-idle.Before.Slab) / n
			idle.GoroutinesPerConn = float64(m.Goroutine-idle.Before.Goroutine) / n
		}
	case "storm":
		if err := stormCheck(ctx, t, fleet, o, res, probe, stderr); err != nil {
			return res, err
		}
	case "unicast":
		if err := unicast(ctx, t, fleet, o, res, stderr); err != nil {
			return res, err
		}
	case "qos-stream":
		if err := qosStream(ctx, t, fleet, o, res, stderr); err != nil {
			res.Final = fleet.Stats()
			return res, err
		}
	case "bcast":
		if err := bcast(ctx, t, fleet, o, res, stderr); err != nil {
			res.Final = fleet.Stats()
			return res, err
		}
	case "sustain":
		if err := sustain(ctx, t, fleet, o, res, stderr); err != nil {
			res.Final = fleet.Stats()
			return res, err
		}
	case "fanout":
		if err := fanoutRounds(ctx, t, fleet, o, res, stderr); err != nil {
			return res, err
		}
		if o.StreamDur > 0 {
			if err := stream(ctx, t, fleet, o, res, stderr); err != nil {
				return res, err
			}
		}
	}
	res.Final = fleet.Stats()
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func newBar(n int64, desc string, w io.Writer, quiet bool) *progressbar.ProgressBar {
	if quiet {
		w = io.Discard
	}
	return progressbar.NewOptions64(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30), progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
}

// connectPhase waits until every connection authenticated or failed, or
// nothing moved for 10 s.
func connectPhase(ctx context.Context, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	start := time.Now()
	bar := newBar(int64(o.Load.N), "connect", stderr, o.Quiet)
	var last int64 = -1
	lastMove := time.Now()
	var lastAuthed int64
	authedAt := start
	var s Stats
	for {
		s = f.Stats()
		_ = bar.Set64(s.Authed)
		done := s.Authed + s.DialErrors + s.AuthErrors + s.Refused
		if s.Authed != lastAuthed {
			lastAuthed, authedAt = s.Authed, time.Now()
		}
		if done >= int64(o.Load.N) {
			break
		}
		if moved := done + s.Retried; moved != last { // a retried login is a move too
			last, lastMove = moved, time.Now()
		} else if time.Since(lastMove) > 10*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: connecting (%d of %d authed)", ErrTimeout, s.Authed, o.Load.N)
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = bar.Finish()
	sec := time.Since(start).Seconds()
	asec := max(authedAt.Sub(start).Seconds(), 1e-3)
	if s.FirstDialNs > 0 && s.LastAuthNs > s.FirstDialNs {
		// The clients' own clocks: first dial to last AUTH_OK, not this
		// loop's 50 ms polling (which overstates short storms' duration).
		asec = float64(s.LastAuthNs-s.FirstDialNs) / 1e9
	}
	res.Connect = ConnectResult{Authed: s.Authed, DialErrors: s.DialErrors, AuthErrors: s.AuthErrors,
		Refused: s.Refused, Retried: s.Retried, Seconds: sec, AuthedSec: asec, PerSec: float64(s.Authed) / asec,
		Handshake: s.Handshake.Summarize()}
	if s.Authed == 0 {
		return fmt.Errorf("%w: no connection authenticated (%s)", ErrTarget, s.LastError)
	}
	return nil
}

// payload builds a message: unix nanos, round id, then filler.
func payload(n int, ts time.Time, round int) []byte {
	p := make([]byte, max(n, 16))
	binary.BigEndian.PutUint64(p, uint64(ts.UnixNano()))
	binary.BigEndian.PutUint64(p[8:], uint64(round))
	for i := 16; i < len(p); i++ {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

func fanoutRounds(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	before := f.Stats()
	online := before.Authed - before.Dropped
	fr := &FanoutResult{}
	res.Fanout = fr
	bar := newBar(int64(o.Rounds), "fan-out rounds", stderr, o.Quiet)
	for r := 1; r <= o.Rounds && r < maxRounds; r++ {
		if err := t.Broadcast(ctx, payload(o.PayloadLen, time.Now(), r), o.QoS); err != nil {
			if errors.Is(err, ErrRateLimited) {
				settle(ctx, time.Second)
				r--
				continue
			}
			return err
		}
		deadline := time.Now().Add(o.RoundTO)
		var rd Round
		for time.Now().Before(deadline) && ctx.Err() == nil {
			rd = f.Stats().Round(r)
			if rd.Count >= online {
				break
			}
			settle(ctx, 5*time.Millisecond)
		}
		rd = f.Stats().Round(r)
		fr.Rounds = append(fr.Rounds, RoundResult{ID: r, Received: rd.Count, LastMs: float64(rd.MaxNs) / 1e6})
		if rd.Count >= online {
			fr.Complete++
		}
		_ = bar.Add(1)
		settle(ctx, o.Gap)
	}
	_ = bar.Finish()
	var lasts []float64
	for _, r := range fr.Rounds {
		lasts = append(lasts, r.LastMs)
	}
	sort.Float64s(lasts)
	if len(lasts) > 0 {
		q := func(p float64) float64 { return lasts[min(len(lasts)-1, int(p*float64(len(lasts))))] }
		fr.P50LastMs, fr.P99LastMs, fr.MaxLastMs = q(0.5), q(0.99), lasts[len(lasts)-1]
	}
	fr.Latency = f.Stats().Latency.Sub(before.Latency).Summarize()
	return nil
}

// stream pushes broadcasts open-loop at StreamRate for StreamDur; the
// timestamp is the scheduled send time, so a slow API shows as latency.
func stream(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	before := f.Stats()
	online := before.Authed - before.Dropped
	sr := &StreamResult{Rate: o.StreamRate}
	res.Stream = sr
	var sent, limited, failed, skipped atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / o.StreamRate)
	bar := newBar(int64(o.StreamDur/time.Second), "stream seconds", stderr, o.Quiet)
	sampleAt := start.Add(time.Second)
	prevDelivered := int64(0)
	next := start
	for time.Since(start) < o.StreamDur && ctx.Err() == nil {
		now := time.Now()
		if now.After(sampleAt) || now.Equal(sampleAt) {
			s := f.Stats()
			d := s.Pushes - before.Pushes
			sr.Samples = append(sr.Samples, Sample{T: now.Sub(start).Seconds(), PerSec: float64(d - prevDelivered),
				Backlog: sent.Load()*online - d, CumSent: sent.Load(), CumDeliver: d})
			prevDelivered = d
			sampleAt = sampleAt.Add(time.Second)
			_ = bar.Add(1)
		}
		if now.Before(next) {
			settle(ctx, min(next.Sub(now), time.Until(sampleAt)))
			continue
		}
		sched := next
		next = next.Add(interval)
		select {
		case sem <- struct{}{}:
		default: // 16 calls in flight: the API is the bottleneck
			skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := t.Broadcast(ctx, payload(o.PayloadLen, sched, 0), o.QoS)
			switch {
			case err == nil:
				sent.Add(1)
			case errors.Is(err, ErrRateLimited):
				limited.Add(1)
			default:
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	_ = bar.Finish()
	streamEnd := time.Now()
	sr.Seconds = streamEnd.Sub(start).Seconds()
	sr.Sent, sr.RateLimited, sr.Failed, sr.Skipped = sent.Load(), limited.Load(), failed.Load(), skipped.Load()
	sr.Expected = sr.Sent * online
	delivered := f.Stats().Pushes - before.Pushes
	sr.DeliveredPerSec = float64(delivered) / sr.Seconds
	for time.Since(streamEnd) < 10*time.Second && ctx.Err() == nil {
		if delivered = f.Stats().Pushes - before.Pushes; delivered >= sr.Expected {
			sr.Drained = true
			break
		}
		settle(ctx, 10*time.Millisecond)
	}
	sr.DrainMs = float64(time.Since(streamEnd)) / 1e6
	sr.Delivered = delivered
	sr.Latency = f.Stats().Latency.Sub(before.Latency).Summarize()
	return nil
}
