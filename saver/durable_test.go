package saver

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// fold must leave MySQL as applying the rows one by one would.
func TestFold(t *testing.T) {
	m1 := &push.Message{ID: 1, App: 1}
	m2 := &push.Message{ID: 1, App: 2}
	up := func(m *push.Message) drow { return drow{op: dUpsert, uid: "u", id: 1, msg: m} }
	del := drow{op: dDelete, uid: "u", id: 1}
	park := drow{op: dPark, uid: "u", id: 1}
	delIn := func(apps ...uint32) drow { return drow{op: dDeleteIn, uid: "u", id: 1, apps: apps} }
	for _, tc := range []struct {
		name string
		rows []drow
		want inboxOp
	}{
		{"upsert", []drow{up(m1)}, inboxOp{up: m1}},
		{"last upsert wins", []drow{up(m1), up(m2)}, inboxOp{up: m2}},
		{"upsert then ack", []drow{up(m1), del}, inboxOp{del: true}},
		{"ack then re-save", []drow{del, up(m2)}, inboxOp{del: true, up: m2}},
		{"parked while stored", []drow{up(m1), park}, inboxOp{up: m1, parked: true}},
		{"re-save keeps parked", []drow{park, up(m2)}, inboxOp{up: m2, parked: true}},
		{"park after ack is nothing", []drow{del, park}, inboxOp{del: true}},
		{"parked then acked", []drow{up(m1), park, del}, inboxOp{del: true}},
		{"park alone", []drow{park}, inboxOp{parked: true}},
		// dDeleteIn: an ACK of an id Redis did not know, for some apps only.
		{"conditional delete alone", []drow{delIn(1)}, inboxOp{delIn: []uint32{1}}},
		{"conditional delete of a row written for the app", []drow{up(m1), delIn(1)}, inboxOp{del: true}},
		{"conditional delete of another app's row", []drow{up(m2), delIn(1)}, inboxOp{up: m2}},
		{"conditional delete then re-save", []drow{delIn(1), up(m2)}, inboxOp{delIn: []uint32{1}, up: m2}},
		{"conditional delete after a delete", []drow{del, delIn(1)}, inboxOp{del: true}},
		{"conditional deletes add up", []drow{delIn(1), delIn(2, 1)}, inboxOp{delIn: []uint32{1, 2}}},
		{"delete after a conditional one", []drow{delIn(1), del}, inboxOp{del: true}},
		{"parked then conditional delete", []drow{park, delIn(2)}, inboxOp{delIn: []uint32{2}, parked: true}},
	} {
		got := fold(tc.rows).inbox[rowKey{"u", 1}]
		if got == nil || !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestFoldBroadcastsAndCursors(t *testing.T) {
	b1 := &push.Message{ID: 9, Payload: []byte("a")}
	b2 := &push.Message{ID: 9, Payload: []byte("b")}
	c := func(cur uint64) *bcursor { return &bcursor{Cur: cur} }
	f := fold([]drow{
		{op: dBroadcast, id: 9, seq: 4, msg: b1},
		{op: dCursor, uid: "u", app: 1, seq: 1, cur: c(10)},
		{op: dCursor, uid: "u", app: 1, seq: 3, cur: c(30)},
		{op: dCursor, uid: "u", app: 1, seq: 2, cur: c(20)}, // queued late: the higher write count wins
		{op: dCursor, uid: "u", app: 2, seq: 1, cur: c(5)},
		{op: dCursor, uid: "v", app: 1, seq: 7, cur: c(7)},
		{op: dBroadcast, id: 9, seq: 4, msg: b2},
	})
	if f.bcasts[9].msg != b2 || f.bcasts[9].seq != 4 || len(f.bcasts) != 1 {
		t.Errorf("broadcasts %v", f.bcasts)
	}
	for k, want := range map[rowKey]uint64{{"u", 1}: 30, {"u", 2}: 5, {"v", 1}: 7} {
		if r := f.cursors[k]; r == nil || r.cur.Cur != want {
			t.Errorf("cursor %v: %+v, want cur %d", k, r, want)
		}
	}
	if len(f.cursors) != 3 {
		t.Errorf("%d cursor rows, want 3 (one per uid and app)", len(f.cursors))
	}
}

func TestDurableReserve(t *testing.T) {
	d := &durable{limit: 10}
	for _, tc := range []struct {
		n   int
		ack bool
		ok  bool
	}{
		{6, false, true},
		{4, false, true},
		{1, false, false}, // saves stop at the limit
		{10, true, true},  // ACKs go on to twice it
		{1, true, false},
	} {
		if got := d.reserve(tc.n, tc.ack); got != tc.ok {
			t.Fatalf("reserve(%d, ack %v) = %v at depth %d", tc.n, tc.ack, got, d.depth.Load())
		}
	}
	d.release(20)
	if d.depth.Load() != 0 {
		t.Fatalf("depth %d after release", d.depth.Load())
	}
}

func TestParseUserHash(t *testing.T) {
	v := string(appendValue(nil, &push.Message{App: 3, QoS: 1, Expire: 99, Payload: []byte("hi")}))
	h, corrupt := parseUserHash(map[string]string{
		"e":            "epoch1",
		"n":            "2",
		"x":            "99",
		"m" + id8(7):   v,
		"m" + id8(5):   v,
		"l" + id8(5):   "3",
		"p" + id8(7):   "1",
		"b" + id8(9):   "2:100",
		"b" + id8(8):   "a:0",
		"b" + id8(6):   "p:50",
		"t" + id8(4):   "1",
		cursorField(3): encodeRCursor(4, bcursor{Cur: 17, Exc: []bexc{{Seq: 19, State: bexcAcked}}}),
		cursorField(5): "\x01\x09", // corrupt cursor
		"m" + id8(3):   "short",    // corrupt value
		"b" + id8(2):   "nonsense", // corrupt state
		"mshort":       v,          // corrupt field name
	})
	if corrupt != 4 {
		t.Errorf("corrupt %d, want 4", corrupt)
	}
	if c := h.curs[3]; c.ver != 4 || c.c.Cur != 17 || len(c.c.Exc) != 1 || c.c.Exc[0].Seq != 19 {
		t.Errorf("cursor of app 3: %+v", c)
	}
	if c, ok := h.curs[5]; !ok || c.raw == "" || !c.c.empty() {
		t.Errorf("corrupt cursor of app 5: %+v, %v (kept for the next write to replace)", c, ok)
	}
	if h.epoch != "epoch1" || len(h.entries) != 2 || h.entries[0].ID != 5 || h.entries[1].ID != 7 {
		t.Fatalf("hash %+v", h)
	}
	if e := h.entries[0]; e.App != 3 || e.QoS != 1 || e.Expire != 99 || string(e.Payload) != "hi" {
		t.Errorf("entry %+v", e)
	}
	if !h.parked[7] || h.parked[5] {
		t.Errorf("parked %v", h.parked)
	}
	for id, want := range map[uint64]bstate{9: {loads: 2, expire: 100}, 8: {acked: true}, 6: {parked: true, expire: 50}} {
		if h.legacy[id].b != want {
			t.Errorf("broadcast %d: %+v, want %+v", id, h.legacy[id], want)
		}
	}
}

func TestParseBState(t *testing.T) {
	tests := []struct {
		in   string
		want bstate
		ok   bool
	}{
		{"0:0", bstate{}, true},
		{"3:17", bstate{loads: 3, expire: 17}, true},
		{"a:17", bstate{acked: true, expire: 17}, true},
		{"p:9", bstate{parked: true, expire: 9}, true},
		{"2:-1", bstate{loads: 2, expire: -1}, true},
		{"-1:5", bstate{}, false}, // a negative load count is corrupt
		{"a", bstate{}, false},
		{":", bstate{}, false},
		{"x:1", bstate{}, false},
		{"a:", bstate{}, false},
		{"a:1:2", bstate{}, false},
		{"99999999999999999999:1", bstate{}, false},
		{"1:99999999999999999999", bstate{}, false},
	}
	for _, tt := range tests {
		got, ok := parseBState(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseBState(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// formatBState writes b as the store's scripts do (the reference for the
// fuzz round trip).
func formatBState(b bstate) string {
	switch {
	case b.acked:
		return "a:" + strconv.FormatInt(b.expire, 10)
	case b.parked:
		return "p:" + strconv.FormatInt(b.expire, 10)
	}
	return strconv.Itoa(b.loads) + ":" + strconv.FormatInt(b.expire, 10)
}

// Corrupt hashes are skipped, never a panic; what is accepted is one state
// (never both acked and parked, never a negative count) that reads back the
// same once written the store's way.
func FuzzParseBState(f *testing.F) {
	for _, s := range []string{"1:0", "a:17", "p:9", ":", "x:", "1:-5", "-1:5", "+3:07", "99999999999999999999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := parseBState(s)
		if !ok {
			if b != (bstate{}) {
				t.Fatalf("%q: refused but %+v", s, b)
			}
			return
		}
		if b.acked && b.parked || b.loads < 0 || (b.acked || b.parked) && b.loads != 0 {
			t.Fatalf("%q: impossible state %+v", s, b)
		}
		again, ok := parseBState(formatBState(b))
		if !ok || again != b {
			t.Fatalf("%q: %+v reads back as %+v, %v", s, b, again, ok)
		}
	})
}
