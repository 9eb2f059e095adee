package saver

import (
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// A session open and idle past IdleTTL keeps its broadcast ACKs (review
// finding 1): the cursor write makes the user hash outlive the broadcasts
// it covers, so Checkpoint at the session's end finds the cursor, and the
// next login (a reload from MySQL) does not deliver the ACKed broadcast
// again. A unicast save later must not shorten that.
func TestRedisIdleSessionKeepsBroadcastACK(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{IdleTTL: time.Second, Limits: Limits{MaxLoads: -1}})
	exp := future() // an hour: far past IdleTTL
	mustBroadcast(t, st, msg(1, 1, exp))
	wantLoad(t, st, "a", 0, 1) // the AUTH's load
	mustAck(t, st, "a", 1, 1)
	key := keyspace{env.prefix}.user("a")
	// A short-lived unicast entry: its save touches the hash again.
	mustSave(t, st, msg(2, 1, time.Now().Unix()+1), "a")
	// The control: a hash with only that entry is gone after it expires
	// plus IdleTTL. a's must outlive the broadcast instead.
	mustSave(t, st, msg(3, 1, time.Now().Unix()+1), "ctl")
	ctl := keyspace{env.prefix}.user("ctl")
	testkit.WaitFor(t, "the control hash expired", 10*time.Second, func() bool {
		return env.rc.Exists(bg, ctl).Val() == 0
	})
	if ttl := env.rc.TTL(bg, key).Val(); ttl < time.Until(time.Unix(exp, 0)) {
		t.Fatalf("a's hash lives %v more, want past the broadcast's expiry (%v)", ttl, time.Until(time.Unix(exp, 0)))
	}
	if err := st.Checkpoint(bg, []push.SessionEnd{{UID: "a", Apps: []uint32{1}}}); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog() // the cursor log's flush (once a second)
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	// The hash goes later (its own expiry, or eviction): the next login
	// reloads from MySQL, which has the checkpointed cursor.
	env.rc.Del(bg, key)
	wantLoadApps(t, st, "a", []uint32{1}) // 2 expired, 1 ACKed: nothing
}

// An ACK sent to a saver that has not cached a broadcast another saver
// just stored counts and is kept (review finding 4), right after another
// refresh (the old 100 ms gate) and for many users at once (the refresh
// in flight is shared, not given up on).
func TestRedisAckOfBroadcastAnotherSaverStored(t *testing.T) {
	env := newRedisEnv(t)
	// No periodic sync in the test's time: only ACKs refresh st2's cache.
	o := RedisOptions{EpochEvery: time.Hour, Limits: Limits{MaxLoads: -1}}
	st1, st2 := env.open(t, o), env.open(t, o)
	exp := future()
	mustAck(t, st2, "a", 0, 99) // unknown: st2 refreshes now
	mustBroadcast(t, st1, msg(1, 1, exp))
	mustAck(t, st2, "a", 1, 1) // within 100 ms of that refresh
	wantLoadApps(t, st1, "a", []uint32{1})
	wantLoadApps(t, st2, "a", []uint32{1})

	mustBroadcast(t, st1, msg(2, 1, exp))
	const users = 16
	var wg sync.WaitGroup
	counts := make([]int, users)
	errs := make([]error, users)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = st2.Ack(bg, uidN(i), []uint32{1}, []uint64{2})
		}()
	}
	wg.Wait()
	for i := range users {
		if errs[i] != nil || counts[i] != 1 {
			t.Errorf("user %d: ack of 2 counted %d (%v), want 1", i, counts[i], errs[i])
		}
	}
	for i := range users {
		wantLoadApps(t, st1, uidN(i), []uint32{1}, 1)
	}
}

func uidN(i int) string { return "u" + string(rune('a'+i)) }

// A reload after a Redis loss keeps the ACK of a parked broadcast that
// only Redis has (review finding 7): MySQL's older cursor has it parked,
// the surviving hash has it ACKed, and the join must not park it again.
func TestRedisReloadKeepsACKOfParked(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{EpochEvery: 50 * time.Millisecond, Limits: Limits{MaxLoads: 2}})
	mustBroadcast(t, st, msg(1, 1, future()))
	wantLoadApps(t, st, "a", []uint32{1}, 1)
	wantLoadApps(t, st, "a", []uint32{1}, 1)
	wantLoadApps(t, st, "a", []uint32{1}) // parked at its second load
	ends := []push.SessionEnd{{UID: "a", Apps: []uint32{1}}}
	if err := st.Checkpoint(bg, ends); err != nil { // MySQL: parked
		t.Fatal(err)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	mustAckFor(t, st, "a", []uint32{1}, 1, 1) // Redis alone: ACKed
	state := func() (acked, parked bool) {
		t.Helper()
		h, err := st.readHash(bg, "a")
		if err != nil {
			t.Fatal(err)
		}
		c := h.curs[1].c
		return c.state(st.bc.seq(1))
	}
	if acked, parked := state(); !acked || parked {
		t.Fatalf("after the ACK: acked %v parked %v", acked, parked)
	}
	// Redis "lost data": a new epoch, the user's hash survives.
	ep := *st.epoch.Load()
	env.rc.HSet(bg, keyspace{env.prefix}.meta(), "epoch", "lost"+ep)
	testkit.WaitFor(t, "the new epoch", 5*time.Second, func() bool { return *st.epoch.Load() != ep })
	wantLoadApps(t, st, "a", []uint32{1}) // reloads: joins Redis's cursor with MySQL's
	if h, err := st.readHash(bg, "a"); err != nil || h.epoch != *st.epoch.Load() {
		t.Fatalf("not reloaded: epoch %q (%v)", h.epoch, err)
	}
	if acked, parked := state(); !acked || parked {
		t.Errorf("after the reload: acked %v parked %v, want ACKed", acked, parked)
	}
}
