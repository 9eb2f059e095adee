package saver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lcpush/lcpush/pkg/push"
)

func cur(c uint64, exc ...bexc) bcursor { return bcursor{Cur: c, Exc: exc} }

func TestRCursorRoundTrip(t *testing.T) {
	for _, c := range []bcursor{cur(0), cur(1 << 52), cur(5, bexc{Seq: 7, Loads: 2}, bexc{Seq: 9, State: bexcAcked})} {
		raw := encodeRCursor(42, c)
		got, err := decodeRCursor(raw)
		if err != nil || got.ver != 42 || got.raw != raw || !sameCursor(got.c, c) {
			t.Errorf("%+v: read back %+v %v", c, got, err)
		}
	}
	for _, raw := range []string{"\x80", "\x01\x09", "\x01\x01\x05\x01"} {
		if _, err := decodeRCursor(raw); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
	if app, ok := parseCursorField(cursorField(0x01020304)); !ok || app != 0x01020304 {
		t.Errorf("cursor field round trip: %d %v", app, ok)
	}
}

func TestSameDurable(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b bcursor
		want bool
	}{
		{"equal", cur(3), cur(3), true},
		{"cur differs", cur(3), cur(4), false},
		{"load counts are not durable", cur(3, bexc{Seq: 5, Loads: 1}), cur(3, bexc{Seq: 6, Loads: 2}), true},
		{"an ACK is", cur(3, bexc{Seq: 5, State: bexcAcked}), cur(3), false},
		{"a park is", cur(3), cur(3, bexc{Seq: 5, State: bexcParked}), false},
		{"parked is not ACKed", cur(3, bexc{Seq: 5, State: bexcParked}), cur(3, bexc{Seq: 5, State: bexcAcked}), false},
		{"same ACK among loads", cur(3, bexc{Seq: 4, Loads: 1}, bexc{Seq: 5, State: bexcAcked}), cur(3, bexc{Seq: 5, State: bexcAcked}), true},
	} {
		if got := sameDurable(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}

func TestJoinCursor(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b, want bcursor
	}{
		{"higher cur wins", cur(3), cur(5), cur(5)},
		{"exceptions add up", cur(3, bexc{Seq: 5, State: bexcAcked}), cur(3, bexc{Seq: 7, Loads: 2}),
			cur(3, bexc{Seq: 5, State: bexcAcked}, bexc{Seq: 7, Loads: 2})},
		{"ACKed beats parked beats loading", cur(3, bexc{Seq: 5, State: bexcParked}, bexc{Seq: 6, Loads: 4}),
			cur(3, bexc{Seq: 5, State: bexcAcked}, bexc{Seq: 6, State: bexcParked}),
			cur(3, bexc{Seq: 5, State: bexcAcked}, bexc{Seq: 6, Loads: 4, State: bexcParked})},
		// A seq the other's Cur covers without an exception was ACKed there
		// (review finding 7: a reload must not bring an ACKed park back).
		{"what the other's cur covers goes, a park it ACKed too", cur(3, bexc{Seq: 4, Loads: 1}, bexc{Seq: 5, State: bexcParked}, bexc{Seq: 9, State: bexcAcked}),
			cur(8), cur(8, bexc{Seq: 9, State: bexcAcked})},
		{"a park both keep below cur stays", cur(8, bexc{Seq: 5, State: bexcParked}), cur(6, bexc{Seq: 5, State: bexcParked}),
			cur(8, bexc{Seq: 5, State: bexcParked})},
		{"a park above the other's cur stays", cur(3, bexc{Seq: 5, State: bexcParked}), cur(4),
			cur(4, bexc{Seq: 5, State: bexcParked})},
		{"a park the other's cur covers with a park stays", cur(3, bexc{Seq: 5, State: bexcParked}), cur(8, bexc{Seq: 5, State: bexcParked}),
			cur(8, bexc{Seq: 5, State: bexcParked})},
	} {
		for _, order := range [][2]bcursor{{tc.a, tc.b}, {tc.b, tc.a}} {
			a := cloneCursor(order[0])
			if got := joinCursor(order[0], order[1]); !reflect.DeepEqual(got.appendTo(nil), tc.want.appendTo(nil)) {
				t.Errorf("%s: join = %+v, want %+v", tc.name, got, tc.want)
			}
			if !sameCursor(a, order[0]) {
				t.Errorf("%s: join changed its argument", tc.name)
			}
		}
	}
}

func TestFoldLegacy(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    bcursor
		b    bstate
		want bcursor
	}{
		{"ACKed", cur(3), bstate{acked: true}, cur(3, bexc{Seq: 5, State: bexcAcked})},
		{"ACKed, covered already", cur(6), bstate{acked: true}, cur(6)},
		{"parked", cur(3), bstate{parked: true}, cur(3, bexc{Seq: 5, State: bexcParked})},
		{"parked, ACKed since", cur(3, bexc{Seq: 5, State: bexcAcked}), bstate{parked: true}, cur(3, bexc{Seq: 5, State: bexcAcked})},
		{"loads kept", cur(3), bstate{loads: 2}, cur(3, bexc{Seq: 5, Loads: 2})},
		{"loads: the higher count", cur(3, bexc{Seq: 5, Loads: 3}), bstate{loads: 2}, cur(3, bexc{Seq: 5, Loads: 3})},
		{"no loads: nothing", cur(3), bstate{}, cur(3)},
	} {
		c := cloneCursor(tc.c)
		foldLegacy(&c, 5, tc.b)
		if !sameCursor(c, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, c, tc.want)
		}
	}
}

