package register

import (
	"sort"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// entry is one stored session. It is kept small: strings are shared with the
// map key (uid) or interned per shard (room), apps is an exact-size copy.
type entry struct {
	uid    string
	room   string
	ip     string
	connID uint64
	since  int64
	seq    uint64 // position in the shard's scan order, fixed while the uid stays online
	apps   []uint32
}

// copyTo fills dst with the session and returns buf with the apps appended;
// dst.Apps is a full slice expression into buf so appends by the caller never
// overwrite a neighbour. A nil buf gives dst its own array.
func (e *entry) copyTo(dst *push.Session, buf []uint32) []uint32 {
	*dst = push.Session{UID: e.uid, Room: e.room, ConnID: e.connID, Since: e.since, IP: e.ip}
	if len(e.apps) == 0 {
		return buf
	}
	start := len(buf)
	buf = append(buf, e.apps...)
	dst.Apps = buf[start:len(buf):len(buf)]
	return buf
}

// slot is one place in a shard's scan order; e is nil once the session left.
type slot struct {
	seq uint64
	e   *entry
}

// roomCount interns a room id and counts its sessions in one shard.
type roomCount struct {
	name string
	n    int
}

// shard is one lock domain of the store.
type shard struct {
	mu      sync.RWMutex
	m       map[string]*entry
	order   []slot // ascending seq; see scan.go
	dead    int    // slots in order whose e is nil
	nextSeq uint64
	perApp  map[uint32]int
	perRoom map[string]*roomCount
}

func (sh *shard) init() {
	sh.m = make(map[string]*entry)
	sh.perApp = make(map[uint32]int)
	sh.perRoom = make(map[string]*roomCount)
	sh.order = nil
	sh.dead = 0
}

// reset empties the shard and returns how many sessions it held.
func (sh *shard) reset() int {
	sh.mu.Lock()
	n := len(sh.m)
	sh.init()
	sh.mu.Unlock()
	return n
}

// Results of register and unregister, the label values of their counters.
const (
	resultNew       = "new"       // the uid was offline
	resultReplaced  = "replaced"  // another connection of the uid was replaced
	resultRefreshed = "refreshed" // the same connection registered again
	resultRemoved   = "removed"   // the session was removed
	resultStale     = "stale"     // the uid is held by another connection: kept
	resultMissing   = "missing"   // the uid was offline
)

// register stores sess; the caller holds no lock.
func (sh *shard) register(sess *push.Session) (*push.Session, string) {
	apps := copyApps(sess.Apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[sess.UID]
	if !ok {
		sh.nextSeq++
		e = &entry{uid: sess.UID, seq: sh.nextSeq}
		e.set(sh, sess, apps)
		sh.m[e.uid] = e
		sh.order = append(sh.order, slot{seq: e.seq, e: e})
		return nil, resultNew
	}
	var prev *push.Session
	result := resultRefreshed
	if e.room != sess.Room || e.connID != sess.ConnID {
		prev = new(push.Session)
		e.copyTo(prev, nil)
		result = resultReplaced
	}
	// The uid keeps its seq: a user online during a whole scan is returned
	// once even if it reconnects meanwhile.
	sh.uncount(e)
	e.set(sh, sess, apps)
	return prev, result
}

// set overwrites e's fields with sess and counts it; sh.mu is held for writing.
func (e *entry) set(sh *shard, sess *push.Session, apps []uint32) {
	rc := sh.perRoom[sess.Room]
	if rc == nil {
		rc = &roomCount{name: sess.Room}
		sh.perRoom[sess.Room] = rc
	}
	rc.n++
	e.room = rc.name
	e.connID = sess.ConnID
	e.since = sess.Since
	e.ip = sess.IP
	e.apps = apps
	for _, a := range apps {
		sh.perApp[a]++
	}
}

// uncount removes e from the per-app and per-room counters; sh.mu is held for writing.
func (sh *shard) uncount(e *entry) {
	for _, a := range e.apps {
		if sh.perApp[a]--; sh.perApp[a] <= 0 {
			delete(sh.perApp, a)
		}
	}
	if rc := sh.perRoom[e.room]; rc != nil {
		if rc.n--; rc.n <= 0 {
			delete(sh.perRoom, e.room)
		}
	}
}

func (sh *shard) unregister(uid, room string, connID uint64) string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[uid]
	switch {
	case !ok:
		return resultMissing
	case e.room != room || e.connID != connID:
		return resultStale
	}
	sh.remove(e)
	return resultRemoved
}

// remove deletes e from the shard; sh.mu is held for writing.
func (sh *shard) remove(e *entry) {
	sh.uncount(e)
	delete(sh.m, e.uid)
	if i := sh.find(e.seq); i < len(sh.order) && sh.order[i].seq == e.seq {
		sh.order[i].e = nil
		sh.dead++
	}
	sh.compact()
}

// find returns the index of the first slot whose seq is >= seq.
func (sh *shard) find(seq uint64) int {
	return sort.Search(len(sh.order), func(i int) bool { return sh.order[i].seq >= seq })
}

// compact drops dead slots once they are the majority, so the order costs
// at most twice the live sessions and removal stays amortized O(log n).
// Scan cursors hold seqs, not indexes, so they survive compaction.
func (sh *shard) compact() {
	if len(sh.m) == 0 {
		sh.order, sh.dead = nil, 0
		return
	}
	if sh.dead < 32 || sh.dead*2 < len(sh.order) {
		return
	}
	live := make([]slot, 0, len(sh.m)+len(sh.m)/4)
	for _, sl := range sh.order {
		if sl.e != nil {
			live = append(live, sl)
		}
	}
	sh.order, sh.dead = live, 0
}

func (sh *shard) setApps(uid string, connID uint64, apps []uint32) bool {
	apps = copyApps(apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[uid]
	if !ok || e.connID != connID {
		return false
	}
	for _, a := range e.apps {
		if sh.perApp[a]--; sh.perApp[a] <= 0 {
			delete(sh.perApp, a)
		}
	}
	e.apps = apps
	for _, a := range apps {
		sh.perApp[a]++
	}
	return true
}

// dropRoom removes every session of room and returns how many.
func (sh *shard) dropRoom(room string) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.perRoom[room] == nil {
		return 0
	}
	n := 0
	for _, e := range sh.m {
		if e.room == room {
			sh.remove(e)
			n++
		}
	}
	return n
}

// copyApps returns an exact-size copy of apps without duplicates, nil when empty.
func copyApps(apps []uint32) []uint32 {
	if len(apps) == 0 {
		return nil
	}
	out := make([]uint32, 0, len(apps))
next:
	for _, a := range apps {
		for _, b := range out {
			if a == b {
				continue next
			}
		}
		out = append(out, a)
	}
	if len(out) < len(apps) { // duplicates: do not keep the spare capacity
		out = append([]uint32(nil), out...)
	}
	return out
}
