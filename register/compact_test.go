package register

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"unsafe"

	"github.com/lcpush/lcpush/internal/appset"
	"github.com/lcpush/lcpush/pkg/push"
)

// TestChurnAgainstModel drives the slab, its hash table (backward-shift
// deletion, growth, shrinking) and compaction with random registers,
// unregisters, app changes and room drops on few shards, and checks every
// uid against a plain map after each step batch.
func TestChurnAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
		uids   int
		steps  int
	}{
		{"one shard, few uids", 1, 40, 20000},
		{"one shard, many uids", 1, 3000, 60000},
		{"four shards", 4, 2000, 40000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := newTest(t, tc.shards)
			rng := rand.New(rand.NewPCG(1, uint64(tc.uids)))
			type conn struct {
				room string
				id   uint64
				apps []uint32
			}
			model := map[string][]conn{} // uid -> connections, apps disjoint
			uid := func(i int) string { return "u" + strconv.Itoa(i) }
			rooms := []string{"r1", "r2", "r3"}
			var nextID uint64
			for step := range tc.steps {
				u := uid(rng.IntN(tc.uids))
				switch op := rng.IntN(10); {
				case op < 5: // register a new connection with one or two apps
					nextID++
					apps := []uint32{uint32(1 + rng.IntN(3))}
					if rng.IntN(4) == 0 {
						apps = append(apps, 7)
					}
					c := conn{rooms[rng.IntN(len(rooms))], nextID, apps}
					if _, err := s.Register(ctx, push.Session{UID: u, Room: c.room, ConnID: c.id, Apps: apps, IP: "10.0.0.1"}); err != nil {
						t.Fatal(err)
					}
					var keep []conn
					for _, o := range model[u] {
						var left []uint32
						for _, a := range o.apps {
							if !slices.Contains(apps, a) {
								left = append(left, a)
							}
						}
						if len(left) > 0 {
							o.apps = left
							keep = append(keep, o)
						}
					}
					model[u] = append(keep, c)
				case op < 9: // unregister one of its connections
					cs := model[u]
					if len(cs) == 0 {
						if ok, err := s.Unregister(ctx, u, "r1", 1); err != nil || ok {
							t.Fatalf("unregister of offline %s: %v %v", u, ok, err)
						}
						continue
					}
					i := rng.IntN(len(cs))
					if ok, err := s.Unregister(ctx, u, cs[i].room, cs[i].id); err != nil || !ok {
						t.Fatalf("step %d: unregister %s %+v: %v %v", step, u, cs[i], ok, err)
					}
					model[u] = slices.Delete(cs, i, i+1)
					if len(model[u]) == 0 {
						delete(model, u)
					}
				default: // drop a room now and then
					if rng.IntN(50) != 0 {
						continue
					}
					room := rooms[rng.IntN(len(rooms))]
					if _, err := s.DropRoom(ctx, room); err != nil {
						t.Fatal(err)
					}
					for k, cs := range model {
						cs = slices.DeleteFunc(cs, func(c conn) bool { return c.room == room })
						if len(cs) == 0 {
							delete(model, k)
						} else {
							model[k] = cs
						}
					}
				}
				if step%997 != 0 && step != tc.steps-1 {
					continue
				}
				for i := range tc.uids {
					u := uid(i)
					got, err := s.Lookup(ctx, []string{u})
					if err != nil {
						t.Fatal(err)
					}
					want := model[u]
					if len(got) != len(want) {
						t.Fatalf("step %d: %s has %d sessions, want %d (%+v)", step, u, len(got), len(want), got)
					}
					for _, w := range want {
						i := slices.IndexFunc(got, func(g push.Session) bool { return g.ConnID == w.id })
						if i < 0 || got[i].Room != w.room || !slices.Equal(got[i].Apps, w.apps) || got[i].UID != u {
							t.Fatalf("step %d: %s: got %+v, want %+v", step, u, got, want)
						}
					}
				}
				c, err := s.Counts(ctx)
				if err != nil || c.Total != len(model) {
					t.Fatalf("step %d: total %d, want %d (%v)", step, c.Total, len(model), err)
				}
				assertCountsMatch(t, s)
				for i := range s.shards {
					sh := &s.shards[i]
					if sh.live > 0 && (sh.dead > 8 && sh.dead*4 > sh.n+4 || sh.live*4 > len(sh.table)*3 || sh.n > len(sh.chunks)*chunkRecs || len(sh.chunks) > sh.n/chunkRecs+1) {
						t.Fatalf("step %d: shard %d: %d live, %d dead of %d slots in %d chunks, table %d", step, i, sh.live, sh.dead, sh.n, len(sh.chunks), len(sh.table))
					}
				}
			}
		})
	}
}

