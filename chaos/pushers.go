package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pushers send QoS 1 unicasts at a fixed rate (an open-loop timeline), one
// random device each, alternating between the centers. A push whose turn
// comes while maxInFlight requests are pending is skipped and counted: the
// timeline never waits for a slow API.
type pushers struct {
	centers []string
	fleet   *fleet
	rec     *recorder
	rate    float64
	hc      *http.Client

	phase   atomic.Int64
	paused  atomic.Bool
	skipped sync.Map     // phase -> *atomic.Int64
	flight  atomic.Int64 // requests pending
	seq     atomic.Int64
}

const maxInFlight = 256

func newPushers(centers []string, f *fleet, rec *recorder, rate float64) *pushers {
	tr := &http.Transport{
		MaxIdleConns: maxInFlight, MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}
	p := &pushers{centers: centers, fleet: f, rec: rec, rate: rate,
		hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	p.paused.Store(true)
	return p
}

func (p *pushers) skip(phase int) {
	v, _ := p.skipped.LoadOrStore(phase, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (p *pushers) skippedIn(phase int) int64 {
	if v, ok := p.skipped.Load(phase); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// run schedules pushes until ctx ends; paused turns are not sent.
func (p *pushers) run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / p.rate)
	next := time.Now()
	var i int
	for ctx.Err() == nil {
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if d < -time.Second {
			next = time.Now() // the process stalled: do not burst to catch up
		}
		// Counted in flight before the pause is checked: wait, which
		// looks after the pause, sees every request that got through.
		n := p.flight.Add(1)
		if p.paused.Load() {
			p.flight.Add(-1)
			continue
		}
		phase := int(p.phase.Load())
		if n > maxInFlight {
			p.flight.Add(-1)
			p.skip(phase)
			continue
		}
		i++
		center := i % len(p.centers)
		dev := rand.IntN(len(p.fleet.devs))
		go func() {
			defer p.flight.Add(-1)
			p.push(phase, center, dev)
		}()
	}
}

// wait waits, once paused, for the requests in flight (each bounded by
// the client timeout).
func (p *pushers) wait() {
	for p.flight.Load() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

type pushAnswer struct {
	MsgID  string `json:"msg_id"`
	Online int    `json:"online"`
}

func (p *pushers) push(phase, center, dev int) {
	d := p.fleet.devs[dev]
	a := &attempt{phase: phase, dev: dev, center: center}
	a.genSent, a.upSent, a.sinceSent = d.state()
	body, _ := json.Marshal(map[string]any{
		"uids": []string{d.uid}, "text": "chaos " + strconv.FormatInt(p.seq.Add(1), 10), "qos": 1, "ttl": 3600,
	})
	req, _ := http.NewRequest("POST", p.centers[center]+"/v1/apps/"+strconv.Itoa(appID)+"/push", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	a.sent = time.Now()
	resp, err := p.hc.Do(req)
	if err != nil {
		a.errKey = netErrKey(err)
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		a.status = resp.StatusCode
		var ans pushAnswer
		switch {
		case resp.StatusCode != 200 && resp.StatusCode != 202:
			a.errKey = strconv.Itoa(resp.StatusCode)
		case json.Unmarshal(b, &ans) != nil || ans.MsgID == "":
			a.errKey = strconv.Itoa(resp.StatusCode) + " without msg_id"
		default:
			id, err := strconv.ParseUint(ans.MsgID, 10, 64)
			if err != nil || id == 0 {
				a.errKey = strconv.Itoa(resp.StatusCode) + " bad msg_id"
			}
			a.id, a.online = id, ans.Online
		}
	}
	a.done = time.Now()
	a.genDone, a.upDone, _ = d.state()
	p.rec.add(a)
}

// netErrKey names a transport error for the report.
func netErrKey(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "net error"
}
