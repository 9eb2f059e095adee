package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The sustain scenario (issue 16, "Sustained rate"): how many deliveries a
// second a server sustains when every message is its own API call, closed
// loop and without skipping.
//
//   - lcpush: -publishers keep-alive HTTP connections, each POSTing the next
//     broadcast (QoS 0) as soon as the answer to its previous one came,
//     for -stream; a 429 (the app's job slots full) waits briefly and posts
//     the same message again, so nothing is skipped (the 429s are counted).
//   - nats: one publisher connection (-publishers workers sharing it); each
//     PUB is followed by a PING, and at most -nats-window PINGs are
//     unanswered. nats-server answers a PING once it processed the PUBs
//     before it, fan-out included, so the publisher is paced by the server
//     and cannot overrun it; the window (64) is the number of broadcasts
//     lcpush may hold accepted and unfinished at once in the bench
//     configuration (center.max_jobs_per_app), since lcpush answers a call
//     when its job is recorded, not when it is delivered.
//
// Every message carries its own round id; after the stream the tool waits
// (-drain) until every online client had every message. Deliveries/s are
// the messages all clients received over the time from the first send to
// the last receive; a run fails when any client missed any message or a
// connection dropped. bench sustain -runs R runs it R times, each on a fresh
// server, and gives the median, min and max.

