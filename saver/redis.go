package saver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// RedisStore is the Store of a cluster: Redis holds every user's inbox and
// the broadcasts (the hot copy every saver instance shares), MySQL holds the
// durable copy, used to rebuild what Redis loses. See the package doc and
// docs/storage.md for the design; redis_scripts.go for the Redis layout and
// mysql_schema.go for the tables.
//
//   - Save writes Redis (one script per uid, pipelined with other callers'
//     commands), queues the MySQL rows and waits for their commit while MySQL
//     is healthy (up to SyncWait); while MySQL fails it returns once the rows
//     are queued, and refuses with push.ErrUnavailable when the queue is full.
//   - Ack deletes in Redis at once; the MySQL deletes follow in the next batch.
//   - Load reads one Redis hash; a user whose hash does not carry the
//     current epoch is first reloaded from MySQL (see the package doc).
//   - Expire walks MySQL's expiry index and drops the same entries in Redis.
//
// Stats counts what the store holds (pending per app and parked, in
// sharded Redis counters fed by the changes of the rows committed to MySQL,
// flushed every CounterEvery, plus this process's rows still queued), and
// the counters are reconciled with MySQL periodically and after Redis lost
// data (redis_reconcile.go); Saved, Acked and Expired count what this
// process did since it opened.
type RedisStore struct {
	o   RedisOptions
	lim Limits
	log *slog.Logger
	rc  redis.UniversalClient
	k   keyspace

	pipe *pipeliner
	dur  *durable
	cnt  *counters
	bc   *bcache
	sacc statusAcc // broadcast ACKs of delivery status, until the next flush

	epoch       atomic.Pointer[string]
	restore     atomic.Bool // broadcasts must be restored from MySQL
	recount     atomic.Bool // the counters must be reconciled now (Redis lost data)
	recountWake chan struct{}
	ackSync     ackRefresh // broadcast refreshes for ACKs of ids not cached yet

	clogBuf cursorLogBuf // ended sessions' cursors until the next log row (redis_cursorlog.go)
	clogMu  sync.Mutex   // guards clogIdx
	clogIdx *cursorIndex // the log read for the current epoch's reloads

	saved, acked, expired atomic.Uint64

	mu      sync.Mutex // guards closed and the calls count
	closed  bool
	calls   sync.WaitGroup
	stop    chan struct{}
	bg      sync.WaitGroup
	closers []func() error
}

var _ Store = (*RedisStore)(nil)

// RedisOptions configure OpenRedis; zero values take the defaults.
type RedisOptions struct {
	// Client reaches Redis: a single server, a failover group or a Cluster.
	// Required; Close does not close it (DialRedis's does).
	Client redis.UniversalClient
	// DB is the MySQL pool of the durable copy. Required; Close does not
	// close it. Add interpolateParams=true to its DSN: one round trip per
	// statement instead of three.
	DB *sql.DB
	// Prefix starts every Redis key (default "lcpush:"); no braces.
	Prefix string
	// TablePrefix starts every MySQL table name (default "lcpush_"):
	// letters, digits and underscores.
	TablePrefix string
	// Limits are the per-user defences (parking, inbox cap).
	Limits Limits
	// DurableQueue bounds the rows waiting for MySQL (default 100000): past
	// it saves are refused with push.ErrUnavailable, past twice it ACKs. A
	// Save naming more uids than this is always refused.
	DurableQueue int
	// DurableShards is the number of MySQL writers (default 1); a user's
	// rows always go through the same one. One writer makes the biggest
	// group commits, which measured fastest here (docs/benchmarks.md);
	// raise it when one writer's commits cannot keep up.
	DurableShards int
	// BatchRows bounds the rows of one MySQL transaction (default 500).
	BatchRows int
	// SyncWait bounds how long a save waits for its MySQL commit before it
	// returns with its rows queued (default 2s). Negative never waits
	// (write-behind): saves cost Redis round trips only, but a saver that
	// dies with rows queued and a Redis that then loses its data lose those
	// messages together.
	SyncWait time.Duration
	// WriteTimeout bounds one MySQL batch (default 5s); ReadTimeout one
	// reload or sweep query (default 3s).
	WriteTimeout, ReadTimeout time.Duration
	// Pipeline is the most commands sent in one Redis round trip (default
	// 128; 1 sends each alone). PipelineWorkers is the number of round
	// trips in flight (default 4).
	Pipeline, PipelineWorkers int
	// RedisTimeout bounds one Redis pipeline (default 3s).
	RedisTimeout time.Duration
	// IdleTTL is how long a user's Redis hash outlives its last expiring
	// entry and its last write (default 24h). A user idle longer is
	// reloaded from MySQL at its next login.
	IdleTTL time.Duration
	// EpochEvery is how often the saver checks whether Redis lost its data
	// and refreshes the broadcast cache (default 1s).
	EpochEvery time.Duration
	// CounterEvery is how often counter changes are sent to Redis (default 100ms).
	CounterEvery time.Duration
	// ReconcileEvery is how often the pending and parked counters are
	// recomputed from MySQL (default 1m; one saver of a cluster does it per
	// period). They are also recomputed as soon as Redis lost data.
	ReconcileEvery time.Duration
	// CloseTimeout bounds how long Close keeps retrying queued MySQL rows (default 5s).
	CloseTimeout time.Duration
	// Logger receives the store's reports; nil discards them.
	Logger *slog.Logger
}

