package saver

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Send queue journal contract cases (listed in testStore).

func qpush(id uint64, owner string, expire int64, uids ...string) push.QueuedPush {
	return push.QueuedPush{Msg: msg(id, 7, expire), UIDs: uids, Owner: owner, At: int64(id) * 1000}
}

func mustEnqueue(t *testing.T, st Store, qs ...push.QueuedPush) {
	t.Helper()
	for _, q := range qs {
		if err := st.Enqueue(bg, q); err != nil {
			t.Fatalf("enqueue %d: %v", q.Msg.ID, err)
		}
	}
}

// enqueueMany journals qs from several goroutines (Bolt: shared commits).
func enqueueMany(t *testing.T, st Store, qs []push.QueuedPush) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(qs))
	for chunk := range slices.Chunk(qs, (len(qs)+15)/16) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, q := range chunk {
				if err := st.Enqueue(bg, q); err != nil {
					errs <- fmt.Errorf("enqueue %d: %w", q.Msg.ID, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func queuedIDs(t *testing.T, st Store, owner string, limit int) []uint64 {
	t.Helper()
	qs, err := st.Queued(bg, owner, limit)
	if err != nil {
		t.Fatalf("queued %s: %v", owner, err)
	}
	ids := []uint64{}
	for _, q := range qs {
		ids = append(ids, q.Msg.ID)
	}
	return ids
}

func wantQueued(t *testing.T, st Store, owner string, limit int, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if got := queuedIDs(t, st, owner, limit); !slices.Equal(got, want) {
		t.Fatalf("queued %s (limit %d) = %v, want %v", owner, limit, got, want)
	}
}

func wantOwners(t *testing.T, st Store, want ...string) {
	t.Helper()
	got, err := st.QueueOwners(bg)
	if err != nil {
		t.Fatal(err)
	}
	got = slices.Clone(got)
	slices.Sort(got)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("queue owners = %q, want %q", got, want)
	}
}

func contractQueueRoundTrip(t *testing.T, st Store) {
	wantQueued(t, st, "c1", 0)
	wantOwners(t, st)
	a := qpush(30, "c1", future(), "u1", "u2", "u3")
	a.Msg.Payload = []byte{0, 1, 2, 255}
	b := qpush(10, "c1", 0, "u4")
	b.Msg.QoS = push.QoS0
	c := qpush(20, "c1", future()) // no uids
	mustEnqueue(t, st, a, b, c)
	qs, err := st.Queued(bg, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []push.QueuedPush{b, c, a}
	if len(qs) != len(want) {
		t.Fatalf("queued %d, want %d", len(qs), len(want))
	}
	for i := range want {
		g, w := qs[i], want[i]
		if len(g.UIDs) == 0 && len(w.UIDs) == 0 {
			g.UIDs, w.UIDs = nil, nil
		}
		if len(g.Msg.Payload) == 0 && len(w.Msg.Payload) == 0 {
			g.Msg.Payload, w.Msg.Payload = nil, nil
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("queued[%d] = %+v, want %+v", i, g, w)
		}
	}
	wantQueued(t, st, "c1", 2, 10, 20)
	wantQueued(t, st, "c1", 1, 10)
	wantQueued(t, st, "c2", 0)
	// Large ids keep their order (no float rounding).
	big := uint64(1) << 62
	mustEnqueue(t, st, qpush(big+2, "c3", 0, "u"), qpush(big+1, "c3", 0, "u"), qpush(big+3, "c3", 0, "u"))
	wantQueued(t, st, "c3", 0, big+1, big+2, big+3)
	wantOwners(t, st, "c1", "c3")
	// Paging past one chunk.
	var many []uint64
	var qs4 []push.QueuedPush
	for i := range uint64(queueChunk + 5) {
		id := 1000 + i
		qs4 = append(qs4, qpush(id, "c4", 0, "u"))
		many = append(many, id)
	}
	enqueueMany(t, st, qs4)
	wantQueued(t, st, "c4", 0, many...)
	wantQueued(t, st, "c4", queueChunk+2, many[:queueChunk+2]...)
}

func contractQueueIdempotent(t *testing.T, st Store) {
	mustEnqueue(t, st, qpush(1, "c1", future(), "u1"), qpush(2, "c1", future(), "u1"))
	q := qpush(1, "c1", future(), "u2", "u3")
	q.At = 99
	mustEnqueue(t, st, q, q)
	qs, err := st.Queued(bg, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 || !slices.Equal(qs[0].UIDs, []string{"u2", "u3"}) || qs[0].At != 99 {
		t.Fatalf("after overwrite: %+v", qs)
	}
	// An overwrite with another owner moves the entry.
	q.Owner = "c2"
	mustEnqueue(t, st, q)
	wantQueued(t, st, "c1", 0, 2)
	wantQueued(t, st, "c2", 0, 1)
	wantOwners(t, st, "c1", "c2")
	q2 := qpush(2, "c2", future(), "u1")
	mustEnqueue(t, st, q2)
	wantQueued(t, st, "c1", 0)
	wantQueued(t, st, "c2", 0, 1, 2)
	wantOwners(t, st, "c2")
}

func contractQueueDequeue(t *testing.T, st Store) {
	mustEnqueue(t, st, qpush(1, "c1", 0, "u"), qpush(2, "c1", 0, "u"), qpush(3, "c2", 0, "u"))
	if err := st.Dequeue(bg, []uint64{2, 3, 404}); err != nil {
		t.Fatal(err)
	}
	wantQueued(t, st, "c1", 0, 1)
	wantQueued(t, st, "c2", 0)
	wantOwners(t, st, "c1")
	for _, ids := range [][]uint64{nil, {404, 405}, {2, 3}} {
		if err := st.Dequeue(bg, ids); err != nil {
			t.Fatalf("dequeue %v: %v", ids, err)
		}
	}
	if err := st.Dequeue(bg, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	wantQueued(t, st, "c1", 0)
	wantOwners(t, st)
	// Dequeued ids can be journaled again.
	mustEnqueue(t, st, qpush(1, "c1", 0, "u"))
	wantQueued(t, st, "c1", 0, 1)
}

func contractQueueExpired(t *testing.T, st Store) {
	past := time.Now().Add(-time.Second).Unix()
	mustEnqueue(t, st, qpush(1, "c1", past, "u"), qpush(2, "c1", future(), "u"), qpush(3, "c1", 0, "u"), qpush(4, "c1", past, "u"))
	wantQueued(t, st, "c1", 0, 2, 3)
	wantQueued(t, st, "c1", 1, 2)
	// Forgotten: a Claim no longer moves them.
	if n, err := st.Claim(bg, "c1", "c2"); err != nil || n != 2 {
		t.Fatalf("claim = %d, %v; want 2", n, err)
	}
	wantQueued(t, st, "c2", 0, 2, 3)
}

func contractQueueClaim(t *testing.T, st Store) {
	var qs []push.QueuedPush
	for i := range uint64(queueChunk + 3) {
		qs = append(qs, qpush(100+i, "old", 0, "u"))
	}
	enqueueMany(t, st, qs)
	mustEnqueue(t, st, qpush(1, "new", 0, "u"), qpush(2, "other", 0, "u"))
	n, err := st.Claim(bg, "old", "new")
	if err != nil || n != queueChunk+3 {
		t.Fatalf("claim = %d, %v; want %d", n, err, queueChunk+3)
	}
	if n, err := st.Claim(bg, "old", "new"); err != nil || n != 0 {
		t.Fatalf("second claim = %d, %v; want 0", n, err)
	}
	wantQueued(t, st, "old", 0)
	ids := queuedIDs(t, st, "new", 0)
	if len(ids) != queueChunk+4 || ids[0] != 1 || ids[1] != 100 || !slices.IsSorted(ids) {
		t.Fatalf("new owner has %d ids (%v...)", len(ids), ids[:min(3, len(ids))])
	}
	qs, err = st.Queued(bg, "new", 1)
	if err != nil || len(qs) != 1 || qs[0].Owner != "new" {
		t.Fatalf("queued after claim: %+v, %v", qs, err)
	}
	wantQueued(t, st, "other", 0, 2)
	wantOwners(t, st, "new", "other")
	if n, err := st.Claim(bg, "nobody", "new"); err != nil || n != 0 {
		t.Fatalf("claim of nobody = %d, %v", n, err)
	}
	if n, err := st.Claim(bg, "new", "new"); err != nil || n != 0 {
		t.Fatalf("claim to self = %d, %v", n, err)
	}
	wantQueued(t, st, "other", 0, 2)
}

func contractQueueClaimConcurrent(t *testing.T, st Store) {
	const total = 2*queueChunk + 10
	var qs []push.QueuedPush
	for i := range uint64(total) {
		qs = append(qs, qpush(1+i, "dead", 0, "u"))
	}
	enqueueMany(t, st, qs)
	var wg sync.WaitGroup
	got := make([]int, 4)
	errs := make([]error, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = st.Claim(bg, "dead", fmt.Sprintf("heir%d", i))
		}()
	}
	wg.Wait()
	sum := 0
	seen := map[uint64]bool{}
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		sum += got[i]
		ids := queuedIDs(t, st, fmt.Sprintf("heir%d", i), 0)
		if len(ids) != got[i] {
			t.Fatalf("heir%d claimed %d, holds %d", i, got[i], len(ids))
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %d held twice", id)
			}
			seen[id] = true
		}
	}
	if sum != total || len(seen) != total {
		t.Fatalf("claimed %d in total (%d distinct), want %d", sum, len(seen), total)
	}
	wantQueued(t, st, "dead", 0)
}

func contractQueueInvalid(t *testing.T, st Store) {
	long := strings.Repeat("x", maxOwnerLen+1)
	tooMany := make([]string, maxQueuedUIDs+1)
	for i := range tooMany {
		tooMany[i] = "u"
	}
	bcast := qpush(5, "c1", 0, "u")
	bcast.Msg.Broadcast = true
	for _, q := range []push.QueuedPush{
		qpush(0, "c1", 0, "u"),
		qpush(1, "", 0, "u"),
		qpush(1, long, 0, "u"),
		qpush(1, "c1", 0, "u", ""),
		qpush(1, "c1", 0, "bad\x00uid"),
		qpush(1, "c1", -1, "u"),
		{Msg: msg(1, 7, 0), UIDs: tooMany, Owner: "c1"},
		bcast,
	} {
		if err := st.Enqueue(bg, q); !errors.Is(err, ErrInvalid) {
			t.Errorf("enqueue id %d owner %q uids %d: %v, want ErrInvalid", q.Msg.ID, truncate(q.Owner), len(q.UIDs), err)
		}
	}
	if _, err := st.Queued(bg, "", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("queued of empty owner: %v", err)
	}
	if _, err := st.Queued(bg, long, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("queued of long owner: %v", err)
	}
	for _, c := range [][2]string{{"", "a"}, {"a", ""}, {long, "a"}, {"a", long}} {
		if _, err := st.Claim(bg, c[0], c[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("claim %q -> %q: %v", truncate(c[0]), truncate(c[1]), err)
		}
	}
	wantOwners(t, st)
	// The longest owner is fine.
	mustEnqueue(t, st, qpush(1, long[1:], 0, "u"))
	wantQueued(t, st, long[1:], 0, 1)
}

// The Bolt journal survives a reopen (another process, the same file).
func TestBoltQueueDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	q := qpush(7, "c1", future(), "u1", "u2")
	mustEnqueue(t, st, q, qpush(8, "c1", 0, "u3"))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Enqueue(bg, q); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	qs, err := st.Queued(bg, "c1", 0)
	if err != nil || len(qs) != 2 || !reflect.DeepEqual(qs[0], q) {
		t.Fatalf("queued after reopen: %+v %v", qs, err)
	}
	wantOwners(t, st, "c1")
}