// SustainResult is one sustain run.
type SustainResult struct {
	Publishers  int     `json:"publishers"`
	StreamSec   float64 `json:"stream_seconds"` // asked (-stream)
	Sent        int64   `json:"sent"`           // messages accepted (2xx / PUB written)
	Calls       int64   `json:"calls"`          // API calls made, 429s included
	RateLimited int64   `json:"rate_limited"`   // 429 answers, each posted again
	Failed      int64   `json:"failed"`
	Online      int64   `json:"online"`
	Expected    int64   `json:"expected_deliveries"`
	Delivered   int64   `json:"delivered"` // distinct (connection, message) pairs
	Missing     int64   `json:"missing"`
	Dups        int64   `json:"dups"`
	Dropped     int64   `json:"dropped"`
	Complete    bool    `json:"complete"`
	// WindowSec is from the first send to the last receive.
	WindowSec        float64 `json:"window_seconds"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	MessagesPerSec   float64 `json:"messages_per_sec"` // sent / WindowSec
	DrainMs          float64 `json:"drain_ms"`         // after the last send, until every client had everything
	Latency          Summary `json:"latency"`          // send to receive, every delivery
	API              Summary `json:"api"`              // one call's answer time (lcpush) or PING round trip (nats)
	LastError        string  `json:"last_error,omitempty"`
}

// defaultPublishers: four calls in flight keep the server busy while one
// answer crosses the loopback (the HTTP round trip is hidden), while a
// real application's small connection pool is what it models; many more
// would only fill the app's job slots (max_jobs_per_app) and collect 429s.
const defaultPublishers = 4

// defaultNATSWindow is the bench configuration's center.max_jobs_per_app.
const defaultNATSWindow = 64

// sustain runs the closed-loop stream against t and checks every client.
func sustain(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	before := f.Stats()
	online := before.Authed - before.Dropped
	p := max(1, o.Publishers)
	sr := &SustainResult{Publishers: p, StreamSec: o.StreamDur.Seconds(), Online: online}
	res.Sustain = sr
	var pub sustainPublisher
	var err error
	if t.Kind == "nats" {
		w := max(1, o.NATSWindow)
		p = max(p, w) // a worker per PING in flight
		sr.Publishers = p
		pub, err = newNATSPublisher(ctx, t.Rooms[0], w)
	} else if t.publish != nil {
		return fmt.Errorf("%w: sustain measures lcpush or nats", ErrUsage)
	} else {
		pub = newHTTPPublisher(t, p, o.BcastRate)
	}
	if err != nil {
		return err
	}
	defer pub.close()

	var (
		nextID      atomic.Int64
		sent, calls atomic.Int64
		limited     atomic.Int64
		failed      atomic.Int64
		apiHist     Hist
		firstNs     atomic.Int64
		lastSendNs  atomic.Int64
		lastErr     atomic.Value
	)
	// sendAt[id] is the unix ns a message was sent (its payload's stamp).
	sendAt := make([]atomic.Int64, maxRounds)
	start := time.Now()
	stop := start.Add(o.StreamDur)
	bar := newBar(int64(o.StreamDur/time.Second), "sustain seconds", stderr, o.Quiet)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 1024)
			backoff := time.Millisecond
			for sctx.Err() == nil && time.Now().Before(stop) {
				id := int(nextID.Add(1))
				if id >= maxRounds {
					return
				}
			again:
				now := time.Now()
				ts := now.UnixNano()
				firstNs.CompareAndSwap(0, ts)
				pl := payload(o.PayloadLen, now, id)
				calls.Add(1)
				var err error
				buf, err = pub.send(sctx, w, pl, buf)
				apiHist.Record(time.Since(now))
				switch {
				case err == nil:
					sendAt[id].Store(ts)
					atomicMax(&lastSendNs, ts)
					sent.Add(1)
					backoff = time.Millisecond
				case errors.Is(err, ErrRateLimited) && sctx.Err() == nil:
					limited.Add(1)
					settle(sctx, backoff)
					backoff = min(2*backoff, 50*time.Millisecond)
					goto again // the same message: nothing is skipped
				default:
					if sctx.Err() == nil {
						failed.Add(1)
						lastErr.Store(err.Error())
					}
					return
				}
			}
		}()
	}
	for i := 1; time.Now().Before(stop) && ctx.Err() == nil; i++ {
		settle(ctx, min(time.Until(start.Add(time.Duration(i)*time.Second)), time.Until(stop)))
		_ = bar.Add(1)
	}
	wg.Wait()
	cancel()
	_ = bar.Finish()
	sendEnd := time.Now()
	sr.Sent, sr.Calls, sr.RateLimited, sr.Failed = sent.Load(), calls.Load(), limited.Load(), failed.Load()
	sr.Expected = sr.Sent * online
	var ids []int
	for id := 1; id < maxRounds; id++ {
		if sendAt[id].Load() != 0 {
			ids = append(ids, id)
		}
	}
	var s Stats
	for drainTO := max(o.Drain, time.Second); ctx.Err() == nil; {
		s = f.Stats()
		if missing(s, ids, online) == 0 || time.Since(sendEnd) > drainTO || s.Dropped > before.Dropped {
			break
		}
		settle(ctx, 10*time.Millisecond)
	}
	sr.DrainMs = float64(time.Since(sendEnd)) / 1e6
	s = f.Stats()
	sr.Missing = missing(s, ids, online)
	sr.Delivered = sr.Expected - sr.Missing
	sr.Dups = s.Dups - before.Dups
	sr.Dropped = s.Dropped - before.Dropped
	// The last receive: each message's send time plus its last client's latency.
	var lastRecv int64
	for _, r := range s.Rounds {
		if r.ID > 0 && r.ID < maxRounds {
			if at := sendAt[r.ID].Load(); at > 0 {
				lastRecv = max(lastRecv, at+r.MaxNs)
			}
		}
	}
	if first := firstNs.Load(); first > 0 && lastRecv > first {
		sr.WindowSec = float64(lastRecv-first) / 1e9
		sr.DeliveriesPerSec = float64(sr.Delivered) / sr.WindowSec
		sr.MessagesPerSec = float64(sr.Sent) / sr.WindowSec
	}
	sr.Latency = s.Latency.Sub(before.Latency).Summarize()
	sr.API = apiHist.Snapshot().Summarize()
	if e, ok := lastErr.Load().(string); ok {
		sr.LastError = e
	} else if s.LastError != "" {
		sr.LastError = s.LastError
	}
	sr.Complete = sr.Missing == 0 && sr.Dropped == 0 && sr.Failed == 0 && sr.Sent > 0
	if !sr.Complete {
		return fmt.Errorf("%w: sustain: %d of %d deliveries missing, %d connections dropped, %d calls failed, %d messages sent (%s)",
			ErrIncomplete, sr.Missing, sr.Expected, sr.Dropped, sr.Failed, sr.Sent, sr.LastError)
	}
	return nil
}

// sustainPublisher sends one message and returns once the server answered
// it; worker w of the publishers calls it (lcpush: w's own connection).
type sustainPublisher interface {
	send(ctx context.Context, w int, payload, buf []byte) ([]byte, error)
	close()
}

// httpPublisher posts broadcasts on keep-alive connections, one per worker.
type httpPublisher struct {
	t    *Target
	url  string
	rate []byte // the "rate" of each broadcast (-bcast-rate), nil: the app's
	cs   []*http.Client
}

func newHTTPPublisher(t *Target, p int, rate float64) *httpPublisher {
	h := &httpPublisher{t: t, url: fmt.Sprintf("%s/v1/apps/%d/broadcast", t.API, t.App)}
	if rate > 0 {
		h.rate = strconv.AppendFloat(nil, rate, 'f', -1, 64)
	}
	for range p {
		// One transport per worker: each keeps its one connection alive.
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: time.Minute,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
		h.cs = append(h.cs, &http.Client{Transport: tr, Timeout: 10 * time.Second})
	}
	return h
}

func (h *httpPublisher) send(ctx context.Context, w int, payload, buf []byte) ([]byte, error) {
	buf = append(buf[:0], `{"qos":0,"ttl":60,`...)
	if h.rate != nil {
		buf = append(append(append(buf, `"rate":`...), h.rate...), ',')
	}
	buf = append(buf, `"data":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, payload)
	buf = append(buf, `"}`...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(buf))
	if err != nil {
		return buf, err
	}
	req.Header.Set("Authorization", "Bearer "+h.t.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.cs[w].Do(req)
	if err != nil {
		return buf, fmt.Errorf("%w: broadcast: %v", ErrTarget, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return buf, ErrRateLimited
	case resp.StatusCode/100 != 2:
		return buf, fmt.Errorf("%w: broadcast: %s %s", ErrTarget, resp.Status, bytes.TrimSpace(msg))
	}
	return buf, nil
}

func (h *httpPublisher) close() {
	for _, c := range h.cs {
		c.CloseIdleConnections()
	}
}

// natsPublisher is one connection; PUB+PING per message, at most window
// PINGs unanswered.
type natsPublisher struct {
	p      *peerConn
	window chan struct{} // one token per unanswered PING
	pongs  chan struct{}
	mu     sync.Mutex // PUB+PING written whole, in the order the PONGs come back
	err    atomic.Value
	done   chan struct{}
}

func newNATSPublisher(ctx context.Context, addr string, window int) (*natsPublisher, error) {
	p, err := dialPeer(ctx, "nats", addr, "127.0.0.1", "sustain-pub", false)
	if err != nil {
		return nil, err
	}
	n := &natsPublisher{p: p, window: make(chan struct{}, window), pongs: make(chan struct{}, window), done: make(chan struct{})}
	go n.read()
	return n, nil
}

// read hands each PONG to the oldest waiting sender until the connection ends.
func (n *natsPublisher) read() {
	defer close(n.done)
	r := bufio.NewReader(n.p.c)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			n.err.Store(err)
			return
		}
		switch {
		case bytes.HasPrefix(line, []byte("PONG")):
			n.pongs <- struct{}{}
		case bytes.HasPrefix(line, []byte("PING")):
			_ = n.p.write([]byte("PONG\r\n"))
		case bytes.HasPrefix(line, []byte("-ERR")):
			n.err.Store(errors.New(strings.TrimSpace(string(line))))
		}
	}
}

