package saver

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// Delivery status in RedisStore: Redis only, no MySQL copy (docs/storage.md
// says why). Per message, with the id's hash tag (one slot in a Cluster):
//
//	P s{id}     HASH app, kind, created, expires, targets, stored, sent,
//	            acked, expired, parked
//	P s{id}:u   HASH uid -> state byte (status.go), only the uids given to
//	            OpenStatus
//	P {status}  ZSET id by drop time (Expires + StatusGrace): Expire drops
//	            the records it lists up to now
//
// Both hashes carry EXPIREAT = Expires + StatusGrace, so Redis drops them
// by itself too. Counters move inside scriptStatusStep, which changes
// nothing when the record does not exist (an HINCRBY alone would create a
// key without TTL). The step of an operation rides in the same pipe.do as
// the operation's own scripts (Save, SaveBroadcast, Ack, AddSent: no round
// trip added); what depends on another script's result (a Load that
// parked, the expiry sweep) takes one more pipelined step, and the
// broadcast ACKs that took effect are summed here and sent every
// CounterEvery (and before a Status read).

// scriptStatusOpen creates a record unless it exists. KEYS: record, uid
// states. ARGV: app, kind, created, expires, targets, drop, uid...
var scriptStatusOpen = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'app', ARGV[1], 'kind', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4],
  'targets', ARGV[5], 'stored', 0, 'sent', 0, 'acked', 0, 'expired', 0, 'parked', 0)
redis.call('EXPIREAT', KEYS[1], ARGV[6])
if #ARGV > 6 then
  local args = {}
  for i = 7, #ARGV do
    args[#args+1] = ARGV[i]; args[#args+1] = 'u'
    if #args >= 1000 then redis.call('HSET', KEYS[2], unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', KEYS[2], unpack(args)) end
  redis.call('EXPIREAT', KEYS[2], ARGV[6])
end
return 1
`)

// scriptStatusOpenStored is scriptStatusOpen for the record Save opens: its
// uids start stored (state 's', stored = their number). Pipelined beside
// Save's own status step in any order, it counts each uid once: whichever
// runs second finds the uid stored already, or no record.
var scriptStatusOpenStored = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'app', ARGV[1], 'kind', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4],
  'targets', ARGV[5], 'stored', #ARGV - 6, 'sent', 0, 'acked', 0, 'expired', 0, 'parked', 0)
redis.call('EXPIREAT', KEYS[1], ARGV[6])
local args = {}
for i = 7, #ARGV do
  args[#args+1] = ARGV[i]; args[#args+1] = 's'
  if #args >= 1000 then redis.call('HSET', KEYS[2], unpack(args)); args = {} end
end
if #args > 0 then redis.call('HSET', KEYS[2], unpack(args)) end
redis.call('EXPIREAT', KEYS[2], ARGV[6])
return 1
`)

// scriptStatusIndex lists a record in the index. KEYS: index. ARGV: drop, id.
var scriptStatusIndex = redis.NewScript(`return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])`)

// scriptStatusStep applies one event to a record. KEYS: record, uid states.
// ARGV: event, apps (",1,2,": the record's app must be one of them; "":
// no check), n, uid... Events: 's' stored, 't' sent (sent += n), 'a'
// acked, 'p' parked, 'x' expired (per uid, by the state machine of
// status.go); for a broadcast record 'b' stored = 1, 'B' acked += n, 'P'
// parked += n, 'X' expired = 1. Returns the uids counted.
var scriptStatusStep = redis.NewScript(`
local k, ku = KEYS[1], KEYS[2]
local kind = redis.call('HGET', k, 'kind')
if not kind then return 0 end
local ev, apps, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
if apps ~= '' and not string.find(apps, ',' .. (redis.call('HGET', k, 'app') or '') .. ',', 1, true) then return 0 end
if ev == 't' and n > 0 then redis.call('HINCRBY', k, 'sent', n) end
if kind == 'broadcast' then
  if ev == 'b' then redis.call('HSET', k, 'stored', 1)
  elseif ev == 'B' then redis.call('HINCRBY', k, 'acked', n)
  elseif ev == 'P' then redis.call('HINCRBY', k, 'parked', n)
  elseif ev == 'X' then redis.call('HSET', k, 'expired', 1) end
  return 0
end
local field = ({s='stored', a='acked', p='parked', x='expired'})[ev]
local c = 0
for i = 4, #ARGV do
  local u = ARGV[i]
  local cur = redis.call('HGET', ku, u)
  if cur then
    local nx = nil
    if ev == 's' then
      if cur == 'u' then nx = 's' elseif cur == 'T' then nx = 't' end
    elseif ev == 't' then
      if cur == 'u' then redis.call('HSET', ku, u, 'T') elseif cur == 's' then redis.call('HSET', ku, u, 't') end
    elseif ev == 'a' then
      if cur == 's' or cur == 't' or cur == 'p' then nx = 'a' end
    elseif ev == 'p' then
      if cur ~= 'a' and cur ~= 'x' and cur ~= 'p' then nx = 'p' end
    elseif ev == 'x' then
      if cur ~= 'a' and cur ~= 'x' then nx = 'x' end
    end
    if nx then redis.call('HSET', ku, u, nx); c = c + 1 end
  end
end
if c > 0 and field then redis.call('HINCRBY', k, field, c) end
return c
`)

