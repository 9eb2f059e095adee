package register

import (
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/lcpush/lcpush/internal/appset"
	"github.com/lcpush/lcpush/pkg/push"
)

// rec is one stored session: one connection of a uid, in a fixed-size
// record of 80 bytes. The uid string is the caller's (the room's own copy
// in an all-in-one process: held once, not once per map key and entry);
// room points at the shard's interned counter of the room; apps at the
// process-wide interned set (internal/appset), shared by every session
// with the same apps.
//
// Apps are tenants: a uid may be connected more than once, one connection
// per app at most (a login through app A takes A from the uid's other
// connection, and only A). The shard's slab holds the uid's first
// connection; the others hang off more (rare), their app sets disjoint.
type rec struct {
	uid    string
	ip     string
	room   *roomCount
	apps   *[]uint32 // interned, read-only; nil when no app is bound
	more   *rec      // the uid's other connections
	connID uint64
	since  int64
	seq    uint64 // position in the shard's scan order, fixed while the uid stays online (head only)
}

// appList returns e's apps; the slice is shared and must not be modified.
func (e *rec) appList() []uint32 {
	if e.apps == nil {
		return nil
	}
	return *e.apps
}

// copyTo fills dst with the session and returns buf with the apps appended;
// dst.Apps is a full slice expression into buf so appends by the caller never
// overwrite a neighbour. A nil buf gives dst its own array.
func (e *rec) copyTo(dst *push.Session, buf []uint32) []uint32 {
	*dst = push.Session{UID: e.uid, Room: e.room.name, ConnID: e.connID, Since: e.since, IP: e.ip}
	apps := e.appList()
	if len(apps) == 0 {
		return buf
	}
	start := len(buf)
	buf = append(buf, apps...)
	dst.Apps = buf[start:len(buf):len(buf)]
	return buf
}

// roomCount interns a room id and counts its sessions in one shard.
type roomCount struct {
	name string
	n    int
}

// shard is one lock domain of the store.
//
// Its uids' first connections live in one slab of n slots, in ascending
// seq: the slab is also the scan order (scan.go). The slab is a list of
// fixed chunks of chunkRecs records (480 bytes: exactly a size class, and
// under the 512 bytes past which an object with pointers carries an 8-byte
// malloc header that would push it into the next class),
// so it grows without copying, makes no garbage as it grows, and wastes
// at most one partly filled chunk per shard. A uid that goes offline
// leaves a dead slot (uid "") that keeps its seq, so binary searches and
// scan cursors stay valid; compact squeezes the dead slots out once they
// are a quarter of the slab. table finds a uid's slot: open addressing
// with linear probing on the high half of xxhash(uid) (the low bits chose
// the shard), 4 bytes per slot holding the slot index + 1 (0: empty). A
// session thus costs its 80-byte record, ~6-11 bytes of table and its
// share of the last chunk, instead of a map entry, a heap-allocated entry
// and its own apps slice.
type shard struct {
	mu      sync.RWMutex
	chunks  []*[chunkRecs]rec
	n       int // slots in use, live or dead
	table   []uint32
	live    int // uids online: live slots
	dead    int // dead slots
	nextSeq uint64
	perApp  map[uint32]int
	perRoom map[string]*roomCount
}

func (sh *shard) init() {
	sh.chunks, sh.table = nil, nil
	sh.n, sh.live, sh.dead = 0, 0, 0
	sh.perApp = make(map[uint32]int)
	sh.perRoom = make(map[string]*roomCount)
}

// reset empties the shard and returns how many sessions it held.
func (sh *shard) reset() int {
	sh.mu.Lock()
	n := sh.live
	sh.init()
	sh.mu.Unlock()
	return n
}

// chunkRecs is the records of one slab chunk: 6 x 80 bytes.
const chunkRecs = 6

// at returns slot i of the slab (i < sh.n). The pointer stays valid until
// the shard's next compact.
func (sh *shard) at(i int) *rec { return &sh.chunks[i/chunkRecs][i%chunkRecs] }

// slotOf is where uid's probe sequence starts in a table of mask+1 slots.
func slotOf(h uint64, mask int) int { return int(h>>32) & mask }

