package saver

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast ACKs stay in Redis; the session's end (Checkpoint) writes one
// MySQL row per (uid, app) that has a cursor, whatever the number of
// broadcasts ACKed. After a Redis loss the checkpointed cursors come back
// from MySQL: nothing ACKed before the checkpoint is delivered again. An
// ACK made after the last checkpoint and lost with Redis is delivered once
// more (the documented cost: docs/storage.md "Recovery"); ACKed again and
// checkpointed, it is gone.
func TestRedisCheckpointWritesCursorRows(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{EpochEvery: 50 * time.Millisecond, Limits: Limits{MaxLoads: -1}})
	exp := future()
	for _, m := range []push.Message{msg(1, 1, exp), msg(2, 1, exp), msg(3, 1, exp), msg(10, 2, exp)} {
		mustBroadcast(t, st, m)
	}
	uids := []string{"a", "b", "c"}
	for _, uid := range uids {
		wantLoad(t, st, uid, 0, 1, 2, 3, 10) // the AUTH's load
	}
	before := st.dur.enqueued()
	for _, uid := range uids {
		mustAck(t, st, uid, 1, 1)
		mustAck(t, st, uid, 1, 2)
	}
	mustAckFor(t, st, "b", []uint32{2}, 1, 10)
	if n := st.dur.enqueued() - before; n != 0 {
		t.Fatalf("%d rows queued for MySQL by broadcast ACKs, want none before the checkpoint", n)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor", ""); n != 0 {
		t.Fatalf("%d cursor rows before any checkpoint", n)
	}

	// a, b, c end their sessions (a and b with both apps bound); nobody,
	// who has no hash, and a's app 2, which has no cursor, write nothing.
	ends := []push.SessionEnd{
		{UID: "a", Apps: []uint32{1, 2}}, {UID: "b", Apps: []uint32{1, 2}},
		{UID: "c", Apps: []uint32{1}}, {UID: "nobody", Apps: []uint32{1}},
	}
	before = st.dur.enqueued()
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}
	if n := st.dur.enqueued() - before; n != 4 {
		t.Errorf("%d rows queued by the checkpoint, want 4 (a/1, b/1, b/2, c/1)", n)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor", ""); n != 4 {
		t.Errorf("%d cursor rows after the checkpoint, want 4", n)
	}
	// Repeating it (a room retrying) changes nothing MySQL keeps.
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}

	// a ACKs 3 in a session that has not ended when Redis loses everything.
	mustAck(t, st, "a", 1, 3)
	wantLoad(t, st, "a", 0, 10) // a never ACKs app 2's 10
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	ep := *st.epoch.Load()
	dropKeys(bg, env.rc, env.prefix)
	testkit.WaitFor(t, "a new epoch", 5*time.Second, func() bool { return *st.epoch.Load() != ep })
	testkit.WaitFor(t, "broadcasts restored", 5*time.Second, func() bool {
		return env.rc.HExists(bg, keyspace{env.prefix}.broadcasts(), "m"+id8(10)).Val() && !st.restore.Load()
	})
	wantLoad(t, st, "b", 0, 3)     // 1, 2 and app 2's 10 were checkpointed
	wantLoad(t, st, "c", 0, 3, 10) // c never ACKed 10
	wantLoad(t, st, "a", 0, 3, 10) // 3 comes back once: its ACK was Redis's alone
	mustAck(t, st, "a", 1, 3)
	if err := st.Checkpoint(bg, ends[:1]); err != nil {
		t.Fatal(err)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	ep = *st.epoch.Load()
	dropKeys(bg, env.rc, env.prefix)
	testkit.WaitFor(t, "another epoch", 5*time.Second, func() bool { return *st.epoch.Load() != ep })
	testkit.WaitFor(t, "broadcasts restored again", 5*time.Second, func() bool {
		return env.rc.HExists(bg, keyspace{env.prefix}.broadcasts(), "m"+id8(10)).Val() && !st.restore.Load()
	})
	wantLoad(t, st, "a", 0, 10) // 3 checkpointed this time: not again
}
