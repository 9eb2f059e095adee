package saver

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// refreshOnAckEvery bounds how often an ACK of an id this process does not
// know makes it re-read the broadcasts (another saver may have just stored
// it), so a client sending junk ids costs one small read per interval.
const refreshOnAckEvery = 100 * time.Millisecond

// Ack implements Store: one script deletes the entries from the user's hash
// and records the broadcast ACKs; the MySQL rows follow through the queue.
func (r *RedisStore) Ack(ctx context.Context, uid string, ids []uint64) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, fmt.Errorf("saver ack: %w", err)
	}
	if !r.enter() {
		return 0, fmt.Errorf("saver ack %s: %w", uid, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if !r.dur.reserve(len(ids), true) {
		return 0, fmt.Errorf("saver ack %s: %w", uid, refused(opAck))
	}
	res, err := r.ackOnce(ctx, uid, ids)
	if err == nil && len(res.unknown) > 0 && r.refreshForAck(ctx) {
		var known []uint64
		for _, id := range res.unknown {
			if _, ok := r.bc.get(id); ok {
				known = append(known, id)
			}
		}
		if len(known) > 0 {
			again, err2 := r.ackOnce(ctx, uid, known)
			res.n += again.n
			res.rows = append(res.rows, again.rows...)
			res.unknown = again.unknown
			err = err2
		}
	}
	if err == nil && !res.fresh {
		// The hash was not reloaded since Redis lost data: MySQL may hold
		// entries Redis does not, so delete every id there.
		for _, id := range res.unknown {
			res.rows = append(res.rows, drow{op: dDelete, uid: uid, id: id})
		}
	}
	// At most one row per distinct id: the reservation covers them.
	r.dur.release(len(ids) - len(res.rows))
	r.dur.enqueue(res.rows, false)
	if err != nil {
		return res.n, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	return res.n, nil
}

type ackResult struct {
	n       int
	fresh   bool // the hash carries the current epoch
	rows    []drow
	unknown []uint64 // ids that took no effect and are no known broadcast
}

func (r *RedisStore) ackOnce(ctx context.Context, uid string, ids []uint64) (ackResult, error) {
	args := make([]any, 0, 3+2*len(ids))
	args = append(args, *r.epoch.Load(), time.Now().Unix(), r.idle())
	for _, id := range ids {
		exp := ""
		if m, ok := r.bc.get(id); ok {
			exp = strconv.FormatInt(m.Expire, 10)
		}
		args = append(args, id8(id), exp)
	}
	op := &pipeOp{kind: pipeScript, script: scriptAck, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, op); err != nil {
		return ackResult{}, err
	}
	l, err := op.list()
	if err != nil || len(l) < 1 {
		return ackResult{}, cmpErr(nil, err)
	}
	res := ackResult{fresh: asInt(l[0]) == 1}
	done := map[uint64]bool{}
	for i := 1; i+2 < len(l); i += 3 {
		s := asString(l[i])
		id, ok := parseID8(s[min(1, len(s)):])
		if !ok {
			continue
		}
		done[id] = true
		res.n++
		if s[0] == 'u' {
			res.rows = append(res.rows, drow{op: dDelete, uid: uid, id: id})
			r.cnt.add(uid, appField(uint32(asInt(l[i+1]))), -1)
			r.cnt.add(uid, fieldParked, -asInt(l[i+2]))
			r.acked.Add(1)
		} else {
			res.rows = append(res.rows, drow{op: dBack, state: backAcked, uid: uid, id: id})
		}
	}
	for _, id := range ids {
		if _, bcast := r.bc.get(id); !done[id] && !bcast {
			done[id] = true // once per repeated id
			res.unknown = append(res.unknown, id)
		}
	}
	return res, nil
}

// refreshForAck re-reads the broadcasts at most every refreshOnAckEvery and
// reports whether the cache changed.
func (r *RedisStore) refreshForAck(ctx context.Context) bool {
	now := time.Now().UnixNano()
	last := r.lastRefresh.Load()
	if now-last < int64(refreshOnAckEvery) || !r.lastRefresh.CompareAndSwap(last, now) {
		return false
	}
	changed, err := r.syncBroadcasts(ctx, false)
	return err == nil && changed
}
