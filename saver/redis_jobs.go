package saver

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast jobs in RedisStore: Redis only, no MySQL copy (a job is worth
// what its rooms' connections are: a Redis that lost it lost a running
// broadcast, which the API reports as unknown). Per job, with the id's
// hash tag (one slot in a Cluster):
//
//	P j{id}        HASH  j -> job record, t<room> -> task record (jobs.go)
//	P {jobs}:run   ZSET  id by drop time (Deadline + jobRunningTTL, ms): the running jobs
//	P {jobs}:kept  ZSET  id by Keep (ms): the finished jobs
//
// The job hash carries PEXPIREAT at its drop time (Deadline plus a day
// while running, Keep once finished), so Redis drops it by itself too;
// Expire drops what the indexes list up to its now. CreateJob, ClaimTask,
// UpdateTask and FinishJob are scripts on the one job key: they compare
// the state, owner and lease inside the script (atomic, one slot), reading
// the task record's fixed offsets. The indexes live in another slot and
// are updated by separate, idempotent calls; they may lag the job hashes,
// never the other way that matters: CreateJob indexes before it creates
// (a job that exists is always listed), FinishJob creates before it moves
// the index, and RunningJobs checks every listed job's state, skips the
// missing and final ones and moves the final ones to the kept index. A
// lost index update thus costs a read, never a wrong answer.

// jobLua is shared by the task scripts: be64 reads a big-endian integer
// (exact below 2^53: unix ms), running tells whether the job of hash k
// runs, task splits a task record into state, lease, owner and the end
// of the owner (nil when malformed).
const jobLua = `
local function be64(s, i)
  local n = 0
  for j = i, i + 7 do n = n * 256 + string.byte(s, j) end
  return n
end
local function running(k)
  local j = redis.call('HGET', k, 'j')
  return j and #j >= 2 and string.byte(j, 1) == 1 and string.byte(j, 2) == 0
end
local function task(v)
  if #v < 27 or string.byte(v, 1) ~= 1 then return nil end
  local n = string.byte(v, 27)
  if #v < 27 + n then return nil end
  return string.byte(v, 2), be64(v, 3), string.sub(v, 28, 27 + n), 27 + n
end
`

// scriptJobCreate creates a job unless it exists. KEYS: job hash. ARGV:
// drop time (ms), job record, pending task record, task field...
var scriptJobCreate = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'j', ARGV[2])
local args = {}
for i = 4, #ARGV do
  args[#args+1] = ARGV[i]; args[#args+1] = ARGV[3]
  if #args >= 1000 then redis.call('HSET', KEYS[1], unpack(args)); args = {} end
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)

// scriptTaskClaim gives a task to an owner (jobs.go claimableTask) and splices
// state running, the new lease and the owner into its record, keeping its
// progress. KEYS: job hash. ARGV: task field, now (ms), owner, new lease
// (8 big-endian bytes). 1 claimed, 0 not, -1 malformed record.
var scriptTaskClaim = redis.NewScript(jobLua + `
if not running(KEYS[1]) then return 0 end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local st, lease, cur, e = task(v)
if not st then return -1 end
if st == 0 or (st == 1 and (cur == ARGV[3] or lease <= tonumber(ARGV[2]))) then
  redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, 1) .. string.char(1) .. ARGV[4] ..
    string.sub(v, 11, 26) .. string.char(#ARGV[3]) .. ARGV[3] .. string.sub(v, e + 1))
  return 1
end
return 0
`)

// scriptTaskUpdate writes a task record when the owner holds the task
// (jobs.go holdsTask). KEYS: job hash. ARGV: task field, now (ms), owner,
// record. 1 written, 0 not, -1 malformed record.
var scriptTaskUpdate = redis.NewScript(jobLua + `
if not running(KEYS[1]) then return 0 end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local st, lease, cur = task(v)
if not st then return -1 end
if st == 1 and cur == ARGV[3] and lease > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  return 1
end
return 0
`)

// scriptJobFinish replaces a running job's record by its final one. The
// record changes at finish alone, so checking that it still runs is
// enough: of two FinishJobs that read it running, one writes. KEYS: job
// hash. ARGV: final record, Keep (ms). 1 written, 0 not, -1 malformed.
var scriptJobFinish = redis.NewScript(`
local j = redis.call('HGET', KEYS[1], 'j')
if not j then return 0 end
if #j < 2 or string.byte(j, 1) ~= 1 then return -1 end
if string.byte(j, 2) ~= 0 then return 0 end
redis.call('HSET', KEYS[1], 'j', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
`)

// scriptJobKept moves a finished job from the running index to the kept
// one (idempotent). KEYS: running, kept. ARGV: id, Keep (ms).
var scriptJobKept = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`)

// scriptStatusTargets adds a room's job targets to a broadcast's delivery
// status record (AddSent, redis_status.go); nothing for another kind,
// another app, or no record. KEYS: status record. ARGV: app, targets.
var scriptStatusTargets = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'kind') ~= 'broadcast' then return 0 end
if redis.call('HGET', KEYS[1], 'app') ~= ARGV[1] then return 0 end
return redis.call('HINCRBY', KEYS[1], 'targets', ARGV[2])
`)