// scriptStatusUser reads a record and one uid's state. KEYS: record, uid
// states. ARGV: uid. Returns {HGETALL of the record..., state or ""}.
var scriptStatusUser = redis.NewScript(`
local out = redis.call('HGETALL', KEYS[1])
if #out == 0 then return out end
out[#out+1] = '_state'
out[#out+1] = redis.call('HGET', KEYS[2], ARGV[1]) or ''
return out
`)

// statusStep is the pipe op of one scriptStatusStep call.
func (r *RedisStore) statusStep(id uint64, ev, apps string, n int64, uids ...string) *pipeOp {
	args := make([]any, 0, 3+len(uids))
	args = append(args, ev, apps, n)
	for _, u := range uids {
		args = append(args, u)
	}
	return &pipeOp{kind: pipeScript, script: scriptStatusStep, key: r.k.status(id), key2: r.k.statusUsers(id), args: args}
}

// logStatus reports failed status steps; the operation they rode with
// does not fail for them.
func (r *RedisStore) logStatus(ops ...*pipeOp) {
	for _, op := range ops {
		if op != nil && op.err != nil {
			r.log.Debug("saver: delivery status update failed", "key", op.key, "err", op.err)
			return
		}
	}
}

// statusAcc sums the broadcast ACKs that took effect, per broadcast id,
// until the next flush.
type statusAcc struct {
	mu sync.Mutex
	m  map[uint64]int64
}

func (a *statusAcc) add(id uint64, n int64) {
	a.mu.Lock()
	if a.m == nil {
		a.m = map[uint64]int64{}
	}
	a.m[id] += n
	a.mu.Unlock()
}

// flushStatus sends the summed broadcast ACKs; failed ones are kept.
func (r *RedisStore) flushStatus(ctx context.Context) error {
	a := &r.sacc
	a.mu.Lock()
	taken := a.m
	a.m = nil
	a.mu.Unlock()
	if len(taken) == 0 {
		return nil
	}
	ops := make([]*pipeOp, 0, len(taken))
	ids := make([]uint64, 0, len(taken))
	for id, n := range taken {
		ops = append(ops, r.statusStep(id, "B", "", n))
		ids = append(ids, id)
	}
	err := r.pipe.do(ctx, ops...)
	for i, op := range ops {
		if op.err != nil {
			a.add(ids[i], taken[ids[i]])
			err = cmpErrNil(err, redisErr(op.err))
		}
	}
	return err
}

// OpenStatus implements Store: one script creates the record (and the
// per-uid states), pipelined with its index entry.
func (r *RedisStore) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	st, uids, err := checkStatus(st, uids)
	if err != nil {
		return fmt.Errorf("saver open status: %w", err)
	}
	if !r.enter() {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, err)
	}
	open, idx := r.openOps(st, uids)
	if err := r.pipe.do(ctx, open, idx); err != nil {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, err)
	}
	if err := cmpErrNil(open.err, idx.err); err != nil {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, redisErr(err))
	}
	return nil
}

