package saver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

const (
	// sweepChunk is the rows one sweep step reads from MySQL's expiry index.
	sweepChunk = 1000
	// sweepLockTTL bounds how long a saver that died mid-sweep blocks the
	// others' sweeps. A sweep that runs longer is merely repeated by
	// another saver: every step is idempotent.
	sweepLockTTL = time.Minute
)

// Expire implements Store. MySQL's expire_at index is the expiry index: one
// saver at a time (a Redis lock) reads the expired rows in chunks, drops
// them from the users' hashes (a script per user, pipelined; it re-checks
// each entry's own expiry, so a re-saved message survives) and deletes
// them from MySQL. The count is of MySQL rows, the durable truth, after
// this process's queued rows are written: so it fails with
// push.ErrUnavailable while MySQL is down, and Redis keeps hiding expired
// entries from Load meanwhile. Another saver sweeping already: 0, nil.
func (r *RedisStore) Expire(ctx context.Context, now time.Time) (int, error) {
	if !r.enter() {
		return 0, fmt.Errorf("saver expire: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver expire: %w", err)
	}
	token := newToken()
	ok, err := r.rc.SetNX(ctx, r.k.sweepLock(), token, sweepLockTTL).Result()
	if err != nil {
		return 0, fmt.Errorf("saver expire: lock: %w", redisErr(err))
	}
	if !ok {
		return 0, nil
	}
	r.expireJobs(ctx, now) // logs its errors: the next sweep retries; jobs are no messages, not counted
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RedisTimeout)
		defer cancel()
		_ = scriptUnlock.Run(uctx, r.rc, []string{r.k.sweepLock()}, token).Err()
	}()
	if err := r.dur.barrierAll(ctx); err != nil {
		return 0, fmt.Errorf("saver expire: %w", err)
	}
	t := now.Unix()
	total := 0
	for {
		n, more, err := r.sweepStep(ctx, t)
		total += n
		if err != nil {
			r.expired.Add(uint64(total))
			return total, fmt.Errorf("saver expire: %w", err)
		}
		if !more {
			break
		}
	}
	n, err := r.sweepBroadcasts(ctx, t)
	total += n
	r.expired.Add(uint64(total))
	if err != nil {
		return total, fmt.Errorf("saver expire: %w", err)
	}
	if err := r.dropStatuses(ctx, t); err != nil {
		return total, fmt.Errorf("saver expire: delivery status: %w", err)
	}
	return total, nil
}

// sweepStep drops one chunk of expired entries; more reports a full chunk.
func (r *RedisStore) sweepStep(ctx context.Context, t int64) (n int, more bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, r.o.ReadTimeout)
	defer cancel()
	expired, err := r.dur.expiredInbox(rctx, t, sweepChunk)
	if err != nil || len(expired) == 0 {
		return 0, false, mysqlErr(err)
	}
	keys := make([]rowKey, len(expired))
	byUID := map[string][]any{}
	var order []string
	for i, k := range expired {
		keys[i] = k.rowKey
		if byUID[k.uid] == nil {
			byUID[k.uid] = []any{t, r.idle()}
			order = append(order, k.uid)
		}
		byUID[k.uid] = append(byUID[k.uid], id8(k.id))
	}
	ops := make([]pipeOp, len(order))
	ptrs := make([]*pipeOp, len(order))
	for i, uid := range order {
		ops[i] = pipeOp{kind: pipeScript, script: scriptExpire, key: r.k.user(uid), args: byUID[uid]}
		ptrs[i] = &ops[i]
	}
	if err := r.pipe.do(ctx, ptrs...); err != nil {
		return 0, false, err
	}
	type drop struct {
		uid    string
		app    uint32
		parked int64
	}
	var inRedis []drop
	for i := range ops {
		l, err := ops[i].list()
		if err != nil {
			return 0, false, err // MySQL keeps the rows: the next sweep retries
		}
		for j := 0; j+1 < len(l); j += 2 {
			inRedis = append(inRedis, drop{order[i], uint32(asInt(l[j])), asInt(l[j+1])})
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, r.o.WriteTimeout)
	defer dcancel()
	// The counts follow MySQL: the delete and its count changes are one
	// step for the reconcile's cut. When every row read went, the rows
	// themselves say what went (users Redis lost included); when some
	// were re-saved meanwhile, Redis's drops are the best guess, and the
	// next reconcile repairs the difference.
	r.dur.commitMu.RLock()
	defer r.dur.commitMu.RUnlock()
	n, err = r.dur.deleteExpiredInbox(dctx, keys, t)
	if err == nil {
		r.expireStatus(ctx, expired)
	}
	switch {
	case err == nil && n == len(expired):
		for _, e := range expired {
			r.cnt.add(e.uid, appField(e.app), -1)
			if e.parked {
				r.cnt.add(e.uid, fieldParked, -1)
			}
		}
	case err == nil:
		for _, d := range inRedis {
			r.cnt.add(d.uid, appField(d.app), -1)
			r.cnt.add(d.uid, fieldParked, -d.parked)
		}
	}
	return n, len(keys) == sweepChunk && err == nil, mysqlErr(err)
}

