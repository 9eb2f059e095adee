package center

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// Job states of GET /v1/jobs/{id}.
const (
	JobRunning = push.JobRunning
	JobDone    = push.JobDone
	JobFailed  = push.JobFailed
)

// Broadcast jobs live in the store every center shares (saver.JobBoard,
// docs/cluster.md "Broadcast jobs"), not in the memory of the center that
// accepted them: a job is one message and one task per room (each room
// walks its own connections, so a broadcast needs no register scan). Every
// center runs a scanner that claims the tasks it may take under a lease,
// runs them in a bounded worker set and renews the lease while the room
// call lasts; a center that dies stops renewing, its leases lapse and
// another center resumes its tasks. Resuming sends nothing twice: a room
// runs one task per message id and a second call joins it.

// jobTiming paces the job board; tests shorten it.
type jobTiming struct {
	scan   time.Duration // how often the scanner reads the board
	lease  time.Duration // a claim lapses this long after its last renewal
	renew  time.Duration // how often a holder renews its claims
	prefer time.Duration // how long a pending task waits for its preferred center
	grace  time.Duration // past the deadline, the time tasks get to report before the scanner fails the job
}

var defaultJobTiming = jobTiming{
	scan:   100 * time.Millisecond, // a job's tasks preferred by other centers start at most this much later
	lease:  6 * time.Second,
	renew:  2 * time.Second,
	prefer: 2 * time.Second,
	grace:  time.Second,
}

// maxRoomCalls bounds the room calls (tasks of every job) one center runs
// at the same time; appRoomCalls those of one app, so that an app whose
// room calls are slow leaves workers to the others. A room call is a
// goroutine waiting on the room; the room coalesces the broadcasts that
// run at once into one write per connection (room/linger.go), so a stream
// of broadcasts whose rates fit side by side runs up to appRoomCalls at a
// time (it was 8: at most 8 messages per write).
const (
	maxRoomCalls = 64
	appRoomCalls = max(1, maxRoomCalls/2)
)

// A room call that fails because the room could not be reached (restarting,
// draining, a broken connection) is made again after a backoff from
// roomRetryFirst up to roomRetryMax, until the job's deadline.
const (
	roomRetryFirst = 200 * time.Millisecond
	roomRetryMax   = 2 * time.Second
)

// defaultOwner is the member id of a center that has none (one process).
const defaultOwner = "center"

// jobStatus is the answer of GET /v1/jobs/{id}. stored is 1 when the message
// was stored for users who are offline (QoS 1: they get it at their next
// login within the ttl), else 0.
type jobStatus struct {
	JobID   string `json:"job_id"`
	MsgID   string `json:"msg_id"`
	App     uint32 `json:"app"`
	State   string `json:"state"`
	Targets int64  `json:"targets"`
	Pushed  int64  `json:"pushed"`
	Stored  int64  `json:"stored"`
	// Sent and Acked come from the message's delivery status: they move
	// while the job runs (the rooms report their writes every tick).
	Sent     int64        `json:"sent"`
	Acked    int64        `json:"acked"`
	Started  int64        `json:"started"`
	Finished int64        `json:"finished,omitempty"`
	Deadline int64        `json:"deadline,omitempty"` // unix: failed if still running then
	Error    string       `json:"error,omitempty"`
	Tasks    []taskStatus `json:"tasks"`
}

// taskStatus is one room's part of a job answer.
type taskStatus struct {
	Room    string `json:"room"`
	State   string `json:"state"`
	Owner   string `json:"owner,omitempty"`
	Targets int64  `json:"targets"`
	Pushed  int64  `json:"pushed"`
	Error   string `json:"error,omitempty"`
}

