package saver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// Every Store implementation runs the same contract suite.

func TestMemoryStore(t *testing.T) { testStore(t, newMemoryStore) }

func TestBoltStore(t *testing.T) { testStore(t, newBoltStore) }

func newMemoryStore(t *testing.T, lim Limits) Store {
	st := NewMemoryWith(lim)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newBoltStore(t *testing.T, lim Limits) Store {
	st, err := OpenBoltWith(filepath.Join(t.TempDir(), "saver.db"), BoltOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// testStore is the contract every Store must pass; newStore returns an
// empty store enforcing lim, that the test may Close.
func testStore(t *testing.T, newStore func(t *testing.T, lim Limits) Store) {
	noParking := Limits{MaxLoads: -1}
	for _, tc := range []struct {
		name string
		lim  Limits
		run  func(t *testing.T, st Store)
	}{
		{"LoadOrderAcrossApps", Limits{}, contractLoadOrder},
		{"LoadLimit", noParking, contractLoadLimit},
		{"MessageFieldsAndPayloadCopy", Limits{}, contractFields},
		{"MultiUIDSave", Limits{}, contractMultiUID},
		{"SaveIdempotent", Limits{}, contractSaveIdempotent},
		{"AckDeletesIdempotent", Limits{}, contractAck},
		{"Expiry", Limits{}, contractExpiry},
		{"BroadcastOncePerUser", Limits{}, contractBroadcast},
		{"BroadcastExpiry", Limits{}, contractBroadcastExpiry},
		{"Stats", Limits{}, contractStats},
		{"Invalid", Limits{}, contractInvalid},
		{"CancelledContext", Limits{}, contractCancelled},
		{"Closed", Limits{}, contractClosed},
		{"ConcurrentSaveAck", Limits{}, contractConcurrent},
		{"ParkAfterMaxLoads", Limits{MaxLoads: 3}, contractParking},
		{"ParkBroadcast", Limits{MaxLoads: 2}, contractParkBroadcast},
		{"NoParking", noParking, contractNoParking},
		{"InboxCapDropsOldest", Limits{InboxCap: 5, MaxLoads: 2}, contractInboxCap},
		{"DefaultLimits", Limits{}, contractDefaultLimits},
		{"UserStats", Limits{}, contractUserStats},
		{"AckPerApp", Limits{}, contractAckPerApp},
		{"UserStatsPerApp", Limits{MaxLoads: 1}, contractUserStatsPerApp},
		{"AckWithoutEffectWritesNothing", Limits{}, contractAckNoWrite},
		{"StatusUnicast", Limits{}, contractStatusUnicast},
		{"StatusBigReport", Limits{}, contractStatusBigReport},
		{"StatusExpiry", Limits{}, contractStatusExpiry},
		{"StatusParking", Limits{MaxLoads: 2}, contractStatusParking},
		{"StatusMulticast", Limits{}, contractStatusMulticast},
		{"StatusBroadcast", Limits{MaxLoads: 2}, contractStatusBroadcast},
		{"StatusTenants", Limits{}, contractStatusTenants},
		{"StatusIdempotent", Limits{}, contractStatusIdempotent},
		{"StatusWithoutOpen", Limits{}, contractStatusWithout},
		{"CursorOutOfOrderAcks", Limits{}, contractCursorOutOfOrder},
		{"CursorParking", Limits{MaxLoads: 2}, contractCursorParking},
		{"CursorSeqOrderNotIDOrder", Limits{}, contractCursorSeqOrder},
		{"CursorInOrderAcksStaySmall", Limits{}, contractCursorSmall},
		{"CursorExpiryMidRange", Limits{}, contractCursorExpiryMidRange},
		{"CursorResaveKeepsState", Limits{MaxLoads: 2}, contractCursorResave},
		{"CursorOtherAppsAck", Limits{}, contractCursorOtherApp},
		{"CursorNewcomerGetsAll", Limits{}, contractCursorNewcomer},
		{"CheckpointHarmless", noParking, contractCheckpoint},
		{"AckManyEquivalence", Limits{}, contractAckManyEquivalence},
		{"AckManyParked", Limits{MaxLoads: 1}, contractAckManyParked},
		{"AckManyTenancy", Limits{}, contractAckManyTenancy},
		{"AckManyDuplicateUID", Limits{}, contractAckManyDuplicateUID},
		{"AckManyBounds", noParking, contractAckManyBounds},
		{"AckManyNoWrite", Limits{}, contractAckManyNoWrite},
		{"QueueRoundTrip", Limits{}, contractQueueRoundTrip},
		{"QueueIdempotent", Limits{}, contractQueueIdempotent},
		{"QueueDequeue", Limits{}, contractQueueDequeue},
		{"QueueExpired", Limits{}, contractQueueExpired},
		{"QueueClaim", Limits{}, contractQueueClaim},
		{"QueueClaimConcurrent", Limits{}, contractQueueClaimConcurrent},
		{"QueueInvalid", Limits{}, contractQueueInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t, tc.lim)) })
	}
}

var bg = context.Background()

func msg(id uint64, app uint32, expire int64) push.Message {
	return push.Message{ID: id, App: app, QoS: push.QoS1, Expire: expire, Payload: fmt.Appendf(nil, "m%d", id)}
}

func future() int64 { return time.Now().Add(time.Hour).Unix() }

func mustSave(t *testing.T, st Store, m push.Message, uids ...string) {
	t.Helper()
	if err := st.Save(bg, m, uids); err != nil {
		t.Fatalf("save %d: %v", m.ID, err)
	}
}

