package saver

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// The delivery status part of the contract suite (store_contract_test.go
// runs these against every store).

// counts are the counters of a status a test checks.
type counts struct{ stored, sent, acked, expired, parked int64 }

func countsOf(s push.MessageStatus) counts {
	return counts{s.Stored, s.Sent, s.Acked, s.Expired, s.Parked}
}

func mustOpen(t *testing.T, st Store, id uint64, app uint32, kind string, expires int64, uids ...string) push.MessageStatus {
	t.Helper()
	rec := push.MessageStatus{MsgID: id, App: app, Kind: kind, Created: time.Now().Unix(), Expires: expires}
	if kind == push.KindBroadcast {
		rec.Targets = 100
	}
	if err := st.OpenStatus(bg, rec, uids); err != nil {
		t.Fatalf("open status %d: %v", id, err)
	}
	return rec
}

func mustSent(t *testing.T, st Store, deltas ...push.StatusDelta) {
	t.Helper()
	if err := st.AddSent(bg, deltas); err != nil {
		t.Fatalf("add sent %+v: %v", deltas, err)
	}
}

func wantStatus(t *testing.T, st Store, app uint32, id uint64, want counts) push.MessageStatus {
	t.Helper()
	s, ok, err := st.Status(bg, app, id)
	if err != nil || !ok {
		t.Fatalf("status %d of app %d: %+v %v %v", id, app, s, ok, err)
	}
	if got := countsOf(s); got != want {
		t.Fatalf("status %d counts %+v, want %+v", id, got, want)
	}
	return s
}

func wantNoStatus(t *testing.T, st Store, app uint32, id uint64) {
	t.Helper()
	if s, ok, err := st.Status(bg, app, id); err != nil || ok || s != (push.MessageStatus{}) {
		t.Fatalf("status %d of app %d = %+v %v %v, want none", id, app, s, ok, err)
	}
}

func wantState(t *testing.T, st Store, app uint32, id uint64, uid, want string) {
	t.Helper()
	got, err := st.UserState(bg, app, id, uid)
	if err != nil || got != want {
		t.Fatalf("user state of %s for %d (app %d) = %q %v, want %q", uid, id, app, got, err, want)
	}
}

// A unicast to an offline user: stored, then sent, then ACKed.
func contractStatusUnicast(t *testing.T, st Store) {
	exp := future()
	open := mustOpen(t, st, 1, 1, push.KindUnicast, exp, "u")
	s := wantStatus(t, st, 1, 1, counts{})
	if s.MsgID != 1 || s.App != 1 || s.Kind != push.KindUnicast || s.Created != open.Created || s.Expires != exp || s.Targets != 1 {
		t.Fatalf("status record %+v, opened %+v", s, open)
	}
	wantState(t, st, 1, 1, "u", push.StateUnknown)
	mustSave(t, st, msg(1, 1, exp), "u")
	wantStatus(t, st, 1, 1, counts{stored: 1})
	wantState(t, st, 1, 1, "u", push.StateStored)
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1})
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 1})
	wantState(t, st, 1, 1, "u", push.StateSent)
	mustAck(t, st, "u", 1, 1)
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 1, acked: 1})
	wantState(t, st, 1, 1, "u", push.StateAcked)
	wantState(t, st, 1, 1, "v", push.StateUnknown)                         // not a recipient
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1}) // a late write: counted, state kept
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 2, acked: 1})
	wantState(t, st, 1, 1, "u", push.StateAcked)
}

