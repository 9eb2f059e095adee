package saver

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// The cursor log: how the broadcast ACKs of ended sessions survive a Redis
// loss at a MySQL cost of one row per flush rather than one per user.
//
// Checkpoint reads the ended sessions' cursors from Redis and adds them to
// this process's log buffer; the buffer becomes one broadcast_cursor_log
// row every EpochEvery (or sooner once it holds logFlushEntries or
// logFlushBytes). A row is kept until the latest expiry of the live
// broadcasts its cursors' apps had (keep_until): after that it covers
// nothing live, and the expire sweep deletes it. Nothing reads the log
// while Redis keeps its data: a user's hash outlives the broadcasts its
// cursors cover (`y`). After Redis lost data, the first reload of an epoch
// reads the rows written before the epoch began (its token carries its
// start) into an index by uid, and every reload joins the user's entries
// with its hash and its broadcast_cursor rows (a join of cursors is
// monotone: any order, any repeat). Apps with a broadcast that never
// expires keep one broadcast_cursor row per (uid, app), as a log row would
// be kept forever.

// cursorLogVersion leads a log row's data so that the layout can change.
const cursorLogVersion = 1

const (
	// logFlushEntries and logFlushBytes cut the buffer into a row early.
	logFlushEntries = 65536
	logFlushBytes   = 1 << 20
	// A row is cut before a Checkpoint's entries would take it past
	// them, so it is at most ~1 MiB plus one call's entries, within
	// MySQL's max_allowed_packet by default (4 MiB in MySQL 5.7, 16 MiB in
	// MariaDB, 64 MiB in MySQL 8); a row MySQL refuses goes as per-user
	// rows (logRows). Buffered entries count in the MySQL queue's bound.
	// logIndexMax bounds the entries a recovery index holds (~100 B each):
	// past it the users not indexed get their ACKed broadcasts once more.
	logIndexMax = 4 << 20
	// logEpochSlack: rows written this long after an epoch began are still
	// read into its index (savers see a new epoch within EpochEvery, and
	// their clocks differ a little).
	logEpochSlack = time.Minute
	// logLateRows: for this long after logEpochSlack, the index's reader
	// still reads, once a second, rows that reached MySQL late (queued
	// before the epoch began); logReadOverlap is how far below its last
	// row id each read starts again (ids commit out of order).
	logLateRows    = 10 * time.Minute
	logReadOverlap = 4096
)

// appendLogEntry appends one entry of a log row:
//
//	uid length uvarint | uid | app BE32 | field length uvarint | field
//
// field being the Redis cursor field as read (write count, then cursor).
func appendLogEntry(b []byte, uid string, app uint32, field string) []byte {
	b = binary.AppendUvarint(b, uint64(len(uid)))
	b = append(b, uid...)
	b = binary.BigEndian.AppendUint32(b, app)
	b = binary.AppendUvarint(b, uint64(len(field)))
	return append(b, field...)
}

// decodeCursorLog decodes a log row's data (version byte, entry count,
// entries), calling fn once per entry.
func decodeCursorLog(b []byte, fn func(uid string, row cursorRow)) error {
	if len(b) == 0 || b[0] != cursorLogVersion {
		return fmt.Errorf("broadcast cursor log: version: %w", ErrCorrupt)
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return fmt.Errorf("broadcast cursor log: entry count: %w", ErrCorrupt)
	}
	b = b[n:]
	for i := uint64(0); i < count; i++ {
		ul, n := binary.Uvarint(b)
		if n <= 0 || ul == 0 || ul > push.MaxUIDLen || uint64(len(b)-n) < ul+4 {
			return fmt.Errorf("broadcast cursor log: entry %d uid: %w", i, ErrCorrupt)
		}
		uid := string(b[n : n+int(ul)])
		b = b[n+int(ul):]
		app := binary.BigEndian.Uint32(b)
		b = b[4:]
		fl, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < fl {
			return fmt.Errorf("broadcast cursor log: entry %d cursor: %w", i, ErrCorrupt)
		}
		rc, err := decodeRCursor(string(b[n : n+int(fl)]))
		if err != nil {
			return fmt.Errorf("broadcast cursor log: entry %d: %w", i, err)
		}
		b = b[n+int(fl):]
		fn(uid, cursorRow{app: app, ver: rc.ver, cur: rc.c})
	}
	if len(b) != 0 {
		return fmt.Errorf("broadcast cursor log: %d trailing bytes: %w", len(b), ErrCorrupt)
	}
	return nil
}

