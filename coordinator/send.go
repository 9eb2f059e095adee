package coordinator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
)

// SignatureHeader carries hex(HMAC-SHA256(app secret, body)) on every callback.
const SignatureHeader = "X-Push-Signature"

// maxBackoff caps the delay between two attempts of one callback.
const maxBackoff = time.Minute

// upstreamBody is the JSON of an upstream callback.
type upstreamBody struct {
	App  uint32 `json:"app"`
	UID  string `json:"uid"`
	Type uint16 `json:"type"`
	Data []byte `json:"data"` // base64 (standard, padded)
	TS   int64  `json:"ts"`   // unix milliseconds
}

// statusBody is the JSON of an online/offline callback.
type statusBody struct {
	App   uint32 `json:"app"`
	UID   string `json:"uid"`
	Event string `json:"event"`
	Room  string `json:"room"`
	TS    int64  `json:"ts"` // unix milliseconds
}

// errDropped marks a failure that retrying cannot fix.
var errDropped = errors.New("coordinator: callback no longer wanted")

// work is one resident worker: take an event, send it, report back.
func (s *Service) work(ctx context.Context) {
	defer s.workers.Done()
	for {
		ev := s.q.next()
		if ev == nil {
			return
		}
		s.q.done(ev, s.deliver(ctx, ev))
	}
}

// deliver sends ev once and reports whether it should be retried later
// (after setting ev.notBefore). Drops are counted here.
func (s *Service) deliver(ctx context.Context, ev *event) (retry bool) {
	cfg := s.conf.Load()
	app := appLabel(ev.app)
	start := time.Now()
	err := s.post(ctx, cfg, ev)
	latency.WithLabelValues(ev.kind.String()).Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		callbacks.WithLabelValues(app, ev.kind.String(), "ok").Inc()
		return false
	case errors.Is(err, errDropped):
		drops.WithLabelValues(app, "no_callback").Inc()
		return false
	}
	callbacks.WithLabelValues(app, ev.kind.String(), "error").Inc()
	ev.attempt++
	if ctx.Err() != nil { // aborted at the end of a shutdown drain
		drops.WithLabelValues(app, "shutdown").Inc()
		return false
	}
	if ev.attempt > cfg.Coordinator.Retries {
		drops.WithLabelValues(app, "retries").Inc()
		s.log.Warn("callback dropped", "app", ev.app, "kind", ev.kind.String(), "attempts", ev.attempt, "err", err)
		return false
	}
	ev.notBefore = time.Now().Add(backoff(cfg.Coordinator.RetryBaseDelay, ev.attempt))
	s.log.Debug("callback failed, will retry", "app", ev.app, "attempt", ev.attempt, "err", err)
	return true
}

// backoff is base * 2^(attempt-1), capped, with jitter in [d/2, 3d/2) so
// that callbacks failing together do not retry together.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d)
}

// post builds, signs and sends one callback with the app's current URL and
// secret. It returns errDropped when the app no longer wants it.
func (s *Service) post(ctx context.Context, cfg *config.Config, ev *event) error {
	app, ok := cfg.App(ev.app)
	if !ok || app.CallbackURL == "" || (ev.kind == kindStatus && !app.StatusEvents) {
		return errDropped
	}
	body, err := encode(ev)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", errDropped, err)
	}
	if t := cfg.Coordinator.Timeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, app.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: request: %v", errDropped, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lcpush-coordinator")
	req.Header.Set(SignatureHeader, Sign([]byte(app.Secret), body))
	req.Header.Set("X-Push-Kind", ev.kind.String())
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator callback app %d: %w", ev.app, err)
	}
	// Read a little of the body so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("coordinator callback app %d: status %d", ev.app, resp.StatusCode)
	}
	return nil
}

func encode(ev *event) ([]byte, error) {
	if ev.kind == kindStatus {
		st := ev.st
		return json.Marshal(statusBody{App: st.App, UID: st.UID, Event: st.Event, Room: st.Room, TS: st.TS})
	}
	up := ev.up
	data := up.Data
	if data == nil {
		data = []byte{} // "data":"" rather than null
	}
	return json.Marshal(upstreamBody{App: up.App, UID: up.UID, Type: up.Type, Data: data, TS: up.TS})
}

// Sign returns hex(HMAC-SHA256(secret, body)), the X-Push-Signature value.
// Products verify it with a constant-time compare.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func appLabel(app uint32) string { return strconv.FormatUint(uint64(app), 10) }