func (k keyspace) job(id uint64) string { return k.prefix + "j{" + strconv.FormatUint(id, 10) + "}" }
func (k keyspace) jobsRunning() string  { return k.prefix + "{jobs}:run" }
func (k keyspace) jobsKept() string     { return k.prefix + "{jobs}:kept" }

func taskField(room string) string { return "t" + room }

// jobCall runs f on an open store with the Redis timeout.
func (r *RedisStore) jobCall(ctx context.Context, f func(ctx context.Context) error) error {
	if !r.enter() {
		return ErrClosed
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
	defer cancel()
	return f(ctx)
}

// scriptResult reads a 1/0/-1 reply of the job scripts.
func scriptResult(n int64, err error) (bool, error) {
	switch {
	case err != nil:
		return false, redisErr(err)
	case n < 0:
		return false, fmt.Errorf("task record: %w", ErrCorrupt)
	}
	return n == 1, nil
}

// CreateJob implements JobBoard: the running index first (ZADD is
// idempotent), then the script that creates the hash unless it exists.
func (r *RedisStore) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	j, rooms, err := checkJob(j, rooms)
	if err != nil {
		return fmt.Errorf("saver create job: %w", err)
	}
	drop := jobDropAt(&j)
	err = r.jobCall(ctx, func(ctx context.Context) error {
		id := strconv.FormatUint(j.ID, 10)
		if err := r.rc.ZAdd(ctx, r.k.jobsRunning(), redis.Z{Score: float64(drop), Member: id}).Err(); err != nil {
			return redisErr(err)
		}
		args := make([]any, 0, 3+len(rooms))
		args = append(args, drop, appendJob(nil, &j), appendTask(nil, &push.JobTask{State: push.TaskPending}))
		for _, room := range rooms {
			args = append(args, taskField(room))
		}
		return redisErr(scriptJobCreate.Run(ctx, r.rc, []string{r.k.job(j.ID)}, args...).Err())
	})
	if err != nil {
		return fmt.Errorf("saver create job %d: %w", j.ID, err)
	}
	return nil
}

// Job implements JobBoard: one HGETALL.
func (r *RedisStore) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	var h map[string]string
	err := r.jobCall(ctx, func(ctx context.Context) error {
		var err error
		h, err = r.rc.HGetAll(ctx, r.k.job(id)).Result()
		return redisErr(err)
	})
	if err != nil {
		return push.Job{}, nil, false, fmt.Errorf("saver job %d: %w", id, err)
	}
	v, ok := h["j"]
	if !ok {
		return push.Job{}, nil, false, nil
	}
	j, err := decodeJob(id, []byte(v))
	if err != nil {
		return push.Job{}, nil, false, fmt.Errorf("saver job %d: %w", id, err)
	}
	var ts []push.JobTask
	for f, v := range h {
		room, ok := strings.CutPrefix(f, "t")
		if !ok {
			continue
		}
		t, err := decodeTask(room, []byte(v))
		if err != nil {
			r.log.Warn("saver: corrupt job task skipped", "id", id, "err", err)
			continue
		}
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b push.JobTask) int { return strings.Compare(a.Room, b.Room) })
	return j, ts, true, nil
}

