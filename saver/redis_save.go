package saver

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

func (r *RedisStore) idle() int64 { return int64(r.o.IdleTTL / time.Second) }

func refused(op string) error {
	metricDurableRefused.WithLabelValues(op).Inc()
	return fmt.Errorf("durable queue full (mysql down?): %w", push.ErrUnavailable)
}

// Save implements Store.
func (r *RedisStore) Save(ctx context.Context, msg push.Message, uids []string) error {
	if err := checkMessage(&msg, false); err != nil {
		return fmt.Errorf("saver save: %w", err)
	}
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return fmt.Errorf("saver save %d: %w", msg.ID, err)
		}
	}
	if !r.enter() {
		return fmt.Errorf("saver save %d: %w", msg.ID, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver save %d: %w", msg.ID, err)
	}
	if len(uids) == 0 {
		return nil
	}
	if !r.dur.reserve(len(uids), false) {
		return fmt.Errorf("saver save %d: %w", msg.ID, refused(opSave))
	}
	m := msg
	m.Payload = slices.Clone(msg.Payload) // the queue keeps it until MySQL has it
	args := []any{id8(m.ID), string(appendValue(nil, &m)), strconv.FormatInt(m.Expire, 10), time.Now().Unix(), r.idle()}
	ops := make([]pipeOp, len(uids))
	ptrs := make([]*pipeOp, len(uids), len(uids)+1)
	for i, uid := range uids {
		ops[i] = pipeOp{kind: pipeScript, script: scriptSave, key: r.k.user(uid), args: args}
		ptrs[i] = &ops[i]
	}
	status := r.statusStep(m.ID, "s", "", 0, uids...) // delivery status, same round trip
	steps := ptrs
	if st, su, ok := impliedStatus(&m, uids); ok {
		// The record, in the same round trip; pipelined ops may run in any
		// order, which scriptStatusOpenStored allows for.
		open, idx := r.openOps(st, su)
		open.script = scriptStatusOpenStored
		steps = append([]*pipeOp{open, idx}, ptrs...)
		defer r.logStatus(open, idx)
	}
	cerr := r.pipe.do(ctx, append(steps, status)...)
	r.logStatus(status)

	var firstErr error
	var over []string
	rows := make([]drow, 0, len(uids))
	for i := range ops {
		op, uid := &ops[i], uids[i]
		l, err := op.list()
		if err != nil || len(l) < 2 {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		cd := cdelta{app: m.App, pend: 1}
		if old := asInt(l[0]); old < 0 {
			r.saved.Add(1)
		} else if uint32(old) == m.App {
			cd.pend = 0 // replaced: no change
		} else {
			cd.app2, cd.pend2 = uint32(old), -1
		}
		rows = append(rows, drow{op: dUpsert, uid: uid, id: m.ID, msg: &m, cd: cd})
		if c := r.lim.InboxCap; c > 0 && asInt(l[1]) > int64(c) && !slices.Contains(over, uid) {
			over = append(over, uid)
		}
	}
	r.dur.release(len(uids) - len(rows))
	tickets := r.dur.enqueue(rows, false)
	for _, uid := range over {
		if err := r.trim(context.WithoutCancel(ctx), uid); err != nil {
			r.log.Debug("saver: inbox trim failed; the next save retries", "uid", truncate(uid), "err", err)
		}
	}
	switch {
	case cerr != nil:
		return fmt.Errorf("saver save %d: %w", m.ID, cerr)
	case firstErr != nil:
		return fmt.Errorf("saver save %d: %w", m.ID, firstErr)
	}
	if err := r.awaitDurable(ctx, tickets); err != nil {
		return fmt.Errorf("saver save %d: %w", m.ID, err)
	}
	return nil
}

// awaitDurable waits for a save's MySQL commit as SyncWait says.
func (r *RedisStore) awaitDurable(ctx context.Context, tickets []ticket) error {
	if r.o.SyncWait < 0 {
		return nil
	}
	return r.dur.await(ctx, tickets, true, r.o.SyncWait)
}

// list is a script op's reply as a list, or its error classified.
func (op *pipeOp) list() ([]any, error) {
	if op.err != nil {
		return nil, redisErr(op.err)
	}
	return replyList(op.res)
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	if err == nil {
		return fmt.Errorf("short script reply: %w", ErrCorrupt)
	}
	return err
}

// trim drops uid's oldest entries until the inbox is back to InboxCap. The
// oldest are found from the field names (HKEYS), then dropped by a script
// that rechecks the count, so concurrent saves and ACKs never make it drop
// too many.
func (r *RedisStore) trim(ctx context.Context, uid string) error {
	c := r.lim.InboxCap
	key := r.k.user(uid)
	for range 3 {
		keys := &pipeOp{kind: pipeHKeys, key: key}
		if err := r.pipe.do(ctx, keys); err != nil || keys.err != nil {
			return redisErr(cmpErrNil(err, keys.err))
		}
		var ids []uint64
		for _, f := range keys.keys {
			if len(f) == 9 && f[0] == 'm' {
				id, _ := parseID8(f[1:])
				ids = append(ids, id)
			}
		}
		if len(ids) <= c {
			return nil
		}
		slices.Sort(ids)
		args := []any{c, time.Now().Unix(), r.idle()}
		for _, id := range ids[:len(ids)-c] {
			args = append(args, id8(id))
		}
		op := &pipeOp{kind: pipeScript, script: scriptTrim, key: key, args: args}
		if err := r.pipe.do(ctx, op); err != nil {
			return err
		}
		l, err := op.list()
		if err != nil || len(l) < 1 {
			return cmpErr(nil, err)
		}
		var rows []drow
		for i := 1; i+2 < len(l); i += 3 {
			id, _ := parseID8(asString(l[i]))
			rows = append(rows, drow{op: dDelete, uid: uid, id: id,
				cd: cdelta{app: uint32(asInt(l[i+1])), pend: -1, park: -int8(asInt(l[i+2]))}})
		}
		metricInboxDropped.Add(float64(len(rows)))
		r.dur.enqueue(rows, true)
		if asInt(l[0]) <= int64(c) {
			return nil
		}
	}
	return nil
}

func cmpErrNil(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// SaveBroadcast implements Store.
func (r *RedisStore) SaveBroadcast(ctx context.Context, msg push.Message) error {
	if err := checkMessage(&msg, true); err != nil {
		return fmt.Errorf("saver save broadcast: %w", err)
	}
	if !r.enter() {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, err)
	}
	if !r.dur.reserve(1, false) {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, refused(opSaveBroadcast))
	}
	m := msg
	m.Broadcast = true
	m.Payload = slices.Clone(msg.Payload) // the cache and the queue keep it
	op := &pipeOp{kind: pipeScript, script: scriptBroadcastSave, key: r.k.broadcasts(), key2: r.k.broadcastSeqs(),
		args: []any{id8(m.ID), string(appendValue(nil, &m)), seqString(r.bc.maxSeq() + 1), time.Now().Unix()}}
	status := r.statusStep(m.ID, "b", "", 0) // delivery status, same round trip
	err := r.pipe.do(ctx, op, status)
	r.logStatus(status)
	var l []any
	if err == nil {
		l, err = op.list()
	}
	if err == nil && len(l) < 3 {
		err = cmpErr(nil, nil)
	}
	if err != nil {
		r.dur.release(1)
		return fmt.Errorf("saver save broadcast %d: %w", m.ID, err)
	}
	seq, _ := strconv.ParseUint(asString(l[1]), 10, 64)
	prev, _ := strconv.ParseUint(asString(l[2]), 10, 64)
	r.bc.putSeq(m, seq)
	r.bc.extend(prev, seq)
	r.bc.advance(asInt(l[0]))
	tickets := r.dur.enqueue([]drow{{op: dBroadcast, id: m.ID, seq: seq, msg: &m}}, false)
	if err := r.awaitDurable(ctx, tickets); err != nil {
		return fmt.Errorf("saver save broadcast %d: %w", m.ID, err)
	}
	return nil
}
