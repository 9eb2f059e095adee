package saver

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// Store-level failure tests against the real servers: Redis losing its
// data (FLUSHALL, a restart without persistence) loses no accepted,
// unACKed message; MySQL going away keeps saves working on Redis, queues
// the durable writes and catches up when it returns; a full queue refuses.

// workload saves and ACKs messages from several goroutines and keeps the
// books: what was accepted and not ACKed must be loadable at the end.
type workload struct {
	st    *RedisStore
	gen   *idgen.Generator
	users []string
	bcast []uint64 // broadcasts: every user ACKed the first, not the others

	mu     sync.Mutex
	want   map[string]map[uint64]bool // accepted, not ACKed
	unsure map[string]map[uint64]bool // a save or ACK failed: either outcome is right
	errs   []error

	saves    atomic.Int64
	failures atomic.Int64
	stop     atomic.Bool
	wg       sync.WaitGroup
}

func newWorkload(t *testing.T, st *RedisStore, users int) *workload {
	gen, err := idgen.New(7)
	if err != nil {
		t.Fatal(err)
	}
	w := &workload{st: st, gen: gen, want: map[string]map[uint64]bool{}, unsure: map[string]map[uint64]bool{}}
	for i := range users {
		uid := fmt.Sprint("user-", i)
		w.users = append(w.users, uid)
		w.want[uid], w.unsure[uid] = map[uint64]bool{}, map[uint64]bool{}
	}
	for range 2 {
		b := msg(gen.Next(), 1, future())
		mustBroadcast(t, st, b)
		w.bcast = append(w.bcast, b.ID)
	}
	ends := make([]push.SessionEnd, 0, len(w.users))
	for _, uid := range w.users {
		loadIDs(t, st, uid, []uint32{1}, 0) // the session's AUTH: stamps the hash's epoch
		mustAck(t, st, uid, 1, w.bcast[0])
		ends = append(ends, push.SessionEnd{UID: uid, Apps: []uint32{1}})
	}
	// The sessions that ACKed end: Checkpoint takes the broadcast ACKs to
	// MySQL, so the Redis losses below must not bring them back (an ACK
	// of a session still open when Redis is lost may come back once).
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *workload) start(workers int) {
	for g := range workers {
		w.wg.Go(func() {
			for i := 0; !w.stop.Load(); i++ {
				w.step(g, i)
			}
		})
	}
}

func (w *workload) finish() {
	w.stop.Store(true)
	w.wg.Wait()
}

// waitSaves waits until n saves were accepted since the start.
func (w *workload) waitSaves(t *testing.T, n int64) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprint(n, " saves"), 5*time.Second, func() bool { return w.saves.Load() >= n })
}

// step saves one message for one or two users, and every third step ACKs
// the oldest message a user has.
func (w *workload) step(g, i int) {
	a := w.users[(g*7+i)%len(w.users)]
	uids := []string{a}
	if i%4 == 0 {
		uids = append(uids, w.users[(g*7+i+1)%len(w.users)])
	}
	m := msg(w.gen.Next(), 1, future())
	err := w.st.Save(bg, m, uids)
	w.mu.Lock()
	for _, uid := range uids {
		if err == nil {
			w.want[uid][m.ID] = true
		} else {
			w.unsure[uid][m.ID] = true
		}
	}
	if err != nil && !errors.Is(err, push.ErrUnavailable) {
		w.errs = append(w.errs, err)
	}
	var ack uint64
	if i%3 == 2 {
		for id := range w.want[a] {
			if ack == 0 || id < ack {
				ack = id
			}
		}
	}
	w.mu.Unlock()
	if err == nil {
		w.saves.Add(1)
	} else {
		w.failures.Add(1)
	}
	if ack == 0 {
		return
	}
	_, err = w.st.Ack(bg, a, testApps, []uint64{ack})
	w.mu.Lock()
	delete(w.want[a], ack)
	if err != nil {
		w.unsure[a][ack] = true
	}
	w.mu.Unlock()
}