func (n *natsPublisher) send(ctx context.Context, _ int, payload, buf []byte) ([]byte, error) {
	select {
	case n.window <- struct{}{}:
	case <-ctx.Done():
		return buf, ctx.Err()
	}
	defer func() { <-n.window }()
	n.mu.Lock()
	buf = append(buf[:0], "PUB "+peerSubject+" "...)
	buf = strconv.AppendInt(buf, int64(len(payload)), 10)
	buf = append(buf, "\r\n"...)
	buf = append(append(buf, payload...), "\r\nPING\r\n"...)
	_, err := n.p.c.Write(buf)
	n.mu.Unlock()
	if err != nil {
		return buf, fmt.Errorf("%w: nats publish: %v", ErrTarget, err)
	}
	// PONGs come back in PING order; any PONG means the PUBs before it
	// were processed, so taking whichever comes first keeps the window.
	select {
	case <-n.pongs:
		return buf, nil
	case <-n.done:
		return buf, fmt.Errorf("%w: nats publisher closed: %v", ErrTarget, n.err.Load())
	case <-ctx.Done():
		return buf, ctx.Err()
	}
}

func (n *natsPublisher) close() {
	n.p.close()
	<-n.done
}

// SustainCompare is bench sustain's outcome: -runs runs, each on a fresh server.
type SustainCompare struct {
	Started    time.Time        `json:"started"`
	Command    string           `json:"command"`
	Machine    Machine          `json:"machine"`
	Target     string           `json:"target"`
	Store      string           `json:"store,omitempty"`
	N          int              `json:"n"`
	Publishers int              `json:"publishers"`
	Seconds    float64          `json:"stream_seconds"`
	Runs       []*SustainResult `json:"runs"`
	Dirs       []string         `json:"dirs"`
	Deliveries Spread           `json:"deliveries_per_sec"`
	Messages   Spread           `json:"messages_per_sec"`
	Complete   bool             `json:"complete"` // every run delivered everything
	LoadAvg    string           `json:"loadavg"`  // /proc/loadavg before the first run
}

