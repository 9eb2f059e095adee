package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Issue 15's measurements:
//
//	qos-stream  one open-loop stream of broadcasts at -qos, each its own
//	            round id, the server's RSS sampled every second, every
//	            connection checked to have every broadcast once
//	bcast-qos   qos-stream at QoS 0 then at QoS 1, each against a fresh
//	            server, -runs times; both side by side with the RSS ratio
//	bcast       one broadcast at -bcast-rate: its job read through every
//	            center (-api, comma separated), the rate the clients saw
//	            (first to last receive), every client counted

// ErrIncomplete means some client lacked a broadcast it should have had.
var ErrIncomplete = errors.New("loadgen: broadcast not delivered to every client")

// RSSSample is the server's RSS at one moment of a run.
type RSSSample struct {
	T         float64 `json:"t"` // seconds since the stream began
	RSS       int64   `json:"rss_bytes"`
	Delivered int64   `json:"delivered"` // distinct deliveries so far
}

// QoSStreamResult is the qos-stream scenario.
type QoSStreamResult struct {
	QoS         int     `json:"qos"`
	Rate        float64 `json:"broadcasts_per_sec"` // asked
	Seconds     float64 `json:"seconds"`
	Sent        int64   `json:"sent"`
	RateLimited int64   `json:"rate_limited"`
	Failed      int64   `json:"failed"`
	Skipped     int64   `json:"skipped"` // not sent: 16 API calls already in flight
	Online      int64   `json:"online"`  // connections at the start, none dropped
	Expected    int64   `json:"expected_deliveries"`
	Delivered   int64   `json:"delivered"` // distinct (connection, broadcast) pairs
	Dups        int64   `json:"dups"`      // deliveries a connection already had
	Missing     int64   `json:"missing"`   // Expected - Delivered
	Incomplete  []int   `json:"incomplete,omitempty"`
	Acked       int64   `json:"acked"` // ids the clients ACKed (QoS 1)
	Complete    bool    `json:"complete"`
	DrainMs     float64 `json:"drain_ms"`
	LastError   string  `json:"last_error,omitempty"`
	// RSS of the server: after connecting, the highest sample, at the end
	// (every broadcast delivered), and after a forced GC.
	RSSBefore   int64       `json:"rss_before"`
	RSSPeak     int64       `json:"rss_peak"`
	RSSEnd      int64       `json:"rss_end"`
	RSSAfterGC  int64       `json:"rss_after_gc"`
	HeapAfterGC int64       `json:"heap_after_gc"`
	Samples     []RSSSample `json:"samples"`
	Latency     Summary     `json:"latency"`
	// CPU time of the server (utime + stime of /proc/PID/stat, every
	// process), from just before the first broadcast until every delivery
	// arrived and the server was idle again (its ACK work done), and that
	// divided by the distinct deliveries.
	CPUSeconds     float64 `json:"server_cpu_seconds"`
	CPUPerDelivery float64 `json:"server_cpu_us_per_delivery"`
}