// openOps are the two pipelined steps that create st's record unless it
// exists (OpenStatus, and Save for a message without one).
func (r *RedisStore) openOps(st push.MessageStatus, uids []string) (open, idx *pipeOp) {
	drop := statusDrop(st.Expires)
	args := make([]any, 0, 6+len(uids))
	args = append(args, st.App, st.Kind, st.Created, st.Expires, st.Targets, drop)
	for _, u := range uids {
		args = append(args, u)
	}
	open = &pipeOp{kind: pipeScript, script: scriptStatusOpen, key: r.k.status(st.MsgID), key2: r.k.statusUsers(st.MsgID), args: args}
	idx = &pipeOp{kind: pipeScript, script: scriptStatusIndex, key: r.k.statusIndex(), args: []any{drop, strconv.FormatUint(st.MsgID, 10)}}
	return open, idx
}

// AddSent implements Store: one script per message of the batch, all in
// one pipe.do.
func (r *RedisStore) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	if err := checkDeltas(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if err := checkDeltaTargets(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if len(deltas) == 0 {
		return nil
	}
	if !r.enter() {
		return fmt.Errorf("saver add sent: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	type key struct {
		id  uint64
		app uint32
	}
	type group struct {
		n, targets int64
		uids       []string
	}
	groups := map[key]*group{}
	var order []key
	for _, d := range deltas {
		k := key{d.MsgID, d.App}
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.n += d.Sent
		g.targets += d.Targets
		if d.UID != "" {
			g.uids = append(g.uids, d.UID)
		}
	}
	ops := make([]*pipeOp, len(order), len(order)+1)
	for i, k := range order {
		g := groups[k]
		ops[i] = r.statusStep(k.id, "t", ","+strconv.FormatUint(uint64(k.app), 10)+",", g.n, g.uids...)
		if g.targets > 0 { // a broadcast's job targets (redis_jobs.go)
			ops = append(ops, &pipeOp{kind: pipeScript, script: scriptStatusTargets, key: r.k.status(k.id), args: []any{k.app, g.targets}})
		}
	}
	if err := r.pipe.do(ctx, ops...); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	for _, op := range ops {
		if op.err != nil {
			return fmt.Errorf("saver add sent: %w", redisErr(op.err))
		}
	}
	return nil
}

// Status implements Store: one HGETALL, after sending this process's
// summed broadcast ACKs (other savers' arrive within CounterEvery).
func (r *RedisStore) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	if !r.enter() {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, ErrClosed)
	}
	defer r.calls.Done()
	if err := r.flushStatus(ctx); err != nil {
		r.log.Debug("saver: delivery status flush failed", "err", err)
	}
	op := &pipeOp{kind: pipeHGetAll, key: r.k.status(msgID)}
	if err := r.pipe.do(ctx, op); err != nil {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, err)
	}
	if op.err != nil {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, redisErr(op.err))
	}
	st, ok := parseStatusHash(msgID, op.hash)
	if !ok || !ownApp(app, st.App) || !statusLive(&st, time.Now().Unix()) {
		return push.MessageStatus{}, false, nil
	}
	return st, true, nil
}

func parseStatusHash(id uint64, h map[string]string) (push.MessageStatus, bool) {
	kind, ok := h["kind"]
	if !ok || kindCode(kind) < 0 {
		return push.MessageStatus{}, false
	}
	app, ok := parseApp(h["app"])
	if !ok {
		return push.MessageStatus{}, false
	}
	st := push.MessageStatus{MsgID: id, App: app, Kind: kind}
	for f, p := range map[string]*int64{"created": &st.Created, "expires": &st.Expires, "targets": &st.Targets,
		"stored": &st.Stored, "sent": &st.Sent, "acked": &st.Acked, "expired": &st.Expired, "parked": &st.Parked} {
		*p = asInt(h[f])
	}
	return st, true
}