// check loads every user: all it wants must be there, and nothing else but
// what is unsure and the live broadcasts the user did not ACK.
func (w *workload) check(t *testing.T) {
	t.Helper()
	for _, e := range w.errs {
		t.Errorf("failure that is not ErrUnavailable: %v", e)
	}
	total := 0
	for _, uid := range w.users {
		msgs, err := w.st.Load(bg, uid, []uint32{1}, 0)
		if err != nil {
			t.Fatalf("load %s: %v", uid, err)
		}
		got := map[uint64]bool{}
		for _, m := range msgs {
			got[m.ID] = true
			switch {
			case m.Broadcast:
				if m.ID != w.bcast[1] {
					t.Errorf("%s: broadcast %d came back after its ACK", uid, m.ID)
				}
			case !w.want[uid][m.ID] && !w.unsure[uid][m.ID]:
				t.Errorf("%s: message %d came back after its ACK", uid, m.ID)
			}
		}
		for id := range w.want[uid] {
			if !got[id] {
				t.Errorf("%s: accepted message %d lost", uid, id)
			}
		}
		if !got[w.bcast[1]] {
			t.Errorf("%s: broadcast %d lost", uid, w.bcast[1])
		}
		total += len(w.want[uid])
	}
	if total == 0 {
		t.Fatal("nothing pending at the end: the test checked nothing")
	}
}

func failureStore(t *testing.T, rc redis.UniversalClient) (*redisEnv, *RedisStore) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{Client: rc, EpochEvery: 50 * time.Millisecond, Limits: Limits{MaxLoads: -1, InboxCap: -1}})
	return env, st
}

func TestRedisFlushallLosesNothing(t *testing.T) {
	srv := startRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.addr()})
	t.Cleanup(func() { _ = rc.Close() })
	_, st := failureStore(t, rc)
	recovered, epochs := value(metricRecovered), value(metricEpochChanges)
	w := newWorkload(t, st, 20)
	w.start(4)
	w.waitSaves(t, 300)
	if err := rc.FlushAll(bg).Err(); err != nil {
		t.Fatal(err)
	}
	w.waitSaves(t, 600)
	w.finish()
	w.check(t)
	if value(metricRecovered) == recovered || value(metricEpochChanges) == epochs {
		t.Errorf("no recovery counted: recovered +%v, epochs +%v",
			value(metricRecovered)-recovered, value(metricEpochChanges)-epochs)
	}
}

func TestRedisRestartLosesNothing(t *testing.T) {
	srv := startRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.addr(), MaxRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rc.Close() })
	_, st := failureStore(t, rc)
	w := newWorkload(t, st, 20)
	w.start(4)
	w.waitSaves(t, 300)
	srv.kill()
	// While Redis is down, saves fail with ErrUnavailable (checked by the
	// workload) and are not accepted.
	testkit.WaitFor(t, "saves to fail", 5*time.Second, func() bool { return w.failures.Load() >= 4 })
	srv.start()
	n := w.saves.Load()
	w.waitSaves(t, n+300)
	w.finish()
	w.check(t)
}

// mysqlProxyStore is a store whose MySQL goes through a proxy the test cuts.
func mysqlProxyStore(t *testing.T, o RedisOptions) (*redisEnv, *tcpProxy, *RedisStore) {
	env := newRedisEnv(t)
	proxy := newTCPProxy(t, mysqlAddr(t, env.dsn))
	o.DB = openDB(t, env.dsn, proxy.addr())
	return env, proxy, env.open(t, o)
}

