package saver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/lcpush/lcpush/pkg/push"
)

// Reads and sweeps of the durable copy. Writes go through the queue
// (durable_writer.go); these run directly, with the caller's context.

// reloadEntry is one inbox row read back from MySQL.
type reloadEntry struct {
	msg    push.Message
	parked bool
}

// backRow is one broadcast_ack row (the previous version's), with its
// broadcast's expiry.
type backRow struct {
	bid    uint64
	state  uint8
	expire int64
}

// loadInbox returns uid's unexpired rows, the newest limit of them (0: all).
func (d *durable) loadInbox(ctx context.Context, uid string, now int64, limit int) ([]reloadEntry, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := d.db.QueryContext(ctx, "SELECT id, app, qos, expire_at, parked, payload FROM `"+d.t.inbox+
		"` WHERE uid = ? AND (expire_at = 0 OR expire_at > ?) ORDER BY id DESC LIMIT ?", []byte(uid), now, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []reloadEntry
	for rows.Next() {
		var e reloadEntry
		if err := rows.Scan(&e.msg.ID, &e.msg.App, &e.msg.QoS, &e.msg.Expire, &e.parked, &e.msg.Payload); err != nil {
			return nil, err
		}
		if e.msg.Expire < 0 {
			continue // not written by us
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// cursorRow is one broadcast_cursor row.
type cursorRow struct {
	app uint32
	ver uint64
	cur bcursor
}

// loadCursors returns uid's broadcast cursors; a corrupt one is skipped
// (the join with Redis's, and the next write, replace it).
func (d *durable) loadCursors(ctx context.Context, uid string) ([]cursorRow, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT app, ver, cur, exc FROM `"+d.t.cursors+"` WHERE uid = ?", []byte(uid))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []cursorRow
	for rows.Next() {
		var c cursorRow
		var exc []byte
		if err := rows.Scan(&c.app, &c.ver, &c.cur.Cur, &exc); err != nil {
			return nil, err
		}
		e, err := decodeCursor(exc)
		if err != nil {
			d.log.Warn("saver: corrupt broadcast cursor row skipped", "uid", truncate(uid), "app", c.app, "err", err)
			continue
		}
		c.cur.Exc = e.Exc
		out = append(out, c)
	}
	return out, rows.Err()
}

// hasBacks reports whether the previous version's broadcast_ack table
// still holds a row: while it does, reloads read it.
func (d *durable) hasBacks(ctx context.Context) (bool, error) {
	var one int
	err := d.db.QueryRowContext(ctx, "SELECT 1 FROM `"+d.t.backs+"` LIMIT 1").Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// loadBacks returns uid's ACKed or parked broadcasts that are still live.
func (d *durable) loadBacks(ctx context.Context, uid string, now int64) ([]backRow, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT a.bid, a.state, b.expire_at FROM `"+d.t.backs+"` a JOIN `"+d.t.broadcast+
		"` b ON b.id = a.bid WHERE a.uid = ? AND (b.expire_at = 0 OR b.expire_at > ?)", []byte(uid), now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []backRow
	for rows.Next() {
		var b backRow
		if err := rows.Scan(&b.bid, &b.state, &b.expire); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// bcastRow is one broadcast row: the message and its seq (0: none yet).
type bcastRow struct {
	msg push.Message
	seq uint64
}

// loadBroadcasts returns the live broadcasts, in id order, and the highest
// seq of any row (expired ones too).
func (d *durable) loadBroadcasts(ctx context.Context, now int64) ([]bcastRow, uint64, error) {
	var top uint64
	if err := d.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM `"+d.t.broadcast+"`").Scan(&top); err != nil {
		return nil, 0, err
	}
	rows, err := d.db.QueryContext(ctx, "SELECT id, app, qos, expire_at, payload, seq FROM `"+d.t.broadcast+
		"` WHERE expire_at = 0 OR expire_at > ? ORDER BY id", now)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []bcastRow
	for rows.Next() {
		b := bcastRow{msg: push.Message{Broadcast: true}}
		m := &b.msg
		if err := rows.Scan(&m.ID, &m.App, &m.QoS, &m.Expire, &m.Payload, &b.seq); err != nil {
			return nil, 0, err
		}
		if m.Expire >= 0 {
			out = append(out, b)
		}
	}
	return out, top, rows.Err()
}

// expiredRow is an inbox row the sweep deletes, with what it counts.
type expiredRow struct {
	rowKey
	app    uint32
	parked bool
}

// expiredInbox returns up to limit rows expired at now, oldest deadline first.
func (d *durable) expiredInbox(ctx context.Context, now int64, limit int) ([]expiredRow, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT uid, id, app, parked FROM `"+d.t.inbox+
		"` WHERE expire_at > 0 AND expire_at <= ? ORDER BY expire_at LIMIT ?", now, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []expiredRow
	for rows.Next() {
		var uid []byte
		var k expiredRow
		if err := rows.Scan(&uid, &k.id, &k.app, &k.parked); err != nil {
			return nil, err
		}
		k.uid = string(uid)
		out = append(out, k)
	}
	return out, rows.Err()
}

// deleteExpiredInbox deletes these rows if they are still expired at now (a
// re-save may have moved their deadline) and returns how many went.
func (d *durable) deleteExpiredInbox(ctx context.Context, keys []rowKey, now int64) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	args := append(keyArgs(keys), now)
	res, err := d.db.ExecContext(ctx, "DELETE FROM `"+d.t.inbox+"` WHERE (uid, id) IN ("+tuples(len(keys), "(?,?)")+
		") AND expire_at > 0 AND expire_at <= ?", args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// expireBroadcasts deletes the broadcasts expired at now with the previous
// version's ACK rows of them, in chunks (no statement locks too much);
// forget is called with each chunk's uids before its rows go, so the
// users' previous-version Redis records go too (cursors need nothing: a
// cursor forgets a broadcast no longer live when it is next written). It
// returns how many broadcasts went.
func (d *durable) expireBroadcasts(ctx context.Context, now int64, chunk int,
	forget func(ctx context.Context, bid uint64, uids []string) error) (int, error) {
	ids, err := d.expiredBroadcastIDs(ctx, now)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, id := range ids {
		for {
			uids, err := d.backUIDs(ctx, id, chunk)
			if err != nil {
				return total, err
			}
			if len(uids) == 0 {
				break
			}
			if err := forget(ctx, id, uids); err != nil {
				return total, err
			}
			args := []any{id}
			for _, u := range uids {
				args = append(args, []byte(u))
			}
			if _, err := d.db.ExecContext(ctx, "DELETE FROM `"+d.t.backs+"` WHERE bid = ? AND uid IN ("+
				tuples(len(uids), "?")+")", args...); err != nil {
				return total, err
			}
		}
		res, err := d.db.ExecContext(ctx, "DELETE FROM `"+d.t.broadcast+"` WHERE id = ? AND expire_at > 0 AND expire_at <= ?", id, now)
		if err != nil {
			return total, fmt.Errorf("broadcast %d: %w", id, err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
	}
	return total, nil
}

func (d *durable) expiredBroadcastIDs(ctx context.Context, now int64) ([]uint64, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id FROM `"+d.t.broadcast+"` WHERE expire_at > 0 AND expire_at <= ?", now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (d *durable) backUIDs(ctx context.Context, bid uint64, limit int) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT uid FROM `"+d.t.backs+"` WHERE bid = ? LIMIT ?", bid, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var uids []string
	for rows.Next() {
		var u []byte
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		uids = append(uids, string(u))
	}
	return uids, rows.Err()
}