// lookup returns the slab index of uid's first connection, -1 when offline.
func (sh *shard) lookup(uid string, h uint64) int {
	if len(sh.table) == 0 {
		return -1
	}
	mask := len(sh.table) - 1
	for i := slotOf(h, mask); ; i = (i + 1) & mask {
		v := sh.table[i]
		if v == 0 {
			return -1
		}
		if sh.at(int(v-1)).uid == uid {
			return int(v - 1)
		}
	}
}

// head returns uid's first connection, nil when offline. The pointer is
// into the slab: valid until the shard's next compact.
func (sh *shard) head(uid string, h uint64) *rec {
	if i := sh.lookup(uid, h); i >= 0 {
		return sh.at(i)
	}
	return nil
}

// tablePut records slab index i under hash h; the table has a free slot.
func (sh *shard) tablePut(i int, h uint64) {
	mask := len(sh.table) - 1
	j := slotOf(h, mask)
	for sh.table[j] != 0 {
		j = (j + 1) & mask
	}
	sh.table[j] = uint32(i + 1)
}

// tableDel removes slab index i (uid's) from the table, shifting the
// probe chain after it back so that no tombstone is needed.
func (sh *shard) tableDel(i int, uid string) {
	mask := len(sh.table) - 1
	j := slotOf(xxhash.Sum64String(uid), mask)
	for sh.table[j] != uint32(i+1) {
		j = (j + 1) & mask
	}
	for k := (j + 1) & mask; sh.table[k] != 0; k = (k + 1) & mask {
		home := slotOf(xxhash.Sum64String(sh.at(int(sh.table[k]-1)).uid), mask)
		// The entry at k may fill the hole at j unless its home lies
		// cyclically in (j, k].
		if (k > j && (home <= j || home > k)) || (k < j && home <= j && home > k) {
			sh.table[j] = sh.table[k]
			j = k
		}
	}
	sh.table[j] = 0
}

