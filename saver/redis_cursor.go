package saver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Broadcast cursors in RedisStore (bcursor.go has the cursor itself).
//
// A user's cursor of app A is the field c<A> (A: 4 big-endian bytes) of its
// hash: uvarint ver | bcursor.appendTo. ver counts the writes of the field;
// the MySQL row keeps the highest ver it was given, so rows queued out of
// order (two savers, or two goroutines between their script and their
// enqueue) never put an older cursor over a newer one. Every call that
// changes cursors reads them with the hash (or the fields) it reads anyway,
// computes the new ones here in Go, and writes them in the script it runs
// anyway with a compare-and-set: the script first checks that every field
// it changes still holds the bytes read, and otherwise changes nothing, so
// the caller reads again and retries (casRetries at most).
//
// Records of the previous version, b<id8> fields ("<loads>:<exp>", "a:<exp>",
// "p:<exp>"), are folded into the cursors the next time the hash is read
// whole (Load, UserStats, a reload) or the field is (an Ack of that id),
// and deleted in the same compare-and-set; UserState reads them as they
// are until then.

// casRetries bounds how often one call re-reads a user's cursors that
// another call changed between its read and its write.
const casRetries = 8

// casBackoff waits before retry attempt (1-based) of a compare-and-set that
// lost: a random share of 2^attempt x 50 µs, at most 6.4 ms. Callers that
// lost together would otherwise re-read and collide again in lockstep
// (two savers, several devices of one user), and a hot uid would spend its
// retries in one burst.
func casBackoff(ctx context.Context, attempt int) error {
	if attempt <= 0 {
		return nil
	}
	metricCursorRetries.Inc()
	limit := 50 * time.Microsecond << min(attempt, 7)
	t := time.NewTimer(rand.N(limit) + 10*time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cursorField names app's cursor in a user hash.
func cursorField(app uint32) string {
	var b [5]byte
	b[0] = 'c'
	binary.BigEndian.PutUint32(b[1:], app)
	return string(b[:])
}

func parseCursorField(f string) (uint32, bool) {
	if len(f) != 5 || f[0] != 'c' {
		return 0, false
	}
	return binary.BigEndian.Uint32([]byte(f[1:])), true
}

// rcursor is one cursor field as read.
type rcursor struct {
	raw string // the field's bytes; "" when absent
	ver uint64
	c   bcursor
}

func decodeRCursor(raw string) (rcursor, error) {
	rc := rcursor{raw: raw}
	if raw == "" {
		return rc, nil
	}
	ver, n := binary.Uvarint([]byte(raw))
	if n <= 0 {
		return rc, fmt.Errorf("cursor write count: %w", ErrCorrupt)
	}
	c, err := decodeCursor([]byte(raw[n:]))
	if err != nil {
		return rc, err
	}
	rc.ver, rc.c = ver, c
	return rc, nil
}

func encodeRCursor(ver uint64, c bcursor) string {
	b := binary.AppendUvarint(make([]byte, 0, 16), ver)
	return string(c.appendTo(b))
}

// legacyRec is one b<id8> field of the previous version, as read.
type legacyRec struct {
	raw string
	b   bstate
}

// cloneCursor copies c so that changing the copy leaves c as it is.
func cloneCursor(c bcursor) bcursor {
	return bcursor{Cur: c.Cur, Exc: slices.Clone(c.Exc)}
}

func sameCursor(a, b bcursor) bool {
	return string(a.appendTo(nil)) == string(b.appendTo(nil))
}

// sameDurable reports whether a and b agree on what MySQL keeps: Cur and
// the ACKed and parked exceptions (load counts are not durable, as for
// unicast entries: after a Redis loss a broadcast may be loaded up to
// MaxLoads more times).
func sameDurable(a, b bcursor) bool {
	if a.Cur != b.Cur {
		return false
	}
	i, j := 0, 0
	for {
		for i < len(a.Exc) && a.Exc[i].State == bexcLoading {
			i++
		}
		for j < len(b.Exc) && b.Exc[j].State == bexcLoading {
			j++
		}
		if i == len(a.Exc) || j == len(b.Exc) {
			return i == len(a.Exc) && j == len(b.Exc)
		}
		if a.Exc[i].Seq != b.Exc[j].Seq || a.Exc[i].State != b.Exc[j].State {
			return false
		}
		i, j = i+1, j+1
	}
}

// excAt returns seq's exception in c, inserting a zero one if inserting.
func excAt(c *bcursor, seq uint64, insert bool) *bexc {
	i, ok := slices.BinarySearchFunc(c.Exc, seq, func(e bexc, s uint64) int {
		switch {
		case e.Seq < s:
			return -1
		case e.Seq > s:
			return 1
		}
		return 0
	})
	if !ok {
		if !insert {
			return nil
		}
		c.Exc = slices.Insert(c.Exc, i, bexc{Seq: seq})
	}
	return &c.Exc[i]
}

// foldLegacy applies a previous version's record of seq to c: ACKed is
// ACKed, parked is parked, a load count is kept.
func foldLegacy(c *bcursor, seq uint64, b bstate) {
	switch {
	case b.acked:
		c.ack(seq)
	case b.parked:
		if !c.wants(seq) {
			return // done already
		}
		e := excAt(c, seq, true)
		e.State = bexcParked
	case b.loads > 0 && c.wants(seq):
		e := excAt(c, seq, true)
		e.Loads = max(e.Loads, uint8(min(b.loads, 255)))
	}
}

// joinCursor merges two histories of one cursor (what Redis has and what
// MySQL has, after a loss): every change a cursor takes is monotone (Cur
// rises, an exception goes from loading to ACKed or parked, loads grow),
// so what either says is done is done. A seq at or below one's Cur with no
// exception there was ACKed in that history (an ACK turns a park into no
// exception): the other's park of it does not undo that.
func joinCursor(a, b bcursor) bcursor {
	out := cloneCursor(a)
	out.Cur = max(a.Cur, b.Cur)
	for _, e := range b.Exc {
		x := excAt(&out, e.Seq, true)
		switch {
		case x.State == bexcAcked || e.State == bexcAcked:
			x.State = bexcAcked
		case x.State == bexcParked || e.State == bexcParked:
			x.State = bexcParked
		}
		x.Loads = max(x.Loads, e.Loads)
	}
	for i := range out.Exc {
		if e := &out.Exc[i]; e.State == bexcParked && (ackedBelow(&a, e.Seq) || ackedBelow(&b, e.Seq)) {
			e.State = bexcAcked
		}
	}
	// What lies at or below the new Cur is done; normalize drops it.
	keep := out.Exc[:0]
	for _, e := range out.Exc {
		if e.Seq > out.Cur || e.State == bexcParked {
			keep = append(keep, e)
		}
	}
	out.Exc = keep
	return out
}

// ackedBelow reports whether c has seq done as ACKed: at or below Cur,
// with no exception (a parked one below Cur keeps its exception).
func ackedBelow(c *bcursor, seq uint64) bool {
	return seq <= c.Cur && excAt(c, seq, false) == nil
}

// normalizeAt normalizes c against v. Cur advances only over seqs up to
// v.horizon, and exceptions above it are kept unless v knows them expired:
// this process may not hold every broadcast another saver made, and a
// cursor must neither step over one (never delivered) nor drop its ACK.
func normalizeAt(c *bcursor, v seqView) {
	var lo, hi []bexc
	for _, e := range c.Exc {
		switch {
		case e.Seq <= v.horizon:
			lo = append(lo, e)
		default:
			if _, dead := slices.BinarySearch(v.dead, e.Seq); !dead {
				hi = append(hi, e)
			}
		}
	}
	i, _ := slices.BinarySearch(v.live, v.horizon+1)
	c.Exc = lo
	c.normalize(v.live[:i])
	for _, e := range hi {
		if e.Seq > c.Cur || e.State == bexcParked {
			c.Exc = append(c.Exc, e)
		}
	}
}

// cursorPlan is one call's cursors of one user: as read, as changed, and
// the previous version's records it folds in.
type cursorPlan struct {
	uid  string
	bc   *bcache
	now  int64
	read map[uint32]rcursor
	work map[uint32]*bcursor
	// base, per app, is what MySQL is taken to hold (the cursor read, or
	// for a reload MySQL's row): a row is queued when the durable part
	// of the new cursor differs from it.
	base   map[uint32]bcursor
	minVer map[uint32]uint64 // a write uses a ver above this (a reload: MySQL's)
	legacy map[uint64]legacyRec
	drop   []uint64 // legacy ids to delete
}

func newCursorPlan(r *RedisStore, uid string, read map[uint32]rcursor, legacy map[uint64]legacyRec, now int64) *cursorPlan {
	if read == nil {
		read = map[uint32]rcursor{}
	}
	return &cursorPlan{uid: uid, bc: r.bc, now: now, read: read, work: map[uint32]*bcursor{},
		base: map[uint32]bcursor{}, minVer: map[uint32]uint64{}, legacy: legacy}
}

// cursor returns app's cursor to read or change.
func (p *cursorPlan) cursor(app uint32) *bcursor {
	if c := p.work[app]; c != nil {
		return c
	}
	c := cloneCursor(p.read[app].c)
	p.work[app] = &c
	return &c
}

// join merges MySQL's cursor of app (ver: its row's) into the plan.
func (p *cursorPlan) join(app uint32, ver uint64, c bcursor) {
	j := joinCursor(*p.cursor(app), c)
	p.work[app] = &j
	p.base[app] = c
	p.minVer[app] = max(p.minVer[app], ver)
}

// foldLegacy folds every previous-version record of a broadcast this
// process holds into its app's cursor, and drops it; a record of a
// broadcast gone (expired, or unknown and past its expiry) is dropped too.
func (p *cursorPlan) foldLegacy() {
	for id, l := range p.legacy {
		m, ok := p.bc.get(id)
		seq := p.bc.seq(id)
		switch {
		case ok && seq != 0:
			foldLegacy(p.cursor(m.App), seq, l.b)
		case ok: // no seq yet: folded once it has one
			continue
		case l.b.expire == 0 || l.b.expire > p.now:
			continue // maybe a broadcast this process does not hold yet
		}
		p.drop = append(p.drop, id)
	}
}

// foldLegacyRow folds a previous version's broadcast_ack row.
func (p *cursorPlan) foldLegacyRow(b backRow) {
	m, ok := p.bc.get(b.bid)
	seq := p.bc.seq(b.bid)
	if !ok || seq == 0 {
		return
	}
	foldLegacy(p.cursor(m.App), seq, bstate{acked: b.state == backAcked, parked: b.state == backParked})
}

// finish normalizes the changed cursors and returns the compare-and-set
// triples (field, bytes read, new bytes; "" deletes) for the script and the
// MySQL rows to queue.
func (p *cursorPlan) finish() (cas []any, rows []drow) {
	apps := make([]uint32, 0, len(p.work))
	for app := range p.work {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		c := p.work[app]
		normalizeAt(c, p.bc.view(app, p.now))
		old := p.read[app]
		base, ok := p.base[app]
		if !ok {
			base = old.c
		}
		differ := !sameCursor(*c, old.c) || (old.raw == "" && !c.empty())
		needRow := !sameDurable(*c, base)
		mv := p.minVer[app]
		ver := old.ver
		// Redis is rewritten when the cursor changed, and also when its
		// ver is not above MySQL's (a reload): its next writes must win.
		if differ || mv > old.ver || (needRow && mv >= old.ver) {
			ver = max(old.ver, mv) + 1
			cas = append(cas, cursorField(app), old.raw, encodeRCursor(ver, *c))
		}
		if needRow {
			cc := cloneCursor(*c)
			rows = append(rows, drow{op: dCursor, uid: p.uid, app: app, seq: ver, cur: &cc})
		}
	}
	for _, id := range p.drop {
		cas = append(cas, "b"+id8(id), p.legacy[id].raw, "")
	}
	return cas, rows
}

// keepFor returns the latest expiry of the live broadcasts of the apps
// whose cursors cas writes (0: none), which the scripts keep the user hash
// for (plus IdleTTL): an open session idle past IdleTTL must not lose the
// cursor, and with it ACKs Checkpoint has not saved yet, while a broadcast
// it covers can still be loaded. One that never expires is left out: the
// hash would never expire.
func (r *RedisStore) keepFor(cas []any, now int64) int64 {
	var apps []uint32
	for i := 0; i+2 < len(cas); i += 3 {
		if f, ok := cas[i].(string); ok {
			if app, ok := parseCursorField(f); ok {
				apps = append(apps, app)
			}
		}
	}
	if len(apps) == 0 {
		return 0
	}
	return r.bc.lastExpire(apps, now)
}

// casCount is the number of triples in cas.
func casCount(cas []any) int { return len(cas) / 3 }

// parseCursorFields decodes c<app> and b<id8> fields read by HMGET (vals
// in the order of fields); corrupt ones read as absent and count.
func parseCursorFields(fields []string, vals []any) (curs map[uint32]rcursor, legacy map[uint64]legacyRec, corrupt int) {
	curs, legacy = map[uint32]rcursor{}, map[uint64]legacyRec{}
	for i, f := range fields {
		v, _ := vals[i].(string)
		if v == "" {
			continue
		}
		corrupt += addCursorField(curs, legacy, f, v)
	}
	return curs, legacy, corrupt
}

// addCursorField adds one c or b field; it returns 1 if the value is corrupt.
func addCursorField(curs map[uint32]rcursor, legacy map[uint64]legacyRec, f, v string) int {
	if app, ok := parseCursorField(f); ok {
		rc, err := decodeRCursor(v)
		if err != nil {
			rc = rcursor{raw: v} // overwritten by the next write
		}
		curs[app] = rc
		if err != nil {
			return 1
		}
		return 0
	}
	if len(f) == 9 && f[0] == 'b' {
		id, _ := parseID8(f[1:])
		b, ok := parseBState(v)
		if !ok {
			legacy[id] = legacyRec{raw: v, b: bstate{expire: 1}} // dropped: expired long ago
			return 1
		}
		legacy[id] = legacyRec{raw: v, b: b}
	}
	return 0
}

// seqString formats a seq for a script.
func seqString(s uint64) string { return strconv.FormatUint(s, 10) }