// qosStream pushes broadcasts open-loop at StreamRate for StreamDur, round
// id 1, 2, ... each, and checks that every connection had every one.
func qosStream(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	before := f.Stats()
	online := before.Authed - before.Dropped
	sr := &QoSStreamResult{QoS: o.QoS, Rate: o.StreamRate, Online: online}
	res.QoSStream = sr
	rss := func() int64 {
		var n int64
		for _, pid := range append([]int{t.PID}, t.PIDs...) {
			if pid > 0 {
				n += procRSS(pid)
			}
		}
		return n
	}
	sr.RSSBefore = rss()
	sr.RSSPeak = sr.RSSBefore
	var mu sync.Mutex
	var sentIDs []int
	var limited, failed, skipped atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	cpu0 := targetCPU(t)
	start := time.Now()
	sample := func(now time.Time) {
		s := f.Stats()
		r := rss()
		sr.RSSPeak = max(sr.RSSPeak, r)
		sr.Samples = append(sr.Samples, RSSSample{T: now.Sub(start).Seconds(), RSS: r, Delivered: roundsTotal(s) - roundsTotal(before)})
	}
	interval := time.Duration(float64(time.Second) / o.StreamRate)
	bar := newBar(int64(o.StreamDur/time.Second), fmt.Sprintf("QoS %d stream seconds", o.QoS), stderr, o.Quiet)
	sampleAt := start.Add(time.Second)
	next := start
	id := 0
	for time.Since(start) < o.StreamDur && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(sampleAt) {
			sample(now)
			sampleAt = sampleAt.Add(time.Second)
			_ = bar.Add(1)
		}
		if now.Before(next) {
			settle(ctx, min(next.Sub(now), time.Until(sampleAt)))
			continue
		}
		sched := next
		next = next.Add(interval)
		if id+1 >= maxRounds {
			break
		}
		select {
		case sem <- struct{}{}:
		default: // 16 calls in flight: the API is the bottleneck
			skipped.Add(1)
			continue
		}
		id++
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := t.BroadcastJob(ctx, payload(o.PayloadLen, sched, id), o.QoS, 0)
			switch {
			case err == nil:
				mu.Lock()
				sentIDs = append(sentIDs, id)
				mu.Unlock()
			case errors.Is(err, ErrRateLimited):
				limited.Add(1)
			default:
				failed.Add(1)
			}
		}(id)
	}
	wg.Wait()
	_ = bar.Finish()
	streamEnd := time.Now()
	sr.Seconds = streamEnd.Sub(start).Seconds()
	sr.Sent, sr.RateLimited, sr.Failed, sr.Skipped = int64(len(sentIDs)), limited.Load(), failed.Load(), skipped.Load()
	sr.Expected = sr.Sent * online
	// Drain: every sent broadcast at every connection, sampling on.
	drainTO := max(o.Drain, time.Second)
	sampleAt = time.Now().Add(time.Second)
	for ctx.Err() == nil {
		s := f.Stats()
		if missing(s, sentIDs, online) == 0 || time.Since(streamEnd) > drainTO {
			break
		}
		if !time.Now().Before(sampleAt) {
			sample(time.Now())
			sampleAt = sampleAt.Add(time.Second)
		}
		settle(ctx, 10*time.Millisecond)
	}
	sr.DrainMs = float64(time.Since(streamEnd)) / 1e6
	sample(time.Now())
	if cpu0 > 0 {
		sr.CPUSeconds = (settleCPU(ctx, t, 10*time.Second) - cpu0).Seconds()
	}
	sr.RSSEnd = sr.Samples[len(sr.Samples)-1].RSS
	s := f.Stats()
	sr.Missing = missing(s, sentIDs, online)
	sr.Delivered = sr.Expected - sr.Missing
	if sr.Delivered > 0 {
		sr.CPUPerDelivery = sr.CPUSeconds * 1e6 / float64(sr.Delivered)
	}
	sr.Dups = s.Dups - before.Dups
	sr.Acked = s.Acked - before.Acked
	sr.LastError = s.LastError
	sort.Ints(sentIDs)
	for _, id := range sentIDs {
		if s.Round(id).Count < online && len(sr.Incomplete) < 20 {
			sr.Incomplete = append(sr.Incomplete, id)
		}
	}
	dropped := s.Dropped - before.Dropped
	sr.Complete = sr.Missing == 0 && dropped == 0 && sr.Sent > 0
	sr.Latency = s.Latency.Sub(before.Latency).Summarize()
	if m, err := t.Memory(ctx); err == nil {
		sr.RSSAfterGC, sr.HeapAfterGC = m.RSS, m.HeapInuse
	}
	if !sr.Complete {
		return fmt.Errorf("%w: QoS %d stream: %d of %d deliveries missing, %d connections dropped, %d broadcasts sent",
			ErrIncomplete, o.QoS, sr.Missing, sr.Expected, dropped, sr.Sent)
	}
	return nil
}

// roundsTotal is the distinct deliveries of every round.
func roundsTotal(s Stats) int64 {
	var n int64
	for _, r := range s.Rounds {
		n += r.Count
	}
	return n
}

// missing counts the (connection, broadcast) pairs of ids not delivered
// yet: a round's count is its distinct receivers, so a round is complete
// exactly when every one of the online connections had it.
func missing(s Stats, ids []int, online int64) int64 {
	var n int64
	for _, id := range ids {
		n += max(0, online-s.Round(id).Count)
	}
	return n
}