// jobAnswer builds the answer from the board's record and the message's
// delivery status (ds, when found): the rooms count targets and writes in
// the status record as they go, while a task's own counts arrive when its
// room call returns, so the larger of the two is the progress.
func jobAnswer(job push.Job, tasks []push.JobTask, ds *push.MessageStatus) jobStatus {
	st := jobStatus{
		JobID:    fmt.Sprint(job.ID),
		MsgID:    fmt.Sprint(job.Msg.ID),
		App:      job.App,
		State:    job.State,
		Started:  job.Started / 1000,
		Finished: job.Finished / 1000,
		Deadline: job.Deadline / 1000,
		Error:    job.Error,
		Tasks:    make([]taskStatus, len(tasks)),
	}
	if job.Stored {
		st.Stored = 1
	}
	for i, t := range tasks {
		st.Targets += t.Targets
		st.Pushed += t.Pushed
		st.Tasks[i] = taskStatus{Room: t.Room, State: t.State, Owner: t.Owner, Targets: t.Targets, Pushed: t.Pushed, Error: t.Error}
	}
	if ds != nil {
		st.Sent, st.Acked = ds.Sent, ds.Acked
		st.Targets = max(st.Targets, ds.Targets)
		st.Pushed = max(st.Pushed, ds.Sent)
	}
	return st
}

// jobSlots counts the broadcast jobs this center accepted that are still
// running, in total and per app, so that one app cannot take every slot: a
// job with a very low rate holds its slot for as long as its deadline
// allows.
type jobSlots struct {
	mu     sync.Mutex
	total  int
	perApp map[uint32]int
}

// Why acquire refused a slot (the reason label of the refusal metric).
const (
	slotsOfApp   = "app_slots"
	slotsOfTotal = "total_slots"
)

// acquire takes one slot of app when the app has fewer than maxPerApp jobs
// running and the center fewer than maxTotal. It returns the function that
// gives the slot back (it does so once, however often it is called), or
// the reason of the refusal.
func (js *jobSlots) acquire(app uint32, maxTotal, maxPerApp int) (release func(), refused string) {
	js.mu.Lock()
	defer js.mu.Unlock()
	switch {
	case js.perApp[app] >= maxPerApp:
		return nil, slotsOfApp
	case js.total >= maxTotal:
		return nil, slotsOfTotal
	}
	if js.perApp == nil {
		js.perApp = make(map[uint32]int)
	}
	js.total++
	js.perApp[app]++
	var once sync.Once
	return func() {
		once.Do(func() {
			js.mu.Lock()
			defer js.mu.Unlock()
			js.total--
			if js.perApp[app]--; js.perApp[app] <= 0 {
				delete(js.perApp, app)
			}
		})
	}, ""
}

// running returns the jobs holding a slot, in total and of app.
func (js *jobSlots) running(app uint32) (total, ofApp int) {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.total, js.perApp[app]
}

// taskKey names one task of one job.
type taskKey struct {
	job  uint64
	room string
}

// heldTask is a task this center claimed and runs. mu orders the
// renewals and the final write, so a renewal never lands after it.
type heldTask struct {
	key    taskKey
	cancel context.CancelFunc // ends the room call when the claim is lost
	mu     sync.Mutex
	final  bool // the worker writes (or wrote) the outcome: no more renewals
	lost   bool // another center holds it now: write nothing more
}

// jobRunner is a center's share of the job board's work.
type jobRunner struct {
	timing  jobTiming
	once    sync.Once
	kick    chan struct{} // wakes the scanner (a job was accepted)
	workers chan struct{} // one token per running task, maxRoomCalls in all

	mu     sync.Mutex
	held   map[taskKey]*heldTask
	perApp map[uint32]int    // running tasks per app, appRoomCalls at most
	slots  map[uint64]func() // the job slots of jobs this center accepted
}

func newJobRunner() *jobRunner {
	return &jobRunner{
		timing:  defaultJobTiming,
		kick:    make(chan struct{}, 1),
		workers: make(chan struct{}, maxRoomCalls),
		held:    make(map[taskKey]*heldTask),
		perApp:  make(map[uint32]int),
		slots:   make(map[uint64]func()),
	}
}

// owner is this center's member id on the board.
func (s *Service) owner() string {
	if s.id != "" {
		return s.id
	}
	return defaultOwner
}

// startScanner starts the scanner and the renewer once; both are owned by
// the service and end at Shutdown.
func (s *Service) startScanner() {
	s.runner.once.Do(func() {
		s.startJob(func() { s.scanJobs(s.jobCtx) })
		s.startJob(func() { s.renewTasks(s.jobCtx) })
	})
}

