package saver

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// The previous version's data (schema version 1, b<id8> records in the
// user hashes, broadcast_ack rows, broadcasts without seqs), written here
// directly as that version laid it out, is read correctly by this one:
// nothing lost, nothing delivered again after its ACK, before and after a
// Redis loss.
func TestRedisMigratesPreviousVersion(t *testing.T) {
	env := newRedisEnv(t)
	tb := newTables(env.tprefix)
	k := keyspace{env.prefix}
	if applied, err := migrate(bg, env.db, tb, migrations[:1]); err != nil || !slices.Equal(applied, []int{1}) {
		t.Fatalf("version 1 schema: %v %v", applied, err)
	}
	now := time.Now().Unix()
	exp := now + 3600
	es := strconv.FormatInt(exp, 10)
	rc := env.rc
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := env.db.ExecContext(bg, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Broadcasts 100, 200, 300 of app 1 and 400 of app 2, in Redis and
	// MySQL, saved in this order by the previous version (no seqs).
	bcasts := []push.Message{msg(100, 1, exp), msg(200, 1, exp), msg(300, 1, exp), msg(400, 2, exp)}
	for i, m := range bcasts {
		must(rc.HSet(bg, k.broadcasts(), "m"+id8(m.ID), appendValue(nil, &m), "v", i+1).Err())
		exec("INSERT INTO `"+tb.broadcast+"` (id, app, qos, expire_at, payload) VALUES (?,?,?,?,?)",
			m.ID, m.App, m.QoS, m.Expire, m.Payload)
	}
	// The epoch the hashes below were filled in: the store adopts it.
	must(rc.HSet(bg, k.meta(), "epoch", "E0").Err())
	hash := func(uid string, kv ...any) {
		t.Helper()
		must(rc.HSet(bg, k.user(uid), append([]any{"e", "E0"}, kv...)...).Err())
	}
	back := func(uid string, bid uint64, state int) {
		t.Helper()
		exec("INSERT INTO `"+tb.backs+"` (uid, bid, state) VALUES (?,?,?)", []byte(uid), bid, state)
	}
	hash("acked", "b"+id8(100), "a:"+es, "b"+id8(400), "a:"+es) // ACKed 100 (and app 2's 400)
	back("acked", 100, backAcked)
	back("acked", 400, backAcked)
	hash("parked", "b"+id8(200), "p:"+es) // 200 parked
	back("parked", 200, backParked)
	hash("loaded", "b"+id8(300), "2:"+es) // 300 loaded twice (not durable)
	uni := []push.Message{msg(1, 1, exp), msg(2, 1, exp)}
	hash("unicast", "n", 2, "x", es, "m"+id8(1), appendValue(nil, &uni[0]), "m"+id8(2), appendValue(nil, &uni[1]))
	for _, m := range uni {
		exec("INSERT INTO `"+tb.inbox+"` (uid, id, app, qos, expire_at, parked, payload) VALUES (?,?,?,?,?,0,?)",
			[]byte("unicast"), m.ID, m.App, m.QoS, m.Expire, m.Payload)
	}
	// lost: Redis lost its hash; MySQL says it ACKed 100 and parked 300.
	back("lost", 100, backAcked)
	back("lost", 300, backParked)
	// Delivery status records of 100 and 200, as both versions write them.
	for _, id := range []uint64{100, 200} {
		must(rc.HSet(bg, k.status(id), "app", 1, "kind", push.KindBroadcast, "created", now, "expires", exp,
			"targets", 0, "stored", 1, "sent", 0, "acked", 0, "expired", 0, "parked", 0).Err())
	}

	st := env.open(t, RedisOptions{Limits: Limits{MaxLoads: 3}, EpochEvery: 50 * time.Millisecond})
	if vs := schemaVersions(t, env); !slices.Equal(vs, []int{1, 2, 3}) {
		t.Fatalf("schema versions %v", vs)
	}
	// Seqs in id order, the same in Redis and MySQL.
	seqs := func() []uint64 {
		t.Helper()
		var out []uint64
		for _, m := range bcasts {
			var my uint64
			if err := env.db.QueryRowContext(bg, "SELECT seq FROM `"+tb.broadcast+"` WHERE id = ?", m.ID).Scan(&my); err != nil {
				t.Fatal(err)
			}
			rs, err := rc.HGet(bg, k.broadcastSeqs(), id8(m.ID)).Uint64()
			if err != nil || rs != my || my == 0 {
				t.Fatalf("broadcast %d: seq %d in redis (%v), %d in mysql", m.ID, rs, err, my)
			}
			out = append(out, my)
		}
		for i := 1; i < len(out); i++ {
			if out[i] <= out[i-1] {
				t.Fatalf("seqs %v not ascending in id order", out)
			}
		}
		return out
	}
	before := seqs()

	// What the previous version recorded reads as it was, before any Load.
	wantState(t, st, 1, 100, "acked", push.StateAcked)
	wantState(t, st, 1, 200, "parked", push.StateParked)
	wantState(t, st, 1, 100, "parked", push.StateStored)

	check := func(step string, loads map[string][]uint64) {
		t.Helper()
		for _, uid := range slices.Sorted(func(yield func(string) bool) {
			for u := range loads {
				if !yield(u) {
					return
				}
			}
		}) {
			if got := loadIDs(t, st, uid, []uint32{1, 2}, 0); !slices.Equal(got, loads[uid]) {
				t.Errorf("%s: %s loads %v, want %v", step, uid, got, loads[uid])
			}
		}
	}
	check("first loads", map[string][]uint64{
		"acked":   {200, 300},
		"parked":  {100, 300, 400},
		"loaded":  {100, 200, 300, 400}, // the third load of 300 parks it
		"lost":    {200, 400},           // reloaded from MySQL
		"unicast": {1, 2, 100, 200, 300, 400},
		"fresh":   {100, 200, 300, 400},
	})
	// The records are folded into cursors: no b field is left.
	for _, uid := range []string{"acked", "parked", "loaded", "lost"} {
		fields, err := rc.HKeys(bg, k.user(uid)).Result()
		must(err)
		for _, f := range fields {
			if f[0] == 'b' {
				t.Errorf("%s: previous-version field %q left after a Load", uid, f)
			}
		}
		if !slices.Contains(fields, cursorField(1)) {
			t.Errorf("%s: no cursor of app 1 in %q", uid, fields)
		}
	}
	wantState(t, st, 1, 100, "acked", push.StateAcked)
	wantState(t, st, 1, 200, "parked", push.StateParked)
	mustAck(t, st, "acked", 0, 100, 400) // ACKed before: nothing
	mustAck(t, st, "acked", 1, 200)
	mustAck(t, st, "lost", 0, 100)
	mustAck(t, st, "lost", 1, 200)
	mustAck(t, st, "parked", 1, 200) // the ACK of a parked broadcast takes effect
	mustAck(t, st, "unicast", 2, 1, 100)
	wantState(t, st, 1, 200, "acked", push.StateAcked)
	wantStatus(t, st, 1, 200, counts{stored: 1, acked: 3})
	check("after ACKs", map[string][]uint64{
		"acked":   {300},
		"parked":  {100, 300, 400},
		"loaded":  {100, 200, 400}, // 300 parked
		"lost":    {400},
		"unicast": {2, 200, 300, 400},
	})
	// Nothing new goes to the previous version's table.
	if n := env.rows(t, "broadcast_ack", ""); n != 5 {
		t.Errorf("broadcast_ack rows %d, want the 5 written before", n)
	}
	// A broadcast saved now comes after the migrated ones.
	mustBroadcast(t, st, msg(50, 1, exp)) // a lower id, saved later: still delivered
	if s, err := rc.HGet(bg, k.broadcastSeqs(), id8(50)).Uint64(); err != nil || s <= before[3] {
		t.Errorf("new broadcast's seq %d (%v) not above the migrated ones %v", s, err, before)
	}

	// Redis loses everything: broadcasts come back with their seqs, users
	// from MySQL with their cursors and the previous version's rows. Their
	// sessions ended first: Checkpoint took the broadcast ACKs to MySQL.
	var ends []push.SessionEnd
	for _, uid := range []string{"acked", "parked", "loaded", "lost", "unicast", "fresh"} {
		ends = append(ends, push.SessionEnd{UID: uid, Apps: []uint32{1, 2}})
	}
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	dropKeys(bg, rc, env.prefix)
	testkit.WaitFor(t, "a new epoch", 5*time.Second, func() bool { return *st.epoch.Load() != "E0" })
	testkit.WaitFor(t, "broadcasts restored", 5*time.Second, func() bool {
		return rc.HExists(bg, k.broadcasts(), "m"+id8(300)).Val() && !st.restore.Load()
	})
	if after := seqs(); !slices.Equal(after, before) {
		t.Errorf("seqs after the restore %v, before %v", after, before)
	}
	check("after a Redis loss", map[string][]uint64{
		"acked":   {50, 300},
		"parked":  {50, 100, 300, 400},
		"loaded":  {50, 100, 200, 400},
		"lost":    {50, 400},
		"unicast": {2, 50, 200, 300, 400},
		"fresh":   {50, 100, 200, 300, 400},
	})
	// The sweep empties the previous version's table with its broadcasts.
	if _, err := st.Expire(bg, time.Unix(exp, 0)); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, "broadcast_ack", ""); n != 0 || st.dur.backsLeft.Load() {
		t.Errorf("broadcast_ack rows %d after the sweep (left %v)", n, st.dur.backsLeft.Load())
	}
	if s := mustStats(t, st); s.Broadcasts != 0 {
		t.Errorf("broadcasts after the sweep: %+v", s)
	}
}