// QoSCompare is the bcast-qos command's outcome: pairs of qos-stream runs.
type QoSCompare struct {
	Started time.Time `json:"started"`
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Store   string    `json:"store"`
	N       int       `json:"n"`
	Rate    float64   `json:"broadcasts_per_sec"`
	Seconds float64   `json:"stream_seconds"`
	Pairs   []QoSPair `json:"pairs"`
	Peak    Spread    `json:"peak_ratio"` // QoS 1 peak RSS / QoS 0 peak RSS
	End     Spread    `json:"end_ratio"`  // the same at the end of each run
	// Server CPU µs per delivery (QoSStreamResult.CPUPerDelivery) of the
	// complete runs, by QoS.
	CPU0     Spread `json:"cpu_us_per_delivery_qos0"`
	CPU1     Spread `json:"cpu_us_per_delivery_qos1"`
	Complete bool   `json:"complete"` // every run delivered everything
	Met      bool   `json:"met"`      // complete and the median peak ratio <= 1.5
}

// QoSPair is one QoS 0 run and one QoS 1 run, each on a fresh server.
type QoSPair struct {
	QoS0      *QoSStreamResult `json:"qos0"`
	QoS1      *QoSStreamResult `json:"qos1"`
	Dirs      [2]string        `json:"dirs"`
	PeakRatio float64          `json:"peak_ratio"`
	EndRatio  float64          `json:"end_ratio"`
}

// Spread is the median, min and max of a few runs' values.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Runs   int     `json:"runs"`
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1], Runs: len(s)}
}

// runBcastQoS runs qos-stream at QoS 0 then QoS 1, runs times, and writes
// OUT/bcast-qos-<store>-<N>-<time>/ (result.json, report.md).
func runBcastQoS(ctx context.Context, o runOpts, runs int, args []string, stdout, stderr io.Writer) error {
	cmp := &QoSCompare{Started: time.Now(), Command: commandLine(o.SelfArgs, args), N: o.Load.N,
		Rate: o.StreamRate, Seconds: o.StreamDur.Seconds(), Store: o.Store, Complete: true}
	if o.External != nil {
		cmp.Store = "external"
	}
	var errs []error
	var peaks, ends, cpu0, cpu1 []float64
	o.Scenario = "qos-stream"
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		var p QoSPair
		for _, q := range []int{0, 1} {
			o.QoS = q
			res, dir, err := runOneResult(ctx, o, append([]string{"qos-stream", "-qos", fmt.Sprint(q)}, args[1:]...), stdout, stderr)
			if res != nil {
				cmp.Machine = res.Machine
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("run %d QoS %d: %w", i+1, q, err))
			}
			var sr *QoSStreamResult
			if res != nil && res.QoSStream != nil {
				sr = res.QoSStream
			} else {
				sr = &QoSStreamResult{QoS: q}
			}
			cmp.Complete = cmp.Complete && sr.Complete
			if sr.Complete && sr.CPUPerDelivery > 0 {
				if q == 0 {
					cpu0 = append(cpu0, sr.CPUPerDelivery)
				} else {
					cpu1 = append(cpu1, sr.CPUPerDelivery)
				}
			}
			p.Dirs[q] = dir
			if q == 0 {
				p.QoS0 = sr
			} else {
				p.QoS1 = sr
			}
		}
		if p.QoS0.RSSPeak > 0 && p.QoS0.RSSEnd > 0 {
			p.PeakRatio = float64(p.QoS1.RSSPeak) / float64(p.QoS0.RSSPeak)
			p.EndRatio = float64(p.QoS1.RSSEnd) / float64(p.QoS0.RSSEnd)
			peaks, ends = append(peaks, p.PeakRatio), append(ends, p.EndRatio)
		}
		cmp.Pairs = append(cmp.Pairs, p)
	}
	cmp.Peak, cmp.End = spreadOf(peaks), spreadOf(ends)
	cmp.CPU0, cmp.CPU1 = spreadOf(cpu0), spreadOf(cpu1)
	cmp.Met = cmp.Complete && cmp.Peak.Runs > 0 && cmp.Peak.Median <= 1.5
	dir := filepath.Join(o.Out, fmt.Sprintf("bcast-qos-%s-%d-%s", cmp.Store, o.Load.N, cmp.Started.Format("20060102-150405")))
	var md strings.Builder
	fmt.Fprintf(&md, "# bcast-qos: QoS 1 vs QoS 0 broadcast stream, N = %d, store %s\n\n", cmp.N, cmp.Store)
	fmt.Fprintf(&md, "Run %s, %d CPUs, %s. Command (from the module root, lcpush built with `go build -o lcpush .`): `%s`\n\n",
		cmp.Started.Format(time.RFC3339), cmp.Machine.CPUs, cmp.Machine.Go, cmp.Command)
	qosCompareSummary(&md, cmp)
	if err := writeReport(dir, cmp, md.String()); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(stdout, "\nbcast-qos, N=%d, store %s\n\n", cmp.N, cmp.Store)
	qosCompareSummary(stdout, cmp)
	fmt.Fprintf(stdout, "results: %s\n", dir)
	return errors.Join(errs...)
}

