package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/trace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
		st, err := unicastStep(ctx, t, f, o, conns, rate, stderr)
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
	pace := newPacer()
	defer pace.Close()
	start := time.Now()
	var i int64
	for i = 0; i < total && ctx.Err() == nil; i++ {
		sched := start.Add(time.Duration(i) * interval)
		pace.until(sched)
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