// runSustain runs the sustain scenario runs times and writes
// OUT/sustain-runs-<target>-<N>-<time>/ (result.json, report.md).
func runSustain(ctx context.Context, o runOpts, runs int, args []string, stdout, stderr io.Writer) error {
	la, _ := os.ReadFile("/proc/loadavg")
	cmp := &SustainCompare{Started: time.Now(), Command: commandLine(o.SelfArgs, args), N: o.Load.N, Target: o.TargetKind,
		Publishers: max(1, o.Publishers), Seconds: o.StreamDur.Seconds(), Complete: true, LoadAvg: strings.TrimSpace(string(la))}
	switch {
	case o.External != nil:
		cmp.Target = "external"
	case o.TargetKind == "lcpush":
		cmp.Store = o.Store
	}
	var errs []error
	var dps, mps []float64
	o.Scenario = "sustain"
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		res, dir, err := runOneResult(ctx, o, args, stdout, stderr)
		if res != nil {
			cmp.Machine = res.Machine
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("run %d: %w", i+1, err))
		}
		sr := &SustainResult{}
		if res != nil && res.Sustain != nil {
			sr = res.Sustain
		}
		cmp.Complete = cmp.Complete && sr.Complete
		cmp.Runs, cmp.Dirs = append(cmp.Runs, sr), append(cmp.Dirs, dir)
		if sr.Complete {
			dps, mps = append(dps, sr.DeliveriesPerSec), append(mps, sr.MessagesPerSec)
		}
	}
	cmp.Deliveries, cmp.Messages = spreadOf(dps), spreadOf(mps)
	name := cmp.Target
	if cmp.Store != "" {
		name += "-" + cmp.Store
	}
	dir := filepath.Join(o.Out, fmt.Sprintf("sustain-runs-%s-%d-%s", name, o.Load.N, cmp.Started.Format("20060102-150405")))
	var md strings.Builder
	fmt.Fprintf(&md, "# sustain: %s, N = %d\n\n", name, cmp.N)
	fmt.Fprintf(&md, "Run %s, %d CPUs, %s, loadavg before: %s. Command (from the module root, lcpush built with `go build -o lcpush .`): `%s`\n\n",
		cmp.Started.Format(time.RFC3339), cmp.Machine.CPUs, cmp.Machine.Go, cmp.LoadAvg, cmp.Command)
	sustainCompareSummary(&md, cmp)
	if err := writeReport(dir, cmp, md.String()); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(stdout, "\nsustain, %s, N=%d\n\n", name, cmp.N)
	sustainCompareSummary(stdout, cmp)
	fmt.Fprintf(stdout, "results: %s\n", dir)
	return errors.Join(errs...)
}

