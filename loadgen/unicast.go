package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/internal/pace"
	"github.com/lcpush/lcpush/pkg/admin"
)

// UnicastStep is scenario (d) at one rate: pushes to one uid each through
// the push API, scheduled on a fixed timeline (open loop). Latency is from
// the scheduled send time to the client having it, so a sender or API that
// falls behind shows as latency instead of hiding it (no coordinated
// omission).
type UnicastStep struct {
	Rate      float64 `json:"rate"` // pushes per second asked
	Seconds   float64 `json:"seconds"`
	QoS       int     `json:"qos"`
	Scheduled int64   `json:"scheduled"`
	OK        int64   `json:"ok"`     // 200 from the API
	Failed    int64   `json:"failed"` // any other answer or error
	Offline   int64   `json:"offline"`
	Delivered int64   `json:"delivered"`
	Lost      int64   `json:"lost"`     // OK and online, not received within 5 s after the step
	Achieved  float64 `json:"achieved"` // OK answers per second
	Latency   Summary `json:"latency"`  // scheduled time to the client, ms
	API       Summary `json:"api"`      // scheduled time to the API's answer, ms
	// Sender is the scheduled time to a sender starting the request, ms:
	// the tool's own lateness (pacing, a busy core), part of both above.
	Sender Summary `json:"sender"`
	// GC is the server's garbage collector during the step (lcpush only:
	// its /metrics read before and after).
	GC *StepGC `json:"gc,omitempty"`
}

// StepGC is what the server's GC did during a step, from the histogram of
// its stop-the-world pauses (admin.GCPauseMetric) and its Go metrics. The
// pause quantiles are the upper bounds of the histogram's buckets.
type StepGC struct {
	Pauses     int64   `json:"pauses"`       // stop-the-world pauses
	PauseP50ms float64 `json:"pause_p50_ms"` // upper bound
	PauseP99ms float64 `json:"pause_p99_ms"` // upper bound
	PauseMaxms float64 `json:"pause_max_ms"` // upper bound
	Cycles     int64   `json:"cycles"`       // GC cycles (go_gc_duration_seconds_count)
	HeapInuse  int64   `json:"heap_inuse"`   // go_memstats_heap_inuse_bytes at the step's end
	HeapGoal   int64   `json:"heap_goal"`    // go_memstats_next_gc_bytes at the step's end
}

// gcScrape is one reading of the server's GC metrics.
type gcScrape struct {
	le              []float64 // bucket upper bounds, increasing
	cum             []float64 // cumulative counts
	cycles          float64
	heapInuse, goal float64
}

// scrapeGC reads the target's /metrics; ok is false when it has no pause
// histogram (not lcpush, or an older one).
func scrapeGC(ctx context.Context, t *Target) (gcScrape, bool) {
	var g gcScrape
	if t.Admin == "" || !strings.HasPrefix(t.Kind, "lcpush") {
		return g, false
	}
	var buf bytes.Buffer
	if t.get(ctx, t.Admin+"/metrics", &buf) != nil {
		return g, false
	}
	prefix := admin.GCPauseMetric + `_bucket{le="`
	for line := range strings.SplitSeq(buf.String(), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		bound, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		le, err1 := strconv.ParseFloat(bound, 64)
		v, err2 := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		g.le, g.cum = append(g.le, le), append(g.cum, v)
	}
	g.cycles = metricValue(buf.Bytes(), "go_gc_duration_seconds_count")
	g.heapInuse = metricValue(buf.Bytes(), "go_memstats_heap_inuse_bytes")
	g.goal = metricValue(buf.Bytes(), "go_memstats_next_gc_bytes")
	return g, len(g.le) > 0
}

// gcBetween is the GC of a step from the readings before and after it.
func gcBetween(a, b gcScrape) *StepGC {
	st := &StepGC{Cycles: int64(b.cycles - a.cycles), HeapInuse: int64(b.heapInuse), HeapGoal: int64(b.goal)}
	if len(a.le) != len(b.le) {
		return st
	}
	d := make([]float64, len(b.cum))
	for i := range b.cum {
		d[i] = b.cum[i] - a.cum[i]
	}
	total := d[len(d)-1] // le="+Inf"
	st.Pauses = int64(total)
	if total <= 0 {
		return st
	}
	q := func(f float64) float64 {
		for i, c := range d {
			if c >= f*total {
				return b.le[i] * 1e3
			}
		}
		return math.Inf(1)
	}
	st.PauseP50ms, st.PauseP99ms, st.PauseMaxms = q(0.5), q(0.99), q(1)
	return st
}