// A report bigger than the stores' chunks (a second of deliveries at
// 5k/s) counts every delta once, including repeats of one message split
// across chunks, and moves each recipient's state.
func contractStatusBigReport(t *testing.T, st Store) {
	exp := future()
	const msgs = 2*addSentChunk + 7
	deltas := make([]push.StatusDelta, 0, 2*msgs)
	for id := uint64(1); id <= msgs; id++ {
		uid := "u" + strconv.FormatUint(id, 10)
		mustOpen(t, st, id, 1, push.KindUnicast, exp, uid)
		mustSave(t, st, msg(id, 1, exp), uid)
		deltas = append(deltas, push.StatusDelta{MsgID: id, App: 1, UID: uid, Sent: 1})
	}
	// Every message again, so that its two deltas fall in different chunks.
	deltas = append(deltas, deltas...)
	mustSent(t, st, deltas...)
	for id := uint64(1); id <= msgs; id++ {
		wantStatus(t, st, 1, id, counts{stored: 1, sent: 2})
		wantState(t, st, 1, id, "u"+strconv.FormatUint(id, 10), push.StateSent)
	}
}

// Entries dropped at their TTL unACKed count as expired; the record goes
// StatusGrace later.
func contractStatusExpiry(t *testing.T, st Store) {
	now := time.Now().Unix()
	exp := now + 3600
	mustOpen(t, st, 1, 1, push.KindMulticast, exp, "u", "v")
	mustSave(t, st, msg(1, 1, exp), "u", "v")
	mustAck(t, st, "v", 1, 1)
	if n, err := st.Expire(bg, time.Unix(exp, 0)); err != nil || n != 1 {
		t.Fatalf("expire = %d %v, want 1", n, err)
	}
	wantStatus(t, st, 1, 1, counts{stored: 2, acked: 1, expired: 1})
	wantState(t, st, 1, 1, "u", push.StateExpired)
	wantState(t, st, 1, 1, "v", push.StateAcked)
	if _, err := st.Expire(bg, time.Unix(exp, 0)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, st, 1, 1, counts{stored: 2, acked: 1, expired: 1}) // not twice
	grace := int64(StatusGrace / time.Second)
	if _, err := st.Expire(bg, time.Unix(exp+grace-1, 0)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, st, 1, 1, counts{stored: 2, acked: 1, expired: 1}) // kept for the grace
	if _, err := st.Expire(bg, time.Unix(exp+grace, 0)); err != nil {
		t.Fatal(err)
	}
	wantNoStatus(t, st, 1, 1)
	wantState(t, st, 1, 1, "u", push.StateUnknown)
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1}) // dropped: ignored
	wantNoStatus(t, st, 1, 1)
}

// A message loaded MaxLoads (2) times without an ACK is parked; an ACK of
// the parked entry still counts.
func contractStatusParking(t *testing.T, st Store) {
	exp := future()
	mustOpen(t, st, 1, 1, push.KindUnicast, exp, "u")
	mustSave(t, st, msg(1, 1, exp), "u")
	for range 2 {
		if got := loadIDs(t, st, "u", []uint32{1}, 0); len(got) != 1 {
			t.Fatalf("load: %v", got)
		}
		mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1})
	}
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 2, parked: 1})
	wantState(t, st, 1, 1, "u", push.StateParked)
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1})
	wantState(t, st, 1, 1, "u", push.StateParked) // sent does not unpark
	if got := loadIDs(t, st, "u", []uint32{1}, 0); len(got) != 0 {
		t.Fatalf("parked message loaded: %v", got)
	}
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 3, parked: 1})
	mustAck(t, st, "u", 1, 1)
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 3, acked: 1, parked: 1})
	wantState(t, st, 1, 1, "u", push.StateAcked)
}

