package saver

import (
	"context"
	"fmt"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Load implements Store: one HGETALL of the user's hash (after a reload
// from MySQL if the hash is not of the current epoch), filtering and
// ordering here rather than in Redis, then one script that counts the
// loads of what is returned and writes the broadcast cursors (a
// compare-and-set: when another call changed them meanwhile, the Load
// starts again from the read).
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
	for try := range casRetries {
		if err := casBackoff(ctx, try); err != nil {
			return nil, fmt.Errorf("saver load %s: %w", uid, err)
		}
		h, err := r.userHash(ctx, uid)
		if err != nil {
			return nil, fmt.Errorf("saver load %s: %w", uid, err)
		}
		out, done, err := r.loadOnce(ctx, uid, apps, limit, &h)
		if err != nil {
			return nil, fmt.Errorf("saver load %s: %w", uid, err)
		}
		if done {
			return out, nil
		}
	}
	return nil, fmt.Errorf("saver load %s: %w", uid, errCursorBusy)
}

// errCursorBusy: a user's cursors kept changing under one call (many
// concurrent calls for one uid); the caller tries again later.
var errCursorBusy = fmt.Errorf("broadcast cursors changed %d times in one call: %w", casRetries, push.ErrUnavailable)

// loadOnce is one Load from the hash read; done false means the cursors
// changed since the read and nothing was written.
func (r *RedisStore) loadOnce(ctx context.Context, uid string, apps []uint32, limit int, h *userHash) ([]push.Message, bool, error) {
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
	p := newCursorPlan(r, uid, h.curs, h.legacy, now)
	p.foldLegacy()
	bc := r.bc.live(apps, now)
	kept := bc[:0]
	seqs := map[uint64]uint64{}
	for _, m := range bc {
		if seq := r.bc.seq(m.ID); seq != 0 && p.cursor(m.App).wants(seq) {
			kept = append(kept, m)
			seqs[m.ID] = seq
		}
	}
	out := mergeByID(uni, kept, limit)
	var parked []uint64
	if r.lim.MaxLoads > 0 {
		for _, m := range out {
			if m.Broadcast && p.cursor(m.App).load(seqs[m.ID], r.lim.MaxLoads) {
				parked = append(parked, m.ID)
			}
		}
	}
	done, err := r.mark(ctx, uid, out, p, parked, now)
	if err != nil || !done {
		return nil, done, err
	}
	return out, true, nil
}

// mark counts one load of each returned unicast entry (parking those that
// reach MaxLoads) and writes the cursors p computed (which count the
// broadcasts' loads), if they are still as read.
func (r *RedisStore) mark(ctx context.Context, uid string, out []push.Message, p *cursorPlan, parkedB []uint64, now int64) (bool, error) {
	max := r.lim.MaxLoads
	cas, rows := p.finish()
	args := []any{max, now, r.idle(), r.keepFor(cas, now), casCount(cas)}
	args = append(args, cas...)
	if max > 0 {
		for _, m := range out {
			if !m.Broadcast {
				args = append(args, id8(m.ID))
			}
		}
	}
	if len(args) == 5 {
		return true, nil
	}
	op := &pipeOp{kind: pipeScript, script: scriptMark, key: r.k.user(uid), args: args}
	if err := r.pipe.do(ctx, op); err != nil {
		return false, err
	}
	l, err := op.list()
	if err != nil || len(l) < 1 {
		return false, cmpErr(nil, err)
	}
	if asInt(l[0]) != 1 {
		return false, nil
	}
	var status []*pipeOp
	for _, v := range l[1:] {
		id, ok := parseID8(asString(v))
		if !ok {
			continue
		}
		rows = append(rows, drow{op: dPark, uid: uid, id: id, cd: cdelta{park: 1}})
		metricParkedUnicast.Inc()
		status = append(status, r.statusStep(id, "p", "", 0, uid))
	}
	for _, id := range parkedB {
		metricParkedBroadcast.Inc()
		status = append(status, r.statusStep(id, "P", "", 1))
	}
	r.dur.enqueue(rows, true)
	// Delivery status of what was parked: parking is rare, so one more
	// pipelined step here costs little.
	if err := r.pipe.do(ctx, status...); err != nil {
		r.log.Debug("saver: delivery status of parked messages", "err", err)
	}
	r.logStatus(status...)
	return true, nil
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
// with epoch ep: the newest InboxCap unexpired entries and the broadcast
// cursors (its broadcast_cursor rows and the cursor log's entries written
// before the epoch began), joined with what the hash has (and with the previous version's
// broadcast_ack rows while that table has any). Rows this process still
// has queued for uid (ACKs above all) are written first, so the reload
// does not bring back what was just ACKed.
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
	curs, err := r.dur.loadCursors(rctx, uid)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	// The caller's context, not the read's: the index is read once for
	// every reload of the epoch, which waits for it (redis_cursorlog.go).
	logged, err := r.loggedCursors(ctx, uid, ep)
	if err != nil {
		return err
	}
	curs = append(curs, logged...)
	var backs []backRow
	if r.dur.backsLeft.Load() {
		if backs, err = r.dur.loadBacks(rctx, uid, now); err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
	}
	args := make([]any, 0, 5+3*len(entries))
	args = append(args, ep, now, r.idle(), 0, len(entries))
	for i := range entries {
		e := &entries[i]
		args = append(args, id8(e.msg.ID), string(appendValue(nil, &e.msg)), boolDigit(e.parked))
	}
	fixed := len(args)
	for try := range casRetries {
		if err := casBackoff(ctx, try); err != nil {
			return err
		}
		h, err := r.readHash(ctx, uid)
		if err != nil {
			return err
		}
		if h.epoch == ep {
			return nil // reloaded by a concurrent call
		}
		p := newCursorPlan(r, uid, h.curs, h.legacy, now)
		for _, c := range curs {
			p.join(c.app, c.ver, c.cur)
		}
		for _, b := range backs {
			p.foldLegacyRow(b)
		}
		p.foldLegacy()
		cas, rows := p.finish()
		args[3] = r.keepFor(cas, now)
		args = append(args[:fixed], casCount(cas))
		args = append(args, cas...)
		op := &pipeOp{kind: pipeScript, script: scriptReload, key: r.k.user(uid), args: args}
		if err := r.pipe.do(ctx, op); err != nil {
			return err
		}
		l, err := op.list()
		if err != nil || len(l) < 2 {
			return cmpErr(nil, err)
		}
		switch asInt(l[0]) {
		case 0:
			continue // a cursor changed since the read
		case 2:
			return nil
		}
		r.dur.enqueue(rows, true)
		r.forgetLogged(uid, ep)
		// The counts follow MySQL, which holds these entries already: a
		// reload changes what Redis has, not what the store holds.
		added := (len(l) - 2) / 2
		metricRecovered.Add(float64(added))
		if added > 0 {
			r.log.Debug("saver: inbox reloaded from mysql", "uid", truncate(uid), "entries", added)
		}
		if c := r.lim.InboxCap; c > 0 && asInt(l[1]) > int64(c) {
			return r.trim(ctx, uid)
		}
		return nil
	}
	return errCursorBusy
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
