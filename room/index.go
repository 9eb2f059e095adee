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
type index struct {
	shards [indexShards]indexShard
}

type indexShard struct {
	mu sync.RWMutex
	m  map[string]*connState
	_  [32]byte // keep hot shard locks on separate cache lines
}

func (x *index) init() {
	for i := range x.shards {
		x.shards[i].m = make(map[string]*connState)
	}
}

func (x *index) shard(uid string) *indexShard {
	return &x.shards[xxhash.Sum64String(uid)%indexShards]
}

// add makes s the newest connection of s.uid.
func (x *index) add(s *connState) {
	sh := x.shard(s.uid)
	sh.mu.Lock()
	s.sameNext = sh.m[s.uid]
	sh.m[s.uid] = s
	sh.mu.Unlock()
}

// remove takes s out of the index; other connections of the uid stay.
func (x *index) remove(s *connState) {
	sh := x.shard(s.uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	head := sh.m[s.uid]
	if head == s {
		if s.sameNext == nil {
			delete(sh.m, s.uid)
		} else {
			sh.m[s.uid] = s.sameNext
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
	sh := x.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	p := sh.m[uid]
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