func (o *RedisOptions) defaults() error {
	if o.Client == nil || o.DB == nil {
		return fmt.Errorf("saver redis: nil Client or DB: %w", ErrInvalid)
	}
	if o.Prefix == "" {
		o.Prefix = "lcpush:"
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return fmt.Errorf("saver redis: prefix %q holds a brace: %w", o.Prefix, ErrInvalid)
	}
	if o.TablePrefix == "" {
		o.TablePrefix = "lcpush_"
	}
	if !tablePrefixRE.MatchString(o.TablePrefix) {
		return fmt.Errorf("saver redis: table prefix %q: %w", o.TablePrefix, ErrInvalid)
	}
	setDefault(&o.DurableQueue, 100000)
	setDefault(&o.DurableShards, 1)
	setDefault(&o.BatchRows, 500)
	if o.SyncWait == 0 {
		o.SyncWait = 2 * time.Second
	}
	setDefault(&o.WriteTimeout, 5*time.Second)
	setDefault(&o.ReadTimeout, 3*time.Second)
	setDefault(&o.Pipeline, 128)
	setDefault(&o.PipelineWorkers, 4)
	setDefault(&o.RedisTimeout, 3*time.Second)
	setDefault(&o.IdleTTL, 24*time.Hour)
	setDefault(&o.EpochEvery, time.Second)
	setDefault(&o.CounterEvery, 100*time.Millisecond)
	setDefault(&o.ReconcileEvery, time.Minute)
	setDefault(&o.CloseTimeout, 5*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// OpenRedis checks Redis, applies the MySQL schema migrations, reads the
// epoch and the broadcasts, and starts the store's goroutines (MySQL
// writers, Redis pipeline workers, the epoch watcher).
func OpenRedis(ctx context.Context, o RedisOptions) (*RedisStore, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := o.Client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("saver redis: ping: %w", redisErr(err))
	}
	t := newTables(o.TablePrefix)
	r := &RedisStore{
		o: o, lim: o.Limits.withDefaults(), log: o.Logger, rc: o.Client, k: keyspace{o.Prefix},
		cnt: newCounters(), bc: newBcache(), stop: make(chan struct{}), recountWake: make(chan struct{}, 1),
	}
	r.pipe = newPipeliner(o.Client, o.PipelineWorkers, o.Pipeline, 4*o.Pipeline*o.PipelineWorkers, o.RedisTimeout)
	r.dur = newDurable(o.DB, t, o.Logger, &o, r.cnt)
	// Under the schema lock, after the migrations: the epoch, and the
	// broadcasts read (restored from MySQL if Redis lost them), those of
	// the previous version given seqs in Redis and, before the lock is
	// released, in MySQL (docs/storage.md "Migration from the previous
	// version").
	applied, err := migrate(ctx, o.DB, t, migrations, func(ctx context.Context) error {
		if err := r.checkEpoch(ctx); err != nil {
			return err
		}
		if _, err := r.syncBroadcasts(ctx, true); err != nil {
			return err
		}
		if err := r.dur.barrierUID(ctx, ""); err != nil {
			return err
		}
		left, err := r.dur.hasBacks(ctx)
		r.dur.backsLeft.Store(left || err != nil)
		return nil
	})
	if len(applied) > 0 {
		o.Logger.Info("saver: mysql schema migrated", "versions", applied)
	}
	if err != nil {
		r.pipe.close()
		r.dur.close(time.Now())
		return nil, fmt.Errorf("saver redis: open: %w", err)
	}
	r.bg.Go(r.watch)
	r.bg.Go(r.reconciler)
	return r, nil
}

// DialRedis is OpenRedis with clients of its own, which Close closes: a
// Redis client from ro (one address: a server; several or IsClusterMode: a
// Cluster; MasterName: Sentinel) and a MySQL pool from dsn, with
// interpolateParams turned on.
func DialRedis(ctx context.Context, ro *redis.UniversalOptions, dsn string, o RedisOptions) (*RedisStore, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("saver redis: mysql dsn: %w", errors.Join(ErrInvalid, err))
	}
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("saver redis: mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	rc := redis.NewUniversalClient(ro)
	o.Client, o.DB = rc, db
	r, err := OpenRedis(ctx, o)
	if err != nil {
		_ = rc.Close()
		_ = db.Close()
		return nil, err
	}
	r.closers = []func() error{rc.Close, db.Close}
	return r, nil
}

// enter admits a call unless the store is closed; the caller defers r.calls.Done.
func (r *RedisStore) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.calls.Add(1)
	return true
}