// logRows turns a log row's data back into per-(uid, app) cursor rows
// (a log row MySQL refused).
func logRows(data []byte, log *slog.Logger) []drow {
	var rows []drow
	err := decodeCursorLog(data, func(uid string, c cursorRow) {
		cur := c.cur
		rows = append(rows, drow{op: dCursor, uid: uid, app: c.app, seq: c.ver, cur: &cur})
	})
	if err != nil {
		metricCursorLogDropped.Inc()
		log.Error("saver: a refused broadcast cursor log row is corrupt; dropped", "err", err)
		return nil
	}
	return rows
}

// cursorLogBuf gathers Checkpoint's entries until the next flush.
type cursorLogBuf struct {
	mu      sync.Mutex
	data    []byte // the entries, without the header
	entries int
	keep    int64
	at      int64 // unix ms of the first entry
}

// logCursors adds entries (ready-made by appendLogEntry, n of them, kept
// until keep; their room in the MySQL queue reserved, which is what bounds
// the buffer) to the buffer, cutting a row first if they would not fit and
// after if it is full.
func (r *RedisStore) logCursors(entries []byte, n int, keep int64) {
	b := &r.clogBuf
	b.mu.Lock()
	if b.entries > 0 && (b.entries+n > logFlushEntries || len(b.data)+len(entries) > logFlushBytes) {
		b.mu.Unlock()
		r.flushCursorLog()
		b.mu.Lock()
	}
	if b.entries == 0 {
		b.at = time.Now().UnixMilli()
	}
	b.data = append(b.data, entries...)
	b.entries += n
	b.keep = max(b.keep, keep)
	full := b.entries >= logFlushEntries || len(b.data) >= logFlushBytes
	b.mu.Unlock()
	if full {
		r.flushCursorLog()
	}
}

// flushCursorLog queues the buffer as one log row.
func (r *RedisStore) flushCursorLog() {
	b := &r.clogBuf
	b.mu.Lock()
	if b.entries == 0 {
		b.mu.Unlock()
		return
	}
	data := binary.AppendUvarint([]byte{cursorLogVersion}, uint64(b.entries))
	data = append(data, b.data...)
	row := drow{op: dCursorLog, data: data, keep: b.keep, at: b.at, n: b.entries}
	b.data, b.entries, b.keep = nil, 0, 0
	b.mu.Unlock()
	r.dur.enqueue([]drow{row}, false) // its entries' room was reserved by the Checkpoints

}

// newEpochToken is a new epoch's token: its start in unix milliseconds
// (hex), a dot, and a random part. The previous version's tokens have no
// dot: epochs it began have no log rows before them.
func newEpochToken() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 16) + "." + newToken()[:16]
}

// epochSince returns when epoch ep began (unix ms; 0 when unknown).
func epochSince(ep string) int64 {
	i := strings.IndexByte(ep, '.')
	if i <= 0 {
		return 0
	}
	ms, err := strconv.ParseInt(ep[:i], 16, 64)
	if err != nil || ms < 0 {
		return 0
	}
	return ms
}

// cursorIndex is what the cursor log holds, for an epoch's reloads, of the
// cursors written before the epoch began: the newest entry (highest write
// count: a cursor field only ever grows) per (uid, app). A goroutine of
// the store reads it (readCursorIndex): all of it, then, until
// logLateRows after the epoch's slack, the rows that reached MySQL since.
type cursorIndex struct {
	ep    string
	since int64         // the epoch's start, unix ms
	ready chan struct{} // closed once the first read is complete

	mu        sync.Mutex
	byUID     map[string][]cursorRow // at most one per app
	entries   int
	keep      int64 // the latest keep_until read: past it nothing here is live
	truncated bool  // logIndexMax reached

	lastID uint64 // the reader's position (its goroutine only)

	// While late rows are read, a reload asks for a pass (kick) and waits
	// for the one that starts next (next.done, under mu).
	kick chan struct{}
	next *logPass
}

// logPass is one read of the log; done is closed when it ended.
type logPass struct{ done chan struct{} }

// errIndexNotReady: a reload of a new epoch waited for the cursor log's
// index and its context ended first.
var errIndexNotReady = fmt.Errorf("saver: broadcast cursor log not read yet: %w", push.ErrUnavailable)

