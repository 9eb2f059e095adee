// Package center owns the internal HTTP API that products and operators call
// (API.md): unicast and multicast pushes, broadcast jobs, online status, kicks,
// client tokens and statistics. It authenticates callers per app, paces
// pushes per app through send queues (sendqueue.go) and shares each app's
// broadcast rate among its jobs, stores QoS 1 messages before sending them (store-then-send),
// finds sessions in register and hands deliveries to the rooms that hold them.
//
// center talks to the other services only through the small interfaces
// declared here (Register, Saver, Rooms); the assembly wires either the
// services themselves or RPC clients.
package center

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/httpserve"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// ErrConfig wraps invalid configuration or missing dependencies.
var ErrConfig = errors.New("center: invalid config")

// Register is the session directory (register service).
type Register interface {
	// Get returns the session of uid that has app bound, if any (a uid has
	// at most one connection per app).
	Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error)
	// Lookup returns the sessions of those uids that are online, in no
	// particular order. When it could not answer for some uids (their
	// register is down or still being re-filled), it may return the
	// sessions it found with an error that has an Unanswered() []string
	// method naming the others (remote.LookupError); any other error means
	// no uid was answered. An unanswered uid is not offline.
	Lookup(ctx context.Context, uids []string) ([]push.Session, error)
	// Counts returns online totals.
	Counts(ctx context.Context) (push.Counts, error)
}

// Saver is the message store (saver service).
type Saver interface {
	// Save stores msg for every uid before it is sent (QoS 1).
	Save(ctx context.Context, msg push.Message, uids []string) error
	// SaveBroadcast stores a broadcast once; users get it at their next login
	// within its expiry.
	SaveBroadcast(ctx context.Context, msg push.Message) error
	// Stats describes what the store holds.
	Stats(ctx context.Context) (push.StoreStats, error)
	// UserStats counts the uid's stored messages of app (0: every app, for
	// operators only) and, of them, those parked after too many loads
	// without ACK.
	UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error)
	// OpenStatus creates the delivery status record of a message Save does
	// not store (QoS 0, broadcasts); Save opens its own.
	OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error
	// Status is app's message's delivery status (app 0: any app, admin);
	// false when unknown, past its TTL or another app's.
	Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error)
	// UserState is uid's state for the message (push.State*).
	UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error)
	// The send queue journal (journal.go): Enqueue records a queued push,
	// Dequeue forgets released ones, Queued lists an owner's, QueueOwners
	// the owners with entries, Claim moves a gone owner's to another.
	Enqueue(ctx context.Context, q push.QueuedPush) error
	Dequeue(ctx context.Context, ids []uint64) error
	Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error)
	QueueOwners(ctx context.Context) ([]string, error)
	Claim(ctx context.Context, from, to string) (int, error)
	// The broadcast job board every center shares (jobs.go; the contract
	// is saver.JobBoard's).
	CreateJob(ctx context.Context, j push.Job, rooms []string) error
	Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error)
	RunningJobs(ctx context.Context) ([]uint64, error)
	ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error)
	UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error)
	FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error)
}

// Rooms routes by room instance id (a directory of rooms, local or RPC).
type Rooms interface {
	// Push delivers msg to targets on room and returns how many of them are
	// connected there.
	Push(ctx context.Context, room string, msg push.Message, targets []push.Target) (int, error)
	// Kick takes apps from connID of uid on room, and closes it with KICK
	// when it has none left (apps empty: the whole connection); false when
	// it is no longer there.
	Kick(ctx context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error)
	// Broadcast has room deliver msg to all of its connections with msg.App
	// bound, at most perSec per second (<= 0: unpaced), and returns how many
	// got it. The room runs the delivery as its own task, one per msg.ID,
	// bounded by ctx's deadline (the job's: center.job_deadline or the
	// message's expiry, also across RPC; none: one hour): the call returns
	// when ctx ends (the count so far and ctx's error) but the task goes on.
	// A later call for the same msg.ID (a resumed sub-task) joins the
	// running task, or gets the finished one's count and error at once, and
	// writes nothing again; its perSec is ignored. With too many tasks
	// running the room refuses (push.ErrUnavailable).
	Broadcast(ctx context.Context, room string, msg push.Message, perSec float64) (int, error)
	// IDs lists the rooms of the platform (every room a broadcast must reach).
	IDs(ctx context.Context) ([]string, error)
}

// Config configures a center.
type Config struct {
	Addr   string // listen address, default ":8000"
	Logger *slog.Logger
	// ID is this center's member id, the owner of its send queue journal
	// (journal.go) and of its claims on broadcast tasks (jobs.go): stable
	// across restarts, so a restart re-queues what it held and takes its
	// tasks back at once. Empty: no journal, and "center" on the job board.
	ID string
	// CallTimeout bounds each call to a dependency (default 5s).
	CallTimeout time.Duration
	// KeepJobs is unused: finished jobs stay in the store for
	// center.job_keep (pkg/config). Kept for compatibility.
	KeepJobs int
	// LookupRetry is how long a QoS 1 push retries the lookup of recipients
	// the register could not answer for before queueing them (retry.go);
	// default DefaultLookupRetry, negative: queue at once.
	LookupRetry time.Duration
	// RetryQueue bounds the retry queue per app (messages); default
	// DefaultRetryQueue, negative: no queue (unanswered recipients get the
	// message at their next login or the room's redelivery).
	RetryQueue int
}

