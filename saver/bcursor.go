package saver

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// A broadcast cursor is one uid's state of the QoS 1 broadcasts of one app,
// shared by every Store (docs/storage.md "Broadcast cursor"). Broadcasts are
// ordered by seq, a number the store assigns at a broadcast's first
// SaveBroadcast, in the same lock or transaction that makes it visible to
// Load: seq order is visibility order, which message ids (from several
// centers' clocks) are not, so a cursor never steps over a broadcast that was
// not visible yet.
//
// Every live broadcast of the app with seq <= Cur is done for the uid. Exc,
// ascending by seq, holds the broadcasts above Cur that the uid loaded or
// ACKed out of order, and the parked ones, also below Cur (UserState reports
// them). After normalize its size is bounded by the app's live broadcasts
// above Cur; a uid that ACKs in order keeps Cur alone.
type bcursor struct {
	Cur uint64
	Exc []bexc
}

// bexc is one exception of a cursor: a load count, or an ACK or park recorded
// above Cur (a parked one may sit below Cur).
type bexc struct {
	Seq   uint64
	Loads uint8
	State uint8
}

// States of a bexc.
const (
	bexcLoading uint8 = iota // loaded Loads times, not ACKed
	bexcAcked                // ACKed out of order
	bexcParked               // loaded MaxLoads times without an ACK: done, as if ACKed
)

// bcursorVersion leads an encoded cursor so that the layout can change.
const bcursorVersion = 1

// minExcLen is the fewest bytes one encoded exception takes.
const minExcLen = 3

// decodeCursor decodes appendTo's bytes; nil or empty is the zero cursor.
func decodeCursor(b []byte) (bcursor, error) {
	var c bcursor
	if len(b) == 0 {
		return c, nil
	}
	if b[0] != bcursorVersion {
		return c, fmt.Errorf("broadcast cursor version %d: %w", b[0], ErrCorrupt)
	}
	b = b[1:]
	cur, n := binary.Uvarint(b)
	if n <= 0 {
		return c, fmt.Errorf("broadcast cursor position: %w", ErrCorrupt)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return c, fmt.Errorf("broadcast cursor exception count: %w", ErrCorrupt)
	}
	b = b[n:]
	if count > uint64(len(b)/minExcLen) { // bounds the allocation by the input
		return c, fmt.Errorf("broadcast cursor: %d exceptions in %d bytes: %w", count, len(b), ErrCorrupt)
	}
	c.Cur = cur
	if count > 0 {
		c.Exc = make([]bexc, 0, count)
	}
	var prev uint64
	for i := uint64(0); i < count; i++ {
		d, n := binary.Uvarint(b)
		if n <= 0 || len(b) < n+2 {
			return bcursor{}, fmt.Errorf("broadcast cursor exception %d: %w", i, ErrCorrupt)
		}
		seq := prev + d
		if d == 0 || seq < prev {
			return bcursor{}, fmt.Errorf("broadcast cursor exception %d: seq not ascending: %w", i, ErrCorrupt)
		}
		st, loads := b[n], b[n+1]
		if st > bexcParked {
			return bcursor{}, fmt.Errorf("broadcast cursor exception %d: state %d: %w", i, st, ErrCorrupt)
		}
		c.Exc = append(c.Exc, bexc{Seq: seq, Loads: loads, State: st})
		prev, b = seq, b[n+2:]
	}
	if len(b) != 0 {
		return bcursor{}, fmt.Errorf("broadcast cursor: %d trailing bytes: %w", len(b), ErrCorrupt)
	}
	return c, nil
}

// appendTo appends the cursor's encoding, decodeCursor's inverse:
//
//	version u8 (1) | cur uvarint | count uvarint |
//	count x (seq delta from the previous exception uvarint | state u8 | loads u8)
//
// Exc must be ascending by seq (every method keeps it so).
func (c bcursor) appendTo(b []byte) []byte {
	b = append(b, bcursorVersion)
	b = binary.AppendUvarint(b, c.Cur)
	b = binary.AppendUvarint(b, uint64(len(c.Exc)))
	var prev uint64
	for _, e := range c.Exc {
		b = binary.AppendUvarint(b, e.Seq-prev)
		b = append(b, e.State, e.Loads)
		prev = e.Seq
	}
	return b
}