// kickScan has the scanner look at the board now.
func (s *Service) kickScan() {
	select {
	case s.runner.kick <- struct{}{}:
	default:
	}
}

// holdSlot keeps the slot of a job this center accepted until the job is
// final (releaseSlot).
func (s *Service) holdSlot(id uint64, release func()) {
	jobsRunning.Inc()
	var once sync.Once
	s.runner.mu.Lock()
	s.runner.slots[id] = func() {
		once.Do(func() {
			release()
			jobsRunning.Dec()
		})
	}
	s.runner.mu.Unlock()
}

func (s *Service) releaseSlot(id uint64) {
	s.runner.mu.Lock()
	release := s.runner.slots[id]
	delete(s.runner.slots, id)
	s.runner.mu.Unlock()
	if release != nil {
		release()
	}
}

// releaseAllSlots gives back every slot (Shutdown: the jobs stay on the
// board for the other centers, or for this one when it restarts).
func (s *Service) releaseAllSlots() {
	s.runner.mu.Lock()
	slots := s.runner.slots
	s.runner.slots = make(map[uint64]func())
	s.runner.mu.Unlock()
	for _, release := range slots {
		release()
	}
}

// scanJobs reads the board every timing.scan (or when kicked) until ctx
// ends.
func (s *Service) scanJobs(ctx context.Context) {
	t := time.NewTicker(s.runner.timing.scan)
	defer t.Stop()
	for {
		s.scanBoard(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.runner.kick:
		}
	}
}

// scanBoard gives back the slots of jobs that ended, then looks at every
// running job: it fails those past their deadline, finishes those whose
// tasks are all final and claims the tasks this center may take.
func (s *Service) scanBoard(ctx context.Context) {
	cctx, cancel := s.callCtx(ctx)
	ids, err := s.store.RunningJobs(cctx)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("running_jobs").Inc()
		s.log.Debug("center jobs: list running jobs", "err", err)
		return
	}
	s.releaseEnded(ctx, ids)
	live := s.liveCenterIDs()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		cctx, cancel := s.callCtx(ctx)
		job, tasks, ok, err := s.store.Job(cctx, id)
		cancel()
		if err != nil {
			depErrors.WithLabelValues("job").Inc()
			s.log.Debug("center jobs: read job", "job", id, "err", err)
			continue
		}
		if ok && job.State == push.JobRunning {
			s.scanJob(ctx, job, tasks, live)
		}
	}
}

// releaseEnded gives back the slots of accepted jobs that are no longer
// running (finished elsewhere, dropped) or past their deadline.
func (s *Service) releaseEnded(ctx context.Context, running []uint64) {
	s.runner.mu.Lock()
	var mine []uint64
	for id := range s.runner.slots {
		if !slices.Contains(running, id) {
			mine = append(mine, id)
		}
	}
	s.runner.mu.Unlock()
	// Read each one again: the listing may predate a job accepted since.
	for _, id := range mine {
		cctx, cancel := s.callCtx(ctx)
		job, _, ok, err := s.store.Job(cctx, id)
		cancel()
		if err == nil && (!ok || job.State != push.JobRunning || time.Now().UnixMilli() >= job.Deadline) {
			s.releaseSlot(id)
		}
	}
}

// liveCenterIDs returns the live centers' member ids, sorted (nil: this
// center alone).
func (s *Service) liveCenterIDs() []string {
	if s.centerIDs == nil {
		return nil
	}
	return slices.Sorted(slices.Values(s.centerIDs()))
}