func qosCompareSummary(w io.Writer, c *QoSCompare) {
	fmt.Fprintf(w, "Stream: %.0f broadcasts/s for %.0f s to %d connections; RSS of the server sampled every second.\n\n", c.Rate, c.Seconds, c.N)
	fmt.Fprintf(w, "| run | QoS | sent | delivered / expected | dups | acked | RSS before | RSS peak | RSS end | RSS after GC | drained | server CPU | CPU / delivery |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, p := range c.Pairs {
		for _, s := range []*QoSStreamResult{p.QoS0, p.QoS1} {
			fmt.Fprintf(w, "| %d | %d | %d | %d / %d | %d | %d | %s | %s | %s | %s | %v in %.0f ms | %.2f s | %.2f µs |\n", i+1, s.QoS, s.Sent,
				s.Delivered, s.Expected, s.Dups, s.Acked, mib(s.RSSBefore), mib(s.RSSPeak), mib(s.RSSEnd), mib(s.RSSAfterGC),
				s.Complete, s.DrainMs, s.CPUSeconds, s.CPUPerDelivery)
		}
	}
	fmt.Fprintf(w, "\n| QoS 1 / QoS 0 | median | min | max | runs |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| peak RSS | %.2fx | %.2fx | %.2fx | %d |\n", c.Peak.Median, c.Peak.Min, c.Peak.Max, c.Peak.Runs)
	fmt.Fprintf(w, "| RSS at the end | %.2fx | %.2fx | %.2fx | %d |\n\n", c.End.Median, c.End.Min, c.End.Max, c.End.Runs)
	fmt.Fprintf(w, "| server CPU per delivery (complete runs) | median | min | max | runs |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| QoS 0 | %.2f µs | %.2f µs | %.2f µs | %d |\n", c.CPU0.Median, c.CPU0.Min, c.CPU0.Max, c.CPU0.Runs)
	fmt.Fprintf(w, "| QoS 1 (delivery + its ACK) | %.2f µs | %.2f µs | %.2f µs | %d |\n\n", c.CPU1.Median, c.CPU1.Min, c.CPU1.Max, c.CPU1.Runs)
	fmt.Fprintf(w, "Every client got every broadcast: %v. QoS 1 peak RSS within 1.5x of QoS 0 (median): %v.\n\n", c.Complete, c.Met)
}

// JobView is a broadcast job as one center answers GET /v1/jobs/{id}.
type JobView struct {
	API      string `json:"api"`
	State    string `json:"state"`
	Targets  int64  `json:"targets"`
	Pushed   int64  `json:"pushed"`
	Stored   int64  `json:"stored"`
	Sent     int64  `json:"sent"`
	Acked    int64  `json:"acked"`
	Started  int64  `json:"started"`
	Finished int64  `json:"finished,omitempty"`
	Error    string `json:"error,omitempty"`
	Fetch    string `json:"fetch_error,omitempty"` // the GET itself failed
}

