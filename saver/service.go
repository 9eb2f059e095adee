package saver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Config configures a Service.
type Config struct {
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// ExpireEvery is the period of the expiry sweep (config Saver.ExpireEvery). Default 1m.
	ExpireEvery time.Duration
	// LoadLimit is the most messages one Load returns. Default DefaultLoadLimit.
	LoadLimit int
}

// gaugeEvery is how often the pending gauge is refreshed from Stats.
const gaugeEvery = 10 * time.Second

// Service is the saver as the other services see it: a Store plus metrics,
// logging and the goroutine that sweeps expired messages. Errors are returned
// to the caller, who logs them; only the sweeper, which has no caller, logs
// its own.
type Service struct {
	cfg Config
	st  Store
	log *slog.Logger

	closed atomic.Bool

	mu      sync.Mutex // guards started and stop
	started bool
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// New checks cfg and wraps st; it does no I/O. The Service owns st from now
// on: Shutdown closes it.
func New(cfg Config, st Store) (*Service, error) {
	if st == nil {
		return nil, fmt.Errorf("saver: nil store: %w", ErrInvalid)
	}
	if cfg.ExpireEvery < 0 || cfg.LoadLimit < 0 {
		return nil, fmt.Errorf("saver: negative expire_every or load_limit: %w", ErrInvalid)
	}
	if cfg.ExpireEvery == 0 {
		cfg.ExpireEvery = time.Minute
	}
	if cfg.LoadLimit == 0 {
		cfg.LoadLimit = DefaultLoadLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, st: st, log: cfg.Logger}, nil
}

// Start begins the expiry sweeper. The sweeper runs until Shutdown, not until
// ctx ends. Calling Start again does nothing.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return fmt.Errorf("saver start: %w", ErrClosed)
	}
	if s.started {
		return nil
	}
	s.started = true
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	s.wg.Go(func() { s.sweeper(run) })
	s.log.Info("saver started", "expire_every", s.cfg.ExpireEvery, "load_limit", s.cfg.LoadLimit)
	return nil
}

// Shutdown stops the sweeper, waits for it (or for ctx) and closes the store.
// Calls after it fail with ErrClosed. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	if s.stop != nil {
		s.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("saver shutdown: %w", ctx.Err())
	}
	if cerr := s.st.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	s.log.Info("saver stopped")
	return err
}

func (s *Service) sweeper(ctx context.Context) {
	expire := time.NewTicker(s.cfg.ExpireEvery)
	defer expire.Stop()
	gauge := time.NewTicker(min(s.cfg.ExpireEvery, gaugeEvery))
	defer gauge.Stop()
	s.refreshGauge(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("saver sweep failed", "err", err)
			}
		case <-gauge.C:
			s.refreshGauge(ctx)
		}
	}
}

func (s *Service) refreshGauge(ctx context.Context) {
	if st, err := s.Stats(ctx); err == nil {
		metricPending.Set(float64(st.Pending))
		metricParked.Set(float64(st.Parked))
	}
}

// done records the outcome of one store call.
func done(op string, start time.Time, err error) {
	m := ops[op]
	m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.Inc()
	}
}

func (s *Service) check(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("saver %s: %w", op, ErrClosed)
	}
	return nil
}

// Save stores msg for every uid before returning (see Store.Save).
func (s *Service) Save(ctx context.Context, msg push.Message, uids []string) error {
	if err := s.check(opSave); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.Save(ctx, msg, uids)
	done(opSave, start, err)
	if err == nil {
		metricSaved.Add(float64(len(uids)))
	}
	return err
}

// SaveBroadcast stores a broadcast message once for msg.App (see Store.SaveBroadcast).
func (s *Service) SaveBroadcast(ctx context.Context, msg push.Message) error {
	if err := s.check(opSaveBroadcast); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.SaveBroadcast(ctx, msg)
	done(opSaveBroadcast, start, err)
	if err == nil {
		metricBroadcasts.Inc()
	}
	return err
}

