package saver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// Send queue journal in RedisStore: Redis only, no MySQL copy (the QoS 1
// messages themselves are in MySQL already; docs/storage.md says why).
// Every key carries the hash tag {sq}, so the scripts that touch several
// keys stay in one slot of a Cluster:
//
//	P {sq}:m        HASH id8 -> entry (squeue.go, appendQueued)
//	P {sq}:w        HASH id8 -> owner
//	P {sq}:o:owner  ZSET id8, score 0: owner's ids, in id order (lexical
//	                order of the 8 big-endian bytes; a float score would
//	                round ids past 2^53)
//	P {sq}:owners   SET of the owners with a non-empty ZSET
//
// Enqueue, Dequeue and Claim are scripts, so an id is always in exactly
// one owner's ZSET; Claim moves at most queueChunk ids per script, each id
// by exactly one script run.

const queueChunk = 1000

// scriptQEnqueue journals one push. KEYS: entries, owners-of, owner set,
// the owner's ZSET. ARGV: id8, entry, owner, owner ZSET key prefix.
var scriptQEnqueue = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= ARGV[3] then
  local ok = ARGV[4] .. old
  redis.call('ZREM', ok, ARGV[1])
  if redis.call('ZCARD', ok) == 0 then redis.call('SREM', KEYS[3], old) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
`)

// scriptQDequeue forgets ids. KEYS: entries, owners-of, owner set. ARGV:
// owner ZSET key prefix, id8...
var scriptQDequeue = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local o = redis.call('HGET', KEYS[2], id)
  if o then
    local ok = ARGV[1] .. o
    redis.call('ZREM', ok, id)
    if redis.call('ZCARD', ok) == 0 then redis.call('SREM', KEYS[3], o) end
    redis.call('HDEL', KEYS[2], id)
    n = n + 1
  end
  redis.call('HDEL', KEYS[1], id)
end
return n
`)

// scriptQClaim moves up to ARGV[2] ids of one owner to another. KEYS:
// owners-of, owner set, from ZSET, to ZSET. ARGV: to, chunk, from.
var scriptQClaim = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)
if #ids == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
  return 0
end
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[4], 0, id)
  redis.call('HSET', KEYS[1], id, ARGV[1])