func mustBroadcast(t *testing.T, st Store, m push.Message) {
	t.Helper()
	m.Broadcast = true
	if err := st.SaveBroadcast(bg, m); err != nil {
		t.Fatalf("save broadcast %d: %v", m.ID, err)
	}
}

func loadIDs(t *testing.T, st Store, uid string, apps []uint32, limit int) []uint64 {
	t.Helper()
	msgs, err := st.Load(bg, uid, apps, limit)
	if err != nil {
		t.Fatalf("load %s: %v", uid, err)
	}
	ids := []uint64{}
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// testApps are every app the contract tests store messages for: an ACK
// for all of them acts as ACKs did before apps were tenants.
var testApps = []uint32{1, 2, 3}

// mustAck ACKs ids for testApps.
func mustAck(t *testing.T, st Store, uid string, want int, ids ...uint64) {
	t.Helper()
	mustAckFor(t, st, uid, testApps, want, ids...)
}

// mustAckFor ACKs ids on behalf of apps only.
func mustAckFor(t *testing.T, st Store, uid string, apps []uint32, want int, ids ...uint64) {
	t.Helper()
	n, err := st.Ack(bg, uid, apps, ids)
	if err != nil || n != want {
		t.Fatalf("ack %s apps %v %v = %d %v, want %d", uid, apps, ids, n, err, want)
	}
}

func mustStats(t *testing.T, st Store) push.StoreStats {
	t.Helper()
	s, err := st.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func contractLoadOrder(t *testing.T, st Store) {
	exp := future()
	// Saved out of order, over two apps, with broadcasts in between.
	mustSave(t, st, msg(50, 1, exp), "u")
	mustSave(t, st, msg(30, 2, exp), "u")
	mustSave(t, st, msg(90, 1, 0), "u")
	mustSave(t, st, msg(10, 2, exp), "u")
	mustBroadcast(t, st, msg(40, 1, exp))
	mustBroadcast(t, st, msg(70, 2, exp))
	mustBroadcast(t, st, msg(60, 3, exp))
	mustSave(t, st, msg(20, 1, exp), "other")
	for _, tc := range []struct {
		apps []uint32
		want []uint64
	}{
		{[]uint32{1, 2}, []uint64{10, 30, 40, 50, 70, 90}},
		{[]uint32{2, 1}, []uint64{10, 30, 40, 50, 70, 90}},
		{[]uint32{1}, []uint64{40, 50, 90}},
		{[]uint32{2}, []uint64{10, 30, 70}},
		{[]uint32{1, 1}, []uint64{40, 50, 90}},
		{[]uint32{3}, []uint64{60}},
		{[]uint32{4}, []uint64{}},
		{nil, []uint64{}},
	} {
		if got := loadIDs(t, st, "u", tc.apps, 0); !slices.Equal(got, tc.want) {
			t.Errorf("load apps %v = %v, want %v", tc.apps, got, tc.want)
		}
	}
}

func contractLoadLimit(t *testing.T, st Store) {
	for id := uint64(1); id <= 20; id++ {
		if id%5 == 0 {
			mustBroadcast(t, st, msg(id, 1, 0))
		} else {
			mustSave(t, st, msg(id, 1, 0), "u")
		}
	}
	for _, tc := range []struct {
		limit int
		want  int
	}{{1, 1}, {3, 3}, {7, 7}, {20, 20}, {100, 20}, {0, 20}} {
		got := loadIDs(t, st, "u", []uint32{1}, tc.limit)
		want := make([]uint64, tc.want)
		for i := range want {
			want[i] = uint64(i + 1)
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: %v, want %v", tc.limit, got, want)
		}
	}
	// The oldest come first, so ACKing a page reveals the next one.
	mustAck(t, st, "u", 5, 1, 2, 3, 4, 5)
	if got := loadIDs(t, st, "u", []uint32{1}, 3); !slices.Equal(got, []uint64{6, 7, 8}) {
		t.Errorf("page after ack: %v", got)
	}
}

func contractFields(t *testing.T, st Store) {
	payload := []byte("hello")
	uni := push.Message{ID: 7, App: 3, QoS: push.QoS1, Expire: future(), Payload: payload}
	mustSave(t, st, uni, "u")
	payload[0] = 'X' // the store kept its own copy
	bc := push.Message{ID: 8, App: 3, QoS: push.QoS1, Expire: 0, Broadcast: true, Payload: []byte("all")}
	mustBroadcast(t, st, bc)
	empty := push.Message{ID: 9, App: 3, QoS: push.QoS1}
	mustSave(t, st, empty, "u")
	got, err := st.Load(bg, "u", []uint32{3}, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("load: %v %v", got, err)
	}
	uni.Payload = []byte("hello")
	for i, want := range []push.Message{uni, bc, empty} {
		g := got[i]
		if g.ID != want.ID || g.App != want.App || g.QoS != want.QoS || g.Expire != want.Expire ||
			g.Broadcast != want.Broadcast || !bytes.Equal(g.Payload, want.Payload) {
			t.Errorf("message %d = %+v, want %+v", i, g, want)
		}
	}
}

func contractMultiUID(t *testing.T, st Store) {
	uids := []string{"a", "b", "c", strings.Repeat("z", push.MaxUIDLen), "用户"}
	mustSave(t, st, msg(1, 1, 0), uids...)
	for _, uid := range uids {
		if got := loadIDs(t, st, uid, []uint32{1}, 0); !slices.Equal(got, []uint64{1}) {
			t.Errorf("%s loads %v", uid, got)
		}
	}
	mustAck(t, st, "a", 1, 1)
	if got := loadIDs(t, st, "b", []uint32{1}, 0); !slices.Equal(got, []uint64{1}) {
		t.Errorf("b lost its copy after a acked: %v", got)
	}
	if s := mustStats(t, st); s.Pending != int64(len(uids)-1) {
		t.Errorf("pending %d, want %d", s.Pending, len(uids)-1)
	}
	if err := st.Save(bg, msg(2, 1, 0), nil); err != nil {
		t.Errorf("save to no uid: %v", err)
	}
}

func contractSaveIdempotent(t *testing.T, st Store) {
	m := msg(1, 1, future())
	mustSave(t, st, m, "u", "v")
	mustSave(t, st, m, "u")
	m.App, m.Expire, m.Payload = 2, future()+60, []byte("new") // a retry may carry changes
	mustSave(t, st, m, "u", "u")
	s := mustStats(t, st)
	if s.Pending != 2 || s.Saved != 2 || s.PendingPerApp[1] != 1 || s.PendingPerApp[2] != 1 {
		t.Fatalf("stats after re-saves: %+v", s)
	}
	got, _ := st.Load(bg, "u", []uint32{2}, 0)
	if len(got) != 1 || string(got[0].Payload) != "new" {
		t.Fatalf("overwrite not visible: %+v", got)
	}
	// Only the new expiry counts: sweeping at the old one keeps it.
	if n, err := st.Expire(bg, time.Unix(future()+1, 0)); err != nil || n != 1 {
		t.Fatalf("expire at the old deadline = %d %v, want 1 (v's copy only)", n, err)
	}
	if got := loadIDs(t, st, "u", []uint32{2}, 0); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("re-saved message expired at its old deadline: %v", got)
	}
}

func contractAck(t *testing.T, st Store) {
	for id := uint64(1); id <= 5; id++ {
		mustSave(t, st, msg(id, 1, future()), "u", "v")
	}
	mustAck(t, st, "u", 2, 2, 4)
	mustAck(t, st, "u", 0, 2, 4)        // again: nothing
	mustAck(t, st, "u", 0, 99, 1000000) // unknown ids
	mustAck(t, st, "u", 1, 3, 3)        // repeated id in one call counts once
	mustAck(t, st, "nobody", 0, 1)      // unknown uid
	mustAck(t, st, "u", 0)              // no ids
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{1, 5}) {
		t.Fatalf("u after acks: %v", got)
	}
	if got := loadIDs(t, st, "v", []uint32{1}, 0); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("v touched by u's acks: %v", got)
	}
	// An acked entry is gone for Expire too.
	if n, _ := st.Expire(bg, time.Unix(future()+10, 0)); n != 7 {
		t.Fatalf("expire after acks dropped %d, want 7", n)
	}
}