// find returns the index of seq's exception, or where it would go.
func (c *bcursor) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(c.Exc, seq, func(e bexc, s uint64) int {
		switch {
		case e.Seq < s:
			return -1
		case e.Seq > s:
			return 1
		}
		return 0
	})
}

// normalize applies the cursor's invariants against live, the seqs of the
// app's live (unexpired) broadcasts, ascending: exceptions of broadcasts no
// longer live are dropped, Cur advances over every next live broadcast that
// is done (ACKed or parked), and exceptions at or below Cur are dropped
// except the parked ones.
func (c *bcursor) normalize(live []uint64) {
	keep := c.Exc[:0]
	for _, e := range c.Exc {
		if _, ok := slices.BinarySearch(live, e.Seq); ok {
			keep = append(keep, e)
		}
	}
	clear(c.Exc[len(keep):])
	c.Exc = keep
	i, _ := slices.BinarySearch(live, c.Cur+1)
	k, _ := c.find(c.Cur + 1)
	for ; i < len(live); i++ {
		// Every exception above Cur is live, so Exc[k] is at or above live[i].
		if k == len(c.Exc) || c.Exc[k].Seq != live[i] || c.Exc[k].State == bexcLoading {
			break
		}
		c.Cur = live[i]
		k++
	}
	keep = c.Exc[:0]
	for _, e := range c.Exc {
		if e.Seq > c.Cur || e.State == bexcParked {
			keep = append(keep, e)
		}
	}
	clear(c.Exc[len(keep):])
	c.Exc = keep
	if len(c.Exc) == 0 {
		c.Exc = nil
	}
}

// wants reports whether Load returns seq: above Cur and neither ACKed nor
// parked.
func (c *bcursor) wants(seq uint64) bool {
	if seq <= c.Cur {
		return false
	}
	i, ok := c.find(seq)
	return !ok || c.Exc[i].State == bexcLoading
}

// load counts one load of seq and parks it at maxLoads loads (0 never parks;
// the count then stops at 255). It reports whether this load parked it. A seq
// the cursor does not want is left alone.
func (c *bcursor) load(seq uint64, maxLoads int) (parked bool) {
	if seq <= c.Cur {
		return false
	}
	i, ok := c.find(seq)
	if !ok {
		c.Exc = slices.Insert(c.Exc, i, bexc{Seq: seq})
	}
	e := &c.Exc[i]
	if e.State != bexcLoading {
		return false
	}
	if e.Loads < 255 {
		e.Loads++
	}
	if maxLoads > 0 && int(e.Loads) >= maxLoads {
		e.State = bexcParked
		return true
	}
	return false
}

// ack records the uid's ACK of seq; newly is false when seq was ACKed
// already. A parked broadcast's ACK takes effect, as the Store contract has
// it (store_limits_test.go contractParkBroadcast): it becomes ACKed, newly,
// also below Cur.
func (c *bcursor) ack(seq uint64) (newly bool) {
	i, ok := c.find(seq)
	if ok && c.Exc[i].State == bexcParked {
		c.Exc[i].State = bexcAcked
		return true
	}
	if seq <= c.Cur {
		return false
	}
	if !ok {
		c.Exc = slices.Insert(c.Exc, i, bexc{Seq: seq, State: bexcAcked})
		return true
	}
	if c.Exc[i].State == bexcAcked {
		return false
	}
	c.Exc[i].State = bexcAcked
	return true
}

// state reports whether seq is ACKed or parked for the uid; meaningful for a
// live seq of a normalized cursor.
func (c *bcursor) state(seq uint64) (acked, parked bool) {
	if i, ok := c.find(seq); ok {
		switch c.Exc[i].State {
		case bexcParked:
			return false, true
		case bexcAcked:
			return true, false
		}
	}
	return seq <= c.Cur, false
}

// empty reports whether the cursor holds nothing worth storing.
func (c *bcursor) empty() bool { return c.Cur == 0 && len(c.Exc) == 0 }

// merge sets e as its seq's exception, as a migration from per-broadcast
// records does (bolt_migrate.go); a seq at or below Cur is done already,
// unless e parks it.
func (c *bcursor) merge(e bexc) {
	if e.Seq <= c.Cur && e.State != bexcParked {
		return
	}
	if i, ok := c.find(e.Seq); ok {
		c.Exc[i] = e
	} else {
		c.Exc = slices.Insert(c.Exc, i, e)
	}
}