// A multicast to 3 uids, two of them ACKing.
func contractStatusMulticast(t *testing.T, st Store) {
	exp := future()
	mustOpen(t, st, 7, 2, push.KindMulticast, exp, "a", "b", "c", "b")
	if s := wantStatus(t, st, 2, 7, counts{}); s.Targets != 3 || s.Kind != push.KindMulticast {
		t.Fatalf("multicast record %+v", s)
	}
	mustSave(t, st, msg(7, 2, exp), "a", "b", "c")
	mustSent(t, st,
		push.StatusDelta{MsgID: 7, App: 2, UID: "a", Sent: 1},
		push.StatusDelta{MsgID: 7, App: 2, UID: "b", Sent: 1},
		push.StatusDelta{MsgID: 7, App: 2, UID: "c", Sent: 2})
	wantStatus(t, st, 2, 7, counts{stored: 3, sent: 4})
	mustAck(t, st, "a", 1, 7)
	mustAck(t, st, "b", 1, 7)
	wantStatus(t, st, 2, 7, counts{stored: 3, sent: 4, acked: 2})
	wantState(t, st, 2, 7, "a", push.StateAcked)
	wantState(t, st, 2, 7, "b", push.StateAcked)
	wantState(t, st, 2, 7, "c", push.StateSent)
	wantState(t, st, 2, 7, "d", push.StateUnknown)
	// A uid saved but not given to OpenStatus is not counted.
	mustSave(t, st, msg(7, 2, exp), "d")
	mustAck(t, st, "d", 1, 7)
	wantStatus(t, st, 2, 7, counts{stored: 3, sent: 4, acked: 2})
}

// A broadcast: stored once, ACKs counted per uid, states from the
// per-user broadcast records. MaxLoads is 2.
func contractStatusBroadcast(t *testing.T, st Store) {
	now := time.Now().Unix()
	exp := now + 3600
	mustOpen(t, st, 9, 1, push.KindBroadcast, exp, "ignored")
	wantState(t, st, 1, 9, "x", push.StateUnknown) // not stored yet
	mustBroadcast(t, st, msg(9, 1, exp))
	if s := wantStatus(t, st, 1, 9, counts{stored: 1}); s.Targets != 100 || s.Kind != push.KindBroadcast {
		t.Fatalf("broadcast record %+v", s)
	}
	mustBroadcast(t, st, msg(9, 1, exp)) // again: still 1
	wantState(t, st, 1, 9, "x", push.StateStored)
	mustSent(t, st, push.StatusDelta{MsgID: 9, App: 1, Sent: 3}, push.StatusDelta{MsgID: 9, App: 1, UID: "x", Sent: 1})
	wantStatus(t, st, 1, 9, counts{stored: 1, sent: 4})
	mustAck(t, st, "x", 1, 9)
	mustAck(t, st, "y", 1, 9)
	mustAck(t, st, "x", 0, 9)
	wantStatus(t, st, 1, 9, counts{stored: 1, sent: 4, acked: 2})
	for range 2 {
		if got := loadIDs(t, st, "z", []uint32{1}, 0); len(got) != 1 {
			t.Fatalf("load: %v", got)
		}
	}
	wantStatus(t, st, 1, 9, counts{stored: 1, sent: 4, acked: 2, parked: 1})
	wantState(t, st, 1, 9, "x", push.StateAcked)
	wantState(t, st, 1, 9, "y", push.StateAcked)
	wantState(t, st, 1, 9, "z", push.StateParked)
	wantState(t, st, 1, 9, "w", push.StateStored)
	wantState(t, st, 2, 9, "x", push.StateUnknown) // another app
	if n, err := st.Expire(bg, time.Unix(exp, 0)); err != nil || n != 1 {
		t.Fatalf("expire = %d %v", n, err)
	}
	wantStatus(t, st, 1, 9, counts{stored: 1, sent: 4, acked: 2, expired: 1, parked: 1})
	wantState(t, st, 1, 9, "w", push.StateExpired)
}