// rebuild sizes the table for the live slots (load at most 3/4) and
// fills it again from the slab.
func (sh *shard) rebuild(live int) {
	n := 8
	for n*3 < live*4+4 {
		n *= 2
	}
	if len(sh.table) == n {
		clear(sh.table)
	} else {
		sh.table = make([]uint32, n)
	}
	for i := range sh.n {
		if uid := sh.at(i).uid; uid != "" {
			sh.tablePut(i, xxhash.Sum64String(uid))
		}
	}
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
func (sh *shard) register(sess *push.Session, h uint64) ([]push.Session, string) {
	apps := internApps(sess.Apps)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	defer sh.compact()
	head := sh.head(sess.UID, h)
	if head == nil {
		sh.add(sess, apps, h)
		return nil, resultNew
	}
	// The new connection joins the uid before the others lose their apps,
	// so the uid never goes offline in between: it keeps its seq, and a
	// user online during a whole scan is returned once even if it
	// reconnects meanwhile.
	result := resultRefreshed
	own := head.find(sess.Room, sess.ConnID)
	if own == nil {
		e := &rec{uid: sess.UID}
		e.set(sh, sess, apps)
		e.more, head.more = head.more, e
		result = resultAdded
	}
	list := appList(apps)
	displaced := sh.displace(head, sess.Room, sess.ConnID, list)
	if len(displaced) > 0 {
		result = resultReplaced
	}
	if own != nil {
		own = sh.head(sess.UID, h).find(sess.Room, sess.ConnID) // it may have moved into the head
		sh.uncount(own)
		own.set(sh, sess, apps)
	}
	return displaced, result
}

// add stores sess as the first connection of an offline uid; sh.mu is held
// for writing.
func (sh *shard) add(sess *push.Session, apps *[]uint32, h uint64) {
	sh.nextSeq++
	if sh.n == len(sh.chunks)*chunkRecs {
		sh.chunks = append(sh.chunks, new([chunkRecs]rec))
	}
	i := sh.n
	sh.n++
	e := sh.at(i)
	*e = rec{uid: sess.UID, seq: sh.nextSeq}
	e.set(sh, sess, apps)
	sh.live++
	if (sh.live+1)*4 > len(sh.table)*3 {
		sh.rebuild(sh.live + 1) // the next power of two: load 3/8 to 3/4
	} else {
		sh.tablePut(i, h)
	}
}

// find returns the connection (room, connID) of e's uid, or nil.
func (e *rec) find(room string, connID uint64) *rec {
	for ; e != nil; e = e.more {
		if e.connID == connID && e.room.name == room {
			return e
		}
	}
	return nil
}

// findConn returns the connection connID of e's uid, or nil.
func (e *rec) findConn(connID uint64) *rec {
	for ; e != nil; e = e.more {
		if e.connID == connID {
			return e
		}
	}
	return nil
}

// displace takes apps from every connection of head's uid other than
// (room, connID), removes those left with none, and returns what each lost;
// sh.mu is held for writing.
func (sh *shard) displace(head *rec, room string, connID uint64, apps []uint32) []push.Session {
	var out []push.Session
	type key struct {
		room   string
		connID uint64
	}
	var gone []key
	uid := head.uid
	for e := head; e != nil; e = e.more {
		if e.connID == connID && e.room.name == room {
			continue
		}
		lost := common(e.appList(), apps)
		if len(lost) == 0 {
			continue
		}
		var d push.Session
		e.copyTo(&d, nil)
		d.Apps = lost
		out = append(out, d)
		sh.takeApps(e, lost)
		if e.apps == nil {
			gone = append(gone, key{e.room.name, e.connID})
		}
	}
	for _, k := range gone {
		if sh.unlink(uid, k.room, k.connID) {
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
func (sh *shard) takeApps(e *rec, apps []uint32) {
	cur := e.appList()
	keep := make([]uint32, 0, len(cur))
	for _, a := range cur {
		if hasApp(apps, a) {
			if sh.perApp[a]--; sh.perApp[a] <= 0 {
				delete(sh.perApp, a)
			}
			continue
		}
		keep = append(keep, a)
	}
	e.apps = appset.Of(keep)
}

// dropRoom removes every session of room and returns how many.
func (sh *shard) dropRoom(room string) int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rc := sh.perRoom[room]
	if rc == nil {
		return 0
	}
	type key struct {
		uid    string
		connID uint64
	}
	var gone []key
	for i := range sh.n {
		if sh.at(i).uid == "" {
			continue
		}
		for e := sh.at(i); e != nil; e = e.more {
			if e.room == rc {
				gone = append(gone, key{e.uid, e.connID})
			}
		}
	}
	for _, k := range gone {
		sh.unlink(k.uid, room, k.connID)
	}
	sh.compact()
	return len(gone)
}

// unlink removes the connection (room, connID) of uid and reports whether
// it was there; sh.mu is held for writing. The uid's first connection keeps
// its place in the slab and the scan order: when it goes and another
// connection of the uid remains, that one moves into its slot. unlink
// never moves the slab (the caller compacts when its operation is over).
func (sh *shard) unlink(uid, room string, connID uint64) bool {
	i := sh.lookup(uid, xxhash.Sum64String(uid))
	if i < 0 {
		return false
	}
	head := sh.at(i)
	if head.connID == connID && head.room.name == room {
		sh.uncount(head)
		if head.more == nil {
			sh.drop(i)
			return true
		}
		n := head.more
		seq := head.seq
		*head = *n
		head.seq = seq
		return true
	}
	for p := head; p.more != nil; p = p.more {
		if e := p.more; e.connID == connID && e.room.name == room {
			sh.uncount(e)
			p.more = e.more
			return true
		}
	}
	return false
}

// set overwrites e's fields with sess and counts it; sh.mu is held for writing.
func (e *rec) set(sh *shard, sess *push.Session, apps *[]uint32) {
	rc := sh.perRoom[sess.Room]
	if rc == nil {
		rc = &roomCount{name: sess.Room}
		sh.perRoom[sess.Room] = rc
	}
	rc.n++
	e.room = rc
	e.connID = sess.ConnID
	e.since = sess.Since
	e.ip = sess.IP
	e.apps = apps
	for _, a := range appList(apps) {
		sh.perApp[a]++
	}
}

// uncount removes e from the per-app and per-room counters; sh.mu is held for writing.
func (sh *shard) uncount(e *rec) {
	for _, a := range e.appList() {
		if sh.perApp[a]--; sh.perApp[a] <= 0 {
			delete(sh.perApp, a)
		}
	}
	if rc := e.room; rc != nil {
		if rc.n--; rc.n <= 0 {
			delete(sh.perRoom, rc.name)
		}
	}
}

func (sh *shard) unregister(uid, room string, connID uint64, h uint64) string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.lookup(uid, h) < 0 {
		return resultMissing
	}
	if !sh.unlink(uid, room, connID) {
		return resultStale
	}
	sh.compact()
	return resultRemoved
}

// drop takes slot i, a uid's only connection (already uncounted), out of
// the shard: out of the table, its slot dead but keeping its seq; sh.mu is
// held for writing.
func (sh *shard) drop(i int) {
	e := sh.at(i)
	sh.tableDel(i, e.uid)
	*e = rec{seq: e.seq}
	sh.live--
	sh.dead++
}

// find returns the index of the first slot whose seq is >= seq.
func (sh *shard) find(seq uint64) int {
	return sort.Search(sh.n, func(i int) bool { return sh.at(i).seq >= seq })
}

// compact squeezes the dead slots out of the slab once they are a quarter
// of it (and at least 8), in place, and gives back the chunks left empty:
// the slab costs at most 4/3 of the live records plus one chunk, and
// removal stays amortized O(1). Scan cursors hold seqs, not indexes, so
// they survive compaction. sh.mu is held for writing; pointers into the
// slab are invalid afterwards.
func (sh *shard) compact() {
	if sh.live == 0 {
		if sh.n > 0 || sh.table != nil {
			sh.chunks, sh.table, sh.n, sh.dead = nil, nil, 0, 0
		}
		return
	}
	if sh.dead < 8 || sh.dead*4 < sh.n {
		return
	}
	w := 0
	for i := range sh.n {
		if e := sh.at(i); e.uid != "" {
			if w != i {
				*sh.at(w) = *e
			}
			w++
		}
	}
	for i := w; i < sh.n; i++ {
		*sh.at(i) = rec{} // no stale pointers past the end
	}
	keep := (w + chunkRecs - 1) / chunkRecs
	clear(sh.chunks[keep:])
	sh.chunks = sh.chunks[:keep]
	if cap(sh.chunks) > 2*keep+4 {
		sh.chunks = append([]*[chunkRecs]rec(nil), sh.chunks...)
	}
	sh.n, sh.dead = w, 0
	sh.rebuild(sh.live + 1)
}

// setApps replaces the apps of the uid's connection connID; apps it gains
// are taken from the uid's other connections, as in register.
func (sh *shard) setApps(uid string, h uint64, connID uint64, apps []uint32) ([]push.Session, bool) {
	set := internApps(apps)
	list := appList(set)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	defer sh.compact()
	head := sh.head(uid, h)
	if head == nil {
		return nil, false
	}
	e := head.findConn(connID)
	if e == nil {
		return nil, false
	}
	var gained []uint32
	for _, a := range list {
		if !hasApp(e.appList(), a) {
			gained = append(gained, a)
		}
	}
	var displaced []push.Session
	if len(gained) > 0 {
		displaced = sh.displace(head, e.room.name, e.connID, gained)
		// displace never removes the connection it serves, but the record
		// may have moved into the head's place.
		e = sh.head(uid, h).findConn(connID)
	}
	for _, a := range e.appList() {
		if sh.perApp[a]--; sh.perApp[a] <= 0 {
			delete(sh.perApp, a)
		}
	}
	e.apps = set
	for _, a := range list {
		sh.perApp[a]++
	}
	return displaced, true
}

// dedupApps appends apps to dst without duplicates, in their first order.
func dedupApps(dst, apps []uint32) []uint32 {
	for _, a := range apps {
		if !hasApp(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// internApps returns the interned set of apps without duplicates, nil
// when empty.
func internApps(apps []uint32) *[]uint32 {
	if len(apps) == 0 {
		return nil
	}
	var buf [16]uint32
	return appset.Of(dedupApps(buf[:0], apps))
}

// appList is the slice of an interned set (nil for none).
func appList(set *[]uint32) []uint32 {
	if set == nil {
		return nil
	}
	return *set
}