// A saver whose cache lacks a broadcast another saver just made (it
// refreshes every EpochEvery) must not move a cursor over it: ACKing a
// later broadcast there leaves the earlier one to be delivered.
func TestRedisCursorStaleCache(t *testing.T) {
	env := newRedisEnv(t)
	a := env.open(t, RedisOptions{})
	b := env.open(t, RedisOptions{EpochEvery: time.Hour}) // never refreshes here
	exp := future()
	mustOpen(t, a, 10, 1, push.KindBroadcast, exp)
	mustBroadcast(t, a, msg(10, 1, exp)) // b does not know it
	mustBroadcast(t, b, msg(20, 1, exp))
	wantLoad(t, b, "u", 0, 20)
	mustAck(t, b, "u", 1, 20)
	wantLoad(t, b, "u", 0)
	testkit.WaitFor(t, "a's cache has 20", 5*time.Second, func() bool { _, ok := a.bc.get(20); return ok })
	wantLoad(t, a, "u", 0, 10)
	mustAck(t, a, "u", 1, 10)
	wantLoad(t, a, "u", 0)
	// b reads the state of a broadcast it did not hold: it looks it up.
	wantState(t, b, 1, 10, "u", push.StateAcked)
	// Once both are known, the cursor is one number again.
	if _, err := b.syncBroadcasts(bg, false); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, b, "u", 0)
	raw, err := env.rc.HGet(bg, keyspace{env.prefix}.user("u"), cursorField(1)).Result()
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeRCursor(raw)
	if err != nil || len(c.c.Exc) != 0 || c.c.Cur != b.bc.seq(20) {
		t.Fatalf("cursor %+v %v, want Cur at 20's seq %d and no exception", c, err, b.bc.seq(20))
	}
}