// normalizeAt never moves Cur past the horizon (a broadcast above it may
// exist that the cache lacks) and keeps the exceptions above it unless
// known expired.
func TestNormalizeAt(t *testing.T) {
	acked := func(s uint64) bexc { return bexc{Seq: s, State: bexcAcked} }
	for _, tc := range []struct {
		name string
		c    bcursor
		v    seqView
		want bcursor
	}{
		{"all known: as normalize", cur(0, acked(1), acked(2), bexc{Seq: 3, Loads: 1}),
			seqView{live: []uint64{1, 2, 3}, horizon: 3}, cur(2, bexc{Seq: 3, Loads: 1})},
		{"stops at the horizon", cur(0, acked(1), acked(4)),
			seqView{live: []uint64{1, 4}, horizon: 2}, cur(1, acked(4))},
		{"keeps what it does not know", cur(0, acked(7)),
			seqView{live: []uint64{1}, horizon: 1}, cur(0, acked(7))},
		{"drops what it knows expired", cur(0, acked(7), acked(8)),
			seqView{live: []uint64{1, 8}, horizon: 1, dead: []uint64{7}}, cur(0, acked(8))},
		{"below the horizon, gone is gone", cur(0, acked(2)),
			seqView{live: []uint64{1, 3}, horizon: 3}, cur(0)},
		{"another saver's cur above the horizon stays", cur(9, bexc{Seq: 4, State: bexcParked}, acked(11)),
			seqView{live: []uint64{4}, horizon: 5}, cur(9, bexc{Seq: 4, State: bexcParked}, acked(11))},
	} {
		c := cloneCursor(tc.c)
		normalizeAt(&c, tc.v)
		if !sameCursor(c, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, c, tc.want)
		}
	}
}

// finish writes Redis when the cursor changed (or its ver must pass
// MySQL's) and queues a row when the durable part differs from MySQL's.
func TestCursorPlanFinish(t *testing.T) {
	bc := newBcache()
	bc.replace([]push.Message{{ID: 10, App: 1}, {ID: 20, App: 1}}, map[uint64]uint64{10: 1, 20: 2}, 1, 2)
	r := &RedisStore{bc: bc}
	read := func(ver uint64, c bcursor) rcursor { return rcursor{raw: encodeRCursor(ver, c), ver: ver, c: c} }
	for _, tc := range []struct {
		name     string
		read     map[uint32]rcursor
		do       func(p *cursorPlan)
		cas, row uint64 // the ver written to Redis, queued for MySQL; 0: none
	}{
		{"nothing read, nothing done", nil, func(p *cursorPlan) { p.cursor(1) }, 0, 0},
		{"a load: Redis only", nil, func(p *cursorPlan) { p.cursor(1).load(1, 5) }, 1, 0},
		{"an ACK: both", map[uint32]rcursor{1: read(4, cur(0))}, func(p *cursorPlan) { p.cursor(1).ack(1) }, 5, 5},
		{"an ACK seen already", map[uint32]rcursor{1: read(4, cur(1))}, func(p *cursorPlan) { p.cursor(1).ack(1) }, 0, 0},
		{"reload, MySQL ahead", map[uint32]rcursor{1: read(2, cur(0))}, func(p *cursorPlan) { p.join(1, 7, cur(1)) }, 8, 0},
		{"reload, Redis ahead", map[uint32]rcursor{1: read(9, cur(2))}, func(p *cursorPlan) { p.join(1, 7, cur(1)) }, 0, 9},
		{"reload, each has part", map[uint32]rcursor{1: read(3, cur(0, bexc{Seq: 2, State: bexcAcked}))},
			func(p *cursorPlan) { p.join(1, 7, cur(1)) }, 8, 8},
		{"reload, same ver, Redis has more", map[uint32]rcursor{1: read(7, cur(2))}, func(p *cursorPlan) { p.join(1, 7, cur(1)) }, 8, 8},
	} {
		p := newCursorPlan(r, "u", tc.read, nil, 0)
		tc.do(p)
		cas, rows := p.finish()
		var gotCas, gotRow uint64
		if len(cas) == 3 {
			c, err := decodeRCursor(cas[2].(string))
			if err != nil {
				t.Fatal(err)
			}
			gotCas = c.ver
		}
		if len(rows) == 1 {
			gotRow = rows[0].seq
		}
		if len(cas) > 3 || len(rows) > 1 || gotCas != tc.cas || gotRow != tc.row {
			t.Errorf("%s: redis ver %d, row ver %d (%d triples, %d rows); want %d, %d", tc.name, gotCas, gotRow,
				len(cas)/3, len(rows), tc.cas, tc.row)
		}
	}
}