func TestRedisMySQLDownQueuesAndCatchesUp(t *testing.T) {
	env, proxy, st := mysqlProxyStore(t, RedisOptions{SyncWait: 500 * time.Millisecond, Limits: Limits{MaxLoads: -1}})
	both := []string{"u1", "u2"}
	for id := uint64(1); id <= 5; id++ {
		mustSave(t, st, msg(id, 1, future()), both...)
	}
	if n := env.rows(t, "inbox", ""); n != 10 {
		t.Fatalf("mysql holds %d rows after synchronous saves, want 10", n)
	}
	if value(metricDurableHealthy) != 1 {
		t.Errorf("healthy gauge %v with mysql up", value(metricDurableHealthy))
	}
	proxy.setCut(true)
	mustSave(t, st, msg(6, 1, future()), both...) // waits at most SyncWait
	testkit.WaitFor(t, "the writer to count mysql as down", 5*time.Second, func() bool {
		return !st.dur.healthy()
	})
	start := time.Now()
	for id := uint64(7); id <= 30; id++ {
		mustSave(t, st, msg(id, 1, future()), both...)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("24 saves with mysql down took %v: they should not wait for it", d)
	}
	if value(metricDurableHealthy) != 0 {
		t.Errorf("healthy gauge still 1 with mysql down")
	}
	var ids []uint64
	for id := uint64(1); id <= 30; id++ {
		ids = append(ids, id)
	}
	if got := loadIDs(t, st, "u1", []uint32{1}, 0); len(got) != 30 {
		t.Fatalf("u1 loads %d messages with mysql down, want 30", len(got))
	}
	mustAck(t, st, "u1", 10, ids[:10]...)
	if q := st.dur.queued(); q < 50 {
		t.Fatalf("queued rows %d with mysql down, want >= 50 (25 saves x 2 uids, 10 acks)", q)
	}
	proxy.setCut(false)
	testkit.WaitFor(t, "the durable queue to drain", 5*time.Second, func() bool { return st.dur.queued() == 0 })
	if value(metricDurableHealthy) != 1 {
		t.Errorf("healthy gauge still 0 after mysql came back and the queue drained")
	}
	if n := env.rows(t, "inbox", "uid = ?", "u1"); n != 20 {
		t.Errorf("mysql holds %d rows of u1, want 20", n)
	}
	if n := env.rows(t, "inbox", "uid = ?", "u2"); n != 30 {
		t.Errorf("mysql holds %d rows of u2, want 30", n)
	}
	// The durable copy is complete: losing Redis now loses nothing.
	dropKeys(bg, env.rc, env.prefix)
	if got := loadIDs(t, st, "u1", []uint32{1}, 0); len(got) != 20 || got[0] != 11 {
		t.Errorf("u1 after redis lost its keys: %v", got)
	}
	if got := loadIDs(t, st, "u2", []uint32{1}, 0); len(got) != 30 {
		t.Errorf("u2 after redis lost its keys: %d messages", len(got))
	}
}

func TestRedisQueueFullRefuses(t *testing.T) {
	env, proxy, st := mysqlProxyStore(t, RedisOptions{DurableQueue: 10, SyncWait: 100 * time.Millisecond, Limits: Limits{MaxLoads: -1}})
	refused := value(metricDurableRefused.WithLabelValues(opSave))
	proxy.setCut(true)
	accepted := 0
	for id := uint64(1); id <= 20; id++ {
		err := st.Save(bg, msg(id, 1, future()), []string{"u"})
		if err != nil {
			if !errors.Is(err, push.ErrUnavailable) {
				t.Fatalf("save %d: %v, want ErrUnavailable", id, err)
			}
			break
		}
		accepted++
	}
	if accepted != 10 {
		t.Fatalf("%d saves accepted with a queue of 10 rows", accepted)
	}
	// All or nothing: a multicast that does not fit is refused whole.
	if err := st.Save(bg, msg(50, 1, future()), []string{"a", "b", "c"}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("multicast into a full queue: %v", err)
	}
	if d := value(metricDurableRefused.WithLabelValues(opSave)) - refused; d != 2 {
		t.Errorf("refused metric +%v, want 2", d)
	}
	if got := loadIDs(t, st, "u", []uint32{1}, 0); len(got) != 10 || got[9] != 10 {
		t.Fatalf("u loads %v: a refused save reached redis", got)
	}
	if got := loadIDs(t, st, "a", []uint32{1}, 0); len(got) != 0 {
		t.Fatalf("a loads %v", got)
	}
	mustAck(t, st, "u", 1, 1) // ACKs still flow
	proxy.setCut(false)
	testkit.WaitFor(t, "the durable queue to drain", 5*time.Second, func() bool { return st.dur.queued() == 0 })
	mustSave(t, st, msg(60, 1, future()), "u")
	if n := env.rows(t, "inbox", "uid = ?", "u"); n != 10 {
		t.Errorf("mysql holds %d rows of u, want 10 (10 saved, 1 acked, 1 more)", n)
	}
}