// bref is what the cursors need of a stored broadcast.
type bref struct {
	id, seq uint64
	app     uint32
	expire  int64
}

func (r bref) expired(now int64) bool { return r.expire != 0 && now >= r.expire }

// bseqs indexes stored broadcasts by app in seq order (Memory, Bolt): it
// gives Load, Ack and UserState the live seqs a cursor is normalized
// against. Until the first of an app's broadcasts expires, live returns
// the app's seq slice itself, no copy: an Ack does not allocate in
// proportion to the live broadcasts. put and drop copy on write for that.
type bseqs struct {
	mu    sync.RWMutex
	byID  map[uint64]bref
	byApp map[uint32]*appSeqs
}

type appSeqs struct {
	refs    []bref   // ascending seq
	seqs    []uint64 // the same seqs; shared with live's callers, never changed in place
	nextExp int64    // the earliest expiry among refs, 0 when none expires
	// unexpired is live's answer once some of refs expired (a stream of
	// broadcasts with a TTL: until Expire drops them, nearly always), for
	// the second in at: every ACK of that second shares it instead of
	// copying the app's seqs (an allocation per ACK, of every live
	// broadcast: a QoS 1 stream's ACKs made the heap grow past the TTL).
	unexpired atomic.Pointer[liveAt]
}

// liveAt is the seqs unexpired at a second, shared: never changed in place.
type liveAt struct {
	at   int64
	seqs []uint64
}

func newBseqs() *bseqs {
	return &bseqs{byID: map[uint64]bref{}, byApp: map[uint32]*appSeqs{}}
}

func cmpBref(r bref, seq uint64) int {
	switch {
	case r.seq < seq:
		return -1
	case r.seq > seq:
		return 1
	}
	return 0
}

// put adds or replaces a broadcast.
func (x *bseqs) put(r bref) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropLocked(r.id)
	x.byID[r.id] = r
	a := x.byApp[r.app]
	var refs []bref
	if a != nil {
		refs = a.refs
	}
	i, _ := slices.BinarySearchFunc(refs, r.seq, cmpBref)
	x.setApp(r.app, slices.Insert(slices.Clip(refs), i, r))
}

func (x *bseqs) drop(ids ...uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		x.dropLocked(id)
	}
}

func (x *bseqs) dropLocked(id uint64) {
	r, ok := x.byID[id]
	if !ok {
		return
	}
	delete(x.byID, id)
	a := x.byApp[r.app]
	if i, found := slices.BinarySearchFunc(a.refs, r.seq, cmpBref); found {
		x.setApp(r.app, slices.Delete(slices.Clone(a.refs), i, i+1))
	}
}

// setApp installs app's new refs (a slice of its own) with their seqs.
func (x *bseqs) setApp(app uint32, refs []bref) {
	if len(refs) == 0 {
		delete(x.byApp, app)
		return
	}
	a := &appSeqs{refs: refs, seqs: make([]uint64, len(refs))}
	for i, r := range refs {
		a.seqs[i] = r.seq
		if r.expire != 0 && (a.nextExp == 0 || r.expire < a.nextExp) {
			a.nextExp = r.expire
		}
	}
	x.byApp[app] = a
}

func (x *bseqs) get(id uint64) (bref, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.byID[id]
	return r, ok
}

func (x *bseqs) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// live returns the seqs of app's broadcasts unexpired at now, ascending;
// the caller must not modify them.
func (x *bseqs) live(app uint32, now int64) []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	a := x.byApp[app]
	if a == nil {
		return nil
	}
	if a.nextExp == 0 || now < a.nextExp {
		return a.seqs
	}
	if c := a.unexpired.Load(); c != nil && c.at == now {
		return c.seqs
	}
	out := make([]uint64, 0, len(a.refs))
	for _, r := range a.refs {
		if !r.expired(now) {
			out = append(out, r.seq)
		}
	}
	a.unexpired.Store(&liveAt{at: now, seqs: out})
	return out
}

// liveRefs returns app's broadcasts unexpired at now, ascending by seq.
func (x *bseqs) liveRefs(app uint32, now int64) []bref {
	x.mu.RLock()
	defer x.mu.RUnlock()
	a := x.byApp[app]
	if a == nil {
		return nil
	}
	out := make([]bref, 0, len(a.refs))
	for _, r := range a.refs {
		if !r.expired(now) {
			out = append(out, r)
		}
	}
	return out
}
