package room

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

const indexShards = 64

// index finds connections by uid from any goroutine (Push, Kick). It is
// sharded by uid hash so that fan-out lookups and logins do not contend on
// one lock. A uid maps to its newest connection; older ones of the same uid
// (a new login before the old connection is kicked) hang off sameNext, so a
// lookup by (uid, connID) finds exactly that connection and an old
// connection's close never removes the new one.
//
// Each shard is an open-addressing table of *connState (linear probing on
// the high half of xxhash(uid); the low bits chose the shard), load 3/8 to
// 3/4: ~11-21 bytes per connection where a map[string]*connState took ~46,
// and the key is the connection's own uid string.
type index struct {
	shards [indexShards]indexShard
}

type indexShard struct {
	mu    sync.RWMutex
	slots []*connState // power-of-two length (or nil); nil slot: empty
	n     int          // uids held
	_     [8]byte      // 64 bytes: hot shard locks on separate cache lines
}

// indexMinSlots is a shard table's smallest size once it holds anything.
const indexMinSlots = 16

func (x *index) init() {
	for i := range x.shards {
		x.shards[i] = indexShard{}
	}
}

func (x *index) shard(uid string) (*indexShard, uint64) {
	h := xxhash.Sum64String(uid)
	return &x.shards[h%indexShards], h
}

func indexSlot(h uint64, mask int) int { return int(h>>32) & mask }

// find returns the slot of uid's newest connection, -1 when none.
func (sh *indexShard) find(uid string, h uint64) int {
	if len(sh.slots) == 0 {
		return -1
	}
	mask := len(sh.slots) - 1
	for i := indexSlot(h, mask); ; i = (i + 1) & mask {
		p := sh.slots[i]
		if p == nil {
			return -1
		}
		if p.uid == uid {
			return i
		}
	}
}

// put stores s in the first free slot of its probe sequence; there is one.
func (sh *indexShard) put(s *connState, h uint64) {
	mask := len(sh.slots) - 1
	i := indexSlot(h, mask)
	for sh.slots[i] != nil {
		i = (i + 1) & mask
	}
	sh.slots[i] = s
}

// resize moves the table to size slots (a power of two, above n*4/3).
func (sh *indexShard) resize(size int) {
	old := sh.slots
	sh.slots = make([]*connState, size)
	for _, p := range old {
		if p != nil {
			sh.put(p, xxhash.Sum64String(p.uid))
		}
	}
}

// del empties slot i, shifting the probe chain after it back (no tombstones).
func (sh *indexShard) del(i int) {
	mask := len(sh.slots) - 1
	for k := (i + 1) & mask; sh.slots[k] != nil; k = (k + 1) & mask {
		home := indexSlot(xxhash.Sum64String(sh.slots[k].uid), mask)
		// The entry at k may fill the hole at i unless its home lies
		// cyclically in (i, k].
		if (k > i && (home <= i || home > k)) || (k < i && home <= i && home > k) {
			sh.slots[i] = sh.slots[k]
			i = k
		}
	}
	sh.slots[i] = nil
	sh.n--
	switch {
	case sh.n == 0:
		sh.slots = nil
	case len(sh.slots) > indexMinSlots && sh.n*8 < len(sh.slots):
		sh.resize(len(sh.slots) / 2)
	}
}

// add makes s the newest connection of s.uid.
func (x *index) add(s *connState) {
	sh, h := x.shard(s.uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i := sh.find(s.uid, h); i >= 0 {
		s.sameNext = sh.slots[i]
		sh.slots[i] = s
		return
	}
	s.sameNext = nil
	if (sh.n+1)*4 > len(sh.slots)*3 {
		sh.resize(max(indexMinSlots, 2*len(sh.slots)))
	}
	sh.put(s, h)
	sh.n++
}

// remove takes s out of the index; other connections of the uid stay.
func (x *index) remove(s *connState) {
	sh, h := x.shard(s.uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := sh.find(s.uid, h)
	if i < 0 {
		return
	}
	head := sh.slots[i]
	if head == s {
		if s.sameNext == nil {
			sh.del(i)
		} else {
			sh.slots[i] = s.sameNext
		}
		s.sameNext = nil
		return
	}
	for p := head; p != nil; p = p.sameNext {
		if p.sameNext == s {
			p.sameNext = s.sameNext
			s.sameNext = nil
			return
		}
	}
}

// get returns the connection of uid with connID, or the newest one when
// connID is 0.
func (x *index) get(uid string, connID uint64) *connState {
	sh, h := x.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	i := sh.find(uid, h)
	if i < 0 {
		return nil
	}
	p := sh.slots[i]
	if connID == 0 {
		return p
	}
	for ; p != nil; p = p.sameNext {
		if p.id == connID {
			return p
		}
	}
	return nil
}
