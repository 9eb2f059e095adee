package center

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/lcpush/lcpush/pkg/push"
)

// errScanStalled means the registry returned the cursor it was given.
var errScanStalled = errors.New("center: registry scan made no progress")

// scanAttempts is how many times one page is tried before the task fails.
const scanAttempts = 3

type broadcastRequest struct {
	messageFields
	// Rate caps deliveries per second; it can lower the app's
	// broadcast_rate, not raise it.
	Rate *float64 `json:"rate"`
}

type broadcastAnswer struct {
	JobID string `json:"job_id"`
	MsgID string `json:"msg_id"`
}

// handleBroadcast serves POST /v1/apps/{app}/broadcast: store the message
// once (QoS 1) and start a job that pushes it to every online user.
func (s *Service) handleBroadcast(w http.ResponseWriter, r *http.Request) *apiError {
	cfg, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	var req broadcastRequest
	if e := decodeBody(w, r, &req, false); e != nil {
		return e
	}
	now := time.Now()
	msg, e := req.message(cfg, app, now)
	if e != nil {
		return e
	}
	msg.Broadcast = true
	pace := app.BroadcastRate
	if req.Rate != nil {
		if !(*req.Rate > 0) {
			return badRequest("rate must be a positive number of deliveries per second")
		}
		pace = min(pace, *req.Rate)
	}
	select {
	case s.slots <- struct{}{}:
	default:
		rateLimitedTotal.Inc()
		jobEvents.WithLabelValues("refused").Inc()
		return rateLimited("too many broadcast jobs running, retry later", time.Second)
	}
	msg.ID = s.ids.Next()
	job := &Job{
		ID:      s.ids.Next(),
		App:     app.ID,
		Msg:     msg,
		Rate:    pace,
		Tasks:   []*Task{{Shard: -1}},
		started: now.Unix(),
		state:   JobRunning,
	}
	if msg.QoS == push.QoS1 {
		ctx, cancel := s.callCtx(r.Context())
		err := s.store.SaveBroadcast(ctx, msg)
		cancel()
		if err != nil {
			<-s.slots
			depErrors.WithLabelValues("save_broadcast").Inc()
			s.log.Warn("center broadcast: save", "app", app.ID, "msg", msg.ID, "err", err)
			return unavailable("message store unavailable")
		}
		job.Stored = true
	}
	s.jobs.add(job)
	if !s.startJob(func() { s.runJob(job) }) {
		<-s.slots
		job.finish(time.Now().Unix(), push.ErrClosed)
		return unavailable("center is shutting down")
	}
	s.apiBroadcasts.Add(1)
	writeJSON(w, http.StatusAccepted, broadcastAnswer{
		JobID: strconv.FormatUint(job.ID, 10),
		MsgID: strconv.FormatUint(msg.ID, 10),
	})
	return nil
}

// runJob runs the tasks of job one after the other and records the outcome.
func (s *Service) runJob(job *Job) {
	defer func() { <-s.slots }()
	jobsRunning.Inc()
	defer jobsRunning.Dec()
	jobEvents.WithLabelValues("started").Inc()
	var err error
	for _, t := range job.Tasks {
		if err = s.runTask(s.jobCtx, job, t); err != nil {
			break
		}
	}
	job.finish(time.Now().Unix(), err)
	if err != nil {
		jobEvents.WithLabelValues("failed").Inc()
		s.log.Warn("center broadcast job failed", "job", job.ID, "app", job.App, "err", err)
		return
	}
	jobEvents.WithLabelValues("done").Inc()
}

// runTask pages through the app's sessions and pushes each page to its
// rooms, paced to job.Rate deliveries per second. Room errors are counted and
// skipped (a stored message still reaches those users at next login); a
// registry that keeps failing ends the task.
func (s *Service) runTask(ctx context.Context, job *Job, t *Task) error {
	batch := max(s.conf.Load().Center.BroadcastBatch, 1)
	// The burst is also the largest room call, so slow rates go out in
	// small pieces instead of a page at once.
	burst := batch
	if job.Rate < float64(batch) {
		burst = max(1, int(job.Rate))
	}
	pace := rate.NewLimiter(rate.Limit(job.Rate), burst)
	var cursor uint64
	for {
		sessions, next, err := s.scan(ctx, job.App, cursor, batch)
		if err != nil {
			return err
		}
		groups := groupByRoom(sessions, job.App)
		for _, g := range groups {
			t.targets.Add(int64(len(g.targets)))
		}
		for _, g := range groups {
			for len(g.targets) > 0 {
				n := min(len(g.targets), burst)
				if err := pace.WaitN(ctx, n); err != nil {
					return fmt.Errorf("center job %d: %w", job.ID, err)
				}
				chunk := []roomTargets{{room: g.room, targets: g.targets[:n]}}
				cctx, cancel := s.callCtx(ctx)
				t.pushed.Add(int64(s.deliver(cctx, job.Msg, chunk, "broadcast")))
				cancel()
				if ctx.Err() != nil { // stopped while the room call was cut short
					return fmt.Errorf("center job %d: %w", job.ID, ctx.Err())
				}
				g.targets = g.targets[n:]
			}
		}
		if next == 0 {
			return nil
		}
		if next == cursor {
			return errScanStalled
		}
		cursor = next
	}
}

// scan reads one page, retrying a failing registry a few times.
func (s *Service) scan(ctx context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := s.callCtx(ctx)
		sessions, next, err := s.reg.Scan(cctx, app, cursor, limit)
		cancel()
		if err == nil {
			return sessions, next, nil
		}
		depErrors.WithLabelValues("scan").Inc()
		if attempt == scanAttempts || ctx.Err() != nil {
			return nil, 0, fmt.Errorf("center scan app %d at %d: %w", app, cursor, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, 0, fmt.Errorf("center scan app %d: %w", app, ctx.Err())
		case <-t.C:
		}
		delay *= 2
	}
}

// handleJob serves GET /v1/jobs/{job}: the admin key or the api key of the
// job's app.
func (s *Service) handleJob(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := authenticate(s.conf.Load(), r)
	if e != nil {
		return e
	}
	id, err := strconv.ParseUint(r.PathValue("job"), 10, 64)
	if err != nil {
		return notFound("no such job")
	}
	job, ok := s.jobs.get(id)
	if !ok {
		return notFound("no such job")
	}
	if !c.mayAct(job.App) {
		return forbidden("this key cannot read jobs of app " + strconv.FormatUint(uint64(job.App), 10))
	}
	writeJSON(w, http.StatusOK, job.status())
	return nil
}