// Deps are the collaborators of a center.
type Deps struct {
	Config   *config.Holder
	IDs      *idgen.Generator
	Register Register
	Saver    Saver
	Rooms    Rooms
	// Centers, when set, is how many centers are live (membership): an
	// app's push_rate is for the whole cluster, so each center sends its
	// share (nil: this center alone).
	Centers func() int
	// CenterIDs, when set, lists the live centers' member ids: the lowest
	// takes over the send queue journal of a center that left (journal.go),
	// and broadcast tasks are spread over them (jobs.go).
	CenterIDs func() []string
}

// Service is the center API.
type Service struct {
	cfg       Config
	log       *slog.Logger
	conf      *config.Holder
	ids       *idgen.Generator
	reg       Register
	store     Saver
	rooms     Rooms
	handler   http.Handler
	sendq     *sendQueue      // per-app send queues (sendqueue.go, release.go)
	centers   func() int      // live centers sharing each app's rate (Deps.Centers)
	centerIDs func() []string // live centers' ids (Deps.CenterIDs)
	id        string          // Config.ID
	runner    *jobRunner      // this center's share of the broadcast jobs (jobs.go)
	retry     *retryQueue     // deliveries waiting for the register (retry.go)
	pushCtxs  pushCtxs        // the push handler's shared call deadline (pushbody.go)

	// journaled: the ids this center has in the journal of its own (its
	// queued pushes, from before their journal entry is written until it
	// is deleted): recoverJournal never queues them a second time
	// (journal.go). At most the send queues' bound.
	jmu       sync.Mutex
	journaled map[uint64]struct{}

	// api counters since start, for GET /v1/stats.
	apiPushes     atomic.Uint64
	apiBroadcasts atomic.Uint64

	// Broadcast jobs: slots bounds how many of the jobs this center
	// accepted run (config center.max_jobs and max_jobs_per_app, read at
	// each request), jobCtx ends the scanner and the tasks at Shutdown,
	// jobWG waits for them.
	slots      jobSlots
	bcastRates bcastRates // each app's broadcast_rate, shared by its running jobs
	// statusSlots bounds the QoS 0 status records written at once (messages.go).
	statusSlots chan struct{}
	jobCtx      context.Context
	jobCancel   context.CancelFunc
	jobWG       sync.WaitGroup

	srv *httpserve.Server

	mu     sync.Mutex
	closed bool // refuses new broadcast jobs
	once   sync.Once
}

// New validates cfg and deps and returns a center; it does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	switch {
	case deps.Config == nil || deps.Config.Load() == nil:
		return nil, fmt.Errorf("%w: nil config holder", ErrConfig)
	case deps.IDs == nil || deps.Register == nil || deps.Saver == nil || deps.Rooms == nil:
		return nil, fmt.Errorf("%w: missing dependency", ErrConfig)
	}
	if cfg.Addr == "" {
		cfg.Addr = ":8000"
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.LookupRetry == 0 {
		cfg.LookupRetry = DefaultLookupRetry
	}
	if cfg.RetryQueue == 0 {
		cfg.RetryQueue = DefaultRetryQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:         cfg,
		log:         cfg.Logger,
		conf:        deps.Config,
		ids:         deps.IDs,
		reg:         deps.Register,
		store:       deps.Saver,
		rooms:       deps.Rooms,
		runner:      newJobRunner(),
		retry:       newRetryQueue(),
		sendq:       newSendQueue(),
		centers:     deps.Centers,
		centerIDs:   deps.CenterIDs,
		id:          cfg.ID,
		statusSlots: make(chan struct{}, maxStatusOpens),
	}
	s.srv = &httpserve.Server{
		Name:              "center",
		Logger:            cfg.Logger,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	s.jobCtx, s.jobCancel = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API (tests may serve it with httptest). Broadcast jobs
// started through it belong to the service and end at Shutdown.
func (s *Service) Handler() http.Handler { return s.handler }

// Start listens on cfg.Addr and serves in a goroutine owned by the service.
func (s *Service) Start(ctx context.Context) error {
	if err := s.srv.Start(ctx, s.cfg.Addr, s.handler); err != nil {
		return err
	}
	s.log.Info("center listening", "addr", s.srv.Addr())
	s.startJob(func() { s.watchJournal(s.jobCtx) })
	s.startScanner() // resumes the jobs left on the board, and takes part in the others'
	return nil
}

// Addr returns the bound address once started, else the configured one.
func (s *Service) Addr() string {
	if a := s.srv.Addr(); a != "" {
		return a
	}
	return s.cfg.Addr
}

// Shutdown stops accepting requests and jobs, lets in-flight requests finish
// within ctx, stops the broadcast tasks this center runs (they stay on the
// job board: their leases lapse and another center resumes them, or this
// one when it restarts on the same store) and gives back its job slots,
// stops the retry queue's
// drainer and the send queues' scheduler and workers (what they held stays
// stored; QoS 0 pushes still queued are dropped), and waits for every
// goroutine. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		err = s.srv.Shutdown(ctx)
		s.jobCancel()
		s.jobWG.Wait()
		s.releaseAllSlots()
	})
	return err
}

// startJob runs f in a goroutine owned by the service, unless it is shut down.
func (s *Service) startJob(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.jobWG.Add(1)
	go func() {
		defer s.jobWG.Done()
		f()
	}()
	return true
}

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// callCtx bounds one dependency call.
func (s *Service) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}
