package center

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// slotRetry is the Retry-After of a broadcast refused for want of a slot.
const slotRetry = 5 * time.Second

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
		if e := checkRate(*req.Rate, cfg.Center.MinBroadcastRate); e != nil {
			jobRefused.WithLabelValues("rate").Inc()
			return e
		}
		pace = min(pace, *req.Rate)
	}
	release, refused := s.slots.acquire(app.ID, cfg.Center.MaxJobs, cfg.Center.MaxJobsPerApp)
	if release == nil {
		rateLimitedTotal.Inc()
		jobEvents.WithLabelValues("refused").Inc()
		jobRefused.WithLabelValues(refused).Inc()
		if refused == slotsOfApp {
			return rateLimited("app "+strconv.FormatUint(uint64(app.ID), 10)+" already runs its max_jobs_per_app of "+
				strconv.Itoa(cfg.Center.MaxJobsPerApp)+" broadcast jobs on this center, retry later", slotRetry)
		}
		return rateLimited("this center already runs its max_jobs of "+strconv.Itoa(cfg.Center.MaxJobs)+
			" broadcast jobs (all apps), retry later", slotRetry)
	}
	// The job ends at center.job_deadline, or at the message's expiry when
	// that comes first: past it, no user can get the message anyway.
	deadline := now.Add(cfg.Center.JobDeadline)
	if exp := time.Unix(msg.Expire, 0); exp.Before(deadline) {
		deadline = exp
	}
	msg.ID = s.ids.Next()
	job := &Job{
		ID:       s.ids.Next(),
		App:      app.ID,
		Msg:      msg,
		Rate:     pace,
		appRate:  app.BroadcastRate,
		Deadline: deadline,
		started:  now.Unix(),
		release:  release,
		state:    JobRunning,
	}
	if msg.Expire > 0 { // the delivery status record, before anything counts in it
		ctx, cancel := s.callCtx(r.Context())
		if err := s.store.OpenStatus(ctx, push.MessageStatus{MsgID: msg.ID, App: app.ID, Kind: push.KindBroadcast,
			Created: now.Unix(), Expires: msg.Expire}, nil); err != nil {
			statusSkipped.Inc()
			s.log.Debug("center broadcast: delivery status not opened", "msg", msg.ID, "err", err)
		}
		cancel()
	}
	if msg.QoS == push.QoS1 {
		ctx, cancel := s.callCtx(r.Context())
		err := s.store.SaveBroadcast(ctx, msg)
		cancel()
		if err != nil {
			release()
			depErrors.WithLabelValues("save_broadcast").Inc()
			s.log.Warn("center broadcast: save", "app", app.ID, "msg", msg.ID, "err", err)
			return unavailable("message store unavailable")
		}
		job.Stored = true
	}
	s.jobs.add(job)
	if !s.startJob(func() { s.runJob(job) }) {
		release()
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

// checkRate refuses a requested broadcast rate that is not a finite number
// of at least minRate (center.min_broadcast_rate) and above 0: a job paced
// slower would hold its slot until its deadline.
func checkRate(rate, minRate float64) *apiError {
	if math.IsNaN(rate) || math.IsInf(rate, 0) || !(rate > 0) || rate < minRate {
		return badRequest("rate must be a finite number of deliveries per second, above 0 and at least center.min_broadcast_rate (" +
			strconv.FormatFloat(minRate, 'g', -1, 64) + ")")
	}
	return nil
}

// maxRoomCalls bounds the rooms one job reaches at the same time.
const maxRoomCalls = 16

// runJob lists the rooms, gives each of them one task (the room delivers the
// message to its own connections of the app, paced to its share of
// job.Rate) and records the outcome: failed when the rooms cannot be listed
// or any room failed (a stored message still reaches those users at their
// next login). The job runs under a context that ends at job.Deadline (and
// at Shutdown): the room calls get that deadline (over RPC it travels with
// the request), so a job paced too slowly to finish in time is failed and
// its slot freed.
func (s *Service) runJob(job *Job) {
	defer job.release()
	jobsRunning.Inc()
	defer jobsRunning.Dec()
	jobEvents.WithLabelValues("started").Inc()
	ctx, cancel := context.WithDeadline(s.jobCtx, job.Deadline)
	defer cancel()
	err := s.runShared(ctx, job)
	// A room may give up a little before ctx ends, when its pacing would
	// pass the deadline: its error wraps context.DeadlineExceeded too.
	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)) {
		jobEvents.WithLabelValues("deadline").Inc()
		err = fmt.Errorf("job deadline %s passed (center.job_deadline or the message ttl): %w",
			job.Deadline.UTC().Format(time.RFC3339), err)
	}
	job.finish(time.Now().Unix(), err)
	if err != nil {
		jobEvents.WithLabelValues("failed").Inc()
		s.log.Warn("center broadcast job failed", "job", job.ID, "app", job.App, "err", err)
		return
	}
	jobEvents.WithLabelValues("done").Inc()
}

// runShared runs the job's tasks once its rate fits beside the app's other
// running jobs within the app's broadcast_rate (bcastrate.go).
func (s *Service) runShared(ctx context.Context, job *Job) error {
	release, err := s.bcastRates.acquire(ctx, job.App, job.Rate, job.appRate)
	if err != nil {
		return fmt.Errorf("center job %d: waited for the app's broadcast_rate, shared with its running jobs: %w", job.ID, err)
	}
	defer release()
	return s.runTasks(ctx, job)
}

func (s *Service) runTasks(ctx context.Context, job *Job) error {
	cctx, cancel := s.callCtx(ctx)
	rooms, err := s.rooms.IDs(cctx)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("room_list").Inc()
		return fmt.Errorf("center job %d: list rooms: %w", job.ID, err)
	}
	if len(rooms) == 0 {
		return nil
	}
	tasks := make([]*Task, len(rooms))
	for i, id := range rooms {
		tasks[i] = &Task{Room: id}
	}
	job.setTasks(tasks)
	share := job.Rate / float64(len(rooms))
	sem := make(chan struct{}, maxRoomCalls)
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, t := range tasks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done(): // deadline or Shutdown: start no more rooms
			errs[i] = fmt.Errorf("room %s not reached: %w", t.Room, ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.runTask(ctx, job, t, share)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runTask has one room deliver the job's message. The call lasts as long as
// the room's pacing needs, so it is bounded by the job (its deadline and
// Shutdown: ctx), not by the per-call timeout.
func (s *Service) runTask(ctx context.Context, job *Job, t *Task, perSec float64) error {
	n, err := s.rooms.Broadcast(ctx, t.Room, job.Msg, perSec)
	t.targets.Add(int64(n))
	t.pushed.Add(int64(n))
	deliveries.WithLabelValues("broadcast").Add(float64(n))
	if err != nil {
		roomErrors.WithLabelValues("broadcast").Inc()
		s.log.Warn("center: room broadcast", "room", t.Room, "job", job.ID, "msg", job.Msg.ID, "reached", n, "err", err)
		return fmt.Errorf("room %s: %w", t.Room, err)
	}
	return nil
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
	st := job.status()
	ctx, cancel := s.callCtx(r.Context())
	if ds, ok, err := s.store.Status(ctx, job.App, job.Msg.ID); err == nil && ok {
		st.Sent, st.Acked = ds.Sent, ds.Acked
	}
	cancel()
	writeJSON(w, http.StatusOK, st)
	return nil
}
