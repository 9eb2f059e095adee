package saver

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// refreshOnAckEvery bounds how often an ACK of an id this process does not
// know makes it re-read the broadcasts (another saver may have just stored
// it), so a client sending junk ids costs one small read per interval.
const refreshOnAckEvery = 100 * time.Millisecond

// Ack implements Store: one script deletes the entries of apps from the
// user's hash and records the broadcast ACKs of apps; the MySQL rows follow
// through the queue. Ids that take no effect (unknown, other apps') queue
// nothing and, on a hash of the current epoch, write nothing to Redis.
//
// A hash not of the current epoch (Redis lost data since the user was last
// filled) may lack entries MySQL holds. Its unknown ids are not taken as
// unknown at once: the user is first reloaded from MySQL (two indexed
// reads, once per user and epoch: the hash is then current) and the ids
// are ACKed again, so the deletes are queued only for entries that exist.
// Only when the reload cannot be done (MySQL down) does the ACK queue, for
// each unknown id, a MySQL delete restricted to apps (a row per id, to be
// written when MySQL is back) and leave tombstones for a reload to respect.
func (r *RedisStore) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
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
	if len(apps) == 0 || len(ids) == 0 {
		return 0, nil
	}
	if !r.dur.reserve(len(ids), true) {
		return 0, fmt.Errorf("saver ack %s: %w", uid, refused(opAck))
	}
	set := appSet(apps)
	tomb := r.dur.down() // no reload possible: tombstone unknown ids at once
	// Delivery status of the unicast ids, in the same round trip as the
	// ACK (broadcast ACKs are counted from its result: ackOnce).
	var status []*pipeOp
	for _, id := range ids {
		if _, bcast := r.bc.get(id); !bcast {
			status = append(status, r.statusStep(id, "a", set, 0, uid))
		}
	}
	res, err := r.ackOnce(ctx, uid, set, apps, ids, tomb, status...)
	r.logStatus(status...)
	if err == nil && len(res.unknown) > 0 && r.refreshForAck(ctx) {
		var known, still []uint64
		for _, id := range res.unknown {
			if _, ok := r.bc.get(id); ok {
				known = append(known, id)
			} else {
				still = append(still, id)
			}
		}
		if len(known) > 0 {
			again, err2 := r.ackOnce(ctx, uid, set, apps, known, tomb)
			res.n += again.n
			res.rows = append(res.rows, again.rows...)
			res.unknown = append(still, again.unknown...)
			err = err2
		}
	}
	if err == nil && !res.fresh && len(res.unknown) > 0 {
		if !tomb {
			if rerr := r.reload(ctx, uid, *r.epoch.Load()); rerr != nil {
				metricReloads.WithLabelValues("failed").Inc()
				r.log.Debug("saver: reload for an ack failed", "uid", truncate(uid), "err", rerr)
				tomb = true
			} else {
				metricReloads.WithLabelValues("ok").Inc()
			}
			again, err2 := r.ackOnce(ctx, uid, set, apps, res.unknown, tomb)
			res.n += again.n
			res.rows = append(res.rows, again.rows...)
			res.unknown, res.fresh = again.unknown, again.fresh
			err = err2
		}
		if err == nil && !res.fresh && len(res.unknown) > 0 {
			// Still not reloaded: MySQL may hold entries Redis does not,
			// so delete the ids there, but only entries of apps.
			own := slices.Clone(apps)
			for _, id := range res.unknown {
				res.rows = append(res.rows, drow{op: dDeleteIn, uid: uid, id: id, apps: own})
			}
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

// appSet is apps as scriptAck takes them: ",1,2,".
func appSet(apps []uint32) string {
	b := make([]byte, 0, 1+6*len(apps))
	b = append(b, ',')
	for _, a := range apps {
		b = strconv.AppendUint(b, uint64(a), 10)
		b = append(b, ',')
	}
	return string(b)
}

type ackResult struct {
	n       int
	fresh   bool // the hash carries the current epoch
	rows    []drow
	unknown []uint64 // ids that took no effect and are no known broadcast or other app's entry
}

// ackOnce runs scriptAck for ids on behalf of apps (set: appSet(apps)); a
// known broadcast of another app is left out of the call.
func (r *RedisStore) ackOnce(ctx context.Context, uid, set string, apps []uint32, ids []uint64, tomb bool, extra ...*pipeOp) (ackResult, error) {
	args := make([]any, 0, 5+2*len(ids))
	args = append(args, *r.epoch.Load(), time.Now().Unix(), r.idle(), set, boolDigit(tomb))
	for _, id := range ids {
		exp := ""
		if m, ok := r.bc.get(id); ok {
			if !hasApp(apps, m.App) {
				continue // another app's broadcast: as if unknown
			}
			exp = strconv.FormatInt(m.Expire, 10)
		}
		args = append(args, id8(id), exp)
	}
	if len(args) == 5 {
		return ackResult{fresh: true}, nil // only other apps' broadcasts
	}
	op := &pipeOp{kind: pipeScript, script: scriptAck, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, append([]*pipeOp{op}, extra...)...); err != nil {
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
		switch s[0] {
		case 'u':
			res.n++
			res.rows = append(res.rows, drow{op: dDelete, uid: uid, id: id,
				cd: cdelta{app: uint32(asInt(l[i+1])), pend: -1, park: -int8(asInt(l[i+2]))}})
			r.acked.Add(1)
		case 'b':
			res.n++
			res.rows = append(res.rows, drow{op: dBack, state: backAcked, uid: uid, id: id})
			r.sacc.add(id, 1) // delivery status, sent every CounterEvery
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