// Apps are tenants: another app's status is as unknown, and its deltas
// and ACKs count nothing.
func contractStatusTenants(t *testing.T, st Store) {
	exp := future()
	mustOpen(t, st, 1, 1, push.KindUnicast, exp, "u")
	mustSave(t, st, msg(1, 1, exp), "u")
	wantNoStatus(t, st, 2, 1)
	wantNoStatus(t, st, 3, 1)
	wantState(t, st, 2, 1, "u", push.StateUnknown)
	// App 0 is the operators': every app's record.
	wantStatus(t, st, 0, 1, counts{stored: 1})
	wantState(t, st, 0, 1, "u", push.StateStored)
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 2, UID: "u", Sent: 5})
	mustAckFor(t, st, "u", []uint32{2}, 0, 1)
	wantStatus(t, st, 1, 1, counts{stored: 1})
	wantState(t, st, 1, 1, "u", push.StateStored)
	// Another app opening the same id changes nothing.
	if err := st.OpenStatus(bg, push.MessageStatus{MsgID: 1, App: 2, Kind: push.KindUnicast, Expires: exp}, []string{"u"}); err != nil {
		t.Fatal(err)
	}
	wantNoStatus(t, st, 2, 1)
	wantStatus(t, st, 1, 1, counts{stored: 1})
}

// OpenStatus, Save and Ack repeated count once.
func contractStatusIdempotent(t *testing.T, st Store) {
	exp := future()
	mustOpen(t, st, 1, 1, push.KindMulticast, exp, "u", "v")
	mustSave(t, st, msg(1, 1, exp), "u", "v")
	mustOpen(t, st, 1, 1, push.KindUnicast, exp+10, "w") // exists: left as it is
	mustSave(t, st, msg(1, 1, exp), "u", "v")
	s := wantStatus(t, st, 1, 1, counts{stored: 2})
	if s.Kind != push.KindMulticast || s.Targets != 2 || s.Expires != exp {
		t.Fatalf("record changed by a second OpenStatus: %+v", s)
	}
	wantState(t, st, 1, 1, "w", push.StateUnknown)
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1})
	mustSave(t, st, msg(1, 1, exp), "u") // a retried save after the send
	wantStatus(t, st, 1, 1, counts{stored: 2, sent: 1})
	wantState(t, st, 1, 1, "u", push.StateSent)
	mustAck(t, st, "u", 1, 1)
	mustAck(t, st, "u", 0, 1)
	mustAck(t, st, "u", 0, 1, 1)
	wantStatus(t, st, 1, 1, counts{stored: 2, sent: 1, acked: 1})
}