// UserState implements Store: one script reads the record and the uid's
// state, pipelined with a read of the uid's broadcast cursor of the
// message's app (and of its previous-version record b<id8>), which only a
// broadcast uses. A broadcast's state is read from Redis as it is: a user
// hash Redis lost since reads as not ACKed until the user's next Load
// reloads it from MySQL.
func (r *RedisStore) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	if err := checkUID(uid); err != nil {
		return "", fmt.Errorf("saver user state: %w", err)
	}
	if !r.enter() {
		return "", fmt.Errorf("saver user state %d: %w", msgID, ErrClosed)
	}
	defer r.calls.Done()
	mark := r.ackSync.mark()
	rec := &pipeOp{kind: pipeScript, script: scriptStatusUser, key: r.k.status(msgID), key2: r.k.statusUsers(msgID), args: []any{uid}}
	fields := []string{"b" + id8(msgID)}
	bm, known := r.bc.get(msgID)
	seq := r.bc.seq(msgID)
	if known && seq != 0 {
		fields = append(fields, cursorField(bm.App))
	}
	back := &pipeOp{kind: pipeHMGet, key: r.k.user(uid), fields: fields}
	if err := r.pipe.do(ctx, rec, back); err != nil {
		return "", fmt.Errorf("saver user state %d: %w", msgID, err)
	}
	l, err := rec.list()
	if err != nil {
		return "", fmt.Errorf("saver user state %d: %w", msgID, err)
	}
	h := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		h[asString(l[i])] = asString(l[i+1])
	}
	now := time.Now().Unix()
	st, ok := parseStatusHash(msgID, h)
	if !ok || !ownApp(app, st.App) || !statusLive(&st, now) {
		return push.StateUnknown, nil
	}
	if st.Kind != push.KindBroadcast {
		if s := h["_state"]; len(s) == 1 {
			return stateName(s[0]), nil
		}
		return push.StateUnknown, nil
	}
	if back.err != nil {
		return "", fmt.Errorf("saver user state %d: %w", msgID, redisErr(back.err))
	}
	if (!known || seq == 0) && st.Stored > 0 && now < st.Expires && r.refreshForAck(ctx, mark) == nil {
		// Another saver's broadcast this cache did not hold yet: its seq
		// names the cursor position to read.
		if bm, known = r.bc.get(msgID); known {
			if seq = r.bc.seq(msgID); seq != 0 {
				fields = []string{"b" + id8(msgID), cursorField(bm.App)}
				back = &pipeOp{kind: pipeHMGet, key: r.k.user(uid), fields: fields}
				if err := r.pipe.do(ctx, back); err != nil || back.err != nil {
					return "", fmt.Errorf("saver user state %d: %w", msgID, redisErr(cmpErrNil(err, back.err)))
				}
			}
		}
	}
	var bs byte
	curs, legacy, _ := parseCursorFields(fields, back.vals)
	acked, parked := false, false
	if l, ok := legacy[msgID]; ok {
		acked, parked = l.b.acked, l.b.parked // not folded yet
	}
	if c, ok := curs[bm.App]; ok && !acked && !parked && seq != 0 {
		acked, parked = c.c.state(seq)
	}
	switch {
	case acked:
		bs = suAcked
	case parked:
		bs = suParked
	}
	return broadcastState(&st, bs, now), nil
}

// dropStatuses deletes the records the index lists as due by t, in chunks.
func (r *RedisStore) dropStatuses(ctx context.Context, t int64) error {
	for {
		ids, err := r.rc.ZRangeArgs(ctx, redis.ZRangeArgs{Key: r.k.statusIndex(), Start: "-inf", Stop: strconv.FormatInt(t, 10),
			ByScore: true, Count: sweepChunk}).Result()
		if err != nil || len(ids) == 0 {
			return redisErr(err)
		}
		pipe := r.rc.Pipeline()
		members := make([]any, 0, len(ids))
		for _, s := range ids {
			id, err := strconv.ParseUint(s, 10, 64)
			if err == nil {
				pipe.Del(ctx, r.k.status(id), r.k.statusUsers(id))
			}
			members = append(members, s)
		}
		pipe.ZRem(ctx, r.k.statusIndex(), members...)
		if _, err := pipe.Exec(ctx); err != nil {
			return redisErr(err)
		}
		if len(ids) < sweepChunk {
			return nil
		}
	}
}

// expireStatus counts the expired entries the sweep deleted in their
// messages' records: one step per message, pipelined.
func (r *RedisStore) expireStatus(ctx context.Context, rows []expiredRow) {
	byID := map[uint64][]string{}
	var order []uint64
	for _, e := range rows {
		if byID[e.id] == nil {
			order = append(order, e.id)
		}
		byID[e.id] = append(byID[e.id], e.uid)
	}
	ops := make([]*pipeOp, len(order))
	for i, id := range order {
		ops[i] = r.statusStep(id, "x", "", 0, byID[id]...)
	}
	if err := r.pipe.do(ctx, ops...); err != nil {
		r.log.Debug("saver: delivery status of expired entries", "err", err)
	}
	r.logStatus(ops...)
}