// TestAppSetsShared checks that sessions with the same apps share one
// interned set and that what callers get back is their own copy.
func TestAppSetsShared(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	for i := range 100 {
		if _, err := s.Register(ctx, sess("u"+strconv.Itoa(i), "r", uint64(i+1), 3, 4, 3)); err != nil {
			t.Fatal(err)
		}
	}
	var sets []*[]uint32
	for i := range s.shards {
		sh := &s.shards[i]
		for j := range sh.n {
			if e := sh.at(j); e.uid != "" {
				sets = append(sets, e.apps)
			}
		}
	}
	if len(sets) != 100 {
		t.Fatalf("%d sessions stored", len(sets))
	}
	for _, p := range sets {
		if p != sets[0] || !slices.Equal(*p, []uint32{3, 4}) {
			t.Fatalf("set %p %v, want the shared %p [3 4]", p, *p, sets[0])
		}
	}
	got, _ := mustGet(t, s, "u1")
	got.Apps[0] = 99
	if again, _ := mustGet(t, s, "u2"); !slices.Equal(again.Apps, []uint32{3, 4}) {
		t.Fatalf("a caller's change reached the store: %v", again.Apps)
	}
	if p := appset.Of([]uint32{3, 4}); p != sets[0] {
		t.Fatal("appset.Of does not return the stored set")
	}
}

// TestMemoryPerSession bounds the heap a session costs the store: the
// 80-byte record, its table slot and the slab's spare room (the uid and IP
// strings are the caller's).
func TestMemoryPerSession(t *testing.T) {
	const n = 100_000
	ctx := context.Background()
	uids := benchUIDs(n)
	s := newTest(t, DefaultShards)
	before := heapInUse()
	for i, uid := range uids {
		if _, err := s.Register(ctx, push.Session{UID: uid, Room: "room-1", ConnID: uint64(i + 1), Apps: []uint32{1}, IP: "10.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	per := float64(heapInUse()-before) / n
	t.Logf("%.1f bytes per session", per)
	if per > 120 {
		t.Fatalf("%.1f bytes per session, want at most 120", per)
	}
	runtime.KeepAlive(s)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerSession reports the store's heap per session at 10k
// sessions on the default 256 shards (~40 a shard, as in one room's
// all-in-one process at 10k connections).
func BenchmarkMemoryPerSession(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	uids := benchUIDs(n)
	var per float64
	for b.Loop() {
		s, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		for i, uid := range uids {
			if _, err := s.Register(ctx, push.Session{UID: uid, Room: "room-1", ConnID: uint64(i + 1), Apps: []uint32{1}, IP: "10.0.0.1"}); err != nil {
				b.Fatal(err)
			}
		}
		per = float64(heapInUse()-before) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(per, "B/session")
}

func TestRecordSizes(t *testing.T) {
	if sz := unsafe.Sizeof(rec{}); sz != 80 {
		t.Fatalf("rec is %d bytes, want 80", sz)
	}
	// A chunk is exactly a size class and has no malloc header (<= 512 bytes).
	if sz := unsafe.Sizeof([chunkRecs]rec{}); sz != 480 {
		t.Fatalf("a chunk is %d bytes, want 480", sz)
	}
}
