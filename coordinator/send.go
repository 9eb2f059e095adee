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

// work is one resident worker: take a batch, send it, report back.
func (s *Service) work(ctx context.Context) {
	defer s.workers.Done()
	for {
		b := s.q.next()
		if b == nil {
			return
		}
		s.q.done(b, s.deliver(ctx, b))
	}
}

// deliver sends b once and reports whether it should be retried later
// (after setting b.notBefore). Drops are counted here, one per event.
func (s *Service) deliver(ctx context.Context, b *batch) (retry bool) {
	cfg := s.conf.Load()
	app := appLabel(b.lane.key.app)
	kind := b.kind()
	start := time.Now()
	err := s.post(ctx, cfg, b)
	latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	n := float64(len(b.events)) // post may have taken some out
	switch {
	case err == nil:
		callbacks.WithLabelValues(app, kind, "ok").Inc()
		if b.batched {
			batches.WithLabelValues(app).Inc()
			batchEvents.WithLabelValues(app).Add(n)
			batchSize.Observe(n)
		}
		return false
	case errors.Is(err, errDropped):
		drops.WithLabelValues(app, "no_callback").Add(n)
		return false
	}
	callbacks.WithLabelValues(app, kind, "error").Inc()
	b.attempt++
	if ctx.Err() != nil { // aborted at the end of a shutdown drain
		drops.WithLabelValues(app, "shutdown").Add(n)
		return false
	}
	if b.attempt > cfg.Coordinator.Retries {
		drops.WithLabelValues(app, "retries").Add(n)
		s.log.Warn("callback dropped", "app", b.lane.key.app, "kind", kind, "events", len(b.events), "attempts", b.attempt, "err", err)
		return false
	}
	b.notBefore = time.Now().Add(backoff(cfg.Coordinator.RetryBaseDelay, b.attempt))
	s.log.Debug("callback failed, will retry", "app", b.lane.key.app, "attempt", b.attempt, "err", err)
	return true
}

// kind names what b carries: "batch" for a batched body, else the kind
// of its one event.
func (b *batch) kind() string {
	if b.batched || len(b.events) == 0 {
		return "batch"
	}
	return b.events[0].kind.String()
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

// post builds, signs and sends one POST for b with the app's current
// secret and URL (that of b's first event: its route, or callback_url).
// Status events of an app that no longer subscribes leave b (counted);
// errDropped means nothing in b is wanted any more.
func (s *Service) post(ctx context.Context, cfg *config.Config, b *batch) error {
	app, ok := cfg.App(b.lane.key.app)
	if !ok || app.CallbackURL == "" && len(app.CallbackRoutes) == 0 {
		return errDropped
	}
	if !app.StatusEvents {
		kept := b.events[:0]
		for _, ev := range b.events {
			if ev.kind == kindStatus {
				drops.WithLabelValues(appLabel(app.ID), "no_callback").Inc()
				continue
			}
			kept = append(kept, ev)
		}
		clear(b.events[len(kept):])
		b.events = kept
		if len(kept) == 0 {
			return errDropped // nothing left, all counted
		}
	}
	url := app.CallbackURL
	if ev := b.events[0]; ev.kind == kindUpstream {
		url = app.UpstreamURL(ev.up.Type)
	}
	if url == "" {
		return errDropped
	}
	body, err := encode(b)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", errDropped, err)
	}
	if t := cfg.Coordinator.Timeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: request: %v", errDropped, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lcpush-coordinator")
	req.Header.Set(SignatureHeader, Sign([]byte(app.Secret), body))
	req.Header.Set("X-Push-Kind", b.kind())
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator callback app %d: %w", app.ID, err)
	}
	// Read a little of the body so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("coordinator callback app %d: status %d", app.ID, resp.StatusCode)
	}
	return nil
}

// encode is the body of b: its one event as before, or
// {"events":[event, ...]} for a batched app.
func encode(b *batch) ([]byte, error) {
	if !b.batched && len(b.events) == 1 {
		return appendEvent(nil, b.events[0])
	}
	buf := make([]byte, 0, 16+len(b.events)*128)
	buf = append(buf, `{"events":[`...)
	for i, ev := range b.events {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendEvent(buf, ev); err != nil {
			return nil, err
		}
	}
	return append(buf, "]}"...), nil
}

// appendEvent appends the JSON object of one event to buf.
func appendEvent(buf []byte, ev *event) ([]byte, error) {
	var v any
	if ev.kind == kindStatus {
		st := ev.st
		v = statusBody{App: st.App, UID: st.UID, Event: st.Event, Room: st.Room, TS: st.TS}
	} else {
		up := ev.up
		data := up.Data
		if data == nil {
			data = []byte{} // "data":"" rather than null
		}
		v = upstreamBody{App: up.App, UID: up.UID, Type: up.Type, Data: data, TS: up.TS}
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if buf == nil {
		return j, nil
	}
	return append(buf, j...), nil
}

// Sign returns hex(HMAC-SHA256(secret, body)), the X-Push-Signature value.
// Products verify it with a constant-time compare.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func appLabel(app uint32) string { return strconv.FormatUint(uint64(app), 10) }