// unicast runs one open-loop step per rate in o.Rates.
func unicast(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	if t.Kind == "naive" {
		return fmt.Errorf("%w: unicast needs the push API of lcpush", ErrUsage)
	}
	senders := max(o.Senders, 1)
	conns := make([]*pushConn, senders)
	for i := range conns {
		pc, err := newPushConn(t)
		if err != nil {
			return err
		}
		conns[i] = pc
		defer pc.Close()
	}
	// Warm-up, not reported: opens the API connections and the paths
	// behind them, so the first step does not measure connection setup.
	wo := o
	wo.StepDur, wo.Quiet = time.Second, true
	if _, err := unicastStep(ctx, t, f, wo, conns, o.Rates[0], stderr); err != nil {
		return err
	}
	for _, rate := range o.Rates {
		stopTrace := startUnicastTrace(ctx, t, rate, o.StepDur, stderr)
		gc0, gcOK := scrapeGC(ctx, t)
		st, err := unicastStep(ctx, t, f, o, conns, rate, stderr)
		if gc1, ok := scrapeGC(ctx, t); ok && gcOK {
			st.GC = gcBetween(gc0, gc1)
		}
		stopTrace()
		res.Unicast = append(res.Unicast, st)
		if err != nil {
			return err
		}
	}
	return nil
}

type uniJob struct {
	sched time.Time
	uid   int // the uid is the load's prefix + uid
}

// unicastStep runs one rate: a scheduler puts each push on the timeline
// and one sender per API connection sends them.
func unicastStep(ctx context.Context, t *Target, f Fleet, o runOpts, conns []*pushConn, rate float64, stderr io.Writer) (UnicastStep, error) {
	st := UnicastStep{Rate: rate, QoS: o.QoS}
	before := f.Stats()
	var api, sender Hist
	var ok, failed, offline atomic.Int64
	total := int64(rate * o.StepDur.Seconds())
	// The queue holds the whole step: the scheduler never waits for a
	// sender, it only falls behind in wall time, which the latency shows.
	jobs := make(chan uniJob, total)
	prefix := o.Load.Prefix
	if prefix == "" {
		prefix = "lg-" // LoadConfig's default
	}
	var wg sync.WaitGroup
	for _, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One payload and uid buffer per sender: a request makes no
			// garbage, so the tool's GC stays out of the measurement.
			pay := payload(o.PayloadLen, time.Time{}, 0)
			uid := []byte(prefix)
			for j := range jobs {
				picked := time.Now()
				sender.Record(picked.Sub(j.sched))
				stampPayload(pay, j.sched)
				uid = strconv.AppendInt(uid[:len(prefix)], int64(j.uid), 10)
				online, err := pc.push(ctx, uid, pay, o.QoS)
				d := time.Since(j.sched)
				api.Record(d)
				if d > time.Millisecond && trace.IsEnabled() {
					// For LCPUSH_UNICAST_TRACE: the late ones, to line up with
					// the server's trace (wall clock, ns).
					trace.Log(ctx, "late", strconv.FormatInt(j.sched.UnixNano(), 10)+" "+
						strconv.FormatInt(int64(d), 10)+" "+strconv.FormatInt(int64(picked.Sub(j.sched)), 10))
				}
				switch {
				case err != nil:
					failed.Add(1)
				case online == 0:
					offline.Add(1)
					ok.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	bar := newBar(total, fmt.Sprintf("unicast %.0f/s", rate), stderr, o.Quiet)
	interval := time.Duration(float64(time.Second) / rate)
	pacer := pace.New()
	defer pacer.Close()
	start := time.Now()
	var i int64
	for i = 0; i < total && ctx.Err() == nil; i++ {
		sched := start.Add(time.Duration(i) * interval)
		pacer.Until(sched)
		jobs <- uniJob{sched: sched, uid: o.Load.First + rand.IntN(o.Load.N)}
		if i%256 == 0 {
			_ = bar.Set64(i)
		}
	}
	close(jobs)
	wg.Wait()
	_ = bar.Finish()
	st.Scheduled = i
	st.Seconds = time.Since(start).Seconds()
	st.OK, st.Failed, st.Offline = ok.Load(), failed.Load(), offline.Load()
	st.Achieved = float64(st.OK) / st.Seconds
	want := st.OK - st.Offline
	end := time.Now().Add(5 * time.Second)
	var got int64
	for time.Now().Before(end) && ctx.Err() == nil {
		if got = f.Stats().Pushes - before.Pushes; got >= want {
			break
		}
		settle(ctx, 10*time.Millisecond)
	}
	after := f.Stats()
	st.Delivered = after.Pushes - before.Pushes
	st.Lost = max(0, want-st.Delivered)
	st.Latency = after.Latency.Sub(before.Latency).Summarize()
	st.API = api.Snapshot().Summarize()
	st.Sender = sender.Snapshot().Summarize()
	return st, ctx.Err()
}

// unicastGCSummary is the report's table of the server's GC per step.
func unicastGCSummary(w io.Writer, steps []UnicastStep) {
	if len(steps) == 0 || steps[0].GC == nil {
		return
	}
	fmt.Fprintf(w, "| unicast rate | server GC cycles | pauses | pause p50 / p99 / max ms (bucket upper bounds) | heap in use / goal at the end |\n|---|---|---|---|---|\n")
	for _, u := range steps {
		if g := u.GC; g != nil {
			fmt.Fprintf(w, "| %.0f/s | %d | %d | %.3f / %.3f / %.3f | %.1f / %.1f MiB |\n", u.Rate, g.Cycles, g.Pauses,
				g.PauseP50ms, g.PauseP99ms, g.PauseMaxms, float64(g.HeapInuse)/(1<<20), float64(g.HeapGoal)/(1<<20))
		}
	}
	fmt.Fprintln(w)
}
