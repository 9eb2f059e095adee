package saver

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/lcpush/lcpush/pkg/push"
)

const (
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
)

// run is a shard's writer: take a batch from the head of the queue, commit
// it, drop it from the queue; on failure keep it and retry with backoff.
func (s *dshard) run() {
	d := s.d
	backoff := retryMin
	single := 0 // rows left to write one at a time, after a rejected batch
	for {
		s.mu.Lock()
		for len(s.q) == 0 && !s.stopping {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if len(s.q) == 0 { // stopping and empty
			s.mu.Unlock()
			return
		}
		n, size := 0, 0
		limit := d.batchRows
		if single > 0 {
			limit = 1
		}
		for n < len(s.q) && n < limit && (n == 0 || size+s.q[n].size() <= d.batchBytes) {
			size += s.q[n].size()
			n++
		}
		batch := s.q[:n:n]
		stopping, deadline := s.stopping, s.deadline
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), d.writeTimeout)
		d.commitMu.RLock() // until the batch's count changes are in cnt
		err := d.write(ctx, batch)
		cancel()
		applied := true
		switch {
		case err == nil:
		case rejected(err) && n > 1:
			d.commitMu.RUnlock()
			single = n // find the row MySQL refuses
			continue
		case rejected(err) && batch[0].op == dCursorLog:
			// Too big for this MySQL: its cursors go as per-user rows.
			d.log.Warn("saver: mysql refused a broadcast cursor log row; writing its cursors one row per user",
				"entries", batch[0].n, "bytes", len(batch[0].data), "err", err)
			d.enqueue(logRows(batch[0].data, d.log), true)
			err, applied = nil, false
		case rejected(err):
			d.log.Error("saver: mysql refused a row; dropped", "op", batch[0].op, "uid", truncate(batch[0].uid),
				"id", batch[0].id, "err", err)
			metricDurableDropped.WithLabelValues("rejected").Inc()
			err, applied = nil, false
		case stopping && time.Now().After(deadline):
			d.commitMu.RUnlock()
			s.dropAll(err)
			return
		default:
			d.commitMu.RUnlock()
			metricDurableRetries.Inc()
			s.fail(err)
			time.Sleep(backoff)
			backoff = min(2*backoff, retryMax)
			continue
		}
		backoff = retryMin
		if single > 0 {
			single--
		}
		s.committed(n, applied)
		d.commitMu.RUnlock()
	}
}

// committed drops the first n rows of the queue after their commit
// (applied false: MySQL refused them) and moves their count changes.
func (s *dshard) committed(n int, applied bool) {
	s.mu.Lock()
	w := weights(s.q[:n])
	s.d.cnt.commit(s.q[:n], applied)
	for _, r := range s.q[:n] {
		if s.perUID[r.uid]--; s.perUID[r.uid] <= 0 {
			delete(s.perUID, r.uid)
		}
	}
	clear(s.q[:n]) // release the payloads
	s.q = s.q[n:]
	s.done += uint64(n)
	if !s.healthy {
		s.d.log.Info("saver: mysql writes recovered", "queued", len(s.q))
	}
	s.healthy = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	metricDurableCommitted.Add(float64(n))
	metricDurableQueue.Set(float64(s.d.depth.Add(-int64(w))))
	if s.d.healthy() {
		metricDurableHealthy.Set(1)
	}
}

func (s *dshard) fail(err error) {
	s.mu.Lock()
	if s.healthy {
		s.d.log.Warn("saver: mysql writes failing; queueing", "queued", len(s.q), "err", err)
		s.failing = time.Now()
	}
	s.healthy = false
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	metricDurableHealthy.Set(0)
}

// dropAll abandons the queue at close, after the deadline passed.
func (s *dshard) dropAll(err error) {
	s.mu.Lock()
	n, w := len(s.q), weights(s.q)
	s.d.cnt.commit(s.q, false)
	s.q, s.perUID = nil, map[string]int{}
	s.done = s.seq
	if s.healthy {
		s.failing = time.Now()
	}
	s.healthy = false
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.d.depth.Add(-int64(w))
	metricDurableDropped.WithLabelValues("closed").Add(float64(n))
	s.d.log.Error("saver: closed with rows not written to mysql", "rows", n, "err", err)
}

// rejected reports a MySQL error about the data itself (retrying the same
// row cannot succeed), as opposed to the server or the network failing.
func rejected(err error) bool {
	if errors.Is(err, mysql.ErrPktTooLarge) { // the client's own max_allowed_packet
		return true
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, 1153, 1264, 1292, 1366, 1406: // null, packet too large, out of range, bad value, too long
		return true
	}
	return false
}