// Load returns up to Config.LoadLimit of the uid's pending messages of apps,
// unicast and broadcast merged in ID order (see Store.Load).
func (s *Service) Load(ctx context.Context, uid string, apps []uint32) ([]push.Message, error) {
	if err := s.check(opLoad); err != nil {
		return nil, err
	}
	start := time.Now()
	msgs, err := s.st.Load(ctx, uid, apps, s.cfg.LoadLimit)
	done(opLoad, start, err)
	metricLoaded.Add(float64(len(msgs)))
	return msgs, err
}

// Ack deletes (unicast) or marks delivered (broadcast) the uid's messages ids
// of apps and returns how many took effect; ids of other apps are ignored
// like unknown ones (see Store.Ack).
func (s *Service) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	if err := s.check(opAck); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := s.st.Ack(ctx, uid, apps, ids)
	done(opAck, start, err)
	metricAcked.Add(float64(n))
	return n, err
}

// AckMany applies many ACKs in one call, as Ack would one by one, and
// returns the total count that took effect (see Store.AckMany: the group
// commit of ACKs).
func (s *Service) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	if err := s.check(opAckMany); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := s.st.AckMany(ctx, acks)
	done(opAckMany, start, err)
	metricAcked.Add(float64(n))
	return n, err
}

// Checkpoint makes the broadcast cursors of ended sessions durable (see
// Store.Checkpoint).
func (s *Service) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	if err := s.check(opCheckpoint); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.Checkpoint(ctx, ends)
	done(opCheckpoint, start, err)
	return err
}

// Stats describes the store (see Store.Stats).
func (s *Service) Stats(ctx context.Context) (push.StoreStats, error) {
	if err := s.check(opStats); err != nil {
		return push.StoreStats{}, err
	}
	st, err := s.st.Stats(ctx)
	if err != nil {
		ops[opStats].errors.Inc()
	}
	return st, err
}

// UserStats describes one uid's inbox for app (0: every app): entries
// stored (parked included) and entries parked (see Store.UserStats).
func (s *Service) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	if err := s.check(opUserStats); err != nil {
		return 0, 0, err
	}
	pending, parked, err = s.st.UserStats(ctx, uid, app)
	if err != nil {
		ops[opUserStats].errors.Inc()
	}
	return pending, parked, err
}

// Sweep drops what has expired now, as the sweeper does every ExpireEvery,
// and returns how much it dropped.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	if err := s.check(opExpire); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := s.st.Expire(ctx, start)
	done(opExpire, start, err)
	metricExpired.Add(float64(n))
	if n > 0 {
		s.log.Debug("saver swept", "expired", n, "took", time.Since(start))
	}
	s.refreshGauge(ctx)
	return n, err
}

// OpenStatus creates the delivery status record of an accepted push (see
// Store.OpenStatus).
func (s *Service) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	if err := s.check(opOpenStatus); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.OpenStatus(ctx, st, uids)
	done(opOpenStatus, start, err)
	return err
}

// AddSent records a batch of writes to sockets (see Store.AddSent).
func (s *Service) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	if err := s.check(opAddSent); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.AddSent(ctx, deltas)
	done(opAddSent, start, err)
	return err
}

// Status returns the delivery status of app's message msgID; false when
// unknown, past its TTL or another app's (see Store.Status).
func (s *Service) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	if err := s.check(opStatus); err != nil {
		return push.MessageStatus{}, false, err
	}
	start := time.Now()
	st, ok, err := s.st.Status(ctx, app, msgID)
	done(opStatus, start, err)
	return st, ok, err
}

// UserState returns uid's state of app's message msgID, a push.State
// constant (see Store.UserState).
func (s *Service) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	if err := s.check(opUserState); err != nil {
		return "", err
	}
	start := time.Now()
	state, err := s.st.UserState(ctx, app, msgID, uid)
	done(opUserState, start, err)
	return state, err
}

// Enqueue journals a push waiting in a center's send queue (see
// Store.Enqueue).
func (s *Service) Enqueue(ctx context.Context, q push.QueuedPush) error {
	if err := s.check(opEnqueue); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.Enqueue(ctx, q)
	done(opEnqueue, start, err)
	return err
}