// Close implements Store: it refuses new calls, waits for running ones,
// sends the counters, lets the MySQL writers empty their queues (retrying
// up to CloseTimeout) and stops every goroutine of the store.
func (r *RedisStore) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	deadline := time.Now().Add(r.o.CloseTimeout)
	r.calls.Wait()
	close(r.stop)
	r.bg.Wait()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := r.cnt.flush(ctx, r.rc, r.k)
	if err != nil {
		err = fmt.Errorf("saver close: counters: %w", err)
	}
	if serr := r.flushStatus(ctx); serr != nil {
		r.log.Debug("saver: delivery status flush failed at close", "err", serr)
	}
	r.flushCursorLog()
	r.pipe.close()
	r.dur.close(deadline)
	for _, c := range r.closers {
		err = errors.Join(err, c())
	}
	return err
}

// watch is the store's background work: the epoch check and broadcast
// refresh every EpochEvery, the counter flush every CounterEvery.
func (r *RedisStore) watch() {
	epoch := time.NewTicker(r.o.EpochEvery)
	defer epoch.Stop()
	flush := time.NewTicker(r.o.CounterEvery)
	defer flush.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-epoch.C:
			r.flushCursorLog() // first: a new epoch's index must find these
			ctx, cancel := context.WithTimeout(context.Background(), r.o.EpochEvery+r.o.ReadTimeout)
			if err := r.checkEpoch(ctx); err != nil {
				r.log.Debug("saver: epoch check failed", "err", err)
			} else if _, err := r.syncBroadcasts(ctx, true); err != nil {
				r.log.Debug("saver: broadcast refresh failed", "err", err)
			}
			cancel()
		case <-flush.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.o.RedisTimeout)
			if err := r.cnt.flush(ctx, r.rc, r.k); err != nil {
				r.log.Debug("saver: counter flush failed", "err", err)
			}
			if err := r.flushStatus(ctx); err != nil {
				r.log.Debug("saver: delivery status flush failed", "err", err)
			}
			cancel()
		}
	}
}

