package saver

import (
	"context"
	"encoding/binary"
	"fmt"
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
	logFlushBytes   = 2 << 20
	// logBufferMax bounds the entries buffered and not yet queued (two
	// flushes' worth, and 2*logFlushBytes): past it a Checkpoint is
	// refused, as when the MySQL queue is full, and the room retries it.
	// A row is then at most ~4 MiB: MySQL's max_allowed_packet must be
	// above that (16 MiB by default in MariaDB and 64 MiB in MySQL 8).
	logBufferMax = 2 * logFlushEntries
	// logIndexMax bounds the entries a recovery index holds (~100 B each):
	// past it the users not indexed get their ACKed broadcasts once more.
	logIndexMax = 4 << 20
	// logEpochSlack: rows written this long after an epoch began are still
	// read into its index (savers see a new epoch within EpochEvery, and
	// their clocks differ a little).
	logEpochSlack = time.Minute
	// logLateRows: for this long after logEpochSlack, reloads still read
	// rows that reached MySQL late (queued before the epoch began).
	logLateRows = 5 * time.Minute
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

// cursorLogBuf gathers Checkpoint's entries until the next flush.
type cursorLogBuf struct {
	mu      sync.Mutex
	data    []byte // the entries, without the header
	entries int
	keep    int64
	at      int64 // unix ms of the first entry
}

// logCursors adds entries (ready-made by appendLogEntry, n of them, kept
// until keep) to the buffer, cutting a row when it is full. It reports
// false when the buffer is over its bound (MySQL behind).
func (r *RedisStore) logCursors(entries []byte, n int, keep int64) bool {
	b := &r.clogBuf
	b.mu.Lock()
	if b.entries+n > logBufferMax || len(b.data)+len(entries) > 2*logFlushBytes {
		b.mu.Unlock()
		return false
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
	return true
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
	row := drow{op: dCursorLog, data: data, keep: b.keep, at: b.at}
	b.data, b.entries, b.keep = nil, 0, 0
	b.mu.Unlock()
	// Room was taken by the Checkpoints (one row's worth per flush is
	// forced: the entries' cursors are Redis's already).
	r.dur.enqueue([]drow{row}, true)
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

// cursorIndex is what the cursor log held, at an epoch's first reload, of
// the cursors written before the epoch began, by uid.
type cursorIndex struct {
	ep    string
	ready chan struct{} // closed once built (or failed: err)
	err   error

	mu        sync.Mutex
	byUID     map[string][]cursorRow
	entries   int
	keep      int64 // the latest keep_until read: past it nothing here is live
	truncated bool  // logIndexMax reached

	readMu sync.Mutex // one read of the log at a time
	lastID uint64     // the last row read
}

// loggedCursors returns the log's cursors of uid for its reload in epoch
// ep; the first call of an epoch reads the log (the others wait for it).
func (r *RedisStore) loggedCursors(ctx context.Context, uid, ep string) ([]cursorRow, error) {
	since := epochSince(ep)
	if since == 0 {
		return nil, nil
	}
	r.clogMu.Lock()
	idx := r.clogIdx
	build := idx == nil || idx.ep != ep
	if build {
		idx = &cursorIndex{ep: ep, ready: make(chan struct{})}
		r.clogIdx = idx
	}
	r.clogMu.Unlock()
	if build {
		// Not the caller's deadline: the other reloads wait for this read.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*r.o.ReadTimeout)
		idx.readMu.Lock()
		idx.err = r.readCursorLog(bctx, idx, since)
		idx.readMu.Unlock()
		cancel()
		close(idx.ready)
		if idx.err != nil {
			r.clogMu.Lock()
			if r.clogIdx == idx {
				r.clogIdx = nil // the next reload reads again
			}
			r.clogMu.Unlock()
		}
	}
	select {
	case <-idx.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if idx.err != nil {
		return nil, fmt.Errorf("cursor log: %w", idx.err)
	}
	// Rows of sessions checkpointed just before the epoch began may reach
	// MySQL after the first read (savers see an epoch within EpochEvery):
	// for a while, a reload first reads what was written since (one
	// indexed query, at most one at a time).
	if time.Now().UnixMilli() < since+logEpochSlack.Milliseconds()+logLateRows.Milliseconds() && idx.readMu.TryLock() {
		err := r.readCursorLog(ctx, idx, since)
		idx.readMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("cursor log: %w", err)
		}
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if idx.keep <= time.Now().Unix() {
		idx.byUID = nil // everything it holds has expired
	}
	return idx.byUID[uid], nil
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
	select {
	case <-idx.ready:
	default:
		return
	}
	idx.mu.Lock()
	delete(idx.byUID, uid)
	idx.mu.Unlock()
}

// readCursorLog adds to idx the live log rows after idx.lastID written
// before the epoch began (since, unix ms, plus logEpochSlack), after this
// process's queued rows are written; idx.readMu is held.
func (r *RedisStore) readCursorLog(ctx context.Context, idx *cursorIndex, since int64) error {
	r.flushCursorLog()
	if err := r.dur.barrierUID(ctx, ""); err != nil {
		return err
	}
	now := time.Now().Unix()
	rowsRead, added := 0, 0
	for {
		rows, err := r.o.DB.QueryContext(ctx, "SELECT id, keep_until, data FROM `"+r.dur.t.cursorLog+
			"` WHERE keep_until > ? AND id > ? AND created < ? ORDER BY id LIMIT 64",
			now, idx.lastID, since+logEpochSlack.Milliseconds())
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
			idx.mu.Lock()
			idx.lastID = id
			idx.keep = max(idx.keep, keep)
			if idx.byUID == nil {
				idx.byUID = map[string][]cursorRow{}
			}
			err := decodeCursorLog(data, func(uid string, c cursorRow) {
				if idx.entries >= logIndexMax {
					idx.truncated = true
					return
				}
				idx.byUID[uid] = append(idx.byUID[uid], c)
				idx.entries++
				added++
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
		if got < 64 {
			break
		}
	}
	if idx.truncated {
		r.log.Warn("saver: broadcast cursor log larger than the recovery index: users past it get ACKed broadcasts once more",
			"entries", idx.entries)
	}
	if rowsRead > 0 {
		r.log.Info("saver: broadcast cursor log read for the reloads of a new epoch", "rows", rowsRead, "entries", added)
	}
	return nil
}

// sweepCursorLog deletes log rows whose broadcasts have all expired, in
// chunks; it returns the rows deleted.
func (r *RedisStore) sweepCursorLog(ctx context.Context, now int64) (int, error) {
	total := 0
	for {
		res, err := r.o.DB.ExecContext(ctx, "DELETE FROM `"+r.dur.t.cursorLog+"` WHERE keep_until <= ? LIMIT 1000", now)
		if err != nil {
			return total, fmt.Errorf("mysql: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if n < 1000 {
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

// splitCheckpoint sends each entry where it goes: apps with a broadcast
// that never expires to per-(uid, app) rows, the rest to the log buffer
// unless their apps have no live broadcast (the cursor covers nothing).
func (r *RedisStore) splitCheckpoint(es []checkpointEntry) (rows []drow, ok bool) {
	now := time.Now().Unix()
	var data []byte
	n := 0
	var keep int64
	for _, e := range es {
		if r.bc.hasLasting(e.app) {
			rows = append(rows, drow{op: dCursor, uid: e.uid, app: e.app, seq: e.rc.ver, cur: &e.rc.c})
			continue
		}
		k := r.bc.lastExpire([]uint32{e.app}, now)
		if k == 0 {
			continue
		}
		keep = max(keep, k)
		data = appendLogEntry(data, e.uid, e.app, e.field)
		n++
	}
	if n > 0 && !r.logCursors(data, n, keep) {
		return nil, false
	}
	return rows, true
}