// BcastResult is the bcast scenario.
type BcastResult struct {
	QoS        int       `json:"qos"`
	Rate       float64   `json:"rate"` // deliveries per second asked
	JobID      string    `json:"job_id"`
	Online     int64     `json:"online"`
	Received   int64     `json:"received"` // connections that had it (each once)
	Dups       int64     `json:"dups"`
	Acked      int64     `json:"acked"`
	Complete   bool      `json:"complete"`
	FirstMs    float64   `json:"first_ms"` // from the POST to the first client's receive
	LastMs     float64   `json:"last_ms"`  // ... to the last one's
	ClientRate float64   `json:"client_rate"`
	RateErrPct float64   `json:"rate_error_pct"` // (ClientRate - Rate) / Rate, %
	RateHeld   bool      `json:"rate_held"`      // within 5 %
	Jobs       []JobView `json:"jobs"`
	JobDone    bool      `json:"job_done"` // every center answered done
	JobRate    float64   `json:"job_rate"` // targets / (finished - started), whole seconds
	LastError  string    `json:"last_error,omitempty"`
}

// bcast sends one broadcast at BcastRate and waits for every client, then
// for the job to end in the eyes of every center.
func bcast(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	before := f.Stats()
	online := before.Authed - before.Dropped
	br := &BcastResult{QoS: o.QoS, Rate: o.BcastRate, Online: online}
	t.TTL = o.TTL
	res.Bcast = br
	const round = 1
	t0 := time.Now()
	var job string
	var err error
	for ctx.Err() == nil {
		job, err = t.BroadcastJob(ctx, payload(o.PayloadLen, t0, round), o.QoS, o.BcastRate)
		if !errors.Is(err, ErrRateLimited) {
			break
		}
		settle(ctx, time.Second)
	}
	if err != nil {
		return err
	}
	br.JobID = job
	// The clients: until every one had it, or nothing moved for RoundTO.
	bar := newBar(online, "broadcast received", stderr, o.Quiet)
	last, moved := int64(-1), time.Now()
	for ctx.Err() == nil {
		n := f.Stats().Round(round).Count
		_ = bar.Set64(n)
		if n >= online {
			break
		}
		if n != last {
			last, moved = n, time.Now()
		} else if time.Since(moved) > o.RoundTO {
			break
		}
		settle(ctx, 50*time.Millisecond)
	}
	_ = bar.Finish()
	// The job, through every center, until none says running and its
	// sent and acked counts (they follow the clients' ACKs) held still 5 s.
	apis := append([]string{t.API}, t.APIs...)
	until := time.Now().Add(max(o.Drain, time.Second))
	var counts int64 = -1
	still := time.Now()
	for ctx.Err() == nil {
		br.Jobs = br.Jobs[:0]
		running := false
		var c int64
		for _, api := range apis {
			v := t.job(ctx, api, job)
			running = running || v.State == "running"
			c += v.Sent + v.Acked
			br.Jobs = append(br.Jobs, v)
		}
		if c != counts || running {
			counts, still = c, time.Now()
		}
		if time.Since(still) >= 5*time.Second || time.Now().After(until) || job == "" {
			break
		}
		settle(ctx, 200*time.Millisecond)
	}
	s := f.Stats()
	rd := s.Round(round)
	br.Received, br.Dups, br.Acked, br.LastError = rd.Count, s.Dups-before.Dups, s.Acked-before.Acked, s.LastError
	br.Complete = rd.Count >= online && s.Dropped == before.Dropped
	br.FirstMs, br.LastMs = float64(rd.MinNs)/1e6, float64(rd.MaxNs)/1e6
	if span := float64(rd.MaxNs-rd.MinNs) / 1e9; span > 0 && rd.Count > 1 {
		br.ClientRate = float64(rd.Count-1) / span
	}
	if br.Rate > 0 && br.ClientRate > 0 {
		br.RateErrPct = (br.ClientRate - br.Rate) / br.Rate * 100
		br.RateHeld = br.RateErrPct >= -5 && br.RateErrPct <= 5
	}
	br.JobDone = len(br.Jobs) > 0
	for _, j := range br.Jobs {
		br.JobDone = br.JobDone && j.State == "done"
		if j.Finished > j.Started && br.JobRate == 0 {
			br.JobRate = float64(j.Targets) / float64(j.Finished-j.Started)
		}
	}
	if o.Hold > 0 {
		// A script counts the store's rows while the clients are online
		// (scripts/bench.sh cluster-bcast waits for this line).
		fmt.Fprintf(stderr, "bcast: holding the connections for %s\n", o.Hold)
		settle(ctx, o.Hold)
		fmt.Fprintln(stderr, "bcast: hold over, closing the connections")
	}
	if !br.Complete {
		return fmt.Errorf("%w: %d of %d online clients had the broadcast (%d dropped)", ErrIncomplete,
			rd.Count, online, s.Dropped-before.Dropped)
	}
	return nil
}