// cursorIndexFor returns epoch ep's index, starting its reader if this
// is the first call of the epoch (from checkEpoch, or a reload).
func (r *RedisStore) cursorIndexFor(ep string) *cursorIndex {
	since := epochSince(ep)
	if since == 0 {
		return nil
	}
	r.clogMu.Lock()
	defer r.clogMu.Unlock()
	if idx := r.clogIdx; idx != nil && idx.ep == ep {
		return idx
	}
	idx := &cursorIndex{ep: ep, since: since, ready: make(chan struct{}), byUID: map[string][]cursorRow{},
		kick: make(chan struct{}, 1), next: &logPass{done: make(chan struct{})}}
	r.clogIdx = idx
	r.bg.Go(func() { r.readCursorIndex(idx) })
	return idx
}

// loggedCursors returns the log's cursors of uid for its reload in epoch
// ep, waiting (within ctx) for the index's first read.
func (r *RedisStore) loggedCursors(ctx context.Context, uid, ep string) ([]cursorRow, error) {
	idx := r.cursorIndexFor(ep)
	if idx == nil {
		return nil, nil // an epoch of the previous version: no log rows before it
	}
	select {
	case <-idx.ready:
	case <-ctx.Done():
		return nil, errIndexNotReady
	}
	if idx.late() {
		// Rows may still reach MySQL late: wait for a read that starts
		// after this call did.
		idx.mu.Lock()
		pass := idx.next
		idx.mu.Unlock()
		select {
		case idx.kick <- struct{}{}:
		default:
		}
		select {
		case <-pass.done:
		case <-ctx.Done():
			return nil, errIndexNotReady
		}
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if idx.keep <= time.Now().Unix() && idx.entries > 0 {
		idx.byUID, idx.entries = map[string][]cursorRow{}, 0 // everything it held has expired
	}
	return slices.Clone(idx.byUID[uid]), nil
}

// forgetLogged drops uid's entries from epoch ep's index once its reload
// is in Redis (a hash is reloaded once per epoch).
func (r *RedisStore) forgetLogged(uid, ep string) {
	r.clogMu.Lock()
	idx := r.clogIdx
	r.clogMu.Unlock()
	if idx == nil || idx.ep != ep {
		return
	}
	idx.mu.Lock()
	if rows, ok := idx.byUID[uid]; ok {
		idx.entries -= len(rows)
		delete(idx.byUID, uid)
	}
	idx.mu.Unlock()
}

// late reports whether rows written before the epoch may still reach
// MySQL (logLateRows past the epoch's slack).
func (idx *cursorIndex) late() bool {
	return time.Now().UnixMilli() < idx.since+logEpochSlack.Milliseconds()+logLateRows.Milliseconds()
}

// readCursorIndex is the index's reader (a goroutine of the store): the
// whole log, then, while late rows may come, a pass once a second or at a
// reload's kick; a failed read is retried a second later from where it
// was. It stops with the store, or when another epoch replaced idx.
func (r *RedisStore) readCursorIndex(idx *cursorIndex) {
	first := true
	defer func() {
		if first {
			close(idx.ready) // stopped before a read completed: nobody waits on it
		}
		idx.mu.Lock()
		close(idx.next.done)
		idx.next = &logPass{done: closedChan}
		idx.mu.Unlock()
	}()
	for {
		idx.mu.Lock()
		pass := idx.next
		idx.next = &logPass{done: make(chan struct{})}
		idx.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*r.o.ReadTimeout)
		err := r.readCursorLog(ctx, idx, first)
		cancel()
		close(pass.done)
		if err != nil {
			r.log.Warn("saver: broadcast cursor log read failed; retrying", "err", err)
		} else if first {
			first = false
			close(idx.ready)
		}
		r.clogMu.Lock()
		current := r.clogIdx == idx
		r.clogMu.Unlock()
		if !current || (!first && !idx.late()) {
			return
		}
		select {
		case <-r.stop:
			return
		case <-idx.kick:
		case <-time.After(time.Second):
		}
	}
}

