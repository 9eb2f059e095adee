package saver

import (
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// The memory store's record layout (memory_status.go): chunked AddSent,
// the chunked sweep, slot and uid reuse. The behaviour itself is the
// status contract's (status_contract_test.go).

// TestMemoryAddSentChunks applies batches longer than a chunk, with the
// same message in several chunks, and checks every delta counted once.
func TestMemoryAddSentChunks(t *testing.T) {
	tests := []struct {
		name    string
		records int // unicast records, ids 1..records, uid "u<id>"
		deltas  int // delta i is for record i%records+1
	}{
		{"one chunk", 10, addSentChunk},
		{"chunk and one", 10, addSentChunk + 1},
		{"many chunks, repeats", 7, 5*addSentChunk + 3},
		{"5000 distinct", 5000, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			defer m.Close()
			exp := future()
			for id := 1; id <= tt.records; id++ {
				mustOpen(t, m, uint64(id), 1, push.KindUnicast, exp, "u"+strconv.Itoa(id))
			}
			deltas := make([]push.StatusDelta, tt.deltas)
			want := make(map[uint64]int64)
			for i := range deltas {
				id := uint64(i%tt.records + 1)
				deltas[i] = push.StatusDelta{MsgID: id, App: 1, UID: "u" + strconv.Itoa(int(id)), Sent: 2}
				want[id] += 2
			}
			mustSent(t, m, deltas...)
			for id := 1; id <= tt.records; id++ {
				wantStatus(t, m, 1, uint64(id), counts{sent: want[uint64(id)]})
				wantState(t, m, 1, uint64(id), "u"+strconv.Itoa(id), push.StateSent)
			}
		})
	}
}

// TestMemoryStatusReuse drops records in the sweep and checks that a
// record opened in a freed slot, or for an uid interned again, starts
// clean, and that an empty table gives its slab and uids back.
func TestMemoryStatusReuse(t *testing.T) {
	tests := []struct {
		name string
		kind string
		uids []string
	}{
		{"unicast", push.KindUnicast, []string{"u"}},
		{"multicast", push.KindMulticast, []string{"w", "u", "v", "u"}},
		{"broadcast", push.KindBroadcast, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			defer m.Close()
			now := time.Now().Unix()
			short, long := now+10, now+3600
			const n = statusSweepChunk + 100 // more than one sweep chunk
			for id := uint64(1); id <= n; id++ {
				exp := short
				if id%2 == 0 {
					exp = long
				}
				mustOpen(t, m, id, 1, tt.kind, exp, tt.uids...)
				mustSent(t, m, push.StatusDelta{MsgID: id, App: 1, UID: "u", Sent: 1})
			}
			grace := int64(StatusGrace / time.Second)
			if _, err := m.Expire(bg, time.Unix(short+grace, 0)); err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			left, free := m.status.len(), len(m.status.free)
			m.mu.Unlock()
			if left != n/2 || free != n-n/2 {
				t.Fatalf("after the sweep %d records, %d free slots; want %d, %d", left, free, n/2, n-n/2)
			}
			for id := uint64(1); id <= n; id++ {
				if id%2 == 1 {
					wantNoStatus(t, m, 1, id)
					continue
				}
				wantStatus(t, m, 1, id, counts{sent: 1})
			}
			// New records land in the freed slots: nothing inherited.
			for id := uint64(n + 1); id <= n+10; id++ {
				mustOpen(t, m, id, 1, tt.kind, long, tt.uids...)
				wantStatus(t, m, 1, id, counts{})
				if tt.kind != push.KindBroadcast {
					wantState(t, m, 1, id, "u", push.StateUnknown)
				}
				mustSent(t, m, push.StatusDelta{MsgID: id, App: 1, UID: "u", Sent: 1})
				if tt.kind != push.KindBroadcast {
					wantState(t, m, 1, id, "u", push.StateSent)
					wantState(t, m, 1, id, "x", push.StateUnknown)
				}
			}
			if _, err := m.Expire(bg, time.Unix(long+grace, 0)); err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.status.len() != 0 || m.status.n != 0 || len(m.status.chunks) != 0 || len(m.status.multi) != 0 || len(m.status.uids.idx) != 0 {
				t.Fatalf("emptied table keeps %d records, %d slots, %d chunks, %d multi, %d uids",
					m.status.len(), m.status.n, len(m.status.chunks), len(m.status.multi), len(m.status.uids.idx))
			}
		})
	}
}

