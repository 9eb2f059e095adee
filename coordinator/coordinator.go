// Package coordinator owns the asynchronous coordination between rooms and
// products: it routes a kick to the room holding the old session (a second
// login of a uid replaces the first, wherever it is), and it delivers client
// upstream data and online/offline events to each app's callback URL.
//
// Callbacks are queued per app and URL (a lane: the app's callback_url, or
// the URL of a callback route for upstream types), bounded per app by its
// callback_queue so a slow product cannot sink the others, and sent by a
// fixed set of resident workers that serve the lanes round-robin, with at
// most PerAppWorkers busy on one app. An app with callback_batch > 1 gets up
// to that many events per POST ({"events":[...]}), or what gathered within
// callback_linger. Status events pass a per-app debounce window
// (status_debounce): an offline followed by an online of the same uid
// within it sends neither. A failed POST (network error or non-2xx) is
// retried whole with exponential backoff and jitter through a delay queue,
// so no worker sleeps; what cannot be delivered is dropped and counted by
// app and reason, one per event.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// Errors of the coordinator.
var (
	// ErrNoCallback means the app is unknown or has no callback_url.
	ErrNoCallback = errors.New("coordinator: app has no callback")
	// ErrConfig wraps invalid configuration.
	ErrConfig = errors.New("coordinator: invalid config")
)

// Rooms reaches room instances by id (a directory of rooms, local or RPC).
type Rooms interface {
	// Kick takes apps from the connection connID of uid on room, and closes
	// it with a KICK frame when it has none left (apps empty: the whole
	// connection); it reports false when that connection is no longer there.
	Kick(ctx context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error)
}

// Config configures a coordinator.
type Config struct {
	Logger *slog.Logger
	// Client posts callbacks. Default: a keep-alive client whose timeout is the
	// config's coordinator.timeout at New (each request is also bounded by the
	// current value, so a reload applies).
	Client *http.Client
	// Workers overrides coordinator.workers (read once, at New).
	Workers int
	// PerAppWorkers caps the workers busy on one app, so that a slow callback
	// URL cannot hold every worker. Default: half the workers, at least 1.
	PerAppWorkers int
	// DrainTimeout bounds how long Shutdown keeps sending queued callbacks
	// (default 2s; the Shutdown context may cut it shorter).
	DrainTimeout time.Duration
}

// Deps are the collaborators of a coordinator.
type Deps struct {
	Config *config.Holder
	Rooms  Rooms
}

// Service is the coordinator.
type Service struct {
	cfg    Config
	log    *slog.Logger
	conf   *config.Holder
	rooms  Rooms
	client *http.Client
	q      *queue

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc // aborts in-flight callbacks at the end of a drain
	workers sync.WaitGroup     // callback workers
	timer   sync.WaitGroup     // the delay-queue goroutine
	once    sync.Once
}

// New validates the configuration and returns a coordinator; it does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Config == nil || deps.Config.Load() == nil {
		return nil, fmt.Errorf("%w: nil config holder", ErrConfig)
	}
	if deps.Rooms == nil {
		return nil, fmt.Errorf("%w: nil Rooms", ErrConfig)
	}
	cc := deps.Config.Load().Coordinator
	if cfg.Workers == 0 {
		cfg.Workers = cc.Workers
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.PerAppWorkers <= 0 {
		cfg.PerAppWorkers = max(1, cfg.Workers/2)
	}
	cfg.PerAppWorkers = min(cfg.PerAppWorkers, cfg.Workers)
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			Timeout: cc.Timeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        4 * cfg.Workers,
				MaxIdleConnsPerHost: cfg.PerAppWorkers,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 5 * time.Second,
			},
			// A redirect of a POST is a misconfigured callback: count it as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Service{
		cfg:    cfg,
		log:    cfg.Logger,
		conf:   deps.Config,
		rooms:  deps.Rooms,
		client: client,
		q:      newQueue(cfg.PerAppWorkers),
	}, nil
}