// closedChan is a closed channel: a pass that need not be waited for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// readCursorLog adds to idx the live log rows written before the epoch
// began (its start plus logEpochSlack) from a little before idx.lastID:
// InnoDB's ids are given at INSERT, so a row may commit after a higher
// one, and re-reading is harmless (an entry is kept only if its write
// count is higher). Before the first read, this process's buffer and
// queued rows are written.
func (r *RedisStore) readCursorLog(ctx context.Context, idx *cursorIndex, first bool) error {
	if first { // later entries of this process are the new epoch's: not needed
		r.flushCursorLog()
		if err := r.dur.barrierUID(ctx, ""); err != nil {
			return err
		}
	}
	now := time.Now().Unix()
	from := idx.lastID - min(idx.lastID, logReadOverlap)
	rowsRead, added := 0, 0
	for {
		rows, err := r.o.DB.QueryContext(ctx, "SELECT id, keep_until, data FROM `"+r.dur.t.cursorLog+
			"` WHERE created < ? AND keep_until > ? AND id > ? ORDER BY id LIMIT 64",
			idx.since+logEpochSlack.Milliseconds(), now, from)
		if err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		got := 0
		for rows.Next() {
			var id uint64
			var keep int64
			var data []byte
			if err := rows.Scan(&id, &keep, &data); err != nil {
				rows.Close()
				return fmt.Errorf("mysql: %w", err)
			}
			got++
			from = id
			idx.mu.Lock()
			idx.keep = max(idx.keep, keep)
			err := decodeCursorLog(data, func(uid string, c cursorRow) {
				if idx.indexLocked(uid, c) {
					added++
				}
			})
			idx.mu.Unlock()
			if err != nil {
				r.log.Warn("saver: corrupt broadcast cursor log row skipped", "id", id, "err", err)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		rowsRead += got
		idx.lastID = max(idx.lastID, from)
		if got < 64 {
			break
		}
	}
	if added > 0 {
		r.log.Info("saver: broadcast cursor log read for the reloads of a new epoch", "rows", rowsRead, "entries", added,
			"truncated", idx.truncated)
	}
	return nil
}

// indexLocked keeps c as uid's entry of its app unless one with a higher
// write count is there; it reports whether the index grew. idx.mu is held.
func (idx *cursorIndex) indexLocked(uid string, c cursorRow) bool {
	rows := idx.byUID[uid]
	for i := range rows {
		if rows[i].app == c.app {
			if c.ver > rows[i].ver {
				rows[i] = c
			}
			return false
		}
	}
	if idx.entries >= logIndexMax {
		if !idx.truncated {
			idx.truncated = true
			// The users past it get their ACKed live broadcasts once more.
			metricCursorIndexTruncated.Inc()
		}
		return false
	}
	idx.byUID[uid] = append(rows, c)
	idx.entries++
	return true
}

// sweepCursorLog deletes log rows whose broadcasts have all expired, in
// chunks; it returns the rows deleted.
func (r *RedisStore) sweepCursorLog(ctx context.Context, now int64) (int, error) {
	total := 0
	for {
		res, err := r.o.DB.ExecContext(ctx, "DELETE FROM `"+r.dur.t.cursorLog+"` WHERE keep_until <= ? LIMIT 32", now)
		if err != nil {
			return total, fmt.Errorf("mysql: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if n < 32 { // rows of up to 1 MiB: small transactions
			return total, nil
		}
	}
}

// checkpointEntry is one (uid, app) cursor Checkpoint read.
type checkpointEntry struct {
	uid   string
	app   uint32
	field string
	rc    rcursor
}

// splitCheckpoint sorts Checkpoint's entries: apps with a broadcast that
// never expires get per-(uid, app) rows; the others go to the log (data,
// n entries, kept until keep) unless their apps have no live broadcast
// (the cursor covers nothing). The cache is asked once per app.
func (r *RedisStore) splitCheckpoint(es []checkpointEntry) (rows []drow, data []byte, n int, keep int64) {
	now := time.Now().Unix()
	type appInfo struct {
		lasting bool
		keep    int64
	}
	apps := map[uint32]appInfo{}
	for _, e := range es {
		ai, ok := apps[e.app]
		if !ok {
			ai = appInfo{lasting: r.bc.hasLasting(e.app), keep: r.bc.lastExpire([]uint32{e.app}, now)}
			apps[e.app] = ai
		}
		switch {
		case ai.lasting:
			rows = append(rows, drow{op: dCursor, uid: e.uid, app: e.app, seq: e.rc.ver, cur: &e.rc.c})
		case ai.keep > 0:
			keep = max(keep, ai.keep)
			data = appendLogEntry(data, e.uid, e.app, e.field)
			n++
		}
	}
	return rows, data, n, keep
}
