package saver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast jobs in Bolt, two buckets, created by the first write that
// needs them (a file without jobs has none; readers treat a missing
// bucket as empty):
//
//	jobs     BE64(id)        -> job record (jobs.go, appendJob)
//	jobtasks BE64(id) | room -> task record (jobs.go, appendTask)
//
// A job's tasks are one contiguous range, by room. Writes go through
// b.batch (shared commits, durable on return); ClaimTask, UpdateTask and
// FinishJob first check in a read transaction that they would take
// effect, so the calls that lose (another center's claim, a lapsed
// lease) cost no write transaction and no fsync. Bolt serializes write
// transactions and every write checks again inside its own, so two owners
// never both get a task.
var (
	bucketJobs     = []byte("jobs")
	bucketJobTasks = []byte("jobtasks")
)

func taskKey(id uint64, room string) []byte { return append(idKey(nil, id), room...) }

// jobBuckets returns the job buckets of a write transaction, creating them.
func jobBuckets(tx *bolt.Tx) (jobs, tasks *bolt.Bucket, err error) {
	if jobs, err = tx.CreateBucketIfNotExists(bucketJobs); err != nil {
		return nil, nil, err
	}
	if tasks, err = tx.CreateBucketIfNotExists(bucketJobTasks); err != nil {
		return nil, nil, err
	}
	return jobs, tasks, nil
}

// jobView runs a read transaction of an open store.
func (b *Bolt) jobView(ctx context.Context, fn func(*bolt.Tx) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return closedErr(b.db.View(fn))
}

// CreateJob implements JobBoard: one batched write of the job and its tasks.
func (b *Bolt) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	j, rooms, err := checkJob(j, rooms)
	if err != nil {
		return fmt.Errorf("saver create job: %w", err)
	}
	key, val := idKey(nil, j.ID), appendJob(nil, &j)
	pending := appendTask(nil, &push.JobTask{State: push.TaskPending})
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		jobs, tasks, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		if jobs.Get(key) != nil {
			return nil // idempotent: the first CreateJob stands
		}
		if err := jobs.Put(key, val); err != nil {
			return err
		}
		for _, r := range rooms {
			if err := tasks.Put(taskKey(j.ID, r), pending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saver create job %d: %w", j.ID, err)
	}
	return nil
}

// Job implements JobBoard.
func (b *Bolt) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	var j push.Job
	var ts []push.JobTask
	var ok bool
	err := b.jobView(ctx, func(tx *bolt.Tx) error {
		j, ts, ok = push.Job{}, nil, false
		jobs := tx.Bucket(bucketJobs)
		if jobs == nil {
			return nil
		}
		v := jobs.Get(idKey(nil, id))
		if v == nil {
			return nil
		}
		var err error
		if j, err = decodeJob(id, v); err != nil {
			return err
		}
		ok = true
		tasks := tx.Bucket(bucketJobTasks)
		if tasks == nil {
			return nil
		}
		prefix := idKey(nil, id)
		c := tasks.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			t, err := decodeTask(string(k[8:]), v)
			if err != nil {
				b.log.Warn("saver: corrupt job task skipped", "id", id, "err", err)
				continue
			}
			ts = append(ts, t)
		}
		return nil
	})
	if err != nil {
		return push.Job{}, nil, false, fmt.Errorf("saver job %d: %w", id, err)
	}
	return j, ts, ok, nil
}