// rowKey is one inbox row: (uid, message id); for a broadcast_cursor row,
// (uid, app).
type rowKey struct {
	uid string
	id  uint64
}

func cmpRowKey(a, b rowKey) int {
	if c := strings.Compare(a.uid, b.uid); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// inboxOp is what a batch does to one inbox row, its operations folded in
// queue order: deleted first (del; or delIn: deleted if its app is one of
// these), then written (up), then parked.
type inboxOp struct {
	del    bool
	delIn  []uint32
	up     *push.Message
	parked bool
}

// folded is a batch with at most one operation per row.
type folded struct {
	inbox   map[rowKey]*inboxOp
	bcasts  map[uint64]*drow // dBroadcast rows, the last of each id
	cursors map[rowKey]*drow // dCursor rows by (uid, app): the highest write count
	logs    []*drow          // dCursorLog rows, in order
}

// fold reduces a batch to at most one operation per row, keeping the
// outcome of applying the rows in order. A user's cursor rows of one app
// become one: a stream of broadcasts ACKed within a batch costs one row
// per user, not one per broadcast.
func fold(rows []drow) folded {
	f := folded{inbox: map[rowKey]*inboxOp{}}
	inbox := f.inbox
	for i := range rows {
		r := &rows[i]
		switch r.op {
		case dBroadcast:
			if f.bcasts == nil {
				f.bcasts = map[uint64]*drow{}
			}
			f.bcasts[r.id] = r
			continue
		case dCursorLog:
			f.logs = append(f.logs, r)
			continue
		case dCursor:
			if f.cursors == nil {
				f.cursors = map[rowKey]*drow{}
			}
			k := rowKey{r.uid, uint64(r.app)}
			if o := f.cursors[k]; o == nil || r.seq >= o.seq {
				f.cursors[k] = r
			}
			continue
		}
		k := rowKey{r.uid, r.id}
		o := inbox[k]
		if o == nil {
			o = &inboxOp{}
			inbox[k] = o
		}
		switch r.op {
		case dUpsert:
			o.up = r.msg // a re-save keeps the parked mark, as Redis does
		case dDelete:
			*o = inboxOp{del: true}
		case dDeleteIn:
			switch {
			case o.up != nil: // the batch wrote the row: its app is known
				if hasApp(r.apps, o.up.App) {
					*o = inboxOp{del: true}
				}
			case o.del: // deleted already
			default:
				o.delIn = unionApps(o.delIn, r.apps)
			}
		case dPark:
			if o.up != nil || !o.del {
				o.parked = true
			}
		}
	}
	return f
}

// unionApps returns a with the apps of b it lacks; it never modifies b,
// which rows share.
func unionApps(a, b []uint32) []uint32 {
	if a == nil {
		return b
	}
	out := a
	for _, x := range b {
		if !hasApp(out, x) {
			if len(out) == len(a) {
				out = slices.Clone(a) // a may be another row's
			}
			out = append(out, x)
		}
	}
	return out
}

// appsKey names a set of apps, for grouping conditional deletes.
func appsKey(apps []uint32) string {
	s := slices.Sorted(slices.Values(apps))
	var b strings.Builder
	for _, a := range slices.Compact(s) {
		b.WriteString(strconv.FormatUint(uint64(a), 10))
		b.WriteByte(',')
	}
	return b.String()
}

// write commits one batch in one transaction.
func (d *durable) write(ctx context.Context, rows []drow) error {
	f := fold(rows)
	inbox := f.inbox
	var dels, parks []rowKey
	var ups []rowKey
	var delIn map[string][]rowKey // conditional deletes, by their set of apps
	for k, o := range inbox {
		if o.del {
			dels = append(dels, k)
		} else if len(o.delIn) > 0 {
			if delIn == nil {
				delIn = map[string][]rowKey{}
			}
			ak := appsKey(o.delIn)
			delIn[ak] = append(delIn[ak], k)
		}
		if o.up != nil {
			ups = append(ups, k)
		} else if o.parked && !o.del {
			parks = append(parks, k)
		}
	}
	// A fixed order of rows keeps concurrent transactions from deadlocking.
	for _, l := range [][]rowKey{dels, ups, parks} {
		slices.SortFunc(l, cmpRowKey)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	t := d.t
	if len(dels) > 0 {
		if _, err := tx.ExecContext(ctx, "DELETE FROM `"+t.inbox+"` WHERE (uid, id) IN ("+tuples(len(dels), "(?,?)")+")",
			keyArgs(dels)...); err != nil {
			return err
		}
	}
	for _, ak := range slices.Sorted(maps.Keys(delIn)) {
		keys := delIn[ak]
		slices.SortFunc(keys, cmpRowKey)
		apps := inbox[keys[0]].delIn
		args := keyArgs(keys)
		for _, a := range apps {
			args = append(args, a)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM `"+t.inbox+"` WHERE (uid, id) IN ("+tuples(len(keys), "(?,?)")+
			") AND app IN ("+tuples(len(apps), "?")+")", args...); err != nil {
			return err
		}
	}
	if len(ups) > 0 {
		args := make([]any, 0, 7*len(ups))
		for _, k := range ups {
			o := inbox[k]
			args = append(args, []byte(k.uid), k.id, o.up.App, o.up.QoS, o.up.Expire, boolInt(o.parked), payloadArg(o.up.Payload))
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO `"+t.inbox+"` (uid, id, app, qos, expire_at, parked, payload) VALUES "+
			tuples(len(ups), "(?,?,?,?,?,?,?)")+" ON DUPLICATE KEY UPDATE app = VALUES(app), qos = VALUES(qos), "+
			"expire_at = VALUES(expire_at), payload = VALUES(payload), parked = GREATEST(parked, VALUES(parked))", args...); err != nil {
			return err
		}
	}
	if len(parks) > 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE `"+t.inbox+"` SET parked = 1 WHERE (uid, id) IN ("+tuples(len(parks), "(?,?)")+")",
			keyArgs(parks)...); err != nil {
			return err
		}
	}
	if len(f.bcasts) > 0 {
		ids := slices.Sorted(maps.Keys(f.bcasts))
		args := make([]any, 0, 6*len(ids))
		for _, id := range ids {
			r := f.bcasts[id]
			m := r.msg
			args = append(args, id, m.App, m.QoS, m.Expire, payloadArg(m.Payload), r.seq)
		}
		// A seq once given is kept: a row without one (0) never clears it.
		if _, err := tx.ExecContext(ctx, "INSERT INTO `"+t.broadcast+"` (id, app, qos, expire_at, payload, seq) VALUES "+
			tuples(len(ids), "(?,?,?,?,?,?)")+" ON DUPLICATE KEY UPDATE app = VALUES(app), qos = VALUES(qos), "+
			"expire_at = VALUES(expire_at), payload = VALUES(payload), seq = IF(VALUES(seq) = 0, seq, VALUES(seq))", args...); err != nil {
			return err
		}
	}
	if len(f.cursors) > 0 {
		keys := slices.SortedFunc(maps.Keys(f.cursors), cmpRowKey)
		args := make([]any, 0, 5*len(keys))
		for _, k := range keys {
			r := f.cursors[k]
			args = append(args, []byte(k.uid), r.app, r.seq, r.cur.Cur, bcursor{Exc: r.cur.Exc}.appendTo(nil))
		}
		// Only a higher write count replaces a row (rows of one cursor may
		// be queued out of order); ver is assigned last, as MySQL applies
		// the assignments in order.
		if _, err := tx.ExecContext(ctx, "INSERT INTO `"+t.cursors+"` (uid, app, ver, cur, exc) VALUES "+
			tuples(len(keys), "(?,?,?,?,?)")+" ON DUPLICATE KEY UPDATE cur = IF(VALUES(ver) > ver, VALUES(cur), cur), "+
			"exc = IF(VALUES(ver) > ver, VALUES(exc), exc), ver = GREATEST(ver, VALUES(ver))", args...); err != nil {
			return err
		}
	}
	if len(f.logs) > 0 {
		args := make([]any, 0, 3*len(f.logs))
		for _, r := range f.logs {
			args = append(args, r.at, r.keep, r.data)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO `"+t.cursorLog+"` (created, keep_until, data) VALUES "+
			tuples(len(f.logs), "(?,?,?)"), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// tuples is n copies of t, comma separated.
func tuples(n int, t string) string {
	var b strings.Builder
	b.Grow(n * (len(t) + 1))
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t)
	}
	return b.String()
}

func keyArgs(keys []rowKey) []any {
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, []byte(k.uid), k.id)
	}
	return args
}

// payloadArg never passes nil: the column is NOT NULL.
func payloadArg(p []byte) []byte {
	if p == nil {
		return []byte{}
	}
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
