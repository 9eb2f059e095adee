package room

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"unsafe"
)

// TestIndexChurn drives the index's tables (growth, backward-shift
// deletion, shrinking) with random adds and removes of connections, some
// sharing a uid, and checks every lookup against a plain model.
func TestIndexChurn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		uids  int
		steps int
	}{
		{"few uids", 30, 20000},
		{"many uids", 5000, 60000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var x index
			x.init()
			rng := rand.New(rand.NewPCG(7, uint64(tc.uids)))
			model := map[string][]*connState{} // uid -> connections, newest last
			var id uint64
			check := func(step int) {
				for i := range tc.uids {
					uid := "u" + strconv.Itoa(i)
					cs := model[uid]
					got := x.get(uid, 0)
					if (len(cs) == 0 && got != nil) || (len(cs) > 0 && got != cs[len(cs)-1]) {
						t.Fatalf("step %d: newest of %s = %v, want %v", step, uid, got, cs)
					}
					for _, s := range cs {
						if x.get(uid, s.id) != s {
							t.Fatalf("step %d: get(%s, %d) lost", step, uid, s.id)
						}
					}
					if x.get(uid, id+1) != nil {
						t.Fatalf("step %d: get(%s, unknown id) found one", step, uid)
					}
				}
				for i := range x.shards {
					sh := &x.shards[i]
					live := 0
					for _, p := range sh.slots {
						if p != nil {
							live++
						}
					}
					if live != sh.n || (sh.n > 0 && sh.n*4 > len(sh.slots)*3) {
						t.Fatalf("step %d: shard %d holds %d (n %d) in %d slots", step, i, live, sh.n, len(sh.slots))
					}
				}
			}
			for step := range tc.steps {
				uid := "u" + strconv.Itoa(rng.IntN(tc.uids))
				cs := model[uid]
				if rng.IntN(2) == 0 || len(cs) == 0 {
					id++
					s := &connState{id: id, uid: uid}
					x.add(s)
					model[uid] = append(cs, s)
				} else {
					i := rng.IntN(len(cs))
					x.remove(cs[i])
					x.remove(cs[i]) // twice: a no-op
					if cs = slices.Delete(cs, i, i+1); len(cs) == 0 {
						delete(model, uid)
					} else {
						model[uid] = cs
					}
				}
				if step%1009 == 0 {
					check(step)
				}
			}
			check(tc.steps)
			for _, cs := range model { // everything leaves: the tables go
				for _, s := range cs {
					x.remove(s)
				}
			}
			for i := range x.shards {
				if sh := &x.shards[i]; sh.n != 0 || sh.slots != nil {
					t.Fatalf("shard %d keeps %d in %d slots when empty", i, sh.n, len(sh.slots))
				}
			}
		})
	}
}

func TestIndexShardIsOneCacheLine(t *testing.T) {
	if sz := unsafe.Sizeof(indexShard{}); sz != 64 {
		t.Fatalf("indexShard is %d bytes, want 64", sz)
	}
}