// Start launches the workers and the delay queue. Callbacks accepted before
// Start wait in their queues.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("coordinator: already started")
	}
	if s.q.closed() {
		return push.ErrClosed
	}
	s.started = true
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.workers.Add(s.cfg.Workers)
	for i := 0; i < s.cfg.Workers; i++ {
		go s.work(wctx)
	}
	s.timer.Add(1)
	go func() {
		defer s.timer.Done()
		s.q.runDelays()
	}()
	return nil
}

// Shutdown refuses new callbacks, drops those waiting for a retry, sends
// what is queued for at most DrainTimeout (or until ctx ends), then aborts
// in-flight requests and waits for every goroutine. Whatever is left is
// dropped and counted. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		s.q.drain()
		s.mu.Lock()
		started, cancel := s.started, s.cancel
		s.mu.Unlock()
		if started {
			done := make(chan struct{})
			go func() { s.workers.Wait(); close(done) }()
			t := time.NewTimer(s.cfg.DrainTimeout)
			select {
			case <-done:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			s.q.stop()
			cancel()
			<-done
			s.timer.Wait()
		}
		s.q.stop()
		s.q.dropAll("shutdown")
	})
	return nil
}

// Kick takes old.Apps from old's connection on whatever room holds it, and
// closes the connection when it has no app left (old.Apps empty: the whole
// connection). Apps are tenants: a login through app A takes only A. A
// session that is already gone is not an error.
func (s *Service) Kick(ctx context.Context, old push.Session, code int, reason string) error {
	if old.Room == "" {
		return nil
	}
	kicked, err := s.rooms.Kick(ctx, old.Room, old.UID, old.ConnID, old.Apps, code, reason)
	switch {
	case err != nil:
		kicks.WithLabelValues("error").Inc()
		return fmt.Errorf("coordinator kick %s on %s: %w", old.UID, old.Room, err)
	case kicked:
		kicks.WithLabelValues("kicked").Inc()
	default:
		kicks.WithLabelValues("gone").Inc()
	}
	return nil
}

// Upstream queues up for the callback URL of its type (a route of the
// app, else its callback_url) and returns at once: ErrNoCallback when the
// app is unknown or has no URL for it, push.ErrOverloaded when the app's
// queue is full, push.ErrClosed after Shutdown. The coordinator keeps
// up.Data.
func (s *Service) Upstream(_ context.Context, up push.Upstream) error {
	app, ok := s.conf.Load().App(up.App)
	if !ok {
		return ErrNoCallback
	}
	url := app.UpstreamURL(up.Type)
	if url == "" {
		return ErrNoCallback
	}
	return s.count(up.App, s.q.push(&event{kind: kindUpstream, app: up.App, up: up}, optsOf(app, url)))
}

// Status queues ev for the app's callback_url when the app subscribes to
// status events, through its status_debounce window; otherwise it does
// nothing and returns nil.
func (s *Service) Status(_ context.Context, ev push.StatusEvent) error {
	app, ok := s.conf.Load().App(ev.App)
	if !ok || app.CallbackURL == "" || !app.StatusEvents {
		return nil
	}
	return s.count(ev.App, s.q.status(&event{kind: kindStatus, app: ev.App, st: ev}, optsOf(app, app.CallbackURL)))
}

// optsOf reads the app's callback settings for one event going to url.
func optsOf(app *config.App, url string) opts {
	return opts{
		url:         url,
		limit:       app.CallbackQueue,
		batch:       app.CallbackBatch,
		linger:      app.CallbackLinger,
		multi:       len(app.CallbackRoutes) > 0,
		debounce:    app.StatusDebounce,
		debounceMax: app.StatusDebounceMax,
	}
}

// count counts a refusal of a full queue.
func (s *Service) count(app uint32, err error) error {
	if errors.Is(err, push.ErrOverloaded) {
		drops.WithLabelValues(appLabel(app), "queue_full").Inc()
	}
	return err
}