// Dequeue forgets journaled pushes (see Store.Dequeue).
func (s *Service) Dequeue(ctx context.Context, ids []uint64) error {
	if err := s.check(opDequeue); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.Dequeue(ctx, ids)
	done(opDequeue, start, err)
	return err
}

// Queued lists owner's journaled pushes in id order (see Store.Queued).
func (s *Service) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	if err := s.check(opQueued); err != nil {
		return nil, err
	}
	start := time.Now()
	qs, err := s.st.Queued(ctx, owner, limit)
	done(opQueued, start, err)
	return qs, err
}

// QueueOwners lists the owners of journaled pushes (see Store.QueueOwners).
func (s *Service) QueueOwners(ctx context.Context) ([]string, error) {
	if err := s.check(opQueueOwners); err != nil {
		return nil, err
	}
	start := time.Now()
	owners, err := s.st.QueueOwners(ctx)
	done(opQueueOwners, start, err)
	return owners, err
}

// Claim moves every journaled push of from to to (see Store.Claim).
func (s *Service) Claim(ctx context.Context, from, to string) (int, error) {
	if err := s.check(opClaim); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := s.st.Claim(ctx, from, to)
	done(opClaim, start, err)
	return n, err
}

// Operation names of the job board (the op label values), registered
// beside metrics.go's.
const (
	opCreateJob   = "create_job"
	opJob         = "job"
	opRunningJobs = "running_jobs"
	opClaimTask   = "claim_task"
	opUpdateTask  = "update_task"
	opFinishJob   = "finish_job"
)

// opCheckpoint and opAckMany are Checkpoint's and AckMany's op labels,
// registered with the job board's.
const (
	opCheckpoint = "checkpoint"
	opAckMany    = "ack_many"
)

func init() {
	for _, op := range []string{opCreateJob, opJob, opRunningJobs, opClaimTask, opUpdateTask, opFinishJob, opCheckpoint, opAckMany} {
		ops[op] = opMetrics{errors: metricErrors.WithLabelValues(op), duration: metricDuration.WithLabelValues(op)}
	}
}

// CreateJob records a broadcast job with one pending task per room (see
// JobBoard.CreateJob).
func (s *Service) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	if err := s.check(opCreateJob); err != nil {
		return err
	}
	start := time.Now()
	err := s.st.CreateJob(ctx, j, rooms)
	done(opCreateJob, start, err)
	return err
}

// Job returns a job and its tasks; false when unknown (see JobBoard.Job).
func (s *Service) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	if err := s.check(opJob); err != nil {
		return push.Job{}, nil, false, err
	}
	start := time.Now()
	j, ts, ok, err := s.st.Job(ctx, id)
	done(opJob, start, err)
	return j, ts, ok, err
}

// RunningJobs lists the running jobs' ids (see JobBoard.RunningJobs).
func (s *Service) RunningJobs(ctx context.Context) ([]uint64, error) {
	if err := s.check(opRunningJobs); err != nil {
		return nil, err
	}
	start := time.Now()
	ids, err := s.st.RunningJobs(ctx)
	done(opRunningJobs, start, err)
	return ids, err
}

// ClaimTask gives owner a job's task under a lease (see JobBoard.ClaimTask).
func (s *Service) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	if err := s.check(opClaimTask); err != nil {
		return false, err
	}
	start := time.Now()
	ok, err := s.st.ClaimTask(ctx, id, room, owner, now, lease)
	done(opClaimTask, start, err)
	return ok, err
}

// UpdateTask writes the progress of a task its owner holds (see
// JobBoard.UpdateTask).
func (s *Service) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	if err := s.check(opUpdateTask); err != nil {
		return false, err
	}
	start := time.Now()
	ok, err := s.st.UpdateTask(ctx, id, t, now, lease)
	done(opUpdateTask, start, err)
	return ok, err
}

// FinishJob sets a running job's final state (see JobBoard.FinishJob).
func (s *Service) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	if err := s.check(opFinishJob); err != nil {
		return false, err
	}
	start := time.Now()
	ok, err := s.st.FinishJob(ctx, id, state, errMsg, now, keep)
	done(opFinishJob, start, err)
	if ok {
		s.log.Debug("saver: job finished", "id", id, "state", state)
	}
	return ok, err
}