end
redis.call('ZREM', KEYS[3], unpack(ids))
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
return #ids
`)

func (k keyspace) queueEntries() string           { return k.prefix + "{sq}:m" }
func (k keyspace) queueOwnerOf() string           { return k.prefix + "{sq}:w" }
func (k keyspace) queueOwners() string            { return k.prefix + "{sq}:owners" }
func (k keyspace) queueOwnerPrefix() string       { return k.prefix + "{sq}:o:" }
func (k keyspace) queueOwner(owner string) string { return k.queueOwnerPrefix() + owner }

// Enqueue implements Store: one script.
func (r *RedisStore) Enqueue(ctx context.Context, q push.QueuedPush) error {
	if err := checkQueued(&q); err != nil {
		return fmt.Errorf("saver enqueue: %w", err)
	}
	if !r.enter() {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
	defer cancel()
	keys := []string{r.k.queueEntries(), r.k.queueOwnerOf(), r.k.queueOwners(), r.k.queueOwner(q.Owner)}
	err := scriptQEnqueue.Run(ctx, r.rc, keys, id8(q.Msg.ID), appendQueued(nil, &q), q.Owner, r.k.queueOwnerPrefix()).Err()
	if err != nil {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, redisErr(err))
	}
	return nil
}

// Dequeue implements Store: one script per queueChunk ids.
func (r *RedisStore) Dequeue(ctx context.Context, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	if !r.enter() {
		return fmt.Errorf("saver dequeue: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver dequeue: %w", err)
	}
	return r.dequeue(ctx, ids)
}

func (r *RedisStore) dequeue(ctx context.Context, ids []uint64) error {
	keys := []string{r.k.queueEntries(), r.k.queueOwnerOf(), r.k.queueOwners()}
	for chunk := range slices.Chunk(ids, queueChunk) {
		args := make([]any, 0, 1+len(chunk))
		args = append(args, r.k.queueOwnerPrefix())
		for _, id := range chunk {
			args = append(args, id8(id))
		}
		cctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
		err := scriptQDequeue.Run(cctx, r.rc, keys, args...).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("saver dequeue: %w", redisErr(err))
		}
	}
	return nil
}

// Queued implements Store: pages of the owner's ZSET (by lexical range),
// each with one HMGET of the entries; the expired ones are then forgotten.
func (r *RedisStore) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	if err := checkOwner(owner); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	if !r.enter() {
		return nil, fmt.Errorf("saver queued: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	limit = queuedLimit(limit)
	now := time.Now().Unix()
	var out []push.QueuedPush
	var expired []uint64
	start := "-"
	for len(out) < limit {
		want := min(limit-len(out), queueChunk)
		page, err := r.queuedPage(ctx, owner, start, want)
		if err != nil {
			return nil, fmt.Errorf("saver queued: %w", redisErr(err))
		}
		for _, e := range page.entries {
			if e.Msg.Expired(now) {
				expired = append(expired, e.Msg.ID)
			} else {
				out = append(out, e)
			}
		}
		if page.n < want {
			break
		}
		start = "(" + page.last
	}
	if len(expired) > 0 {
		if err := r.dequeue(ctx, expired); err != nil {
			r.log.Debug("saver: forgetting expired queued pushes", "err", err)
		}
	}
	return out, nil
}

type queuedPage struct {
	entries []push.QueuedPush
	n       int    // ids read from the ZSET
	last    string // the last of them
}

func (r *RedisStore) queuedPage(ctx context.Context, owner, start string, count int) (queuedPage, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
	defer cancel()
	var p queuedPage
	ids, err := r.rc.ZRangeArgs(ctx, redis.ZRangeArgs{Key: r.k.queueOwner(owner), Start: start, Stop: "+", ByLex: true, Count: int64(count)}).Result()
	if err != nil || len(ids) == 0 {
		return p, err
	}
	p.n, p.last = len(ids), ids[len(ids)-1]
	vals, err := r.rc.HMGet(ctx, r.k.queueEntries(), ids...).Result()
	if err != nil {
		return p, err
	}
	for i, v := range vals {
		s, ok := v.(string)
		id, idOK := parseID8(ids[i])
		if !ok || !idOK {
			continue // dequeued meanwhile
		}
		q, err := decodeQueued(id, owner, []byte(s))
		if err != nil {
			r.log.Warn("saver: corrupt queued push skipped", "id", id, "err", err)
			continue
		}
		p.entries = append(p.entries, q)
	}
	return p, nil
}

// QueueOwners implements Store: one SMEMBERS.
func (r *RedisStore) QueueOwners(ctx context.Context) ([]string, error) {
	if !r.enter() {
		return nil, fmt.Errorf("saver queue owners: %w", ErrClosed)
	}
	defer r.calls.Done()
	ctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
	defer cancel()
	owners, err := r.rc.SMembers(ctx, r.k.queueOwners()).Result()
	if err != nil {
		return nil, fmt.Errorf("saver queue owners: %w", redisErr(err))
	}
	slices.SortFunc(owners, strings.Compare)
	return owners, nil
}

// Claim implements Store: scripts of queueChunk ids each, until from's
// ZSET is empty.
func (r *RedisStore) Claim(ctx context.Context, from, to string) (int, error) {
	if err := checkClaim(from, to); err != nil {
		return 0, err
	}
	if !r.enter() {
		return 0, fmt.Errorf("saver claim %q: %w", truncate(from), ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver claim %q: %w", truncate(from), err)
	}
	if from == to {
		return 0, nil
	}
	keys := []string{r.k.queueOwnerOf(), r.k.queueOwners(), r.k.queueOwner(from), r.k.queueOwner(to)}
	total := 0
	for {
		cctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
		n, err := scriptQClaim.Run(cctx, r.rc, keys, to, queueChunk, from).Int()
		cancel()
		if err != nil {
			return total, fmt.Errorf("saver claim %q: %w", truncate(from), redisErr(err))
		}
		total += n
		if n < queueChunk {
			return total, nil
		}
	}
}
