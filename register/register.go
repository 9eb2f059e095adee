// Package register owns the global session store: for every online uid, the
// room instance and connection that hold it, the apps bound on that
// connection, the login time and the client IP. It lives in memory only;
// recovery after a restart is by re-filling (every room re-registers its
// sessions), never by replication.
//
// Sessions are sharded by xxhash(uid) over Config.Shards shards, each behind
// its own RWMutex, so registers and lookups of different users rarely
// contend. Per-app and per-room counters are kept incrementally per shard,
// which keeps Counts cheap at millions of sessions. Each shard also keeps its
// sessions in insertion order (see scan.go) so that a room's reconciliation
// (pkg/remote) can page through them with a stable cursor.
package register

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/lcpush/lcpush/pkg/push"
)

// Errors of the register service; callers test them with errors.Is.
var (
	// ErrInvalid means an argument is malformed (empty uid or room, bad cursor).
	ErrInvalid = errors.New("register: invalid argument")
	// ErrClosed is push.ErrClosed: the service was shut down.
	ErrClosed = push.ErrClosed
)

const (
	// DefaultShards is the shard count when Config.Shards is 0.
	DefaultShards = 256
	// MaxShards bounds Config.Shards: the scan cursor keeps the shard index in 16 bits.
	MaxShards = 1 << shardBits
)

// Config configures a Service.
type Config struct {
	// Shards is the number of lock shards, 1..MaxShards; 0 means DefaultShards.
	Shards int
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
}

// Service is the in-memory session store. All methods are safe for
// concurrent use. It does no I/O, so its methods only fail on bad input, a
// cancelled context, or after Shutdown.
type Service struct {
	log    *slog.Logger
	shards []shard
	closed atomic.Bool
}

// New validates cfg and returns an empty store.
func New(cfg Config) (*Service, error) {
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Shards < 1 || cfg.Shards > MaxShards {
		return nil, fmt.Errorf("register: shards %d out of range 1..%d: %w", cfg.Shards, MaxShards, ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{log: cfg.Logger, shards: make([]shard, cfg.Shards)}
	for i := range s.shards {
		s.shards[i].init()
	}
	return s, nil
}

// Start has nothing to start (the store runs no goroutine); it exists so the
// assembly treats every service alike.
func (s *Service) Start(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("register start: %w", ErrClosed)
	}
	s.log.Info("register started", "shards", len(s.shards))
	return nil
}

// Shutdown drops every session and makes later calls fail with ErrClosed.
// It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	n := 0
	for i := range s.shards {
		n += s.shards[i].reset()
	}
	metricSessions.Sub(float64(n))
	s.log.Info("register stopped", "sessions", n)
	return nil
}

// shardOf returns the shard that owns uid and uid's hash (the shard's
// table probes with its high half).
func (s *Service) shardOf(uid string) (*shard, uint64) {
	h := xxhash.Sum64String(uid)
	return &s.shards[h%uint64(len(s.shards))], h
}

func (s *Service) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("register %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("register %s: %w", op, err)
	}
	return nil
}

// Register stores sess as one of the uid's sessions. Apps are tenants: the
// uid's other connections lose the apps sess has (a login through app A
// displaces only A's session) and are removed once they have none left.
// It returns the sessions that lost apps, each with Apps set to the apps it
// lost, so the caller can take them from those connections (and kick a
// connection left with none); re-registering the same connection (Room and
// ConnID) refreshes its apps, login time and IP. The store keeps its own
// copy of sess.Apps (duplicates removed).
func (s *Service) Register(ctx context.Context, sess push.Session) ([]push.Session, error) {
	if err := s.check(ctx, "register"); err != nil {
		return nil, err
	}
	if sess.UID == "" || sess.Room == "" {
		return nil, fmt.Errorf("register register %q@%q: %w", sess.UID, sess.Room, ErrInvalid)
	}
	sh, h := s.shardOf(sess.UID)
	displaced, result := sh.register(&sess, h)
	metricRegisters[result].Inc()
	if result == resultNew || result == resultAdded {
		metricSessions.Inc()
	}
	return displaced, nil
}