// sweepBroadcasts drops the expired broadcasts from Redis, the cache and
// MySQL (with the previous version's ACK rows of them), and returns how
// many MySQL held. Cursors need nothing: each forgets a broadcast no
// longer live the next time it is written.
func (r *RedisStore) sweepBroadcasts(ctx context.Context, t int64) (int, error) {
	res, err := scriptBroadcastExpire.Run(ctx, r.rc, []string{r.k.broadcasts(), r.k.broadcastSeqs()}, t).Result()
	if err != nil {
		return 0, redisErr(err)
	}
	l, err := replyList(res)
	if err != nil || len(l) == 0 {
		return 0, cmpErr(nil, err)
	}
	var ids []uint64
	for _, v := range l[1:] {
		if id, ok := parseID8(asString(v)); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		r.bc.drop(ids...)
		r.bc.advance(asInt(l[0]))
		status := make([]*pipeOp, len(ids))
		for i, id := range ids {
			status[i] = r.statusStep(id, "X", "", 0)
		}
		if err := r.pipe.do(ctx, status...); err != nil {
			r.log.Debug("saver: delivery status of expired broadcasts", "err", err)
		}
		r.logStatus(status...)
	}
	n, err := r.dur.expireBroadcasts(ctx, t, sweepChunk, r.forgetBroadcast)
	if err == nil {
		if _, lerr := r.sweepCursorLog(ctx, t); lerr != nil {
			r.log.Debug("saver: broadcast cursor log sweep", "err", lerr)
		}
	}
	if err == nil && r.dur.backsLeft.Load() {
		left, herr := r.dur.hasBacks(ctx)
		if herr == nil && !left {
			r.dur.backsLeft.Store(false)
			r.log.Info("saver: the previous version's broadcast_ack table is empty; reloads no longer read it")
		}
	}
	return n, mysqlErr(err)
}

// forgetBroadcast drops the previous version's records users keep of an
// expired broadcast (its ACK rows in MySQL say who has one; records of
// loads alone, which MySQL does not keep, go when the hash is next read
// whole), so that a new broadcast reusing the id finds none.
func (r *RedisStore) forgetBroadcast(ctx context.Context, bid uint64, uids []string) error {
	pipe := r.rc.Pipeline()
	f := "b" + id8(bid)
	for _, uid := range uids {
		pipe.HDel(ctx, r.k.user(uid), f)
	}
	_, err := pipe.Exec(ctx)
	return redisErr(err)
}

// mysqlErr marks a failed MySQL read or sweep as the dependency being
// unavailable (center answers 503, the sweeper retries next period).
func mysqlErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("mysql: %w", redisErr(err))
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
