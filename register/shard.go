package register

import (
	"sort"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// entry is one stored session: one connection of a uid. It is kept small:
// strings are shared with the map key (uid) or interned per shard (room),
// apps is an exact-size copy.
//
// Apps are tenants: a uid may be connected more than once, one connection
// per app at most (a login through app A takes A from the uid's other
// connection, and only A). The map holds the uid's first connection; the
// others hang off next, their app sets disjoint.
type entry struct {
	uid    string
	room   string
	ip     string
	connID uint64
	since  int64
	seq    uint64 // position in the shard's scan order, fixed while the uid stays online (head only)
	apps   []uint32
	next   *entry // the uid's other connections
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
	resultReplaced  = "replaced"  // another connection of the uid lost apps to this one
	resultAdded     = "added"     // a second connection of the uid, for other apps
	resultRefreshed = "refreshed" // the same connection registered again
	resultRemoved   = "removed"   // the session was removed
	resultStale     = "stale"     // the uid is held by another connection: kept
	resultMissing   = "missing"   // the uid was offline
)

// register stores sess as one of the uid's connections; the caller holds no
// lock. Every other connection of the uid loses the apps sess has (apps are
// tenants: a login through app A displaces only A's session) and is removed
// once it has none left; the returned sessions are those that lost apps,
// each with Apps set to the apps it lost, so the caller can take them from
// the connection (and kick it when it has none left).
func (sh *shard) register(sess *push.Session) ([]push.Session, string) {
	apps := copyApps(sess.Apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	head, ok := sh.m[sess.UID]
	if !ok {
		sh.add(sess, apps)
		return nil, resultNew
	}
	// The new connection joins the uid before the others lose their apps,
	// so the uid never goes offline in between: it keeps its seq, and a
	// user online during a whole scan is returned once even if it
	// reconnects meanwhile.
	result := resultRefreshed
	own := head.find(sess.Room, sess.ConnID)
	if own == nil {
		e := &entry{uid: sess.UID}
		e.set(sh, sess, apps)
		e.next, head.next = head.next, e
		result = resultAdded
	}
	displaced := sh.displace(head, sess.Room, sess.ConnID, apps)
	if len(displaced) > 0 {
		result = resultReplaced
	}
	if own != nil {
		own = sh.m[sess.UID].find(sess.Room, sess.ConnID) // it may have moved into the head
		sh.uncount(own)
		own.set(sh, sess, apps)
	}
	return displaced, result
}

// add stores sess as the first connection of an offline uid; sh.mu is held
// for writing.
func (sh *shard) add(sess *push.Session, apps []uint32) {
	sh.nextSeq++
	e := &entry{uid: sess.UID, seq: sh.nextSeq}
	e.set(sh, sess, apps)
	sh.m[e.uid] = e
	sh.order = append(sh.order, slot{seq: e.seq, e: e})
}

// find returns the connection (room, connID) of e's uid, or nil.
func (e *entry) find(room string, connID uint64) *entry {
	for ; e != nil; e = e.next {
		if e.connID == connID && e.room == room {
			return e
		}
	}
	return nil
}

// findConn returns the connection connID of e's uid, or nil.
func (e *entry) findConn(connID uint64) *entry {
	for ; e != nil; e = e.next {
		if e.connID == connID {
			return e
		}
	}
	return nil
}

// displace takes apps from every connection of head's uid other than
// (room, connID), removes those left with none, and returns what each lost;
// sh.mu is held for writing.
func (sh *shard) displace(head *entry, room string, connID uint64, apps []uint32) []push.Session {
	var out []push.Session
	var gone []*entry
	for e := head; e != nil; e = e.next {
		if e.connID == connID && e.room == room {
			continue
		}
		lost := common(e.apps, apps)
		if len(lost) == 0 {
			continue
		}
		var d push.Session
		e.copyTo(&d, nil)
		d.Apps = lost
		out = append(out, d)
		sh.takeApps(e, lost)
		if len(e.apps) == 0 {
			gone = append(gone, e)
		}
	}
	for _, e := range gone {
		if sh.unlink(e.uid, e.room, e.connID) {
			metricSessions.Dec()
		}
	}
	return out
}

// common returns the apps of a that are also in b, nil when none.
func common(a, b []uint32) []uint32 {
	var out []uint32
	for _, x := range a {
		if hasApp(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// takeApps removes apps from e and from the per-app counters; sh.mu is held
// for writing.
func (sh *shard) takeApps(e *entry, apps []uint32) {
	keep := make([]uint32, 0, len(e.apps))
	for _, a := range e.apps {
		if hasApp(apps, a) {
			if sh.perApp[a]--; sh.perApp[a] <= 0 {
				delete(sh.perApp, a)
			}
			continue
		}
		keep = append(keep, a)
	}
	e.apps = nil
	if len(keep) > 0 {
		e.apps = keep
	}
}

// dropRoom removes every session of room and returns how many.
func (sh *shard) dropRoom(room string) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.perRoom[room] == nil {
		return 0
	}
	type key struct {
		uid    string
		connID uint64
	}
	var gone []key
	for _, head := range sh.m {
		for e := head; e != nil; e = e.next {
			if e.room == room {
				gone = append(gone, key{e.uid, e.connID})
			}
		}
	}
	for _, k := range gone {
		sh.unlink(k.uid, room, k.connID)
	}
	return len(gone)
}

// unlink removes the connection (room, connID) of uid and reports whether
// it was there; sh.mu is held for writing. The uid's first connection keeps
// its place in the map and the scan order: when it goes and another
// connection of the uid remains, that one moves into its entry.
func (sh *shard) unlink(uid, room string, connID uint64) bool {
	head := sh.m[uid]
	if head == nil {
		return false
	}
	if head.connID == connID && head.room == room {
		sh.uncount(head)
		if head.next == nil {
			sh.drop(head)
			return true
		}
		n := head.next
		seq := head.seq
		*head = *n
		head.seq = seq
		return true
	}
	for p := head; p.next != nil; p = p.next {
		if e := p.next; e.connID == connID && e.room == room {
			sh.uncount(e)
			p.next = e.next
			return true
		}
	}
	return false
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
	if _, ok := sh.m[uid]; !ok {
		return resultMissing
	}
	if !sh.unlink(uid, room, connID) {
		return resultStale
	}
	return resultRemoved
}

// drop deletes the uid of e, its only connection, from the shard (already
// uncounted); sh.mu is held for writing.
func (sh *shard) drop(e *entry) {
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

// setApps replaces the apps of the uid's connection connID; apps it gains
// are taken from the uid's other connections, as in register.
func (sh *shard) setApps(uid string, connID uint64, apps []uint32) ([]push.Session, bool) {
	apps = copyApps(apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	head, ok := sh.m[uid]
	if !ok {
		return nil, false
	}
	e := head.findConn(connID)
	if e == nil {
		return nil, false
	}
	var gained []uint32
	for _, a := range apps {
		if !hasApp(e.apps, a) {
			gained = append(gained, a)
		}
	}
	var displaced []push.Session
	if len(gained) > 0 {
		displaced = sh.displace(head, e.room, e.connID, gained)
		// displace never removes the connection it serves, but the entry
		// may have moved into the head's place.
		e = sh.m[uid].findConn(connID)
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
	return displaced, true
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