// RunningJobs implements JobBoard: a walk of the jobs bucket reading each
// record's state byte (the kept jobs are small: FinishJob drops payloads).
func (b *Bolt) RunningJobs(ctx context.Context) ([]uint64, error) {
	var ids []uint64
	err := b.jobView(ctx, func(tx *bolt.Tx) error {
		ids = nil
		jobs := tx.Bucket(bucketJobs)
		if jobs == nil {
			return nil
		}
		return jobs.ForEach(func(k, v []byte) error {
			if len(k) == 8 && jobStateOf(v) == push.JobRunning {
				ids = append(ids, beUint64(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("saver running jobs: %w", err)
	}
	return ids, nil
}

// taskStep reads a running job's task in tx and returns the record to
// write, or nil when the call takes no effect.
type taskStep func(t *push.JobTask) []byte

// stepTask runs step on the task of room, first in a read transaction and,
// when it would take effect, again in a batched write that applies it.
func (b *Bolt) stepTask(ctx context.Context, id uint64, room string, step taskStep) (bool, error) {
	key := taskKey(id, room)
	read := func(tx *bolt.Tx) ([]byte, error) {
		jobs, tasks := tx.Bucket(bucketJobs), tx.Bucket(bucketJobTasks)
		if jobs == nil || tasks == nil || jobStateOf(jobs.Get(key[:8])) != push.JobRunning {
			return nil, nil
		}
		v := tasks.Get(key)
		if v == nil {
			return nil, nil
		}
		t, err := decodeTask(room, v)
		if err != nil {
			return nil, err
		}
		return step(&t), nil
	}
	var next []byte
	err := b.jobView(ctx, func(tx *bolt.Tx) (err error) {
		next, err = read(tx)
		return err
	})
	if err != nil || next == nil {
		return false, err
	}
	ok := false
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		ok = false
		next, err := read(tx)
		if err != nil || next == nil {
			return err
		}
		ok = true
		return tx.Bucket(bucketJobTasks).Put(key, next)
	})
	return ok, err
}

// ClaimTask implements JobBoard.
func (b *Bolt) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	if err := checkClaimTask(id, room, owner, lease); err != nil {
		return false, fmt.Errorf("saver claim task: %w", err)
	}
	ms, until := now.UnixMilli(), now.Add(lease).UnixMilli()
	ok, err := b.stepTask(ctx, id, room, func(t *push.JobTask) []byte {
		if !claimableTask(t, owner, ms) {
			return nil
		}
		t.State, t.Owner, t.Lease = push.TaskRunning, owner, until
		return appendTask(nil, t)
	})
	if err != nil {
		return false, fmt.Errorf("saver claim task %d: %w", id, err)
	}
	return ok, nil
}

// UpdateTask implements JobBoard.
func (b *Bolt) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	t, err := checkUpdateTask(id, t, now, lease)
	if err != nil {
		return false, fmt.Errorf("saver update task: %w", err)
	}
	ms, val := now.UnixMilli(), appendTask(nil, &t)
	ok, err := b.stepTask(ctx, id, t.Room, func(cur *push.JobTask) []byte {
		if !holdsTask(cur, t.Owner, ms) {
			return nil
		}
		return val
	})
	if err != nil {
		return false, fmt.Errorf("saver update task %d: %w", id, err)
	}
	return ok, nil
}

// FinishJob implements JobBoard.
func (b *Bolt) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	if err := checkFinishJob(id, state, keep); err != nil {
		return false, fmt.Errorf("saver: %w", err)
	}
	key := idKey(nil, id)
	read := func(tx *bolt.Tx) ([]byte, error) {
		jobs := tx.Bucket(bucketJobs)
		if jobs == nil {
			return nil, nil
		}
		v := jobs.Get(key)
		if jobStateOf(v) != push.JobRunning {
			return nil, nil
		}
		j, err := decodeJob(id, v)
		if err != nil {
			return nil, err
		}
		j = finishedJob(j, state, errMsg, now, keep)
		return appendJob(nil, &j), nil
	}
	var next []byte
	err := b.jobView(ctx, func(tx *bolt.Tx) (err error) {
		next, err = read(tx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("saver finish job %d: %w", id, err)
	}
	if next == nil {
		return false, nil
	}
	ok := false
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		ok = false
		next, err := read(tx)
		if err != nil || next == nil {
			return err
		}
		ok = true
		return tx.Bucket(bucketJobs).Put(key, next)
	})
	if err != nil {
		return false, fmt.Errorf("saver finish job %d: %w", id, err)
	}
	return ok, nil
}

// expireJobs drops the jobs past their drop time (Keep, or Deadline plus
// jobRunningTTL while running) and corrupt job records, with their tasks.
// Errors are logged: the next sweep retries.
func (b *Bolt) expireJobs(ctx context.Context, now time.Time) {
	t := now.UnixMilli()
	var drop []uint64
	err := b.jobView(ctx, func(tx *bolt.Tx) error {
		drop = nil
		jobs := tx.Bucket(bucketJobs)
		if jobs == nil {
			return nil
		}
		return jobs.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			id := beUint64(k)
			j, err := decodeJob(id, v)
			if err != nil {
				b.log.Warn("saver: corrupt job dropped", "id", id, "err", err)
			}
			if err != nil || t >= jobDropAt(&j) {
				drop = append(drop, id)
			}
			return nil
		})
	})
	if err != nil || len(drop) == 0 {
		if err != nil && !errors.Is(err, ErrClosed) {
			b.log.Warn("saver: job expiry", "err", err)
		}
		return
	}
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		jobs, tasks, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		for _, id := range drop {
			prefix := idKey(nil, id)
			// Checked again: a FinishJob may have come in between.
			if j, err := decodeJob(id, jobs.Get(prefix)); err == nil && t < jobDropAt(&j) {
				continue
			}
			if err := jobs.Delete(prefix); err != nil {
				return err
			}
			var keys [][]byte
			c := tasks.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := tasks.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.log.Warn("saver: job expiry", "err", err)
	}
}
