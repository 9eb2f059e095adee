package saver

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// The pending and parked counters converge on MySQL's content: after Redis
// lost its data (FLUSHALL, a restart, the keys deleted), after drift, and
// with concurrent saves, ACKs and parks during the reconciles, which must
// neither lose a change nor count one twice.

// truthCounts is what MySQL holds (the env's inbox table, every row), as
// Stats reports it; the caller has let the durable queue drain.
type truthCounts struct {
	pending int64
	perApp  map[uint32]int64
	parked  int64
}

func (e *redisEnv) truth(t *testing.T) truthCounts {
	t.Helper()
	rows, err := e.db.QueryContext(bg, "SELECT app, COUNT(*), COALESCE(SUM(parked <> 0), 0) FROM `"+e.tprefix+"inbox` GROUP BY app")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tc := truthCounts{perApp: map[uint32]int64{}}
	for rows.Next() {
		var app uint32
		var n, p int64
		if err := rows.Scan(&app, &n, &p); err != nil {
			t.Fatal(err)
		}
		tc.perApp[app], tc.pending, tc.parked = n, tc.pending+n, tc.parked+p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// matches reports whether s shows exactly the truth, and how it differs.
func (tc truthCounts) matches(s push.StoreStats) (bool, string) {
	ok := s.Pending == tc.pending && s.Parked == tc.parked && maps.Equal(s.PendingPerApp, tc.perApp)
	return ok, fmt.Sprintf("stats pending %d %v parked %d, mysql pending %d %v parked %d",
		s.Pending, s.PendingPerApp, s.Parked, tc.pending, tc.perApp, tc.parked)
}

// waitTruth waits until st's Stats equal tc (Stats failing while Redis
// restarts counts as not yet).
func waitTruth(t *testing.T, st Store, tc truthCounts, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	var last string
	for {
		s, err := st.Stats(bg)
		if err == nil {
			var ok bool
			if ok, last = tc.matches(s); ok {
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not converge within %v: %s", bound, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustDrain(t *testing.T, st *RedisStore) {
	t.Helper()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
}

// fillForReconcile saves 60 entries over 10 users and two apps, parks the
// entries of user-0 (MaxLoads 2: two loads) and ACKs a few of user-1's.
func fillForReconcile(t *testing.T, st *RedisStore) []string {
	t.Helper()
	var users []string
	for i := range 10 {
		users = append(users, fmt.Sprint("user-", i))
	}
	id := uint64(100)
	for i := range 30 {
		id++
		mustSave(t, st, msg(id, uint32(1+i%2), future()), users[i%10], users[(i+3)%10])
	}
	for range 2 {
		loadIDs(t, st, "user-0", []uint32{1, 2}, 0)
	}
	ids := loadIDs(t, st, "user-1", []uint32{1, 2}, 0)
	mustAck(t, st, "user-1", 2, ids[:2]...)
	return users
}

// After Redis lost its data, Stats shows MySQL's content again within the
// bound of the epoch check plus one reconcile: not only the users reloaded
// since. Reloads then change nothing, and ACKs count down from the truth.
func TestRedisReconcileAfterLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, env *redisEnv, srv *redisProc, rc *redis.Client)
	}{
		{"flushall", func(t *testing.T, _ *redisEnv, _ *redisProc, rc *redis.Client) {
			if err := rc.FlushAll(bg).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart", func(t *testing.T, _ *redisEnv, srv *redisProc, _ *redis.Client) {
			srv.kill()
			srv.start()
		}},
		{"keys deleted", func(t *testing.T, env *redisEnv, _ *redisProc, rc *redis.Client) {
			dropKeys(bg, rc, env.prefix)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRedis(t)
			rc := redis.NewClient(&redis.Options{Addr: srv.addr(), MaxRetries: 1, DialTimeout: time.Second})
			t.Cleanup(func() { _ = rc.Close() })
			env := newRedisEnv(t)
			st := env.open(t, RedisOptions{Client: rc, EpochEvery: 50 * time.Millisecond, ReconcileEvery: time.Hour,
				Limits: Limits{MaxLoads: 2}})
			users := fillForReconcile(t, st)
			mustDrain(t, st)
			want := env.truth(t)
			if want.pending != 58 || want.parked == 0 {
				t.Fatalf("setup: mysql holds %+v, want 58 pending, some parked", want)
			}
			if ok, diff := want.matches(mustStats(t, st)); !ok {
				t.Fatalf("before the loss: %s", diff)
			}
			oks := value(metricReconciles.WithLabelValues("ok"))
			tc.lose(t, env, srv, rc)
			// The bound: the epoch check (50 ms here, EpochEvery) plus one
			// reconcile (a snapshot and one COUNT: milliseconds here).
			waitTruth(t, st, want, 3*time.Second)
			// The reconcile counts itself just after it corrected the
			// counters, which is what waitTruth saw.
			if !testkit.Poll(2*time.Second, func() bool { return value(metricReconciles.WithLabelValues("ok")) > oks }) {
				t.Error("no reconcile counted")
			}
			for _, uid := range users { // reloads from MySQL: no change to the counts
				loadIDs(t, st, uid, []uint32{1, 2}, 0)
			}
			if ok, diff := want.matches(mustStats(t, st)); !ok {
				t.Fatalf("after the reloads: %s", diff)
			}
			for _, uid := range users {
				msgs, err := st.Load(bg, uid, []uint32{1, 2}, 0)
				if err != nil {
					t.Fatal(err)
				}
				ids := []uint64{}
				for _, m := range msgs {
					ids = append(ids, m.ID)
				}
				mustAckFor(t, st, uid, []uint32{1, 2}, len(ids), ids...)
			}
			mustDrain(t, st)
			want = env.truth(t)
			if ok, diff := want.matches(mustStats(t, st)); !ok {
				t.Fatalf("after the ACKs: %s", diff)
			}
			if want.pending != want.parked {
				t.Fatalf("only parked entries should be left: %+v", want)
			}
		})
	}
}

// Reconciles running while saves, ACKs, re-saves and parks go on (here
// from the test, back to back, besides the store's own) find nothing to
// correct, and when the load stops the counters equal MySQL exactly: the
// cut counts every change once, in one saver.
func TestRedisReconcileConcurrentNoDrift(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ack    bool // ACK the oldest entry every third step
		load   bool // load every fifth step (MaxLoads 2: parks)
		resave bool // save the previous id again for another app every seventh step
		cap    int  // InboxCap: saves past it drop entries
	}{
		{name: "saves"},
		{name: "saves and acks", ack: true},
		{name: "saves, acks and parks", ack: true, load: true},
		{name: "re-saves and inbox cap", ack: true, load: true, resave: true, cap: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newRedisEnv(t)
			lim := Limits{MaxLoads: -1, InboxCap: -1}
			if tc.load {
				lim.MaxLoads = 2
			}
			if tc.cap > 0 {
				lim.InboxCap = tc.cap
			}
			st := env.open(t, RedisOptions{ReconcileEvery: 20 * time.Millisecond, Limits: lim})
			gen, err := idgen.New(9)
			if err != nil {
				t.Fatal(err)
			}
			var stop atomic.Bool
			var ops atomic.Int64
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					var prev uint64
					for i := 0; !stop.Load(); i++ {
						// Each worker has its own users: the store does not
						// order one user's concurrent trim and save between
						// Redis and the MySQL queue (a divergence of the
						// two copies, which the reconcile follows MySQL in),
						// and this test is about the counters.
						uid := fmt.Sprint("u", g, "-", i%3)
						m := msg(gen.Next(), uint32(1+i%2), future())
						if err := st.Save(bg, m, []string{uid, fmt.Sprint("u", g, "-", (i+1)%3)}); err != nil {
							t.Errorf("save: %v", err)
							return
						}
						if tc.resave && i%7 == 6 && prev != 0 {
							if err := st.Save(bg, msg(prev, 3, future()), []string{uid}); err != nil {
								t.Errorf("re-save: %v", err)
								return
							}
						}
						prev = m.ID
						if tc.load && i%5 == 4 {
							if _, err := st.Load(bg, uid, []uint32{1, 2, 3}, 3); err != nil {
								t.Errorf("load: %v", err)
								return
							}
						}
						if tc.ack && i%3 == 2 {
							msgs, err := st.Load(bg, uid, []uint32{1, 2, 3}, 1)
							if err == nil && len(msgs) > 0 {
								_, err = st.Ack(bg, uid, []uint32{1, 2, 3}, []uint64{msgs[0].ID})
							}
							if err != nil {
								t.Errorf("ack: %v", err)
								return
							}
						}
						ops.Add(1)
					}
				})
			}
			var runs int
			var corrected int64
			before := value(metricReconcileCorrected)
			deadline := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(deadline) {
				corr, err := st.reconcile(bg, true)
				switch {
				case errors.Is(err, errReconcileBusy): // the store's own is running
				case err != nil:
					t.Errorf("reconcile: %v", err)
				default:
					runs++
					for f, d := range corr {
						t.Errorf("reconcile %d corrected %s by %d under load: a change was lost or counted twice", runs, f, d)
						corrected += max(d, -d)
					}
				}
				time.Sleep(time.Millisecond)
			}
			stop.Store(true)
			wg.Wait()
			if d := value(metricReconcileCorrected) - before; d != 0 {
				t.Errorf("the store's own reconciles corrected %v under load", d)
			}
			if runs < 5 || ops.Load() < 100 {
				t.Fatalf("%d reconciles during %d steps: the test checked too little", runs, ops.Load())
			}
			// No reconcile after the load: the counters must be exact as they are.
			mustDrain(t, st)
			want := env.truth(t)
			if ok, diff := want.matches(mustStats(t, st)); !ok {
				t.Fatalf("after %d steps and %d reconciles (corrected %d): %s", ops.Load(), runs, corrected, diff)
			}
			if tc.load && tc.cap == 0 && want.parked == 0 {
				t.Errorf("nothing parked: the case checked less than it says")
			}
		})
	}
}

