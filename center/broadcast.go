package center

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
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
// once (QoS 1) and record a job on the board the centers share, one task
// per room, that the centers' scanners run (jobs.go). The job's slot stays
// with this center until the job is final or past its deadline.
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
	job := push.Job{
		ID:       s.ids.Next(),
		App:      app.ID,
		Msg:      msg,
		Rate:     pace,
		Owner:    s.owner(),
		Started:  now.UnixMilli(),
		Deadline: deadline.UnixMilli(),
		State:    push.JobRunning,
	}
	// The delivery status record is opened while the room list is read,
	// and is open before anything can count in it: a QoS 1 message is
	// stored (which counts "stored") only once it is, and the job (which
	// any center's scanner may claim and deliver at once, the rooms then
	// counting "sent") is recorded only once it is. A store ignores counts
	// of a message it has no record of, so the two writes cannot share a
	// commit: a batch may commit the job first.
	statusDone := s.openStatusAsync(r.Context(), msg, app.ID, now)
	defer func() { <-statusDone }() // every return waits: the goroutine is this call's
	if msg.QoS == push.QoS1 {
		<-statusDone
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
	if s.isClosed() {
		release()
		return unavailable("center is shutting down")
	}
	// One task per room: each room walks its own connections of the app.
	// A room list that fails still records the job, failed, as before.
	ctx, cancel := s.callCtx(r.Context())
	rooms, listErr := s.rooms.IDs(ctx)
	cancel()
	if listErr != nil {
		depErrors.WithLabelValues("room_list").Inc()
		rooms = nil
	}
	<-statusDone
	ctx, cancel = s.callCtx(r.Context())
	err := s.store.CreateJob(ctx, job, rooms)
	cancel()
	if err != nil {
		release()
		depErrors.WithLabelValues("create_job").Inc()
		s.log.Warn("center broadcast: record the job", "app", app.ID, "job", job.ID, "err", err)
		return unavailable("job store unavailable")
	}
	s.holdSlot(job.ID, release)
	jobEvents.WithLabelValues("started").Inc()
	switch {
	case listErr != nil:
		s.finishJob(r.Context(), job.ID, push.JobFailed, fmt.Sprintf("center job %d: list rooms: %v", job.ID, listErr), false)
	case len(rooms) == 0:
		s.finishJob(r.Context(), job.ID, push.JobDone, "", false)
	default:
		s.startScanner()
		s.kickScan()
	}
	s.apiBroadcasts.Add(1)
	writeJSON(w, http.StatusAccepted, broadcastAnswer{
		JobID: strconv.FormatUint(job.ID, 10),
		MsgID: strconv.FormatUint(msg.ID, 10),
	})
	return nil
}

// openStatusAsync opens msg's delivery status record (when it expires: a
// record needs an end) on a goroutine of the calling request and returns a
// channel closed when it is done; a failure is counted and logged, and the
// job runs without the record, as before.
func (s *Service) openStatusAsync(parent context.Context, msg push.Message, app uint32, now time.Time) <-chan struct{} {
	done := make(chan struct{})
	if msg.Expire <= 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ctx, cancel := s.callCtx(parent)
		defer cancel()
		if err := s.store.OpenStatus(ctx, push.MessageStatus{MsgID: msg.ID, App: app, Kind: push.KindBroadcast,
			Created: now.Unix(), Expires: msg.Expire}, nil); err != nil {
			statusSkipped.Inc()
			s.log.Debug("center broadcast: delivery status not opened", "msg", msg.ID, "err", err)
		}
	}()
	return done
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
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	job, tasks, ok, err := s.store.Job(ctx, id)
	if err != nil {
		depErrors.WithLabelValues("job").Inc()
		return unavailable("job store unavailable")
	}
	if !ok {
		return notFound("no such job")
	}
	if !c.mayAct(job.App) {
		return forbidden("this key cannot read jobs of app " + strconv.FormatUint(uint64(job.App), 10))
	}
	var ds *push.MessageStatus
	if st, ok, err := s.store.Status(ctx, job.App, job.Msg.ID); err == nil && ok {
		ds = &st
	}
	writeJSON(w, http.StatusOK, jobAnswer(job, tasks, ds))
	return nil
}