// TestMemoryStatusUIDRefs: unicast records share an interned uid until
// the last of them goes.
func TestMemoryStatusUIDRefs(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	now := time.Now().Unix()
	grace := int64(StatusGrace / time.Second)
	mustOpen(t, m, 1, 1, push.KindUnicast, now+10, "u")
	mustOpen(t, m, 2, 1, push.KindUnicast, now+20, "u")
	mustOpen(t, m, 3, 1, push.KindUnicast, now+20, "v")
	steps := []struct {
		at   int64
		uids map[string]uint32 // interned uid -> records holding it
	}{
		{now, map[string]uint32{"u": 2, "v": 1}},
		{now + 10 + grace, map[string]uint32{"u": 1, "v": 1}},
		{now + 20 + grace, map[string]uint32{}},
	}
	for _, s := range steps {
		if _, err := m.Expire(bg, time.Unix(s.at, 0)); err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		got := make(map[string]uint32)
		for uid, i := range m.status.uids.idx {
			got[uid] = m.status.uids.refs[i]
		}
		m.mu.Unlock()
		if len(got) != len(s.uids) {
			t.Fatalf("at %d uids %v, want %v", s.at-now, got, s.uids)
		}
		for uid, n := range s.uids {
			if got[uid] != n {
				t.Fatalf("at %d uids %v, want %v", s.at-now, got, s.uids)
			}
		}
	}
	mustOpen(t, m, 4, 1, push.KindUnicast, now+30, "u") // interned again
	wantState(t, m, 1, 4, "u", push.StateUnknown)
	mustSent(t, m, push.StatusDelta{MsgID: 4, App: 1, UID: "u", Sent: 1})
	wantState(t, m, 1, 4, "u", push.StateSent)
}

// TestMemoryExpireInboxChunks: the inbox walk, which yields the lock
// between boxes, drops exactly the expired entries of every box.
func TestMemoryExpireInboxChunks(t *testing.T) {
	tests := []struct {
		name       string
		uids, each int // each uid gets each messages, every other one expiring
	}{
		{"one chunk", 10, 10},
		{"many small boxes", 3 * statusSweepChunk, 2},
		{"full boxes", 2*statusSweepChunk/DefaultInboxCap + 1, DefaultInboxCap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			defer m.Close()
			now := time.Now().Unix()
			id := uint64(0)
			for u := range tt.uids {
				for i := range tt.each {
					id++
					exp := now + 3600
					if i%2 == 0 {
						exp = now + 10
					}
					mustSave(t, m, msg(id, 1, exp), "u"+strconv.Itoa(u))
				}
			}
			drop := tt.uids * ((tt.each + 1) / 2)
			if n, err := m.Expire(bg, time.Unix(now+10, 0)); err != nil || n != drop {
				t.Fatalf("expire = %d %v, want %d", n, err, drop)
			}
			st, err := m.Stats(bg)
			if err != nil || st.Pending != int64(tt.uids*tt.each-drop) || st.Expired != uint64(drop) {
				t.Fatalf("stats %+v %v, want %d pending, %d expired", st, err, tt.uids*tt.each-drop, drop)
			}
			for id := uint64(1); id <= uint64(tt.uids*tt.each); id++ {
				c := counts{stored: 1}
				if (id-1)%uint64(tt.each)%2 == 0 {
					c.expired = 1
				}
				wantStatus(t, m, 1, id, c)
			}
		})
	}
}

// TestMemoryStatusConcurrent races chunked AddSent, the chunked sweeps,
// Save, Status and Close (run with -race).
func TestMemoryStatusConcurrent(t *testing.T) {
	m := NewMemory()
	now := time.Now().Unix()
	const n = 3 * statusSweepChunk
	for id := uint64(1); id <= n; id++ {
		mustOpen(t, m, id, 1, push.KindUnicast, now+int64(id%3), "u"+strconv.Itoa(int(id%50)))
	}
	deltas := make([]push.StatusDelta, 4*addSentChunk)
	for i := range deltas {
		id := uint64(i*7%n + 1)
		deltas[i] = push.StatusDelta{MsgID: id, App: 1, UID: "u" + strconv.Itoa(int(id%50)), Sent: 1}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				switch w {
				case 0:
					err = m.AddSent(bg, deltas)
				case 1:
					_, err = m.Expire(bg, time.Unix(now+int64(i%4)+int64(StatusGrace/time.Second), 0))
				case 2:
					_, _, err = m.Status(bg, 1, uint64(i%n+1))
				case 3:
					id := uint64(n + 1 + i)
					err = m.Save(bg, msg(id, 1, now+int64(i%3)), []string{"u" + strconv.Itoa(i%50)})
				}
				if err != nil {
					return // closed
				}
			}
		})
	}
	testkit.WaitFor(t, "the sweep to drop records", 10*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.status.len() < n
	})
	m.Close()
	wg.Wait()
	if err := m.AddSent(bg, deltas); err == nil {
		t.Fatal("add sent after close: no error")
	}
}

// TestMemoryStatusPointerFree guards the layout's point: a status record
// and the id map hold no pointer, so the GC never scans them.
func TestMemoryStatusPointerFree(t *testing.T) {
	tests := []struct {
		name string
		typ  reflect.Type
	}{
		{"record", reflect.TypeFor[memStatus]()},
		{"slot map key", reflect.TypeFor[map[uint64]uint32]().Key()},
		{"slot map value", reflect.TypeFor[map[uint64]uint32]().Elem()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.typ.Kind() == reflect.Struct {
				for f := range tt.typ.Fields() {
					if k := f.Type.Kind(); k < reflect.Bool || k > reflect.Complex128 {
						t.Errorf("field %s is a %s", f.Name, k)
					}
				}
				return
			}
			if k := tt.typ.Kind(); k < reflect.Bool || k > reflect.Complex128 {
				t.Errorf("%s is a %s", tt.typ, k)
			}
		})
	}
	if n := reflect.TypeFor[memStatus]().Size(); n > 88 {
		t.Errorf("memStatus is %d bytes, want at most 88", n)
	}
}