// A stream of broadcasts ACKed in order costs each user one cursor field
// in Redis and, at its session's end, one row in MySQL, whatever the
// number of broadcasts.
func TestRedisCursorCompact(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{})
	uids := []string{"a", "b", "c"}
	exp := future()
	var ends []push.SessionEnd
	for _, uid := range uids {
		ends = append(ends, push.SessionEnd{UID: uid, Apps: []uint32{1}})
	}
	for id := uint64(1); id <= 40; id++ {
		mustBroadcast(t, st, msg(id, 1, exp))
		for _, uid := range uids {
			wantLoad(t, st, uid, 0, id)
			mustAck(t, st, uid, 1, id)
		}
	}
	if err := st.Checkpoint(bg, ends); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		h, err := env.rc.HGetAll(bg, keyspace{env.prefix}.user(uid)).Result()
		if err != nil {
			t.Fatal(err)
		}
		var fields []string
		for f := range h {
			if f != "e" && f != "n" && f != "y" { // y: one expiry, whatever the broadcasts
				fields = append(fields, strings.ToValidUTF8(f, "?"))
			}
		}
		if len(fields) != 1 || len(h[cursorField(1)]) > 16 {
			t.Errorf("%s: hash fields %q, cursor %d bytes: want one small cursor", uid, fields, len(h[cursorField(1)]))
		}
	}
	if n := env.rows(t, "broadcast_cursor", ""); n != 0 {
		t.Errorf("%d cursor rows, want 0 (the log holds them)", n)
	}
	if n := env.rows(t, "broadcast_cursor_log", ""); n != 1 {
		t.Errorf("%d cursor log rows, want 1 for the three users", n)
	}
	if n := env.rows(t, "broadcast_ack", ""); n != 0 {
		t.Errorf("%d broadcast_ack rows", n)
	}
	// The MySQL copy (the log, read by the epoch's reloads) is the latest
	// cursor: a user Redis lost gets nothing again.
	dropKeys(bg, env.rc, env.prefix+"u{")
	wantLoad(t, st, "a", 0)
}