// job reads GET api/v1/jobs/{id} with the app's key.
func (t *Target) job(ctx context.Context, api, id string) JobView {
	v := JobView{API: api}
	if id == "" {
		v.Fetch = "no job id in the broadcast's answer"
		return v
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/v1/jobs/"+id, nil)
	if err != nil {
		v.Fetch = err.Error()
		return v
	}
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	resp, err := httpc.Do(req)
	if err != nil {
		v.Fetch = err.Error()
		return v
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		v.Fetch = resp.Status + " " + strings.TrimSpace(string(body))
		return v
	}
	if err := json.Unmarshal(body, &v); err != nil {
		v.Fetch = "decode: " + err.Error()
	}
	v.API = api
	return v
}

func bcastSummary(w io.Writer, b *BcastResult) {
	fmt.Fprintf(w, "| broadcast (QoS %d, rate %.0f/s asked) | value |\n|---|---|\n", b.QoS, b.Rate)
	fmt.Fprintf(w, "| clients that had it / online | %d / %d (dups %d, acked %d) |\n", b.Received, b.Online, b.Dups, b.Acked)
	fmt.Fprintf(w, "| first / last client had it | %.0f / %.0f ms after the POST |\n", b.FirstMs, b.LastMs)
	fmt.Fprintf(w, "| rate seen by the clients | %.0f/s (%+.2f %% of the asked rate; within 5 %%: %v) |\n", b.ClientRate, b.RateErrPct, b.RateHeld)
	fmt.Fprintf(w, "| job %s done through every center | %v (targets/(finished-started) = %.0f/s) |\n", b.JobID, b.JobDone, b.JobRate)
	for _, j := range b.Jobs {
		if j.Fetch != "" {
			fmt.Fprintf(w, "| %s | %s |\n", j.API, j.Fetch)
			continue
		}
		fmt.Fprintf(w, "| %s | %s: targets %d pushed %d stored %d sent %d acked %d, %d s %s |\n", j.API, j.State,
			j.Targets, j.Pushed, j.Stored, j.Sent, j.Acked, max(0, j.Finished-j.Started), j.Error)
	}
	fmt.Fprintln(w)
}

func qosStreamSummary(w io.Writer, s *QoSStreamResult) {
	fmt.Fprintf(w, "| QoS %d stream (%.0f broadcasts/s for %.1f s) | value |\n|---|---|\n", s.QoS, s.Rate, s.Seconds)
	fmt.Fprintf(w, "| sent / rate limited / failed / skipped | %d / %d / %d / %d |\n", s.Sent, s.RateLimited, s.Failed, s.Skipped)
	fmt.Fprintf(w, "| delivered / expected (each connection, each broadcast, once) | %d / %d (dups %d, acked %d) |\n", s.Delivered, s.Expected, s.Dups, s.Acked)
	fmt.Fprintf(w, "| every client got every broadcast | %v (drain %.0f ms) |\n", s.Complete, s.DrainMs)
	fmt.Fprintf(w, "| server RSS before / peak / end / after GC | %s / %s / %s / %s |\n", mib(s.RSSBefore), mib(s.RSSPeak), mib(s.RSSEnd), mib(s.RSSAfterGC))
	fmt.Fprintf(w, "| server CPU (utime + stime, stream start to idle) / per delivery | %.2f s / %.2f µs |\n", s.CPUSeconds, s.CPUPerDelivery)
	fmt.Fprintf(w, "| latency p50 / p99 (from scheduled send) | %.2f / %.2f ms |\n\n", s.Latency.P50ms, s.Latency.P99ms)
}