// Stats implements Store. Pending and Parked are the Redis counters, summed
// over the shards, plus this process's changes Redis has not seen (rows
// queued for MySQL included).
func (r *RedisStore) Stats(ctx context.Context) (push.StoreStats, error) {
	if !r.enter() {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", ErrClosed)
	}
	defer r.calls.Done()
	totals, err := r.cnt.totals(ctx, r.rc, r.k)
	if err != nil {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", redisErr(err))
	}
	blen := r.rc.HLen(ctx, r.k.broadcasts())
	if err := blen.Err(); err != nil {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", redisErr(err))
	}
	st := push.StoreStats{PendingPerApp: map[uint32]int64{}}
	for f, n := range totals {
		switch {
		case f == fieldParked:
			st.Parked += n
		case strings.HasPrefix(f, "a"):
			if app, ok := parseApp(f[1:]); ok {
				st.PendingPerApp[app] += n
			}
		}
	}
	for app, n := range st.PendingPerApp {
		if n <= 0 {
			delete(st.PendingPerApp, app)
			continue
		}
		st.Pending += n
	}
	st.Parked = max(st.Parked, 0)
	st.Broadcasts = max(blen.Val()-1, 0) // minus the version field
	st.Saved, st.Acked, st.Expired = r.saved.Load(), r.acked.Load(), r.expired.Load()
	return st, nil
}

// UserStats implements Store: one script counts the user's entries of app
// inside Redis (no payload crosses the network), after a reload from MySQL
// if the hash is not of the current epoch.
func (r *RedisStore) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	if err := checkUID(uid); err != nil {
		return 0, 0, fmt.Errorf("saver user stats: %w", err)
	}
	if !r.enter() {
		return 0, 0, fmt.Errorf("saver user stats %s: %w", uid, ErrClosed)
	}
	defer r.calls.Done()
	fresh, pending, parked, err := r.userCounts(ctx, uid, app)
	if err == nil && !fresh {
		if rerr := r.reload(ctx, uid, *r.epoch.Load()); rerr != nil {
			metricReloads.WithLabelValues("failed").Inc()
			r.log.Debug("saver: reload from mysql failed; counting redis as it is", "uid", truncate(uid), "err", rerr)
		} else {
			metricReloads.WithLabelValues("ok").Inc()
			_, pending, parked, err = r.userCounts(ctx, uid, app)
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("saver user stats %s: %w", uid, err)
	}
	return pending, parked, nil
}

func (r *RedisStore) userCounts(ctx context.Context, uid string, app uint32) (fresh bool, pending, parked int, err error) {
	op := &pipeOp{kind: pipeScript, script: scriptUserStats, key: r.k.user(uid), args: []any{*r.epoch.Load(), app}}
	if err := r.pipe.do(ctx, op); err != nil {
		return false, 0, 0, err
	}
	l, err := op.list()
	if err != nil || len(l) < 3 {
		return false, 0, 0, cmpErr(nil, err)
	}
	if len(l) > 3 {
		r.foldUserStats(ctx, uid, l[3:])
	}
	return asInt(l[0]) == 1, int(asInt(l[1])), int(asInt(l[2])), nil
}

// foldUserStats folds the previous version's broadcast records that
// scriptUserStats found (pairs field, value of the b and c fields) into
// the cursors. Best effort: a cursor changed meanwhile leaves them to the
// next read.
func (r *RedisStore) foldUserStats(ctx context.Context, uid string, pairs []any) {
	curs, legacy := map[uint32]rcursor{}, map[uint64]legacyRec{}
	for i := 0; i+1 < len(pairs); i += 2 {
		addCursorField(curs, legacy, asString(pairs[i]), asString(pairs[i+1]))
	}
	now := time.Now().Unix()
	p := newCursorPlan(r, uid, curs, legacy, now)
	p.foldLegacy()
	cas, rows := p.finish()
	if len(cas) == 0 {
		return
	}
	args := append([]any{now, r.idle(), r.keepFor(cas, now), casCount(cas)}, cas...)
	op := &pipeOp{kind: pipeScript, script: scriptCursorCAS, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, op); err != nil || op.err != nil || asInt(op.res) != 1 {
		return
	}
	r.dur.enqueue(rows, true)
}