// Drift in Redis's counters (a lost flush, a saver that died with changes
// not sent, a shard edited by hand) is repaired: by a reconcile after the
// period, and every field comes back, including an app with nothing stored.
func TestRedisReconcileRepairsDrift(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
	}{
		{"periodic", 100 * time.Millisecond},
		{"forced", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newRedisEnv(t)
			st := env.open(t, RedisOptions{ReconcileEvery: tc.every, Limits: Limits{MaxLoads: 2}})
			fillForReconcile(t, st)
			mustDrain(t, st)
			want := env.truth(t)
			waitTruth(t, st, want, time.Second) // the reconcile at open is done
			k := keyspace{env.prefix}
			pipe := env.rc.Pipeline()
			pipe.HIncrBy(bg, k.stats(5), appField(1), 7)
			pipe.HIncrBy(bg, k.stats(2), fieldParked, -3)
			pipe.HIncrBy(bg, k.stats(0), appField(9), 4)
			pipe.Del(bg, k.stats(3))
			if _, err := pipe.Exec(bg); err != nil {
				t.Fatal(err)
			}
			if tc.every == time.Hour {
				if ok, _ := want.matches(mustStats(t, st)); ok {
					t.Fatal("no drift injected")
				}
				if _, err := st.reconcile(bg, true); err != nil {
					t.Fatal(err)
				}
				if ok, diff := want.matches(mustStats(t, st)); !ok {
					t.Fatalf("right after the reconcile: %s", diff)
				}
				return
			}
			before := value(metricReconcileCorrected)
			waitTruth(t, st, want, 2*time.Second)
			if value(metricReconcileCorrected) == before {
				t.Error("converged without a correction counted")
			}
		})
	}
}