// scanJob handles one running job.
func (s *Service) scanJob(ctx context.Context, job push.Job, tasks []push.JobTask, live []string) {
	now := time.Now()
	tm := s.runner.timing
	if now.UnixMilli() >= job.Deadline+tm.grace.Milliseconds() {
		s.finishJob(ctx, job.ID, push.JobFailed, fmt.Sprintf("job deadline %s passed (center.job_deadline or the message ttl)",
			time.UnixMilli(job.Deadline).UTC().Format(time.RFC3339)), true)
		return
	}
	if s.settle(ctx, job.ID, tasks) {
		return
	}
	if now.UnixMilli() >= job.Deadline {
		s.releaseSlot(job.ID) // whether or not the board takes the failure yet
		return
	}
	me := s.owner()
	for i, t := range tasks {
		var may bool
		switch t.State {
		case push.TaskPending:
			// Spread: its preferred center first, any center once it
			// waited timing.prefer (the preferred one may be busy or gone).
			may = len(live) == 0 || live[i%len(live)] == me || now.Sub(time.UnixMilli(job.Started)) >= tm.prefer
		case push.TaskRunning:
			// A lapsed lease (its holder died), or this center's own
			// claim from before a restart.
			may = now.UnixMilli() > t.Lease || (t.Owner == me && !s.holds(job.ID, t.Room))
		}
		if !may || s.holds(job.ID, t.Room) {
			continue
		}
		if !s.claim(ctx, job, t, len(tasks)) {
			return // no room for it now: leave the rest to a later scan or the other centers
		}
	}
}

func (s *Service) holds(id uint64, room string) bool {
	s.runner.mu.Lock()
	defer s.runner.mu.Unlock()
	return s.runner.held[taskKey{id, room}] != nil
}

// claim takes task t of job when this center has room for it and the board
// gives it to this center, and runs it. Room means a free worker, fewer than
// appRoomCalls tasks of the app running here, and the task's share of the
// job's rate fitting in the app's broadcast_rate beside its running tasks
// (bcastrate.go). Nothing is held while a task waits for room: it stays
// pending, so a slow or rate-bound app never holds the workers other apps'
// tasks need. claim returns false when there is no room.
func (s *Service) claim(ctx context.Context, job push.Job, t push.JobTask, tasks int) bool {
	share := job.Rate / float64(tasks)
	limit := job.Rate
	if app, ok := s.conf.Load().App(job.App); ok {
		limit = app.BroadcastRate
	}
	r := s.runner
	r.mu.Lock()
	if r.perApp[job.App] >= appRoomCalls {
		r.mu.Unlock()
		return false
	}
	r.perApp[job.App]++
	r.mu.Unlock()
	giveApp := func() {
		r.mu.Lock()
		if r.perApp[job.App]--; r.perApp[job.App] <= 0 {
			delete(r.perApp, job.App)
		}
		r.mu.Unlock()
	}
	releaseRate, ok := s.bcastRates.tryAcquire(job.App, share, limit)
	if !ok {
		giveApp()
		return false
	}
	select {
	case r.workers <- struct{}{}:
	default:
		releaseRate()
		giveApp()
		return false
	}
	free := func() {
		releaseRate()
		<-r.workers
		giveApp()
	}
	// The room call is bounded by the job's deadline (over RPC it travels
	// with the request) and by Shutdown.
	tctx, tcancel := context.WithDeadline(s.jobCtx, time.UnixMilli(job.Deadline))
	h := &heldTask{key: taskKey{job.ID, t.Room}, cancel: tcancel}
	// Held from here (a later scan skips it) but not claimed yet: h.mu is
	// held until the claim is written, so the renewer waits for it, and
	// finds it final when the board refused it.
	h.mu.Lock()
	r.mu.Lock()
	r.held[h.key] = h
	r.mu.Unlock()
	unclaimed := func() {
		h.final = true
		h.mu.Unlock()
		s.dropTask(h)
		free()
	}
	// The claim is written on the task's goroutine, not by the scanner: on
	// a store that fsyncs (bolt), the claims of one scan then share one
	// group commit instead of waiting for an fsync each, one after another.
	if !s.startJob(func() {
		cctx, cancel := s.callCtx(ctx)
		ok, err := s.store.ClaimTask(cctx, job.ID, t.Room, s.owner(), time.Now(), r.timing.lease)
		cancel()
		if err != nil || !ok {
			unclaimed()
			if err != nil {
				depErrors.WithLabelValues("claim_task").Inc()
				s.log.Debug("center jobs: claim", "job", job.ID, "room", t.Room, "err", err)
			}
			return
		}
		h.mu.Unlock()
		if t.State == push.TaskRunning {
			taskEvents.WithLabelValues("resumed").Inc()
			s.log.Info("center jobs: resuming a task", "job", job.ID, "room", t.Room, "from", t.Owner)
		} else {
			taskEvents.WithLabelValues("claimed").Inc()
		}
		s.runTask(tctx, job, h, share, free)
	}) {
		unclaimed() // shutting down: the lease lapses
	}
	return true
}

