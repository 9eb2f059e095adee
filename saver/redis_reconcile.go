package saver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Reconciling the pending and parked counters with the durable truth.
//
// What the counters count: the entries the store holds, which is MySQL's
// inbox table plus the rows still queued for it (an entry accepted while
// MySQL is down is stored: it reaches Redis and MySQL later, and an ACK
// queued for MySQL has deleted its entry). Redis's copy is not the truth:
// after a Redis loss it holds only the users reloaded since, yet every
// other user's messages are still stored and delivered at their next login.
//
// Why they drift: a saver that dies loses the changes it had not sent to
// Redis (CounterEvery of them); a flush whose reply was lost is sent again
// or not; a Redis that loses its data loses the counters with it; a re-save
// or a blind ACK of a user Redis lost changes MySQL differently than the
// script saw; so does one user's save racing its inbox trim, whose MySQL
// rows can be queued in the other order than Redis applied them. The reconcile repairs all of them, every ReconcileEvery and as
// soon as a new epoch is seen.
//
// How, without losing concurrent changes. Each queued row carries the
// change it makes (cdelta); the change counts in the saver's q while the
// row waits and moves to d, under one lock, when the row's batch commits;
// d goes to Redis by HINCRBY. One saver at a time (a Redis lock):
//
//  1. Cut: with this process's MySQL writers paused (commitMu), open a
//     MySQL transaction WITH CONSISTENT SNAPSHOT, send d to Redis and read
//     the counters (C0). At that instant every change this process
//     committed is in C0 and in the snapshot, and none it has not committed
//     is in either (queued ones are in q only). The writers resume.
//  2. Count, in the snapshot (however long it takes, writers running):
//     truth S per app and parked, every row (expired ones included, as
//     Stats counts them until the sweep deletes them and subtracts them).
//  3. Correct: HINCRBY every field by S - C0, in one script that checks the
//     lock is still ours. HINCRBY adds, so every change sent by anyone after
//     the cut is kept: the counters become S plus what changed since.
//
// In one saver this is exact whatever runs concurrently. With several,
// another saver's changes are in C0 and S alike except those it committed
// within CounterEvery of the cut (not flushed yet), or during the cut: that
// is the bound of one reconcile's error, and it does not accumulate, since
// every run recomputes from scratch.

const (
	// reconcileTimeout bounds one reconcile, the MySQL count included.
	reconcileTimeout = time.Minute
	// reconcileLockTTL outlives any reconcile, so two never overlap.
	reconcileLockTTL = 2 * reconcileTimeout
)

var (
	metricReconciles = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_reconciles_total",
		Help: "Reconciles of the pending and parked counters with MySQL, by result (ok, failed).",
	}, []string{"result"})
	metricReconcileCorrected = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_reconcile_corrected_total",
		Help: "Sum of the absolute corrections the reconciles applied to the pending and parked counters.",
	})
)

// The lock and the time of the last reconcile share the slot of stats
// shard 0, so one script checks the lock and corrects the shard (Cluster).
func (k keyspace) reconcileLock() string { return k.stats(0) + ":reconcile" }
func (k keyspace) reconciled() string    { return k.stats(0) + ":reconciled" }