// Concurrent ACKs of one user's broadcasts through two savers: the
// compare-and-set makes each count once and lose none.
func TestRedisCursorConcurrent(t *testing.T) {
	env := newRedisEnv(t)
	a, b := env.open(t, RedisOptions{}), env.open(t, RedisOptions{})
	exp := future()
	const n = 24
	for id := uint64(1); id <= n; id++ {
		mustBroadcast(t, a, msg(id, 1, exp))
	}
	if _, err := b.syncBroadcasts(bg, false); err != nil {
		t.Fatal(err)
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		st := []*RedisStore{a, b}[g%2]
		wg.Go(func() {
			for id := uint64(1 + g); id <= n; id += 4 {
				if _, err := st.Load(bg, "u", []uint32{1}, 0); err != nil {
					t.Error(err)
					return
				}
				k, err := st.Ack(bg, "u", []uint32{1}, []uint64{id, (id % n) + 1})
				if err != nil {
					t.Error(fmt.Errorf("ack %d: %w", id, err))
					return
				}
				total.Add(int64(k))
			}
		})
	}
	wg.Wait()
	if total.Load() != n {
		t.Errorf("%d ACKs counted, want %d", total.Load(), n)
	}
	wantLoad(t, a, "u", 0)
	wantLoad(t, b, "u", 0)
	// MySQL has the last cursor: the user lost by Redis gets nothing again.
	for _, st := range []*RedisStore{a, b} {
		if err := st.dur.barrierAll(bg); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.rc.Del(bg, keyspace{env.prefix}.user("u")).Err(); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, a, "u", 0)
}

// Cursor rows queued out of order: MySQL keeps the one with the higher
// write count.
func TestRedisCursorRowsOutOfOrder(t *testing.T) {
	env := newRedisEnv(t)
	st := env.open(t, RedisOptions{})
	for _, ver := range []uint64{5, 3, 7, 6} {
		c := cur(ver * 10)
		st.dur.enqueue([]drow{{op: dCursor, uid: "u", app: 1, seq: ver, cur: &c}}, true)
		if err := st.dur.barrierAll(bg); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := st.dur.loadCursors(bg, "u")
	if err != nil || len(rows) != 1 || rows[0].ver != 7 || rows[0].cur.Cur != 70 {
		t.Fatalf("cursor rows %+v %v, want ver 7 cur 70", rows, err)
	}
}

// casBackoff: no wait before the first try, a counted, bounded wait before
// each retry, and a cancelled context ends the wait.
func TestCasBackoff(t *testing.T) {
	before := testutil.ToFloat64(metricCursorRetries)
	if err := casBackoff(bg, 0); err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(metricCursorRetries) - before; d != 0 {
		t.Fatalf("the first try counted %v retries", d)
	}
	for _, attempt := range []int{1, 7, 50} {
		if err := casBackoff(bg, attempt); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	if d := testutil.ToFloat64(metricCursorRetries) - before; d != 3 {
		t.Fatalf("%v retries counted, want 3", d)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := casBackoff(ctx, 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