// The previous version's data in MySQL alone (Redis lost everything while
// the old version ran, or was replaced at the upgrade): the restore gives
// the broadcasts seqs in id order, in Redis and MySQL, and users' old rows
// are folded at their reload.
func TestRedisMigratesFromMySQLAlone(t *testing.T) {
	env := newRedisEnv(t)
	tb := newTables(env.tprefix)
	if _, err := migrate(bg, env.db, tb, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	exp := future()
	for _, id := range []uint64{300, 100, 200} {
		m := msg(id, 1, exp)
		if _, err := env.db.ExecContext(bg, "INSERT INTO `"+tb.broadcast+"` (id, app, qos, expire_at, payload) VALUES (?,?,?,?,?)",
			m.ID, m.App, m.QoS, m.Expire, m.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.db.ExecContext(bg, "INSERT INTO `"+tb.backs+"` (uid, bid, state) VALUES (?,?,?), (?,?,?)",
		[]byte("u"), 100, backAcked, []byte("u"), 300, backParked); err != nil {
		t.Fatal(err)
	}
	st := env.open(t, RedisOptions{})
	var prev uint64
	for _, id := range []uint64{100, 200, 300} {
		var my uint64
		if err := env.db.QueryRowContext(bg, "SELECT seq FROM `"+tb.broadcast+"` WHERE id = ?", id).Scan(&my); err != nil {
			t.Fatal(err)
		}
		if rs := st.bc.seq(id); rs != my || my <= prev {
			t.Fatalf("broadcast %d: seq %d here, %d in mysql, previous %d", id, rs, my, prev)
		}
		prev = my
	}
	wantLoad(t, st, "u", 0, 200)
	wantLoad(t, st, "v", 0, 100, 200, 300)
	wantState(t, st, 1, 100, "u", push.StateUnknown) // no status record: nothing to say
}

// Schema version 2 wrote a broadcast_cursor row per (uid, app) at every
// session end; version 3 writes the cursor log instead and still reads
// those rows: after an upgrade and a Redis loss, what a version-2 row says
// was ACKed does not come back, and a version-3 row of the log joins it.
func TestRedisReadsVersion2CursorRows(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{EpochEvery: 50 * time.Millisecond, Limits: Limits{MaxLoads: -1}})
	tb := newTables(env.tprefix)
	exp := future()
	for _, id := range []uint64{1, 2, 3} {
		mustBroadcast(t, st, msg(id, 1, exp))
	}
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	seq := func(id uint64) uint64 {
		var s uint64
		if err := env.db.QueryRowContext(bg, "SELECT seq FROM `"+tb.broadcast+"` WHERE id = ?", id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// "old" ACKed 1 and 2 under version 2 (its row, as version 2 wrote it);
	// "new" ACKs 1 under version 3 and ends its session (the log).
	if _, err := env.db.ExecContext(bg, "INSERT INTO `"+tb.cursors+"` (uid, app, ver, cur, exc) VALUES (?,?,?,?,?)",
		[]byte("old"), 1, 7, seq(2), bcursor{}.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, st, "new", 0, 1, 2, 3)
	mustAck(t, st, "new", 1, 1)
	if err := st.Checkpoint(bg, []push.SessionEnd{{UID: "new", Apps: []uint32{1}}}); err != nil {
		t.Fatal(err)
	}
	st.flushCursorLog()
	if err := st.dur.barrierAll(bg); err != nil {
		t.Fatal(err)
	}
	loseRedis(t, env, st, 3)
	wantLoad(t, st, "old", 0, 3)
	wantLoad(t, st, "new", 0, 2, 3)
}
