package saver

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast ACKs stay in Redis; the session's end (Checkpoint) adds each
// (uid, app) cursor to the cursor log: one MySQL row per flush for all the
// sessions, whatever the number of users and broadcasts ACKed. After a Redis loss the checkpointed cursors come back
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
	st.flushCursorLog()
	if n := st.dur.enqueued() - before; n != 1 {
		t.Errorf("%d rows queued by the checkpoint, want 1 log row", n)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor", ""); n != 0 {
		t.Errorf("%d per-user cursor rows after the checkpoint, want 0", n)
	}
	if got := logEntries(t, env); !slices.Equal(got, []string{"a/1", "b/1", "b/2", "c/1"}) {
		t.Errorf("cursor log entries %q, want a/1 b/1 b/2 c/1", got)
	}
	// Repeating it (a room retrying) changes nothing a reload would read.
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}

	// a ACKs 3 in a session that has not ended when Redis loses everything.
	mustAck(t, st, "a", 1, 3)
	wantLoad(t, st, "a", 0, 10) // a never ACKs app 2's 10
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	loseRedis(t, env, st, 10)
	wantLoad(t, st, "b", 0, 3)     // 1, 2 and app 2's 10 were checkpointed
	wantLoad(t, st, "c", 0, 3, 10) // c never ACKed 10
	wantLoad(t, st, "a", 0, 3, 10) // 3 comes back once: its ACK was Redis's alone
	mustAck(t, st, "a", 1, 3)
	if err := st.Checkpoint(bg, ends[:1]); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	loseRedis(t, env, st, 10)
	wantLoad(t, st, "a", 0, 10) // 3 checkpointed this time: not again
}

// logEntries returns the cursor log's entries as "uid/app", sorted.
func logEntries(t *testing.T, env *redisEnv) []string {
	t.Helper()
	rows, err := env.db.QueryContext(bg, "SELECT data FROM `"+env.tprefix+"broadcast_cursor_log`")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		if err := decodeCursorLog(data, func(uid string, c cursorRow) {
			out = append(out, fmt.Sprintf("%s/%d", uid, c.app))
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// An app with a broadcast that never expires keeps per-user rows (a log
// row would be kept forever); a cursor of an app with no live broadcast
// covers nothing and is not written; the sweep deletes log rows whose
// broadcasts all expired.
func TestRedisCheckpointLogRouting(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{EpochEvery: time.Hour, Limits: Limits{MaxLoads: -1}})
	soon := time.Now().Add(3 * time.Second).Unix()
	mustBroadcast(t, st, msg(1, 1, soon))
	mustBroadcast(t, st, msg(10, 2, 0)) // never expires
	for _, uid := range []string{"a", "b"} {
		wantLoad(t, st, uid, 0, 1, 10)
		mustAck(t, st, uid, 1, 1)
		mustAckFor(t, st, uid, []uint32{2}, 1, 10)
	}
	ends := []push.SessionEnd{{UID: "a", Apps: []uint32{1, 2}}, {UID: "b", Apps: []uint32{1, 2}}}
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor", "app = 2"); n != 2 {
		t.Errorf("%d per-user rows of app 2 (a broadcast that never expires), want 2", n)
	}
	if got := logEntries(t, env); !slices.Equal(got, []string{"a/1", "b/1"}) {
		t.Errorf("cursor log entries %q, want a/1 b/1", got)
	}
	// Once broadcast 1 expired, app 1's cursors cover nothing: not written,
	// and the sweep deletes the log row.
	testkit.WaitFor(t, "broadcast 1 to expire", 10*time.Second, func() bool { return time.Now().Unix() > soon })
	if _, err := st.Expire(bg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor_log", ""); n != 0 {
		t.Errorf("%d log rows after the sweep, want 0", n)
	}
	if err := st.Checkpoint(bg, ends[:1]); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_cursor_log", ""); n != 0 {
		t.Errorf("%d log rows for cursors of expired broadcasts, want 0", n)
	}
}

// Buffered log entries count in the MySQL queue's bound like rows: past
// it a Checkpoint is refused (the room retries it) and nothing is
// buffered.
func TestRedisCursorLogQueueBound(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{EpochEvery: time.Hour, DurableQueue: 4, Limits: Limits{MaxLoads: -1}})
	mustBroadcast(t, st, msg(1, 1, future()))
	var ends []push.SessionEnd
	for i := range 10 { // ACKs may fill twice the bound: 8
		uid := fmt.Sprintf("u%d", i)
		wantLoad(t, st, uid, 0, 1)
		mustAck(t, st, uid, 1, 1)
		ends = append(ends, push.SessionEnd{UID: uid, Apps: []uint32{1}})
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if err := st.Checkpoint(bg, ends); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("checkpoint of 10 ends with room for 8: %v, want refused", err)
	}
	if st.clogBuf.entries != 0 || st.dur.queued() != 0 {
		t.Errorf("after the refusal: %d entries buffered, %d queued", st.clogBuf.entries, st.dur.queued())
	}
	if err := st.Checkpoint(bg, ends[:8]); err != nil {
		t.Fatal(err)
	}
	if q := st.dur.queued(); q != 8 {
		t.Errorf("queue depth %d with 8 entries buffered, want 8", q)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	if q := st.dur.queued(); q != 0 {
		t.Errorf("queue depth %d once the log row committed, want 0", q)
	}
	if got := logEntries(t, env); len(got) != 8 {
		t.Errorf("%d log entries, want 8", len(got))
	}
}