func sustainCompareSummary(w io.Writer, c *SustainCompare) {
	fmt.Fprintf(w, "Closed loop: %d publishers, %.0f s, one call per message, %d connections.\n\n", c.Publishers, c.Seconds, c.N)
	fmt.Fprintf(w, "| run | sent | calls (429) | delivered / expected | dropped | window s | deliveries/s | messages/s | drain ms | latency p50 / p99 ms | answer p50 / p99 ms |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range c.Runs {
		fmt.Fprintf(w, "| %d | %d | %d (%d) | %d / %d | %d | %.2f | %.0f | %.0f | %.0f | %.2f / %.2f | %.2f / %.2f |\n", i+1, s.Sent, s.Calls,
			s.RateLimited, s.Delivered, s.Expected, s.Dropped, s.WindowSec, s.DeliveriesPerSec, s.MessagesPerSec, s.DrainMs,
			s.Latency.P50ms, s.Latency.P99ms, s.API.P50ms, s.API.P99ms)
	}
	fmt.Fprintf(w, "\n| figure | median | min | max | runs |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| deliveries/s | %.0f | %.0f | %.0f | %d |\n", c.Deliveries.Median, c.Deliveries.Min, c.Deliveries.Max, c.Deliveries.Runs)
	fmt.Fprintf(w, "| messages/s | %.1f | %.1f | %.1f | %d |\n\n", c.Messages.Median, c.Messages.Min, c.Messages.Max, c.Messages.Runs)
	fmt.Fprintf(w, "Every client got every message in every run: %v.\n\n", c.Complete)
}

func sustainSummary(w io.Writer, s *SustainResult) {
	fmt.Fprintf(w, "| sustain (%d publishers, %.0f s) | value |\n|---|---|\n", s.Publishers, s.StreamSec)
	fmt.Fprintf(w, "| sent / calls / 429 / failed | %d / %d / %d / %d |\n", s.Sent, s.Calls, s.RateLimited, s.Failed)
	fmt.Fprintf(w, "| delivered / expected / dups / dropped | %d / %d / %d / %d |\n", s.Delivered, s.Expected, s.Dups, s.Dropped)
	fmt.Fprintf(w, "| deliveries/s (first send to last receive, %.2f s) | %.0f |\n", s.WindowSec, s.DeliveriesPerSec)
	fmt.Fprintf(w, "| messages/s | %.1f |\n", s.MessagesPerSec)
	fmt.Fprintf(w, "| drain after the last send | %.0f ms |\n", s.DrainMs)
	fmt.Fprintf(w, "| latency p50 / p99 / p999 | %.2f / %.2f / %.2f ms |\n", s.Latency.P50ms, s.Latency.P99ms, s.Latency.P999)
	fmt.Fprintf(w, "| answer p50 / p99 | %.2f / %.2f ms |\n\n", s.API.P50ms, s.API.P99ms)
}