func contractExpiry(t *testing.T, st Store) {
	now := time.Now().Unix()
	mustSave(t, st, msg(1, 1, now-10), "u")     // already expired
	mustSave(t, st, msg(2, 1, now+3600), "u")   // expires in an hour
	mustSave(t, st, msg(3, 1, 0), "u")          // never expires
	mustSave(t, st, msg(4, 2, now-1), "u", "v") // expired, two inboxes
	if got := loadIDs(t, st, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("load hides expired: %v", got)
	}
	if s := mustStats(t, st); s.Pending != 5 {
		t.Fatalf("expired entries still count until swept: pending %d", s.Pending)
	}
	n, err := st.Expire(bg, time.Unix(now, 0))
	if err != nil || n != 3 {
		t.Fatalf("expire now = %d %v, want 3", n, err)
	}
	if n, _ := st.Expire(bg, time.Unix(now, 0)); n != 0 {
		t.Fatalf("second expire = %d", n)
	}
	if s := mustStats(t, st); s.Pending != 2 || s.Expired != 3 || s.PendingPerApp[2] != 0 {
		t.Fatalf("stats after expire: %+v", s)
	}
	if n, _ := st.Expire(bg, time.Unix(now+3600, 0)); n != 1 {
		t.Fatalf("expire at the deadline = %d, want 1 (expired when now >= Expire)", n)
	}
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("after expiry: %v", got)
	}
	mustAck(t, st, "u", 0, 1, 2) // expired and gone: unknown
}

func contractBroadcast(t *testing.T, st Store) {
	mustBroadcast(t, st, msg(10, 1, future()))
	mustBroadcast(t, st, msg(11, 2, future()))
	mustSave(t, st, msg(12, 1, future()), "u")
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{10, 12}) {
		t.Fatalf("u loads %v", got)
	}
	// Loading does not consume: until ACKed it comes back.
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{10, 12}) {
		t.Fatalf("u loads again %v", got)
	}
	mustAck(t, st, "u", 1, 10)
	mustAck(t, st, "u", 0, 10) // already recorded
	if got := loadIDs(t, st, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{11, 12}) {
		t.Fatalf("after ack u loads %v", got)
	}
	// A user never seen before gets the live broadcasts of its apps.
	if got := loadIDs(t, st, "newcomer", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{10, 11}) {
		t.Fatalf("newcomer loads %v", got)
	}
	if got := loadIDs(t, st, "newcomer", []uint32{3}, 0); len(got) != 0 {
		t.Fatalf("newcomer loads other app's broadcasts: %v", got)
	}
	// Re-saving a broadcast does not forget who has it.
	mustBroadcast(t, st, msg(10, 1, future()))
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{12}) {
		t.Fatalf("after re-save u loads %v", got)
	}
	if s := mustStats(t, st); s.Broadcasts != 2 || s.Pending != 1 {
		t.Fatalf("stats: %+v (broadcasts are not pending entries)", s)
	}
}

