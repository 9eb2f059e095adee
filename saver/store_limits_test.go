package saver

import (
	"slices"
	"testing"
	"time"
)

// The per-user defences of the contract (Limits), run by testStore.

// mustUserStats checks uid's counts over every app (app 0).
func mustUserStats(t *testing.T, st Store, uid string, pending, parked int) {
	t.Helper()
	mustUserStatsOf(t, st, uid, 0, pending, parked)
}

func mustUserStatsOf(t *testing.T, st Store, uid string, app uint32, pending, parked int) {
	t.Helper()
	p, k, err := st.UserStats(bg, uid, app)
	if err != nil || p != pending || k != parked {
		t.Fatalf("user stats %s app %d = (%d, %d) %v, want (%d, %d)", uid, app, p, k, err, pending, parked)
	}
}

func wantLoad(t *testing.T, st Store, uid string, limit int, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if got := loadIDs(t, st, uid, []uint32{1, 2}, limit); !slices.Equal(got, want) {
		t.Fatalf("load %s = %v, want %v", uid, got, want)
	}
}

// MaxLoads 3: a message returned three times without an ACK is parked.
func contractParking(t *testing.T, st Store) {
	exp := future()
	for id := uint64(1); id <= 3; id++ {
		mustSave(t, st, msg(id, 1, exp), "u")
	}
	mustSave(t, st, msg(1, 1, exp), "v")
	wantLoad(t, st, "u", 2, 1, 2) // only what Load returns is counted
	wantLoad(t, st, "u", 0, 1, 2, 3)
	wantLoad(t, st, "u", 0, 1, 2, 3) // third load of 1 and 2: parked after it
	wantLoad(t, st, "u", 0, 3)
	wantLoad(t, st, "u", 0)
	mustUserStats(t, st, "u", 3, 3)
	if s := mustStats(t, st); s.Parked != 3 || s.Pending != 4 {
		t.Fatalf("stats after parking: %+v (parked entries stay pending)", s)
	}
	wantLoad(t, st, "v", 0, 1) // counted per uid
	mustSave(t, st, msg(4, 1, exp), "u")
	wantLoad(t, st, "u", 0, 4)
	mustAck(t, st, "u", 2, 1, 4) // a parked entry can still be ACKed
	mustUserStats(t, st, "u", 2, 2)
	mustSave(t, st, msg(2, 1, exp), "u") // a retried save keeps it parked
	wantLoad(t, st, "u", 0)
	if s := mustStats(t, st); s.Parked != 2 || s.Pending != 3 || s.Saved != 5 {
		t.Fatalf("stats after acks: %+v", s)
	}
	if n, err := st.Expire(bg, time.Unix(exp, 0)); err != nil || n != 3 {
		t.Fatalf("expire = %d %v, want 3", n, err)
	}
	if s := mustStats(t, st); s.Parked != 0 || s.Pending != 0 {
		t.Fatalf("stats after expiry: %+v", s)
	}
	mustUserStats(t, st, "u", 0, 0)
}

// MaxLoads 2: a broadcast loaded twice by a uid is done for that uid only.
func contractParkBroadcast(t *testing.T, st Store) {
	mustBroadcast(t, st, msg(10, 1, future()))
	mustSave(t, st, msg(11, 1, future()), "u")
	wantLoad(t, st, "u", 0, 10, 11)
	wantLoad(t, st, "u", 0, 10, 11)
	wantLoad(t, st, "u", 0)
	wantLoad(t, st, "w", 0, 10)
	mustAck(t, st, "u", 1, 10) // parked, not ACKed: the ACK takes effect
	mustAck(t, st, "u", 0, 10)
	wantLoad(t, st, "u", 0)
	mustUserStats(t, st, "u", 1, 1)
	if s := mustStats(t, st); s.Parked != 1 || s.Broadcasts != 1 {
		t.Fatalf("stats: %+v (Parked counts unicast entries)", s)
	}
}

// Negative MaxLoads never parks.
func contractNoParking(t *testing.T, st Store) {
	mustSave(t, st, msg(1, 1, 0), "u")
	mustBroadcast(t, st, msg(2, 1, 0))
	for range 12 {
		wantLoad(t, st, "u", 0, 1, 2)
	}
	if s := mustStats(t, st); s.Parked != 0 {
		t.Fatalf("parked with parking off: %+v", s)
	}
}