func (s *Service) dropTask(h *heldTask) {
	h.cancel()
	s.runner.mu.Lock()
	delete(s.runner.held, h.key)
	s.runner.mu.Unlock()
}

// runTask has one room deliver the job's message at share, the task's part
// of the job's rate (claim took it from the app's broadcast_rate), writes
// the outcome and gives back what claim took (free).
func (s *Service) runTask(ctx context.Context, job push.Job, h *heldTask, share float64, free func()) {
	defer func() {
		s.dropTask(h)
		free()
		// A worker and the app's rate are free again: the next pending
		// task starts now, not at the next scan tick (a stream of
		// broadcasts waited up to timing.scan between jobs).
		s.kickScan()
	}()
	n, err := s.broadcastRoom(ctx, job, h.key.room, share)
	deliveries.WithLabelValues("broadcast").Add(float64(n))
	if err != nil {
		roomErrors.WithLabelValues("broadcast").Inc()
		s.log.Warn("center: room broadcast", "room", h.key.room, "job", job.ID, "msg", job.Msg.ID, "reached", n, "err", err)
	}
	if s.jobCtx.Err() != nil {
		return // Shutdown: the lease lapses and another center resumes the task
	}
	t := push.JobTask{Room: h.key.room, Owner: s.owner(), State: push.TaskDone, Targets: int64(n), Pushed: int64(n)}
	if err != nil {
		// A room may give up a little before ctx ends, when its pacing
		// would pass the deadline: its error wraps DeadlineExceeded too.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%s: %w", deadlineText(job.Deadline), err)
		}
		t.State, t.Error = push.TaskFailed, err.Error()
	}
	h.mu.Lock()
	h.final = true
	if h.lost { // counted by the renewal that found it so
		h.mu.Unlock()
		return
	}
	cctx, cancel := s.callCtx(s.jobCtx)
	ok, werr := s.store.UpdateTask(cctx, job.ID, t, time.Now(), s.runner.timing.lease)
	cancel()
	h.mu.Unlock()
	switch {
	case werr != nil:
		// Not written: the lease lapses and the task runs again; the room
		// answers from its task of this message, sending nothing twice.
		depErrors.WithLabelValues("update_task").Inc()
		s.log.Warn("center jobs: task outcome not written", "job", job.ID, "room", t.Room, "err", werr)
		return
	case !ok:
		taskEvents.WithLabelValues("lost").Inc()
		return
	}
	taskEvents.WithLabelValues(t.State).Inc()
	// The center that ends the last task ends the job (the scanners do it
	// too, should this one die first).
	rctx, rcancel := s.callCtx(s.jobCtx)
	cur, tasksNow, found, err := s.store.Job(rctx, job.ID)
	rcancel()
	if err == nil && found && cur.State == push.JobRunning {
		s.settle(s.jobCtx, job.ID, tasksNow)
	}
}

// broadcastRoom calls the room until it answers, ctx ends (the job's
// deadline, Shutdown, a lost claim) or it fails otherwise than by being
// unreachable. A call again is safe: it joins the room's running task of
// the message, or gets the finished one's count, and sends nothing twice.
// The renewer keeps the lease meanwhile, since the task stays held.
func (s *Service) broadcastRoom(ctx context.Context, job push.Job, room string, share float64) (int, error) {
	wait := roomRetryFirst
	for {
		n, err := s.rooms.Broadcast(ctx, room, job.Msg, share)
		if err == nil || ctx.Err() != nil || !roomUnreachable(err) {
			return n, err
		}
		roomErrors.WithLabelValues("broadcast_retry").Inc()
		s.log.Debug("center jobs: room unreachable, calling again", "room", room, "job", job.ID, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return n, fmt.Errorf("room unreachable until the call ended (%w): %w", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, roomRetryMax)
	}
}

// roomUnreachable reports whether a room call failed before or without
// the room's answer: refused while the room drains or is full
// (push.ErrUnavailable), or a broken connection. Deadlines are not: the
// job's time is up.
func roomUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, push.ErrUnavailable) || errors.Is(err, rpc.ErrConnLost) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout()
}