func contractBroadcastExpiry(t *testing.T, st Store) {
	now := time.Now().Unix()
	mustBroadcast(t, st, msg(1, 1, now-1))    // expired on arrival
	mustBroadcast(t, st, msg(2, 1, now+3600)) // live for an hour
	mustBroadcast(t, st, msg(3, 1, 0))        // never expires
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("load hides expired broadcast: %v", got)
	}
	mustAck(t, st, "u", 1, 2)
	n, err := st.Expire(bg, time.Unix(now+3600, 0))
	if err != nil || n != 2 {
		t.Fatalf("expire = %d %v, want 2", n, err)
	}
	if s := mustStats(t, st); s.Broadcasts != 1 || s.Expired != 2 {
		t.Fatalf("stats after broadcast expiry: %+v", s)
	}
	mustAck(t, st, "v", 0, 1, 2) // gone: unknown
	if got := loadIDs(t, st, "v", []uint32{1}, 0); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("v after expiry: %v", got)
	}
	// A new broadcast reusing nothing of the old ACK records.
	mustBroadcast(t, st, msg(2, 1, 0))
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("ACK records of an expired broadcast survived: %v", got)
	}
}

func contractStats(t *testing.T, st Store) {
	if s := mustStats(t, st); s.Pending != 0 || s.Broadcasts != 0 || s.Saved != 0 || len(s.PendingPerApp) != 0 {
		t.Fatalf("empty store stats: %+v", s)
	}
	mustSave(t, st, msg(1, 1, 0), "a", "b", "c")
	mustSave(t, st, msg(2, 2, 0), "a")
	mustBroadcast(t, st, msg(3, 1, 0))
	s := mustStats(t, st)
	if s.Pending != 4 || s.PendingPerApp[1] != 3 || s.PendingPerApp[2] != 1 || s.Broadcasts != 1 || s.Saved != 4 {
		t.Fatalf("stats after saves: %+v", s)
	}
	mustAck(t, st, "a", 3, 1, 2, 3)
	s = mustStats(t, st)
	if s.Pending != 2 || s.PendingPerApp[1] != 2 || s.PendingPerApp[2] != 0 || s.Acked != 2 {
		t.Fatalf("stats after ack (pending drops, broadcast acks are not entries): %+v", s)
	}
	if _, ok := s.PendingPerApp[2]; ok {
		t.Fatalf("app with no pending entry still listed: %+v", s.PendingPerApp)
	}
	s.PendingPerApp[1] = 1000 // the caller's own map
	if s := mustStats(t, st); s.PendingPerApp[1] != 2 {
		t.Fatalf("stats map aliases the store: %+v", s)
	}
}

func contractInvalid(t *testing.T, st Store) {
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"save id 0", func() error { return st.Save(bg, msg(0, 1, 0), []string{"u"}) }},
		{"save negative expire", func() error { return st.Save(bg, msg(1, 1, -5), []string{"u"}) }},
		{"save broadcast message", func() error {
			m := msg(1, 1, 0)
			m.Broadcast = true
			return st.Save(bg, m, []string{"u"})
		}},
		{"save empty uid", func() error { return st.Save(bg, msg(1, 1, 0), []string{"u", ""}) }},
		{"save uid with NUL", func() error { return st.Save(bg, msg(1, 1, 0), []string{"a\x00b"}) }},
		{"save long uid", func() error { return st.Save(bg, msg(1, 1, 0), []string{strings.Repeat("x", push.MaxUIDLen+1)}) }},
		{"broadcast id 0", func() error { return st.SaveBroadcast(bg, msg(0, 1, 0)) }},
		{"load empty uid", func() error { _, err := st.Load(bg, "", []uint32{1}, 0); return err }},
		{"ack uid with NUL", func() error { _, err := st.Ack(bg, "\x00", testApps, []uint64{1}); return err }},
		{"ack uid with control character", func() error { _, err := st.Ack(bg, "a\tb", testApps, []uint64{1}); return err }},
		{"load uid not UTF-8", func() error { _, err := st.Load(bg, "\xff\xfe", []uint32{1}, 0); return err }},
		{"user stats empty uid", func() error { _, _, err := st.UserStats(bg, "", 0); return err }},
	} {
		if err := tc.call(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if s := mustStats(t, st); s.Pending != 0 {
		t.Fatalf("a refused save stored something: %+v", s)
	}
}

func contractCancelled(t *testing.T, st Store) {
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := st.Save(ctx, msg(1, 1, 0), []string{"u"}); !errors.Is(err, context.Canceled) {
		t.Errorf("save: %v", err)
	}
	if _, err := st.Load(ctx, "u", []uint32{1}, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("load: %v", err)
	}
	if _, err := st.Ack(ctx, "u", testApps, []uint64{1}); !errors.Is(err, context.Canceled) {
		t.Errorf("ack: %v", err)
	}
}

func contractClosed(t *testing.T, st Store) {
	mustSave(t, st, msg(1, 1, 0), "u")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	errs := map[string]error{}
	errs["save"] = st.Save(bg, msg(2, 1, 0), []string{"u"})
	errs["broadcast"] = st.SaveBroadcast(bg, msg(3, 1, 0))
	_, errs["load"] = st.Load(bg, "u", []uint32{1}, 0)
	_, errs["ack"] = st.Ack(bg, "u", testApps, []uint64{1})
	_, errs["expire"] = st.Expire(bg, time.Now())
	_, errs["stats"] = st.Stats(bg)
	_, _, errs["user stats"] = st.UserStats(bg, "u", 0)
	for op, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", op, err)
		}
	}
}

