package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// StormResult is scenario (b): a connect storm past the room's cap, then
// a health check of the room.
type StormResult struct {
	Cap           int     `json:"max_conns"`           // room.max_conns of the started room (0: unknown)
	Tried         int     `json:"tried"`               // connections attempted
	Authed        int64   `json:"authed"`              // AUTH_OK received
	Refused       int64   `json:"refused"`             // closed by the room before AUTH_OK
	ServerRefused float64 `json:"server_refused"`      // lcpush_room_refused_total{reason="max_conns"}
	AuthedPerSec  float64 `json:"authed_per_sec"`      // until the last AUTH_OK
	HandshakeP99  float64 `json:"handshake_p99_ms"`    // dial start to AUTH_OK
	Ready         bool    `json:"readyz_ok"`           // /readyz answered 200 after the storm
	ReadyMs       float64 `json:"readyz_ms"`           // how long /readyz took
	Online        int64   `json:"online_before_check"` // authed and still open
	PongWaitSec   float64 `json:"pong_wait_seconds"`   // one heartbeat interval and a margin
	Pongs         int64   `json:"pongs"`               // PONGs received during the wait
	DroppedAfter  int64   `json:"dropped"`             // authed connections the room closed
}

// stormCheck runs after the connect phase: it reads the refusals, asks
// /readyz, then waits one heartbeat interval and checks that every
// connection still online had its PING answered.
func stormCheck(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, stderr io.Writer) error {
	s := f.Stats()
	sr := &StormResult{Cap: o.MaxConns, Tried: o.Load.N, Authed: s.Authed, Refused: s.Refused,
		AuthedPerSec: res.Connect.PerSec, HandshakeP99: res.Connect.Handshake.P99ms}
	if t.Kind == "lcpush" && sr.Cap == 0 {
		sr.Cap = defaultMaxConns
	}
	res.Storm = sr
	if t.Admin != "" {
		var buf bytes.Buffer
		if t.get(ctx, t.Admin+"/metrics", &buf) == nil {
			sr.ServerRefused = labelledValue(buf.Bytes(), "lcpush_room_refused_total", `reason="max_conns"`)
		}
		start := time.Now()
		sr.Ready = t.get(ctx, t.Admin+"/readyz", io.Discard) == nil
		sr.ReadyMs = float64(time.Since(start)) / 1e6
	}
	sr.Online = s.Authed - s.Dropped
	// The interval asked (-hb); a server granting a longer one fails the
	// check, which is why the bench asks for the room's heartbeat_min.
	hb := o.Load.HB
	if hb <= 0 {
		hb = 30
	}
	wait := time.Duration(hb)*time.Second + 3*time.Second
	sr.PongWaitSec = wait.Seconds()
	bar := newBar(int64(wait/time.Second), "heartbeat check (s)", stderr, o.Quiet)
	end := time.Now().Add(wait)
	for time.Now().Before(end) && ctx.Err() == nil {
		settle(ctx, time.Second)
		_ = bar.Add(1)
		if now := f.Stats(); now.Pongs-s.Pongs >= sr.Online {
			break
		}
	}
	_ = bar.Finish()
	after := f.Stats()
	sr.Pongs = after.Pongs - s.Pongs
	sr.DroppedAfter = after.Dropped
	if !sr.Ready && t.Admin != "" {
		return fmt.Errorf("%w: /readyz failed after the storm", ErrTarget)
	}
	return nil
}

// labelledValue sums the samples of name whose labels contain label.
func labelledValue(text []byte, name, label string) float64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, label) {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		sum += v
	}
	return sum
}