// Redis losing a user while MySQL is down: Load serves what Redis has (no
// error, no wait), and once MySQL is back the reload brings everything,
// including what was only queued when Redis lost it.
func TestRedisLossWhileMySQLDown(t *testing.T) {
	env, proxy, st := mysqlProxyStore(t, RedisOptions{SyncWait: 100 * time.Millisecond, EpochEvery: 50 * time.Millisecond,
		Limits: Limits{MaxLoads: -1}})
	for id := uint64(1); id <= 3; id++ {
		mustSave(t, st, msg(id, 1, future()), "u")
	}
	proxy.setCut(true)
	mustSave(t, st, msg(4, 1, future()), "u")
	testkit.WaitFor(t, "mysql to count as down", 5*time.Second, st.dur.down)
	dropKeys(bg, env.rc, env.prefix)
	start := time.Now()
	if got := loadIDs(t, st, "u", []uint32{1}, 0); len(got) != 0 {
		t.Fatalf("u loads %v from an emptied redis", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("load with mysql down took %v", d)
	}
	mustSave(t, st, msg(5, 1, future()), "u")
	proxy.setCut(false)
	testkit.WaitFor(t, "the durable queue to drain", 5*time.Second, func() bool { return st.dur.queued() == 0 })
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("u after mysql came back: %v", got)
	}
}

// An ACK on a user Redis lost (evicted, expired, or not yet reloaded since
// Redis lost data) reloads the user from MySQL first: the ids MySQL holds
// for the ACKing apps are deleted and counted, and the other ids cost no
// MySQL row, in particular another app's entry.
func TestRedisAckReloadsLostUser(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{Limits: Limits{MaxLoads: -1}})
	mustSave(t, st, msg(1, 1, future()), "u")
	mustSave(t, st, msg(2, 2, future()), "u")
	if err := env.rc.Del(bg, st.k.user("u")).Err(); err != nil {
		t.Fatal(err)
	}
	queued := st.dur.enqueued()
	mustAckFor(t, st, "u", []uint32{1}, 1, 1, 2, 99) // 1 from MySQL; 2 is app 2's; 99 unknown
	if d := st.dur.enqueued() - queued; d != 1 {
		t.Fatalf("%d rows queued, want 1 (the delete of 1)", d)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "inbox", "uid = ?", "u"); n != 1 {
		t.Fatalf("mysql holds %d rows of u, want 1 (app 2's)", n)
	}
	if got := loadIDs(t, st, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("u loads %v, want [2]", got)
	}
}

// An ACK that Redis cannot check while MySQL is down (the user's hash was
// lost and cannot be reloaded) queues MySQL deletes restricted to the
// ACKing apps, and its tombstones keep out of the next reload only those
// apps' entries: app 1 naming app 2's id deletes nothing of app 2's.
func TestRedisAckUncheckedIsPerApp(t *testing.T) {
	env, proxy, st := mysqlProxyStore(t, RedisOptions{SyncWait: time.Second, Limits: Limits{MaxLoads: -1}})
	mustSave(t, st, msg(1, 1, future()), "u")
	mustSave(t, st, msg(2, 2, future()), "u")
	mustSave(t, st, msg(3, 1, future()), "u")
	if n := env.rows(t, "inbox", "uid = ?", "u"); n != 3 {
		t.Fatalf("mysql holds %d rows of u, want 3", n)
	}
	if err := env.rc.Del(bg, st.k.user("u")).Err(); err != nil { // Redis loses the user
		t.Fatal(err)
	}
	proxy.setCut(true)
	queued := st.dur.enqueued()
	mustAckFor(t, st, "u", []uint32{1}, 0, 1, 2) // neither is in Redis
	if d := st.dur.enqueued() - queued; d != 2 {
		t.Fatalf("%d rows queued, want 2 conditional deletes", d)
	}
	proxy.setCut(false)
	testkit.WaitFor(t, "the durable queue to drain", 5*time.Second, func() bool { return st.dur.queued() == 0 })
	if n := env.rows(t, "inbox", "uid = ? AND id = 1", "u"); n != 0 {
		t.Errorf("app 1's ACKed row is still in mysql")
	}
	if n := env.rows(t, "inbox", "uid = ? AND id = 2", "u"); n != 1 {
		t.Errorf("app 2's row was deleted by app 1's ACK")
	}
	// The reload brings app 2's entry back despite the tombstone app 1's
	// ACK left for its id.
	if got := loadIDs(t, st, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("u loads %v, want [2 3]", got)
	}
}