// Save opens the record of a message that has none (unicast for one uid,
// multicast for more, targets the uids); a message without an expiry, and
// a broadcast without OpenStatus, get none and work as before; a QoS 0
// message (never stored) counts its writes only; bad records are refused.
func contractStatusWithout(t *testing.T, st Store) {
	exp := future()
	mustSave(t, st, msg(1, 1, exp), "u")
	mustSent(t, st, push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1})
	if got := loadIDs(t, st, "u", []uint32{1}, 0); len(got) != 1 {
		t.Fatalf("load: %v", got)
	}
	mustAck(t, st, "u", 1, 1)
	wantStatus(t, st, 1, 1, counts{stored: 1, sent: 1, acked: 1})
	if s, _, _ := st.Status(bg, 1, 1); s.Kind != push.KindUnicast || s.Targets != 1 || s.Expires != exp {
		t.Fatalf("implied unicast record %+v", s)
	}
	wantState(t, st, 1, 1, "u", push.StateAcked)
	mustSave(t, st, msg(5, 1, exp), "a", "b", "a")
	if s, _, _ := st.Status(bg, 1, 5); s.Kind != push.KindMulticast || s.Targets != 2 || s.Stored != 2 {
		t.Fatalf("implied multicast record %+v", s)
	}
	mustSave(t, st, msg(6, 1, 0), "u") // no expiry: no record
	wantNoStatus(t, st, 1, 6)
	mustBroadcast(t, st, msg(2, 1, exp))
	mustAck(t, st, "u", 1, 2)
	wantNoStatus(t, st, 1, 2)
	mustAck(t, st, "u", 1, 5, 6)
	if _, err := st.Expire(bg, time.Unix(exp+int64(StatusGrace/time.Second), 0)); err != nil {
		t.Fatal(err)
	}
	if s := mustStats(t, st); s.Pending != 0 || s.Acked != 2 {
		t.Fatalf("stats: %+v", s)
	}

	// QoS 0: sent, never stored; an ACK of it counts nothing.
	mustOpen(t, st, 3, 1, push.KindUnicast, future(), "u")
	mustSent(t, st, push.StatusDelta{MsgID: 3, App: 1, UID: "u", Sent: 1})
	mustAck(t, st, "u", 0, 3)
	wantStatus(t, st, 1, 3, counts{sent: 1})
	wantState(t, st, 1, 3, "u", push.StateSent)

	for _, bad := range []push.MessageStatus{
		{MsgID: 0, App: 1, Kind: push.KindUnicast, Expires: exp},
		{MsgID: 4, App: 1, Kind: push.KindUnicast},
		{MsgID: 4, App: 1, Kind: "anycast", Expires: exp},
	} {
		if err := st.OpenStatus(bg, bad, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("open status %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if err := st.OpenStatus(bg, push.MessageStatus{MsgID: 4, App: 1, Kind: push.KindUnicast, Expires: exp}, []string{""}); !errors.Is(err, ErrInvalid) {
		t.Errorf("open status with an empty uid: %v", err)
	}
	if err := st.AddSent(bg, []push.StatusDelta{{MsgID: 3, App: 1, UID: "a\x00b", Sent: 1}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("add sent with a bad uid: %v", err)
	}
	if err := st.AddSent(bg, nil); err != nil {
		t.Errorf("add sent of nothing: %v", err)
	}
}

func TestMemoryStatusTargets(t *testing.T) { contractStatusTargets(t, newMemoryStore(t, Limits{})) }

func TestBoltStatusTargets(t *testing.T) { contractStatusTargets(t, newBoltStore(t, Limits{})) }

func TestRedisStatusTargets(t *testing.T) { contractStatusTargets(t, newRedisStore(t, Limits{})) }

// A broadcast's targets are what its job's rooms report (AddSent deltas
// with Targets): they add up on a broadcast's record only, of its app.
func contractStatusTargets(t *testing.T, st Store) {
	exp := future()
	if err := st.OpenStatus(bg, push.MessageStatus{MsgID: 9, App: 1, Kind: push.KindBroadcast, Created: time.Now().Unix(), Expires: exp}, nil); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, st, 1, 1, push.KindUnicast, exp, "u")
	mustSent(t, st,
		push.StatusDelta{MsgID: 9, App: 1, Sent: 2, Targets: 40},
		push.StatusDelta{MsgID: 9, App: 1, Targets: 60},
		push.StatusDelta{MsgID: 9, App: 2, Sent: 5, Targets: 1000},         // another app's: ignored
		push.StatusDelta{MsgID: 1, App: 1, UID: "u", Sent: 1, Targets: 50}, // not a broadcast: targets ignored
		push.StatusDelta{MsgID: 77, App: 1, Targets: 5},                    // no record
	)
	if s := wantStatus(t, st, 1, 9, counts{sent: 2}); s.Targets != 100 {
		t.Fatalf("broadcast targets %d, want 100", s.Targets)
	}
	if s := wantStatus(t, st, 1, 1, counts{sent: 1}); s.Targets != 1 {
		t.Fatalf("unicast targets %d, want 1 (its uids)", s.Targets)
	}
	wantState(t, st, 1, 1, "u", push.StateSent)
	mustSent(t, st, push.StatusDelta{MsgID: 9, App: 1, Sent: 1, Targets: 25})
	if s := wantStatus(t, st, 1, 9, counts{sent: 3}); s.Targets != 125 {
		t.Fatalf("broadcast targets %d, want 125", s.Targets)
	}
	if err := st.AddSent(bg, []push.StatusDelta{{MsgID: 9, App: 1, Targets: -1}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative targets: %v, want ErrInvalid", err)
	}
	if s := wantStatus(t, st, 1, 9, counts{sent: 3}); s.Targets != 125 {
		t.Fatalf("a refused AddSent changed the targets: %d", s.Targets)
	}
}
