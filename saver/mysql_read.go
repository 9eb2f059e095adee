package saver

import (
	"context"
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

// backRow is one broadcast_ack row, with its broadcast's expiry.
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

// loadBroadcasts returns the live broadcasts.
func (d *durable) loadBroadcasts(ctx context.Context, now int64) ([]push.Message, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id, app, qos, expire_at, payload FROM `"+d.t.broadcast+
		"` WHERE expire_at = 0 OR expire_at > ?", now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []push.Message
	for rows.Next() {
		m := push.Message{Broadcast: true}
		if err := rows.Scan(&m.ID, &m.App, &m.QoS, &m.Expire, &m.Payload); err != nil {
			return nil, err
		}
		if m.Expire >= 0 {
			out = append(out, m)
		}
	}
	return out, rows.Err()
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

// expireBroadcasts deletes the broadcasts expired at now with their ACK
// rows, in chunks (no statement locks too much); forget is called with each
// chunk's uids before its rows go, so the users' Redis records go too. It
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
