package saver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Load implements Store: one HGETALL of the user's hash (after a reload
// from MySQL if the hash is not of the current epoch), filtering and
// ordering here rather than in Redis, then one script that counts the
// loads of what is returned.
func (r *RedisStore) Load(ctx context.Context, uid string, apps []uint32, limit int) ([]push.Message, error) {
	if err := checkUID(uid); err != nil {
		return nil, fmt.Errorf("saver load: %w", err)
	}
	if !r.enter() {
		return nil, fmt.Errorf("saver load %s: %w", uid, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	if len(apps) == 0 {
		return nil, nil
	}
	limit = loadLimit(limit)
	h, err := r.userHash(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	now := time.Now().Unix()
	var uni []push.Message
	for _, m := range h.entries {
		if len(uni) == limit {
			break
		}
		if !h.parked[m.ID] && hasApp(apps, m.App) && !m.Expired(now) {
			uni = append(uni, m)
		}
	}
	bc := r.bc.live(apps, now)
	kept := bc[:0]
	for _, m := range bc {
		if b, ok := h.backs[m.ID]; !ok || !b.done() {
			kept = append(kept, m)
		}
	}
	out := mergeByID(uni, kept, limit)
	if err := r.mark(ctx, uid, out, h.backs, now); err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	return out, nil
}

// mark counts one load of each returned message (parking those that reach
// MaxLoads) and drops the user's records of expired broadcasts.
func (r *RedisStore) mark(ctx context.Context, uid string, out []push.Message, backs map[uint64]bstate, now int64) error {
	max := r.lim.MaxLoads
	args := []any{max, now, r.idle()}
	if max > 0 {
		for _, m := range out {
			if m.Broadcast {
				args = append(args, "b", id8(m.ID), strconv.FormatInt(m.Expire, 10))
			} else {
				args = append(args, "u", id8(m.ID), "")
			}
		}
	}
	for id, b := range backs {
		if b.expire != 0 && b.expire <= now {
			args = append(args, "x", id8(id), "")
		}
	}
	if len(args) == 3 {
		return nil
	}
	op := &pipeOp{kind: pipeScript, script: scriptMark, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, op); err != nil {
		return err
	}
	l, err := op.list()
	if err != nil {
		return err
	}
	var rows []drow
	var status []*pipeOp
	for _, v := range l {
		s := asString(v)
		id, ok := parseID8(s[min(1, len(s)):])
		if !ok {
			continue
		}
		if s[0] == 'u' {
			rows = append(rows, drow{op: dPark, uid: uid, id: id, cd: cdelta{park: 1}})
			metricParkedUnicast.Inc()
			status = append(status, r.statusStep(id, "p", "", 0, uid))
		} else {
			rows = append(rows, drow{op: dBack, state: backParked, uid: uid, id: id})
			metricParkedBroadcast.Inc()
			status = append(status, r.statusStep(id, "P", "", 1))
		}
	}
	r.dur.enqueue(rows, true)
	// Delivery status of what was parked: parking is rare, so one more
	// pipelined step here costs little.
	if err := r.pipe.do(ctx, status...); err != nil {
		r.log.Debug("saver: delivery status of parked messages", "err", err)
	}
	r.logStatus(status...)
	return nil
}

// userHash reads uid's hash, reloading it from MySQL first when it is not
// of the current epoch. A reload that fails (MySQL down) is not an error:
// the user gets what Redis has now, and the reload is tried again on its
// next call.
func (r *RedisStore) userHash(ctx context.Context, uid string) (userHash, error) {
	h, err := r.readHash(ctx, uid)
	if err != nil {
		return h, err
	}
	ep := *r.epoch.Load()
	if h.epoch == ep {
		return h, nil
	}
	if err := r.reload(ctx, uid, ep); err != nil {
		metricReloads.WithLabelValues("failed").Inc()
		r.log.Debug("saver: reload from mysql failed; serving redis as it is", "uid", truncate(uid), "err", err)
		return h, nil
	}
	metricReloads.WithLabelValues("ok").Inc()
	return r.readHash(ctx, uid)
}

func (r *RedisStore) readHash(ctx context.Context, uid string) (userHash, error) {
	op := &pipeOp{kind: pipeHGetAll, key: r.k.user(uid)}
	if err := r.pipe.do(ctx, op); err != nil {
		return userHash{}, err
	}
	if op.err != nil {
		return userHash{}, redisErr(op.err)
	}
	h, corrupt := parseUserHash(op.hash)
	if corrupt > 0 {
		r.log.Warn("saver: corrupt fields in a user hash skipped", "uid", truncate(uid), "count", corrupt)
	}
	return h, nil
}

// reload merges what MySQL holds for uid into its hash and stamps the hash
// with epoch ep. Rows this process still has queued for uid (ACKs above
// all) are written first, so the reload does not bring back what was
// just ACKed.
func (r *RedisStore) reload(ctx context.Context, uid, ep string) error {
	if r.dur.down() {
		return errDurableDown // no login waits for a read that will time out
	}
	if err := r.dur.barrierUID(ctx, uid); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.ReadTimeout)
	defer cancel()
	now := time.Now().Unix()
	entries, err := r.dur.loadInbox(rctx, uid, now, r.lim.InboxCap)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	backs, err := r.dur.loadBacks(rctx, uid, now)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	args := make([]any, 0, 4+3*len(entries)+2*len(backs))
	args = append(args, ep, now, r.idle(), len(entries))
	for i := range entries {
		e := &entries[i]
		args = append(args, id8(e.msg.ID), string(appendValue(nil, &e.msg)), boolDigit(e.parked))
	}
	for _, b := range backs {
		state := "a:"
		if b.state == backParked {
			state = "p:"
		}
		args = append(args, id8(b.bid), state+strconv.FormatInt(b.expire, 10))
	}
	op := &pipeOp{kind: pipeScript, script: scriptReload, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, op); err != nil {
		return err
	}
	l, err := op.list()
	if err != nil || len(l) < 1 {
		return cmpErr(nil, err)
	}
	// The counts follow MySQL, which holds these entries already: a
	// reload changes what Redis has, not what the store holds.
	added := (len(l) - 1) / 2
	metricRecovered.Add(float64(added))
	if added > 0 {
		r.log.Debug("saver: inbox reloaded from mysql", "uid", truncate(uid), "entries", added)
	}
	if c := r.lim.InboxCap; c > 0 && asInt(l[0]) > int64(c) {
		return r.trim(ctx, uid)
	}
	return nil
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
