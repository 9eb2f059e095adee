package saver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// AckMany's part of the Store contract (testStore runs these on every
// store): a batch of ACKs does exactly what one Ack per entry in order does.

func mustAckMany(t *testing.T, st Store, want int, acks ...push.AckReq) {
	t.Helper()
	n, err := st.AckMany(bg, acks)
	if err != nil || n != want {
		t.Fatalf("ack many %+v = %d %v, want %d", acks, n, err, want)
	}
}

// twinState saves the same inboxes for uid "s-"+x and "m-"+x (x in xs),
// three apps' unicasts and broadcasts, and loads each once so that Load
// counts (and with MaxLoads 1, parking) are the same for both twins.
func twinState(t *testing.T, st Store, xs []string, loads int) {
	t.Helper()
	exp := future()
	var uids []string
	for _, x := range xs {
		uids = append(uids, "s-"+x, "m-"+x)
	}
	for id := uint64(1); id <= 9; id++ {
		mustSave(t, st, msg(id, uint32(1+id%3), exp), uids...)
	}
	for id := uint64(20); id <= 25; id++ {
		mustBroadcast(t, st, msg(id, uint32(1+id%3), exp))
	}
	for range loads {
		for _, u := range uids {
			loadIDs(t, st, u, testApps, 0)
		}
	}
}

// twinAcks are ACK entries on uids "x", "y", "z" (duplicates, other apps'
// ids, broadcasts, unknown and repeated ids, no apps, no ids).
var twinAcks = []push.AckReq{
	// unicast id i is app 1+i%3 (1: app 2, 2: app 3, 3: app 1), broadcast 20: app 3, 21: app 1, 22: app 2, ...
	{UID: "x", Apps: []uint32{2}, IDs: []uint64{1, 2, 3, 20, 21}},
	{UID: "y", Apps: []uint32{1, 2, 3}, IDs: []uint64{4, 4, 22, 22, 99}},
	{UID: "x", Apps: []uint32{1, 3}, IDs: []uint64{1, 2, 3, 20, 21, 23}},
	{UID: "z", Apps: nil, IDs: []uint64{5}},
	{UID: "z", Apps: []uint32{3}, IDs: nil},
	{UID: "x", Apps: []uint32{1, 2, 3}, IDs: []uint64{1, 2, 3, 20, 21, 23, 24, 25}},
	{UID: "z", Apps: []uint32{1}, IDs: []uint64{7, 9, 24, 1000000}},
	{UID: "nobody", Apps: []uint32{1}, IDs: []uint64{1, 20}},
}

func prefixed(acks []push.AckReq, p string) []push.AckReq {
	out := slices.Clone(acks)
	for i := range out {
		out[i].UID = p + out[i].UID
	}
	return out
}

// compareTwins checks that every "s-" uid and its "m-" twin load the same
// and have the same counts.
func compareTwins(t *testing.T, st Store, xs []string) {
	t.Helper()
	for _, x := range xs {
		for _, app := range []uint32{0, 1, 2, 3} {
			sp, sk, err1 := st.UserStats(bg, "s-"+x, app)
			mp, mk, err2 := st.UserStats(bg, "m-"+x, app)
			if err1 != nil || err2 != nil || sp != mp || sk != mk {
				t.Fatalf("%s app %d: sequential %d pending %d parked (%v), batched %d %d (%v)", x, app, sp, sk, err1, mp, mk, err2)
			}
		}
		s, m := loadIDs(t, st, "s-"+x, testApps, 0), loadIDs(t, st, "m-"+x, testApps, 0)
		if !slices.Equal(s, m) {
			t.Fatalf("%s loads %v after sequential Acks, %v after AckMany", x, s, m)
		}
	}
}

// AckMany of a slice == Ack of each entry in order: the same total and the
// same inboxes, cursors and counts after it, twice (the second time
// nothing takes effect), with and without parked entries.
func contractAckManyEquivalence(t *testing.T, st Store) {
	xs := []string{"x", "y", "z"}
	twinState(t, st, xs, 1)
	for round, want := range []int{-1, 0} {
		seq := 0
		for _, a := range prefixed(twinAcks, "s-") {
			n, err := st.Ack(bg, a.UID, a.Apps, a.IDs)
			if err != nil {
				t.Fatal(err)
			}
			seq += n
		}
		if want < 0 {
			want = seq
			if want == 0 {
				t.Fatal("the sequential Acks took no effect: the case tests nothing")
			}
		}
		if seq != want {
			t.Fatalf("round %d: sequential Acks counted %d, want %d", round, seq, want)
		}
		mustAckMany(t, st, want, prefixed(twinAcks, "m-")...)
		compareTwins(t, st, xs)
	}
	s := mustStats(t, st)
	if s.Pending%2 != 0 {
		t.Fatalf("stats %+v: the twins' pending counts differ", s)
	}
}