// Unregister removes the uid's session only when it is still the connection
// (room, connID): the late close of a connection that has been replaced by a
// reconnect must not erase the new session. It reports whether it removed.
func (s *Service) Unregister(ctx context.Context, uid, room string, connID uint64) (bool, error) {
	if err := s.check(ctx, "unregister"); err != nil {
		return false, err
	}
	sh, h := s.shardOf(uid)
	result := sh.unregister(uid, room, connID, h)
	metricUnregisters[result].Inc()
	if result == resultRemoved {
		metricSessions.Dec()
	}
	return result == resultRemoved, nil
}

// SetApps replaces the apps bound on the uid's connection connID and reports
// whether that connection is stored. Apps it gains are taken from the uid's
// other connections, as in Register, and the sessions that lost apps are
// returned the same way. The store keeps its own copy.
func (s *Service) SetApps(ctx context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error) {
	if err := s.check(ctx, "set apps"); err != nil {
		return nil, false, err
	}
	sh, h := s.shardOf(uid)
	displaced, ok := sh.setApps(uid, h, connID, apps)
	return displaced, ok, nil
}

// Get returns the uid's session that has app bound (app 0: the uid's first
// connection), if online. The returned Apps slice is the caller's own.
func (s *Service) Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error) {
	if err := s.check(ctx, "get"); err != nil {
		return push.Session{}, false, err
	}
	sh, h := s.shardOf(uid)
	var out push.Session
	found := false
	sh.mu.RLock()
	for e := sh.head(uid, h); e != nil; e = e.more {
		if app == 0 || hasApp(e.appList(), app) {
			e.copyTo(&out, nil)
			found = true
			break
		}
	}
	sh.mu.RUnlock()
	return out, found, nil
}

// Lookup returns the sessions of the uids that are online, in any order:
// every connection of each uid (one per app at most); offline uids are left
// out. The returned sessions share one backing array
// for their Apps, owned by the caller.
func (s *Service) Lookup(ctx context.Context, uids []string) ([]push.Session, error) {
	if err := s.check(ctx, "lookup"); err != nil {
		return nil, err
	}
	out := make([]push.Session, 0, len(uids))
	apps := make([]uint32, 0, len(uids))
	for _, uid := range uids {
		sh, h := s.shardOf(uid)
		sh.mu.RLock()
		for e := sh.head(uid, h); e != nil; e = e.more {
			out = append(out, push.Session{})
			apps = e.copyTo(&out[len(out)-1], apps)
		}
		sh.mu.RUnlock()
	}
	return out, nil
}

// DropRoom removes every session held by room, for a room instance that
// died for good without unregistering its connections (pkg/remote's room
// reaper). It returns how many it removed.
func (s *Service) DropRoom(ctx context.Context, room string) (int, error) {
	if err := s.check(ctx, "drop room"); err != nil {
		return 0, err
	}
	n := 0
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("register drop room %s: %w", room, err)
		}
		n += s.shards[i].dropRoom(room)
	}
	metricSessions.Sub(float64(n))
	metricDropped.Add(float64(n))
	if n > 0 {
		s.log.Info("register dropped room", "room", room, "sessions", n)
	}
	return n, nil
}

// Counts returns the online totals: users online (Total), sessions per
// bound app and connections per room instance. It sums per-shard counters, so its cost grows
// with shards x (apps + rooms), not with sessions. Shards are read one after
// another, so under concurrent changes the totals are approximate.
func (s *Service) Counts(ctx context.Context) (push.Counts, error) {
	if err := s.check(ctx, "counts"); err != nil {
		return push.Counts{}, err
	}
	c := push.Counts{PerApp: make(map[uint32]int), PerRoom: make(map[string]int)}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		c.Total += sh.live
		for app, n := range sh.perApp {
			c.PerApp[app] += n
		}
		for room, rc := range sh.perRoom {
			c.PerRoom[room] += rc.n
		}
		sh.mu.RUnlock()
	}
	return c, nil
}
