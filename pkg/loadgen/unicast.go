package loadgen

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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
}

// pushAnswer is the part of the push API's answer the tool reads.
type pushAnswer struct {
	Online int `json:"online"`
}

// newAPIClient keeps enough idle connections for n concurrent requests,
// so an open-loop run does not open a TCP connection per push.
func newAPIClient(n int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = n, n, n
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// Push sends payload to one uid through POST /v1/apps/{app}/push and
// returns how many connections the API says were online.
func (t *Target) Push(ctx context.Context, c *http.Client, uid string, payload []byte, qos int) (int, error) {
	body, _ := json.Marshal(map[string]any{
		"uids": []string{uid}, "data": base64.StdEncoding.EncodeToString(payload), "qos": qos, "ttl": 60,
	})
	url := fmt.Sprintf("%s/v1/apps/%d/push", t.API, t.App)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: push: %v", ErrTarget, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return 0, ErrRateLimited
	case resp.StatusCode/100 != 2:
		return 0, fmt.Errorf("%w: push: %s %s", ErrTarget, resp.Status, bytes.TrimSpace(msg))
	}
	var a pushAnswer
	_ = json.Unmarshal(msg, &a)
	return a.Online, nil
}

// unicast runs one open-loop step per rate in o.Rates.
func unicast(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	if t.Kind == "naive" {
		return fmt.Errorf("%w: unicast needs the push API of lcpush", ErrUsage)
	}
	senders := max(o.Senders, 1)
	c := newAPIClient(senders)
	defer c.CloseIdleConnections()
	// Warm-up, not reported: opens the API connections and the paths
	// behind them, so the first step does not measure connection setup.
	wo := o
	wo.StepDur, wo.Quiet = time.Second, true
	if _, err := unicastStep(ctx, t, f, wo, c, o.Rates[0], senders, stderr); err != nil {
		return err
	}
	for _, rate := range o.Rates {
		st, err := unicastStep(ctx, t, f, o, c, rate, senders, stderr)
		res.Unicast = append(res.Unicast, st)
		if err != nil {
			return err
		}
	}
	return nil
}

type uniJob struct {
	sched time.Time
	uid   string
}

func unicastStep(ctx context.Context, t *Target, f Fleet, o runOpts, c *http.Client, rate float64, senders int, stderr io.Writer) (UnicastStep, error) {
	st := UnicastStep{Rate: rate, QoS: o.QoS}
	before := f.Stats()
	var api Hist
	var ok, failed, offline atomic.Int64
	total := int64(rate * o.StepDur.Seconds())
	// The queue holds the whole step: the scheduler never waits for a
	// sender, it only falls behind in wall time, which the latency shows.
	jobs := make(chan uniJob, total)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				online, err := t.Push(ctx, c, j.uid, payload(o.PayloadLen, j.sched, 0), o.QoS)
				api.Record(time.Since(j.sched))
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
	prefix := o.Load.Prefix
	if prefix == "" {
		prefix = "lg-" // LoadConfig's default
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var i int64
	for i = 0; i < total && ctx.Err() == nil; i++ {
		sched := start.Add(time.Duration(i) * interval)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d) // sub-millisecond gaps: settle's timer is too coarse
		}
		jobs <- uniJob{sched: sched, uid: prefix + strconv.Itoa(o.Load.First+rand.IntN(o.Load.N))}
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
	return st, ctx.Err()
}