// RunningJobs implements JobBoard: the running index, then each listed
// job's record (one pipeline) to drop those that are missing (being
// created, or gone: Expire prunes them) or final (their index move was
// lost: it is made again here).
func (r *RedisStore) RunningJobs(ctx context.Context) ([]uint64, error) {
	var ids []uint64
	err := r.jobCall(ctx, func(ctx context.Context) error {
		listed, err := r.rc.ZRange(ctx, r.k.jobsRunning(), 0, -1).Result()
		if err != nil {
			return redisErr(err)
		}
		recs, err := r.jobRecords(ctx, listed)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			switch {
			case rec.j.State == push.JobRunning:
				ids = append(ids, rec.j.ID)
			case rec.found && rec.err == nil:
				r.indexKept(ctx, rec.j.ID, rec.j.Keep)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saver running jobs: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// jobRecord is a job record read for an index entry.
type jobRecord struct {
	id    uint64
	j     push.Job
	found bool  // the hash has a record
	err   error // the record is malformed
}

// jobRecords reads the records of the indexed ids (decimal strings; others
// are skipped) in one pipeline.
func (r *RedisStore) jobRecords(ctx context.Context, listed []string) ([]jobRecord, error) {
	recs := make([]jobRecord, 0, len(listed))
	for _, s := range listed {
		if id, err := strconv.ParseUint(s, 10, 64); err == nil {
			recs = append(recs, jobRecord{id: id})
		}
	}
	if len(recs) == 0 {
		return nil, nil
	}
	pipe := r.rc.Pipeline()
	cmds := make([]*redis.StringCmd, len(recs))
	for i, rec := range recs {
		cmds[i] = pipe.HGet(ctx, r.k.job(rec.id), "j")
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	for i := range recs {
		v, err := cmds[i].Bytes()
		switch {
		case err == redis.Nil:
			continue
		case err != nil:
			return nil, redisErr(err)
		}
		recs[i].found = true
		recs[i].j, recs[i].err = decodeJob(recs[i].id, v)
		if recs[i].err != nil {
			r.log.Warn("saver: corrupt job record", "id", recs[i].id, "err", recs[i].err)
		}
	}
	return recs, nil
}

// indexKept moves a finished job to the kept index; a failure is logged
// (RunningJobs makes the move again).
func (r *RedisStore) indexKept(ctx context.Context, id uint64, keep int64) {
	err := scriptJobKept.Run(ctx, r.rc, []string{r.k.jobsRunning(), r.k.jobsKept()}, strconv.FormatUint(id, 10), keep).Err()
	if err != nil {
		r.log.Debug("saver: job index", "id", id, "err", err)
	}
}

// ClaimTask implements JobBoard: one script.
func (r *RedisStore) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	if err := checkClaimTask(id, room, owner, lease); err != nil {
		return false, fmt.Errorf("saver claim task: %w", err)
	}
	until := binary.BigEndian.AppendUint64(nil, uint64(now.Add(lease).UnixMilli()))
	var ok bool
	err := r.jobCall(ctx, func(ctx context.Context) error {
		var err error
		ok, err = scriptResult(scriptTaskClaim.Run(ctx, r.rc, []string{r.k.job(id)}, taskField(room), now.UnixMilli(), owner, until).Int64())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("saver claim task %d: %w", id, err)
	}
	return ok, nil
}

// UpdateTask implements JobBoard: one script.
func (r *RedisStore) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	t, err := checkUpdateTask(id, t, now, lease)
	if err != nil {
		return false, fmt.Errorf("saver update task: %w", err)
	}
	var ok bool
	err = r.jobCall(ctx, func(ctx context.Context) error {
		var err error
		ok, err = scriptResult(scriptTaskUpdate.Run(ctx, r.rc, []string{r.k.job(id)}, taskField(t.Room), now.UnixMilli(), t.Owner, appendTask(nil, &t)).Int64())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("saver update task %d: %w", id, err)
	}
	return ok, nil
}

// FinishJob implements JobBoard: a read of the record, the script that
// replaces it while it still runs, then the index move.
func (r *RedisStore) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	if err := checkFinishJob(id, state, keep); err != nil {
		return false, fmt.Errorf("saver: %w", err)
	}
	var ok bool
	err := r.jobCall(ctx, func(ctx context.Context) error {
		v, err := r.rc.HGet(ctx, r.k.job(id), "j").Bytes()
		if err == redis.Nil {
			return nil
		}
		if err != nil {
			return redisErr(err)
		}
		if jobStateOf(v) != push.JobRunning {
			return nil
		}
		j, err := decodeJob(id, v)
		if err != nil {
			return err
		}
		j = finishedJob(j, state, errMsg, now, keep)
		ok, err = scriptResult(scriptJobFinish.Run(ctx, r.rc, []string{r.k.job(id)}, appendJob(nil, &j), j.Keep).Int64())
		if ok {
			r.indexKept(ctx, id, j.Keep)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("saver finish job %d: %w", id, err)
	}
	return ok, nil
}

// expireJobs drops the jobs the indexes list up to now whose drop time is
// past (their hashes expire by themselves at the same time, by Redis's
// clock; this follows Expire's now) and prunes the index entries of
// missing jobs. Errors are logged: the next sweep retries.
func (r *RedisStore) expireJobs(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, r.o.RedisTimeout)
	defer cancel()
	ms := now.UnixMilli()
	max := strconv.FormatInt(ms, 10)
	for _, index := range []string{r.k.jobsRunning(), r.k.jobsKept()} {
		listed, err := r.rc.ZRangeByScore(ctx, index, &redis.ZRangeBy{Min: "-inf", Max: max, Count: 1000}).Result()
		if err == nil {
			err = r.dropJobs(ctx, listed, ms)
		}
		if err != nil {
			r.log.Warn("saver: job expiry", "index", index, "err", redisErr(err))
		}
	}
}

// dropJobs drops the listed jobs whose drop time is past at ms (or whose
// record is missing or malformed) from Redis and both indexes; a job that
// finished meanwhile is moved to the kept index instead.
func (r *RedisStore) dropJobs(ctx context.Context, listed []string, ms int64) error {
	recs, err := r.jobRecords(ctx, listed)
	if err != nil || len(recs) == 0 {
		return err
	}
	pipe := r.rc.Pipeline()
	for _, rec := range recs {
		id := strconv.FormatUint(rec.id, 10)
		if rec.found && rec.err == nil && ms < jobDropAt(&rec.j) {
			if rec.j.State != push.JobRunning {
				pipe.ZRem(ctx, r.k.jobsRunning(), id)
				pipe.ZAdd(ctx, r.k.jobsKept(), redis.Z{Score: float64(rec.j.Keep), Member: id})
			}
			continue
		}
		pipe.Del(ctx, r.k.job(rec.id))
		pipe.ZRem(ctx, r.k.jobsRunning(), id)
		pipe.ZRem(ctx, r.k.jobsKept(), id)
	}
	_, err = pipe.Exec(ctx)
	return err
}