// Parked entries (MaxLoads 1): an AckMany deletes parked unicast entries
// and takes the ACK of a parked broadcast, as Ack does, and Stats' parked
// count follows.
func contractAckManyParked(t *testing.T, st Store) {
	xs := []string{"x", "y", "z"}
	twinState(t, st, xs, 1) // one load: everything parked
	before := mustStats(t, st)
	if before.Parked == 0 {
		t.Fatalf("nothing parked: %+v", before)
	}
	seq := 0
	for _, a := range prefixed(twinAcks, "s-") {
		n, err := st.Ack(bg, a.UID, a.Apps, a.IDs)
		if err != nil {
			t.Fatal(err)
		}
		seq += n
	}
	mustAckMany(t, st, seq, prefixed(twinAcks, "m-")...)
	compareTwins(t, st, xs)
	after := mustStats(t, st)
	if d := before.Parked - after.Parked; d == 0 || d%2 != 0 {
		t.Fatalf("parked %d -> %d: the twins unparked different counts, or none", before.Parked, after.Parked)
	}
}

// Tenancy and broadcasts through the cursor: ids of another app are
// unknown ids, a broadcast ACKed in one entry is not counted again in the
// next entry of the same uid, and neither comes back.
func contractAckManyTenancy(t *testing.T, st Store) {
	exp := future()
	mustSave(t, st, msg(1, 1, exp), "u")
	mustSave(t, st, msg(2, 2, exp), "u")
	mustBroadcast(t, st, msg(3, 1, exp))
	mustBroadcast(t, st, msg(4, 2, exp))
	mustAckMany(t, st, 0,
		push.AckReq{UID: "u", Apps: []uint32{2}, IDs: []uint64{1, 3}}, // app 1's ids
		push.AckReq{UID: "u", Apps: []uint32{1}, IDs: []uint64{2, 4}}) // app 2's
	wantLoadApps(t, st, "u", []uint32{1, 2}, 1, 2, 3, 4)
	mustAckMany(t, st, 3,
		push.AckReq{UID: "u", Apps: []uint32{1}, IDs: []uint64{1, 3, 3}},
		push.AckReq{UID: "v", Apps: []uint32{1}, IDs: []uint64{3}}, // another uid's cursor
		push.AckReq{UID: "u", Apps: []uint32{1, 2}, IDs: []uint64{1, 3}})
	wantLoadApps(t, st, "u", []uint32{1, 2}, 2, 4)
	wantLoadApps(t, st, "v", []uint32{1, 2}, 4)
	wantLoadApps(t, st, "w", []uint32{1, 2}, 3, 4)
	mustAckMany(t, st, 2, push.AckReq{UID: "u", Apps: []uint32{2}, IDs: []uint64{2, 4}})
	wantLoadApps(t, st, "u", []uint32{1, 2})
	if s := mustStats(t, st); s.Pending != 0 || s.Acked != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// A duplicate uid in one call: the entries apply in order, each id takes
// effect once, the second entry sees the first's cursor.
func contractAckManyDuplicateUID(t *testing.T, st Store) {
	exp := future()
	for id := uint64(1); id <= 3; id++ {
		mustSave(t, st, msg(id, 1, exp), "u")
	}
	for id := uint64(10); id <= 13; id++ {
		mustBroadcast(t, st, msg(id, 1, exp))
	}
	acks := []push.AckReq{
		{UID: "u", Apps: []uint32{1}, IDs: []uint64{1, 12}},
		{UID: "u", Apps: []uint32{1}, IDs: []uint64{1, 2, 10, 12}},
		{UID: "u", Apps: []uint32{1}, IDs: []uint64{11, 2, 10}},
	}
	mustAckMany(t, st, 5, acks...) // 1, 12, then 2, 10, then 11
	wantLoadApps(t, st, "u", []uint32{1}, 3, 13)
	mustAckMany(t, st, 0, acks...)
	mustAckMany(t, st, 0)
}

// The bounds and a malformed uid refuse the whole call, nothing applied;
// a call of exactly the bounds is taken.
func contractAckManyBounds(t *testing.T, st Store) {
	exp := future()
	mustSave(t, st, msg(1, 1, exp), "u")
	mustBroadcast(t, st, msg(2, 1, exp))
	live := push.AckReq{UID: "u", Apps: []uint32{1}, IDs: []uint64{1, 2}}
	many := make([]uint64, push.MaxAckIDs/2)
	for i := range many {
		many[i] = uint64(1000 + i)
	}
	tooManyApps := make([]uint32, push.MaxAckApps+1)
	for i := range tooManyApps {
		tooManyApps[i] = uint32(i + 1)
	}
	entries := func(n int) []push.AckReq {
		out := []push.AckReq{live}
		for i := 1; i < n; i++ {
			out = append(out, push.AckReq{UID: fmt.Sprintf("j%d", i), Apps: []uint32{1}, IDs: []uint64{9}})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		acks  []push.AckReq
		bound bool // push.ErrAckBatch, else a bad uid
	}{
		{"entries", entries(push.MaxAckEntries + 1), true},
		{"ids", []push.AckReq{live, {UID: "a", Apps: []uint32{1}, IDs: many}, {UID: "b", Apps: []uint32{1}, IDs: many}}, true},
		{"apps", []push.AckReq{live, {UID: "a", Apps: tooManyApps, IDs: []uint64{1}}}, true},
		{"empty uid", []push.AckReq{live, {UID: "", Apps: []uint32{1}, IDs: []uint64{1}}}, false},
		{"long uid", []push.AckReq{live, {UID: strings.Repeat("x", push.MaxUIDLen+1), Apps: []uint32{1}, IDs: []uint64{1}}}, false},
		{"NUL in uid", []push.AckReq{live, {UID: "a\x00b", Apps: []uint32{1}, IDs: []uint64{1}}}, false},
	} {
		n, err := st.AckMany(bg, tc.acks)
		if n != 0 || !errors.Is(err, ErrInvalid) || tc.bound != errors.Is(err, push.ErrAckBatch) {
			t.Fatalf("%s: AckMany = %d, %v; want 0 and ErrInvalid (bound %v)", tc.name, n, err, tc.bound)
		}
		wantLoadApps(t, st, "u", []uint32{1}, 1, 2) // nothing applied
	}
	// Exactly the bounds: taken.
	at := entries(push.MaxAckEntries)
	at[1].IDs = many
	at[2].IDs = many[:len(many)-push.MaxAckEntries-1]
	at[3].Apps = tooManyApps[:push.MaxAckApps]
	if err := push.CheckAckBatch(at); err != nil {
		t.Fatal(err)
	}
	mustAckMany(t, st, 2, at...)
	wantLoadApps(t, st, "u", []uint32{1})
	// A cancelled context applies nothing.
	mustSave(t, st, msg(3, 1, exp), "u")
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if n, err := st.AckMany(ctx, []push.AckReq{{UID: "u", Apps: []uint32{1}, IDs: []uint64{3}}}); err == nil || n != 0 {
		t.Fatalf("AckMany on a cancelled context = %d, %v", n, err)
	}
	wantLoadApps(t, st, "u", []uint32{1}, 3)
}

// An AckMany that takes no effect costs no durable write, as Ack; one that
// does, costs one commit (Bolt) whatever its size.
func contractAckManyNoWrite(t *testing.T, st Store) {
	exp := future()
	var uids []string
	for i := range 50 {
		uids = append(uids, fmt.Sprintf("u%d", i))
	}
	mustSave(t, st, msg(1, 1, exp), uids...)
	mustSave(t, st, msg(5, 2, exp), uids...)
	mustBroadcast(t, st, msg(2, 1, exp))
	mustBroadcast(t, st, msg(3, 2, exp))
	writes := durableWrites(t, st)
	var before uint64
	if writes != nil {
		before = writes()
	}
	var junk, real []push.AckReq
	for _, u := range uids {
		junk = append(junk,
			push.AckReq{UID: u, Apps: []uint32{1}, IDs: []uint64{99, 5, 3}}, // unknown, app 2's, app 2's broadcast
			push.AckReq{UID: u, Apps: nil, IDs: []uint64{1}})
		real = append(real, push.AckReq{UID: u, Apps: []uint32{1, 2}, IDs: []uint64{1, 2, 3, 5}})
	}
	mustAckMany(t, st, 0, junk...)
	if writes != nil && writes() != before {
		t.Fatalf("%d durable writes for an AckMany that changed nothing", writes()-before)
	}
	mustAckMany(t, st, 4*len(uids), real...)
	if _, ok := st.(*Bolt); ok {
		if w := writes() - before; w != 1 {
			t.Fatalf("bolt: %d commits for one AckMany of %d entries, want 1", w, len(real))
		}
	}
	mustAckMany(t, st, 0, real...)
	for _, u := range uids {
		wantLoadApps(t, st, u, []uint32{1, 2})
	}
}
