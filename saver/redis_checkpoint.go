package saver

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Checkpoint implements Store: one pipelined HMGET per uid (its epoch and
// the cursor fields of the ended sessions' apps), then the cursors go to
// the cursor log buffer (redis_cursorlog.go): one MySQL row per flush for
// every session this process checkpointed, not one per user. An app with
// a broadcast that never expires gets one broadcast_cursor row per (uid,
// app) instead (with the field's write count, so MySQL keeps the newest
// whatever order they arrive in), and a cursor of an app with no live
// broadcast covers nothing and is not written. Nothing is waited for.
//
// A hash that is absent or not of the current epoch is skipped: Redis lost
// it, or its user was not reloaded since (a reload that failed, MySQL
// down), so its cursor may have less than MySQL's under a higher write
// count. The user's next Load reloads the hash, joins the two and queues
// what Redis has more. Ack queues no cursor row: this is where a broadcast
// ACK reaches MySQL.
func (r *RedisStore) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	if err := checkEnds(ends); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	if !r.enter() {
		return fmt.Errorf("saver checkpoint: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	ops, uids := r.checkpointReads(ends)
	if len(ops) == 0 {
		return nil
	}
	if err := r.pipe.do(ctx, ops...); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	ep := *r.epoch.Load()
	var es []checkpointEntry
	var failed error
	for j, op := range ops {
		if op.err != nil {
			failed = redisErr(op.err)
			continue
		}
		if e, _ := op.vals[0].(string); e != ep {
			continue // absent, or of an epoch Redis lost: nothing newer than MySQL
		}
		for i, f := range op.fields[1:] {
			v, _ := op.vals[i+1].(string)
			app, _ := parseCursorField(f)
			rc, err := decodeRCursor(v)
			if v == "" || err != nil || rc.c.empty() {
				continue // none, or corrupt (rewritten by the next write)
			}
			es = append(es, checkpointEntry{uid: uids[j], app: app, field: v, rc: rc})
		}
	}
	if len(es) > 0 {
		rows, data, n, keep := r.splitCheckpoint(es)
		// Log entries count in the MySQL queue's bound like rows, from now
		// (buffered) until their row commits.
		if !r.dur.reserve(len(rows)+n, true) {
			return fmt.Errorf("saver checkpoint: %w", refused(opCheckpoint))
		}
		if n > 0 {
			r.logCursors(data, n, keep)
		}
		r.dur.enqueue(rows, false)
	}
	if failed != nil {
		return fmt.Errorf("saver checkpoint: %w", failed)
	}
	return nil
}

// checkpointReads builds one HMGET per distinct uid of ends: field "e" (the
// hash's epoch), then the cursor field of each distinct app; uids[i] is
// ops[i]'s uid.
func (r *RedisStore) checkpointReads(ends []push.SessionEnd) (ops []*pipeOp, uids []string) {
	byUID := make(map[string]*pipeOp, len(ends))
	ops = make([]*pipeOp, 0, len(ends))
	uids = make([]string, 0, len(ends))
	for i := range ends {
		e := &ends[i]
		if len(e.Apps) == 0 {
			continue
		}
		op := byUID[e.UID]
		if op == nil {
			op = &pipeOp{kind: pipeHMGet, key: r.k.user(e.UID), fields: make([]string, 1, 1+len(e.Apps))}
			op.fields[0] = "e"
			byUID[e.UID] = op
			ops, uids = append(ops, op), append(uids, e.UID)
		}
		for _, app := range e.Apps {
			f := cursorField(app)
			if !hasField(op.fields[1:], f) {
				op.fields = append(op.fields, f)
			}
		}
	}
	return ops, uids
}

func hasField(fields []string, f string) bool {
	for _, x := range fields {
		if x == f {
			return true
		}
	}
	return false
}