// scriptReconcile adds the corrections if the lock still holds our token.
// KEYS: lock, stats shard 0, last reconcile. ARGV: token, now (unix ms),
// then pairs field, delta. Returns 1 if applied (and the lock released).
var scriptReconcile = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do
  local d = tonumber(ARGV[i+1])
  if d ~= 0 then redis.call('HINCRBY', KEYS[2], ARGV[i], d) end
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
`)

var errReconcileBusy = errors.New("saver: another saver is reconciling the counters")

// wantRecount asks for a reconcile now (Redis lost data).
func (r *RedisStore) wantRecount() {
	r.recount.Store(true)
	select {
	case r.recountWake <- struct{}{}:
	default:
	}
}

// reconciler is the store's goroutine that reconciles the counters every
// ReconcileEvery (unless another saver did within the period) and, until
// it succeeds, after every epoch change.
func (r *RedisStore) reconciler() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-done:
		}
	}()
	tick := time.NewTicker(r.o.ReconcileEvery)
	defer tick.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			if _, err := r.reconcile(ctx, false); err != nil {
				r.log.Debug("saver: counter reconcile failed", "err", err)
			}
		case <-r.recountWake:
		case <-retry:
		}
		if r.recount.Swap(false) { // cleared first: a loss during the run asks again
			if _, err := r.reconcile(ctx, true); err != nil {
				r.recount.Store(true)
				retry = time.After(r.o.EpochEvery)
				r.log.Debug("saver: counter reconcile after a redis loss failed; retrying", "err", err)
			} else {
				retry = nil
			}
		}
	}
}

// reconcile recomputes the counters from MySQL (see above) and returns the
// corrections it applied. Not forced, it does nothing when a saver did it
// within the last 0.9 ReconcileEvery.
func (r *RedisStore) reconcile(ctx context.Context, forced bool) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	defer cancel()
	corr, err := r.reconcileOnce(ctx, forced)
	switch {
	case err == nil && corr != nil:
		metricReconciles.WithLabelValues("ok").Inc()
	case err != nil && !errors.Is(err, errReconcileBusy):
		metricReconciles.WithLabelValues("failed").Inc()
	}
	return corr, err
}

func (r *RedisStore) reconcileOnce(ctx context.Context, forced bool) (map[string]int64, error) {
	if !forced {
		last, err := r.rc.Get(ctx, r.k.reconciled()).Int64()
		if err == nil && time.Since(time.UnixMilli(last)) < r.o.ReconcileEvery*9/10 {
			return nil, nil
		}
	}
	if !r.dur.healthy() {
		return nil, errDurableDown // the count would fail, and the cut wait for a hung writer
	}
	token := newToken()
	ok, err := r.rc.SetNX(ctx, r.k.reconcileLock(), token, reconcileLockTTL).Result()
	if err != nil {
		return nil, fmt.Errorf("lock: %w", redisErr(err))
	}
	if !ok {
		return nil, errReconcileBusy
	}
	applied := false
	defer func() {
		if !applied {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RedisTimeout)
			defer cancel()
			_ = scriptUnlock.Run(uctx, r.rc, []string{r.k.reconcileLock()}, token).Err()
		}
	}()

	conn, err := r.o.DB.Conn(ctx)
	if err != nil {
		return nil, mysqlErr(err)
	}
	defer conn.Close()
	// The snapshot needs REPEATABLE READ, whatever the server's default.
	if _, err := conn.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return nil, mysqlErr(err)
	}
	defer func() { // before the connection goes back to the pool
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.ReadTimeout)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "ROLLBACK")
	}()
	c0, err := r.cut(ctx, conn)
	if err != nil {
		return nil, err
	}
	truth, err := r.countInbox(ctx, conn)
	if err != nil {
		return nil, mysqlErr(err)
	}
	corr := map[string]int64{}
	for f, v := range truth {
		corr[f] = v
	}
	for f, v := range c0 {
		corr[f] -= v
	}
	args := []any{token, time.Now().UnixMilli()}
	var moved int64
	for f, d := range corr {
		if d == 0 {
			delete(corr, f)
			continue
		}
		args = append(args, f, d)
		moved += max(d, -d)
	}
	res, err := scriptReconcile.Run(ctx, r.rc, []string{r.k.reconcileLock(), r.k.stats(0), r.k.reconciled()}, args...).Int64()
	if err != nil {
		return nil, fmt.Errorf("correct: %w", redisErr(err))
	}
	if res != 1 {
		return nil, errors.New("saver: reconcile lock lost (redis lost data, or the count outlived the lock)")
	}
	applied = true
	metricReconcileCorrected.Add(float64(moved))
	if moved > 0 {
		r.log.Info("saver: pending and parked counters reconciled with mysql", "corrections", corr)
	}
	return corr, nil
}

// cut pauses this process's MySQL commits for an instant, opens the
// consistent snapshot and reads the counters with every committed change
// sent: see the comment at the top.
func (r *RedisStore) cut(ctx context.Context, conn *sql.Conn) (map[string]int64, error) {
	r.dur.commitMu.Lock()
	defer r.dur.commitMu.Unlock()
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
		return nil, mysqlErr(err)
	}
	c0, err := r.cnt.snapshot(ctx, r.rc, r.k)
	if err != nil {
		return nil, fmt.Errorf("counters: %w", redisErr(err))
	}
	return c0, nil
}

// countInbox counts every inbox row, per app and parked, in conn's
// transaction.
func (r *RedisStore) countInbox(ctx context.Context, conn *sql.Conn) (map[string]int64, error) {
	rows, err := conn.QueryContext(ctx, "SELECT app, COUNT(*), COALESCE(SUM(parked <> 0), 0) FROM `"+
		r.dur.t.inbox+"` GROUP BY app")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	var parked int64
	for rows.Next() {
		var app uint32
		var n, p int64
		if err := rows.Scan(&app, &n, &p); err != nil {
			return nil, err
		}
		out[appField(app)] = n
		parked += p
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out[fieldParked] = parked
	return out, nil
}