// InboxCap 5, MaxLoads 2: a full inbox drops its oldest entries, parked or not.
func contractInboxCap(t *testing.T, st Store) {
	app := func(id uint64) uint32 { return uint32(1 + id%2) }
	for id := uint64(1); id <= 8; id++ {
		mustSave(t, st, msg(id, app(id), 0), "u")
	}
	mustSave(t, st, msg(1, app(1), 0), "v", "w")
	mustSave(t, st, msg(2, app(2), 0), "v")
	mustUserStats(t, st, "u", 5, 0)
	s := mustStats(t, st)
	if s.Pending != 8 || s.Saved != 11 || s.PendingPerApp[1] != 4 || s.PendingPerApp[2] != 4 {
		t.Fatalf("stats after overflow: %+v", s)
	}
	mustSave(t, st, msg(2, app(2), 0), "u") // older than everything kept: dropped at once
	mustSave(t, st, msg(6, app(6), 0), "u") // already there: overwritten, nothing dropped
	mustUserStats(t, st, "u", 5, 0)
	mustAck(t, st, "u", 1, 4)
	mustSave(t, st, msg(9, app(9), 0), "u")
	mustUserStats(t, st, "u", 5, 0)
	wantLoad(t, st, "u", 0, 5, 6, 7, 8, 9)
	wantLoad(t, st, "u", 0, 5, 6, 7, 8, 9)
	mustUserStats(t, st, "u", 5, 5)
	mustSave(t, st, msg(10, app(10), 0), "u") // the oldest goes, parked or not
	mustUserStats(t, st, "u", 5, 4)
	wantLoad(t, st, "u", 0, 10)
	if s := mustStats(t, st); s.Pending != 8 || s.Parked != 4 {
		t.Fatalf("stats at the end: %+v", s)
	}
	wantLoad(t, st, "v", 0, 1, 2)
	wantLoad(t, st, "w", 0, 1)
}

// The zero Limits park after DefaultMaxLoads loads.
func contractDefaultLimits(t *testing.T, st Store) {
	mustSave(t, st, msg(1, 1, 0), "u")
	for range DefaultMaxLoads {
		wantLoad(t, st, "u", 0, 1)
	}
	wantLoad(t, st, "u", 0)
	mustUserStats(t, st, "u", 1, 1)
}

func contractUserStats(t *testing.T, st Store) {
	mustUserStats(t, st, "nobody", 0, 0)
	now := time.Now().Unix()
	mustSave(t, st, msg(1, 1, now-1), "u") // expired, not swept: still counted
	mustSave(t, st, msg(2, 2, 0), "u", "v")
	mustBroadcast(t, st, msg(3, 1, 0)) // broadcasts are not inbox entries
	mustUserStats(t, st, "u", 2, 0)
	mustAck(t, st, "u", 2, 2, 3)
	mustUserStats(t, st, "u", 1, 0)
	mustUserStats(t, st, "v", 1, 0)
	if _, err := st.Expire(bg, time.Unix(now, 0)); err != nil {
		t.Fatal(err)
	}
	mustUserStats(t, st, "u", 0, 0)
}

func TestLimitsDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want Limits }{
		{Limits{}, Limits{MaxLoads: DefaultMaxLoads, InboxCap: DefaultInboxCap}},
		{Limits{MaxLoads: -1, InboxCap: -1}, Limits{}},
		{Limits{MaxLoads: 1000, InboxCap: 7}, Limits{MaxLoads: maxMaxLoads, InboxCap: 7}},
	} {
		if got := tc.in.withDefaults(); got != tc.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// The default cap, checked on Memory only: a contract run would save a
// thousand messages per backend.
func TestMemoryDefaultInboxCap(t *testing.T) {
	st := NewMemory()
	for id := uint64(1); id <= DefaultInboxCap+3; id++ {
		mustSave(t, st, msg(id, 1, 0), "u")
	}
	mustUserStats(t, st, "u", DefaultInboxCap, 0)
	if got := loadIDs(t, st, "u", []uint32{1}, 1); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("oldest kept: %v, want [4]", got)
	}
}