func deadlineText(deadline int64) string {
	return "job deadline " + time.UnixMilli(deadline).UTC().Format(time.RFC3339) + " passed (center.job_deadline or the message ttl)"
}

// settle finishes the job when every task is final: done, or failed with
// the failed rooms' errors. It reports whether they all were.
func (s *Service) settle(ctx context.Context, id uint64, tasks []push.JobTask) bool {
	var errs []string
	deadline := false
	for _, t := range tasks {
		switch t.State {
		case push.TaskDone:
		case push.TaskFailed:
			errs = append(errs, "room "+t.Room+": "+t.Error)
			deadline = deadline || strings.HasPrefix(t.Error, "job deadline")
		default:
			return false
		}
	}
	if len(errs) > 0 {
		s.finishJob(ctx, id, push.JobFailed, strings.Join(errs, "; "), deadline)
	} else {
		s.finishJob(ctx, id, push.JobDone, "", false)
	}
	return true
}

// finishJob records the job's end (kept center.job_keep), counts it when
// this center's call was the one that ended it, and gives back its slot.
func (s *Service) finishJob(ctx context.Context, id uint64, state, errMsg string, deadline bool) {
	// The slot goes back before the end is written: a client that reads
	// the job final and posts the next one must find the slot free. Should
	// the write fail, the job stays running on the board, holding no slot,
	// until a scan settles it again (its tasks are all final).
	s.releaseSlot(id)
	cctx, cancel := s.callCtx(ctx)
	ok, err := s.store.FinishJob(cctx, id, state, errMsg, time.Now(), s.conf.Load().Center.JobKeep)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("finish_job").Inc()
		s.log.Warn("center jobs: finish", "job", id, "err", err)
		return
	}
	if !ok {
		return // another center finished it
	}
	jobsFinished.WithLabelValues(state).Inc()
	jobEvents.WithLabelValues(state).Inc()
	if deadline {
		jobEvents.WithLabelValues("deadline").Inc()
	}
	if state == push.JobFailed {
		s.log.Warn("center broadcast job failed", "job", id, "err", errMsg)
	}
}

// renewTasks renews the leases of the tasks this center runs every
// timing.renew, until ctx ends; a task whose claim another center took is
// stopped and writes nothing more.
func (s *Service) renewTasks(ctx context.Context) {
	t := time.NewTicker(s.runner.timing.renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.runner.mu.Lock()
		held := make([]*heldTask, 0, len(s.runner.held))
		for _, h := range s.runner.held {
			held = append(held, h)
		}
		s.runner.mu.Unlock()
		for _, h := range held {
			s.renew(ctx, h)
		}
	}
}

func (s *Service) renew(ctx context.Context, h *heldTask) {
	// A task whose claim or final outcome is being written holds h.mu for
	// that store call: skip it this round rather than wait behind it (up
	// to 64 of them), which could let the other tasks' leases lapse. A
	// lease outlives several renewal periods.
	if !h.mu.TryLock() {
		return
	}
	defer h.mu.Unlock()
	if h.final || h.lost {
		return
	}
	cctx, cancel := s.callCtx(ctx)
	// Targets and Pushed stay 0 until the room call returns: the moving
	// counts are in the message's delivery status record.
	ok, err := s.store.UpdateTask(cctx, h.key.job, push.JobTask{Room: h.key.room, Owner: s.owner(), State: push.TaskRunning},
		time.Now(), s.runner.timing.lease)
	cancel()
	switch {
	case err != nil:
		depErrors.WithLabelValues("update_task").Inc()
		s.log.Debug("center jobs: renew", "job", h.key.job, "room", h.key.room, "err", err)
	case !ok:
		h.lost = true
		h.cancel()
		taskEvents.WithLabelValues("lost").Inc()
		s.log.Warn("center jobs: task claim lost", "job", h.key.job, "room", h.key.room)
	}
}