// Two savers on one Redis and MySQL: after FLUSHALL both see the new epoch
// and want a reconcile, yet the corrections apply once (the lock), and
// reconciles from both at once keep the counters exact.
func TestRedisReconcileTwoSavers(t *testing.T) {
	srv := startRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.addr()})
	t.Cleanup(func() { _ = rc.Close() })
	env := newRedisEnv(t)
	o := RedisOptions{Client: rc, EpochEvery: 50 * time.Millisecond, ReconcileEvery: time.Hour, Limits: Limits{MaxLoads: 2}}
	a, b := env.open(t, o), env.open(t, o)
	fillForReconcile(t, a)
	for id := uint64(1000); id < 1010; id++ {
		mustSave(t, b, msg(id, 2, future()), "b-user")
	}
	mustDrain(t, a)
	mustDrain(t, b)
	want := env.truth(t)
	if err := rc.FlushAll(bg).Err(); err != nil {
		t.Fatal(err)
	}
	waitTruth(t, a, want, 3*time.Second)
	waitTruth(t, b, want, 3*time.Second)
	var wg sync.WaitGroup
	for _, st := range []*RedisStore{a, b, a, b} {
		wg.Go(func() {
			for range 20 {
				if _, err := st.reconcile(bg, true); err != nil && !errors.Is(err, errReconcileBusy) {
					t.Errorf("reconcile: %v", err)
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // any late reconcile of the loss
	for _, st := range []*RedisStore{a, b} {
		if ok, diff := want.matches(mustStats(t, st)); !ok {
			t.Fatalf("after concurrent reconciles: %s", diff)
		}
	}
}

// While MySQL is down, Stats counts the rows still queued for it (they are
// stored: Redis has them and MySQL will); a Redis loss meanwhile cannot be
// reconciled (no truth to read) and is, as soon as MySQL is back.
func TestRedisReconcileMySQLDown(t *testing.T) {
	env, proxy, st := mysqlProxyStore(t, RedisOptions{SyncWait: 100 * time.Millisecond, EpochEvery: 50 * time.Millisecond,
		ReconcileEvery: time.Hour, Limits: Limits{MaxLoads: -1}})
	for id := uint64(1); id <= 4; id++ {
		mustSave(t, st, msg(id, 1, future()), "u", "v")
	}
	proxy.setCut(true)
	for id := uint64(5); id <= 7; id++ {
		mustSave(t, st, msg(id, 1, future()), "u", "v")
	}
	testkit.WaitFor(t, "mysql to count as down", 5*time.Second, st.dur.down)
	mustAck(t, st, "v", 1, 5) // queued too
	if s := mustStats(t, st); s.Pending != 13 {
		t.Fatalf("pending %d with rows queued, want 13 (8 committed, 6 queued saves, 1 queued ACK)", s.Pending)
	}
	failed := value(metricReconciles.WithLabelValues("failed"))
	dropKeys(bg, env.rc, env.prefix)
	testkit.WaitFor(t, "a reconcile to fail with mysql down", 5*time.Second, func() bool {
		return value(metricReconciles.WithLabelValues("failed")) > failed
	})
	proxy.setCut(false)
	testkit.WaitFor(t, "the durable queue to drain", 5*time.Second, func() bool { return st.dur.queued() == 0 })
	want := env.truth(t)
	if want.pending != 13 {
		t.Fatalf("mysql holds %d entries, want 13", want.pending)
	}
	waitTruth(t, st, want, 3*time.Second)
}

// On a Redis Cluster the reconcile's script (lock, shard 0, last time: one
// slot) runs, and the counters, spread over the shards' slots, add up.
func TestRedisClusterReconcile(t *testing.T) {
	addrs := startCluster(t, 3)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rc.Close() })
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{Client: rc, ReconcileEvery: time.Hour, Limits: Limits{MaxLoads: 2}})
	fillForReconcile(t, st)
	mustDrain(t, st)
	want := env.truth(t)
	k := keyspace{env.prefix}
	if err := rc.HIncrBy(bg, k.stats(6), appField(2), 5).Err(); err != nil {
		t.Fatal(err)
	}
	corr, err := st.reconcile(bg, true)
	if err != nil {
		t.Fatal(err)
	}
	if corr[appField(2)] != -5 {
		t.Errorf("corrections %v, want a2 -5", corr)
	}
	if ok, diff := want.matches(mustStats(t, st)); !ok {
		t.Fatal(diff)
	}
}