// Writers save and ACK their own users' messages while readers load and a
// sweeper expires; in the end every entry was saved once and ACKed once.
func contractConcurrent(t *testing.T, st Store) {
	gen, err := idgen.New(1)
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 6, 40
	mustBroadcast(t, st, msg(gen.Next(), 1, future()))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			uids := []string{fmt.Sprint("w", w, "a"), fmt.Sprint("w", w, "b")}
			var ids []uint64
			for i := range perWriter {
				id := gen.Next()
				ids = append(ids, id)
				if err := st.Save(bg, msg(id, uint32(1+i%2), future()), uids); err != nil {
					t.Error(err)
					return
				}
				if i%4 == 3 { // ACK in small batches, as clients do
					for _, uid := range uids {
						if n, err := st.Ack(bg, uid, testApps, ids); err != nil || n != len(ids) {
							t.Errorf("ack %s: %d %v, want %d", uid, n, err, len(ids))
							return
						}
					}
					ids = ids[:0]
				}
			}
		})
	}
	for r := range 2 {
		wg.Go(func() {
			for i := range 50 {
				msgs, err := st.Load(bg, fmt.Sprint("w", (i+r)%writers, "a"), []uint32{1, 2}, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.IsSortedFunc(msgs, func(a, b push.Message) int { return cmpID(a, b.ID) }) {
					t.Error("load not in ID order")
					return
				}
				if _, err := st.Expire(bg, time.Now()); err != nil {
					t.Error(err)
					return
				}
				if _, err := st.Stats(bg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s := mustStats(t, st)
	total := uint64(writers * perWriter * 2)
	if s.Pending != 0 || s.Saved != total || s.Acked != total || s.Broadcasts != 1 {
		t.Fatalf("stats after concurrent run: %+v, want saved=acked=%d, pending 0", s, total)
	}
}

// Apps are tenants: an ACK acts only on messages of the apps it names. Each
// case has a uid of its own holding unicast 1 (app 1) and 2 (app 2), with
// broadcasts 101 (app 1) and 100 (app 2) live for everyone.
func contractAckPerApp(t *testing.T, st Store) {
	exp := future()
	mustBroadcast(t, st, msg(100, 2, exp))
	mustBroadcast(t, st, msg(101, 1, exp))
	all := []uint64{1, 2, 100, 101}
	for i, tc := range []struct {
		name   string
		apps   []uint32 // the ACK acts for these
		ids    []uint64
		want   int
		app1   []uint64 // what the uid loads for app 1 afterwards
		app2   []uint64 // and for app 2
		stats1 int      // UserStats(uid, 1) pending afterwards
		stats2 int      // UserStats(uid, 2)
	}{
		{"app 1 cannot delete app 2's unicast", []uint32{1}, []uint64{2}, 0, []uint64{1, 101}, []uint64{2, 100}, 1, 1},
		{"app 1 cannot ACK app 2's broadcast", []uint32{1}, []uint64{100}, 0, []uint64{1, 101}, []uint64{2, 100}, 1, 1},
		{"both apps' ids for app 1: only app 1's", []uint32{1}, all, 2, []uint64{}, []uint64{2, 100}, 0, 1},
		{"both apps' ids for app 2: only app 2's", []uint32{2}, all, 2, []uint64{1, 101}, []uint64{}, 1, 0},
		{"an app with nothing stored", []uint32{3}, all, 0, []uint64{1, 101}, []uint64{2, 100}, 1, 1},
		{"no apps: nothing", nil, all, 0, []uint64{1, 101}, []uint64{2, 100}, 1, 1},
		{"both apps", []uint32{2, 1}, all, 4, []uint64{}, []uint64{}, 0, 0},
		{"other apps' ids mixed with unknown ones", []uint32{1}, []uint64{2, 100, 99}, 0, []uint64{1, 101}, []uint64{2, 100}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := fmt.Sprint("tenant-", i)
			mustSave(t, st, msg(1, 1, exp), uid)
			mustSave(t, st, msg(2, 2, exp), uid)
			mustAckFor(t, st, uid, tc.apps, tc.want, tc.ids...)
			if got := loadIDs(t, st, uid, []uint32{1}, 0); !slices.Equal(got, tc.app1) {
				t.Errorf("app 1 loads %v, want %v", got, tc.app1)
			}
			if got := loadIDs(t, st, uid, []uint32{2}, 0); !slices.Equal(got, tc.app2) {
				t.Errorf("app 2 loads %v, want %v", got, tc.app2)
			}
			mustUserStatsOf(t, st, uid, 1, tc.stats1, 0)
			mustUserStatsOf(t, st, uid, 2, tc.stats2, 0)
			// What the ACK left is still the owner's to ACK.
			mustAckFor(t, st, uid, []uint32{1, 2}, len(tc.app1)+len(tc.app2), all...)
			mustUserStats(t, st, uid, 0, 0)
		})
	}
}

// UserStats counts one app's entries (parked ones of that app among them);
// app 0 counts every app. MaxLoads 1: whatever Load returns is parked.
func contractUserStatsPerApp(t *testing.T, st Store) {
	mustSave(t, st, msg(1, 1, 0), "u")
	mustSave(t, st, msg(2, 1, 0), "u")
	mustSave(t, st, msg(3, 2, 0), "u", "v")
	mustBroadcast(t, st, msg(4, 2, 0)) // not an inbox entry: never counted
	if got := loadIDs(t, st, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("u loads %v for app 1", got)
	}
	check := func(step string, cases [][4]int) {
		t.Helper()
		for _, c := range cases {
			uid := map[int]string{0: "u", 1: "v"}[c[0]]
			_ = step
			mustUserStatsOf(t, st, uid, uint32(c[1]), c[2], c[3])
		}
	}
	// {uid (0 u, 1 v), app, pending, parked}
	check("after saves", [][4]int{
		{0, 1, 2, 2}, // app 1's two entries, both parked by the load
		{0, 2, 1, 0}, // app 2's does not count app 1's
		{0, 0, 3, 2}, // every app
		{0, 3, 0, 0}, // an app with nothing
		{1, 2, 1, 0},
		{1, 1, 0, 0},
		{1, 0, 1, 0},
	})
	mustAckFor(t, st, "u", []uint32{2}, 1, 1, 2, 3)
	check("after app 2 ACKed", [][4]int{
		{0, 1, 2, 2},
		{0, 2, 0, 0},
		{0, 0, 2, 2},
		{1, 2, 1, 0},
	})
}

// durableWrites returns a reader of st's durable writes so far (Bolt: the
// id of its last committed write transaction, which every commit bumps;
// RedisStore: the rows ever queued for MySQL), or nil for a store without
// durability (Memory).
func durableWrites(t *testing.T, st Store) func() uint64 {
	switch s := st.(type) {
	case *Bolt:
		return func() uint64 {
			t.Helper()
			var id int
			if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
				t.Fatal(err)
			}
			return uint64(id)
		}
	case *RedisStore:
		return s.dur.enqueued
	}
	return nil
}

// An ACK that takes no effect costs no durable write: no commit (and so no
// fsync) in Bolt, no row queued for MySQL in RedisStore, on a hash of the
// current epoch or not.
func contractAckNoWrite(t *testing.T, st Store) {
	exp := future()
	mustSave(t, st, msg(1, 1, exp), "u")
	mustSave(t, st, msg(5, 2, exp), "w") // w's hash is new: no Load stamped it yet
	mustBroadcast(t, st, msg(2, 1, exp))
	mustBroadcast(t, st, msg(3, 2, exp))
	mustAckFor(t, st, "u", []uint32{1}, 1, 2)
	if got := loadIDs(t, st, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("u loads %v", got)
	}
	writes := durableWrites(t, st)
	var before uint64
	if writes != nil {
		before = writes()
	}
	for _, tc := range []struct {
		name string
		uid  string
		apps []uint32
		ids  []uint64
	}{
		{"unknown ids", "u", []uint32{1}, []uint64{99, 1000000}},
		{"unknown uid", "nobody", []uint32{1, 2}, []uint64{1, 99}},
		{"another app's unicast", "u", []uint32{2}, []uint64{1}},
		{"another app's broadcast", "u", []uint32{1}, []uint64{3}},
		{"a broadcast ACKed already", "u", []uint32{1}, []uint64{2}},
		{"unknown ids, hash never loaded", "w", []uint32{2}, []uint64{98, 97}},
		{"another app's unicast, hash never loaded", "w", []uint32{1}, []uint64{5}},
		{"no apps", "u", nil, []uint64{1}},
		{"no ids", "u", []uint32{1}, nil},
	} {
		mustAckFor(t, st, tc.uid, tc.apps, 0, tc.ids...)
		if writes != nil {
			if now := writes(); now != before {
				t.Errorf("%s: %d durable writes for an ACK that changed nothing", tc.name, now-before)
				before = now
			}
		}
	}
	// The counter does count: an ACK that deletes writes.
	mustAckFor(t, st, "u", []uint32{1}, 1, 1, 99)
	if writes != nil && writes() == before {
		t.Errorf("no durable write counted for an ACK that deleted an entry")
	}
	if got := loadIDs(t, st, "w", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{2, 3, 5}) {
		t.Errorf("w loads %v", got)
	}
}

// The broadcast cursor (bcursor.go) behind Load and Ack, through the
// Store's behaviour.

// wantLoadApps checks what uid loads for apps.
func wantLoadApps(t *testing.T, st Store, uid string, apps []uint32, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if got := loadIDs(t, st, uid, apps, 0); !slices.Equal(got, want) {
		t.Fatalf("load %s apps %v = %v, want %v", uid, apps, got, want)
	}
}

// ACK 3, then 1, then 2: nothing comes back, each counted once.
func contractCursorOutOfOrder(t *testing.T, st Store) {
	exp := future()
	for id := uint64(1); id <= 3; id++ {
		mustOpen(t, st, id, 1, push.KindBroadcast, exp)
		mustBroadcast(t, st, msg(id, 1, exp))
	}
	app1 := []uint32{1}
	wantLoadApps(t, st, "u", app1, 1, 2, 3)
	mustAck(t, st, "u", 1, 3)
	wantLoadApps(t, st, "u", app1, 1, 2)
	mustAck(t, st, "u", 0, 3) // once
	mustAck(t, st, "u", 1, 1)
	wantLoadApps(t, st, "u", app1, 2)
	mustAck(t, st, "u", 1, 2, 2) // twice in one call: once
	wantLoadApps(t, st, "u", app1)
	mustAck(t, st, "u", 0, 1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		wantStatus(t, st, 1, id, counts{stored: 1, acked: 1})
		wantState(t, st, 1, id, "u", push.StateAcked)
		wantState(t, st, 1, id, "v", push.StateStored)
	}
	// Out of order within one call too.
	mustAck(t, st, "v", 3, 3, 1, 2)
	wantLoadApps(t, st, "v", app1)
	wantStatus(t, st, 1, 2, counts{stored: 1, acked: 2})
	if s := mustStats(t, st); s.Broadcasts != 3 || s.Pending != 0 || s.Acked != 0 {
		t.Fatalf("stats: %+v (broadcast ACKs are not entries)", s)
	}
}

// MaxLoads 2: parked broadcasts above and below the cursor.
func contractCursorParking(t *testing.T, st Store) {
	exp := future()
	for id := uint64(1); id <= 3; id++ {
		mustOpen(t, st, id, 1, push.KindBroadcast, exp)
		mustBroadcast(t, st, msg(id, 1, exp))
	}
	app1 := []uint32{1}
	wantLoadApps(t, st, "u", app1, 1, 2, 3)
	mustAck(t, st, "u", 1, 2)
	wantLoadApps(t, st, "u", app1, 1, 3) // their second load: parked
	wantLoadApps(t, st, "u", app1)
	wantState(t, st, 1, 1, "u", push.StateParked)
	wantState(t, st, 1, 2, "u", push.StateAcked)
	wantState(t, st, 1, 3, "u", push.StateParked)
	wantStatus(t, st, 1, 1, counts{stored: 1, parked: 1})
	mustBroadcast(t, st, msg(4, 1, exp)) // a new one comes past the parked ones
	wantLoadApps(t, st, "u", app1, 4)
	mustAck(t, st, "u", 1, 4)
	wantLoadApps(t, st, "u", app1)
	wantState(t, st, 1, 1, "u", push.StateParked) // still parked, below the cursor
	wantState(t, st, 1, 3, "u", push.StateParked)
	// Parking is per uid and counted once per uid.
	wantLoadApps(t, st, "v", app1, 1, 2, 3, 4)
	wantLoadApps(t, st, "v", app1, 1, 2, 3, 4)
	wantLoadApps(t, st, "v", app1)
	wantStatus(t, st, 1, 1, counts{stored: 1, parked: 2})
	wantLoadApps(t, st, "w", app1, 1, 2, 3, 4)
	// A parked broadcast's ACK still takes effect, once.
	mustAck(t, st, "u", 1, 3)
	mustAck(t, st, "u", 0, 3)
	wantState(t, st, 1, 3, "u", push.StateAcked)
	wantStatus(t, st, 1, 3, counts{stored: 1, acked: 1, parked: 2})
	wantLoadApps(t, st, "u", app1)
	if s := mustStats(t, st); s.Parked != 0 {
		t.Fatalf("stats: %+v (Parked counts unicast entries only)", s)
	}
}

// Ids come from several centers' clocks: a broadcast saved after the uid's
// cursor went past a higher id is still delivered (seq order, not id order).
func contractCursorSeqOrder(t *testing.T, st Store) {
	exp := future()
	app1 := []uint32{1}
	mustBroadcast(t, st, msg(20, 1, exp))
	wantLoadApps(t, st, "u", app1, 20)
	mustAck(t, st, "u", 1, 20)
	wantLoadApps(t, st, "u", app1)
	mustBroadcast(t, st, msg(10, 1, exp)) // a lower id, saved later
	mustBroadcast(t, st, msg(15, 1, exp))
	wantLoadApps(t, st, "u", app1, 10, 15) // in id order
	mustAck(t, st, "u", 1, 15)
	wantLoadApps(t, st, "u", app1, 10)
	mustAck(t, st, "u", 1, 10)
	mustAck(t, st, "u", 0, 20, 10, 15)
	wantLoadApps(t, st, "u", app1)
	mustBroadcast(t, st, msg(5, 1, exp))
	wantLoadApps(t, st, "u", app1, 5)
	wantLoadApps(t, st, "v", app1, 5, 10, 15, 20)
}

// A stream of broadcasts ACKed in order leaves the uid's state as small
// after fifty broadcasts as after ten (where a store lets the test see
// its state), and everything behaves.
func contractCursorSmall(t *testing.T, st Store) {
	exp := future()
	app1 := []uint32{1}
	var after10 int
	for id := uint64(1); id <= 50; id++ {
		mustBroadcast(t, st, msg(id, 1, exp))
		wantLoadApps(t, st, "u", app1, id)
		mustAck(t, st, "u", 1, id)
		if id == 10 {
			after10 = broadcastStateSize(t, st, "u", 1)
		}
	}
	wantLoadApps(t, st, "u", app1)
	if n := broadcastStateSize(t, st, "u", 1); n > after10 || n > 16 {
		t.Fatalf("uid state of app 1: %d bytes after 50 in-order ACKs, %d after 10", n, after10)
	}
	mustAck(t, st, "u", 0, 1, 50, 100)
	wantLoadApps(t, st, "v", app1, func() []uint64 {
		var all []uint64
		for id := uint64(1); id <= 50; id++ {
			all = append(all, id)
		}
		return all
	}()...)
}

// broadcastStateSize returns the bytes uid's broadcast state of app takes
// in st: the encoded cursor (Memory, Bolt), or -1 for a store the test does
// not look inside (its behaviour is still checked).
func broadcastStateSize(t *testing.T, st Store, uid string, app uint32) int {
	t.Helper()
	switch s := st.(type) {
	case *Memory:
		s.mu.Lock()
		defer s.mu.Unlock()
		if c := s.cursors[uid][app]; c != nil {
			return len(c.appendTo(nil))
		}
		return 0
	case *Bolt:
		n := 0
		if err := s.db.View(func(tx *bolt.Tx) error {
			n = len(tx.Bucket(bucketBcur).Get(bcurKey(nil, uid, app)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return -1
}

// A broadcast between ACKed ones expires (by its deadline, or swept by
// Expire early): the cursor steps over it.
func contractCursorExpiryMidRange(t *testing.T, st Store) {
	now := time.Now().Unix()
	app1 := []uint32{1}
	for id := uint64(1); id <= 5; id++ {
		mustBroadcast(t, st, msg(id, 1, now+3600))
	}
	mustBroadcast(t, st, msg(4, 1, now+100)) // re-saved: swept at now+100 below
	wantLoadApps(t, st, "u", app1, 1, 2, 3, 4, 5)
	mustAck(t, st, "u", 2, 1, 3)
	wantLoadApps(t, st, "u", app1, 2, 4, 5)
	mustBroadcast(t, st, msg(2, 1, now-1)) // re-saved expired: Load hides it
	wantLoadApps(t, st, "u", app1, 4, 5)
	mustAck(t, st, "u", 0, 2) // expired: as if unknown
	mustAck(t, st, "u", 1, 5)
	if n, err := st.Expire(bg, time.Unix(now+100, 0)); err != nil || n != 2 {
		t.Fatalf("expire = %d %v, want 2 (broadcasts 2 and 4)", n, err)
	}
	wantLoadApps(t, st, "u", app1)
	mustAck(t, st, "u", 0, 2, 4) // gone
	mustBroadcast(t, st, msg(6, 1, now+3600))
	wantLoadApps(t, st, "u", app1, 6)
	mustAck(t, st, "u", 0, 1, 3, 5)
	wantLoadApps(t, st, "v", app1, 1, 3, 5, 6)
	// An id reused after its broadcast went is a new broadcast for everyone.
	mustBroadcast(t, st, msg(4, 1, now+3600))
	wantLoadApps(t, st, "u", app1, 4, 6)
	// So is one re-saved live after it expired, before the sweep: the
	// cursor may have stepped over its old place.
	mustBroadcast(t, st, msg(7, 1, now-1))
	mustBroadcast(t, st, msg(8, 1, now+3600))
	mustAck(t, st, "u", 3, 4, 6, 8)
	mustBroadcast(t, st, msg(7, 1, now+3600))
	wantLoadApps(t, st, "u", app1, 7)
	if s := mustStats(t, st); s.Broadcasts != 7 || s.Expired != 2 {
		t.Fatalf("stats: %+v", s)
	}
}

// Re-saving a broadcast keeps every uid's state of it: ACKs, load counts.
func contractCursorResave(t *testing.T, st Store) {
	exp := future()
	app1 := []uint32{1}
	mustOpen(t, st, 1, 1, push.KindBroadcast, exp)
	mustOpen(t, st, 2, 1, push.KindBroadcast, exp)
	mustBroadcast(t, st, msg(1, 1, exp))
	mustBroadcast(t, st, msg(2, 1, exp))
	wantLoadApps(t, st, "u", app1, 1, 2)
	mustAck(t, st, "u", 1, 1)
	mustBroadcast(t, st, msg(1, 1, exp+60))
	mustBroadcast(t, st, msg(2, 1, exp+60))
	wantLoadApps(t, st, "u", app1, 2) // its second load: parked
	wantLoadApps(t, st, "u", app1)
	wantState(t, st, 1, 1, "u", push.StateAcked)
	wantState(t, st, 1, 2, "u", push.StateParked)
	mustBroadcast(t, st, msg(2, 1, exp+120))
	wantLoadApps(t, st, "u", app1)
	wantState(t, st, 1, 2, "u", push.StateParked)
	wantStatus(t, st, 1, 2, counts{stored: 1, parked: 1})
	wantStatus(t, st, 1, 1, counts{stored: 1, acked: 1})
}

// An ACK names an app's broadcast only for that app; each app has a cursor
// of its own.
func contractCursorOtherApp(t *testing.T, st Store) {
	exp := future()
	mustOpen(t, st, 2, 2, push.KindBroadcast, exp)
	mustBroadcast(t, st, msg(1, 1, exp))
	mustBroadcast(t, st, msg(2, 2, exp))
	mustBroadcast(t, st, msg(3, 1, exp))
	mustAckFor(t, st, "u", []uint32{1}, 2, 1, 2, 3) // 2 is app 2's: ignored
	wantLoadApps(t, st, "u", []uint32{1, 2}, 2)
	wantState(t, st, 2, 2, "u", push.StateStored)
	wantStatus(t, st, 2, 2, counts{stored: 1})
	mustAckFor(t, st, "u", []uint32{3}, 0, 2)
	wantLoadApps(t, st, "u", []uint32{2}, 2)
	mustAckFor(t, st, "u", []uint32{2}, 1, 1, 2, 3)
	wantLoadApps(t, st, "u", []uint32{1, 2})
	mustBroadcast(t, st, msg(4, 2, exp))
	mustBroadcast(t, st, msg(5, 1, exp))
	wantLoadApps(t, st, "u", []uint32{2}, 4)
	wantLoadApps(t, st, "u", []uint32{1}, 5)
	wantLoadApps(t, st, "u", []uint32{2, 1, 2}, 4, 5) // repeated apps: once
}

// A uid never seen gets every live broadcast of its apps, whatever others did.
func contractCursorNewcomer(t *testing.T, st Store) {
	exp := future()
	for id := uint64(1); id <= 6; id++ {
		mustBroadcast(t, st, msg(id, uint32(1+id%2), exp))
	}
	mustSave(t, st, msg(7, 1, exp), "u")
	mustAck(t, st, "u", 7, 1, 2, 3, 4, 5, 6, 7)
	wantLoadApps(t, st, "u", []uint32{1, 2})
	wantLoadApps(t, st, "newcomer", []uint32{1, 2}, 1, 2, 3, 4, 5, 6)
	wantLoadApps(t, st, "other", []uint32{2}, 1, 3, 5)
	wantState(t, st, 1, 1, "never-seen", push.StateUnknown) // no status record
}
