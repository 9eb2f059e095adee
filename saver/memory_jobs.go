package saver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// memJobs is Memory's job board, under its own mutex: job calls never wait
// for the message store's lock (Expire takes m.mu, then this one).
type memJobs struct {
	mu   sync.Mutex
	jobs map[uint64]*memJob
}

type memJob struct {
	job   push.Job
	tasks []push.JobTask // by room, ascending
}

func newMemJobs() *memJobs { return &memJobs{jobs: make(map[uint64]*memJob)} }

// task returns the task of room; nil when the job has none.
func (j *memJob) task(room string) *push.JobTask {
	i, ok := slices.BinarySearchFunc(j.tasks, room, func(t push.JobTask, r string) int { return strings.Compare(t.Room, r) })
	if !ok {
		return nil
	}
	return &j.tasks[i]
}

// lockJobs locks the board of an open store.
func (m *Memory) lockJobs(ctx context.Context) (*memJobs, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	m.jobs.mu.Lock()
	return m.jobs, nil
}

// CreateJob implements JobBoard.
func (m *Memory) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	j, rooms, err := checkJob(j, rooms)
	if err != nil {
		return fmt.Errorf("saver create job: %w", err)
	}
	b, err := m.lockJobs(ctx)
	if err != nil {
		return fmt.Errorf("saver create job %d: %w", j.ID, err)
	}
	defer b.mu.Unlock()
	if b.jobs[j.ID] == nil {
		b.jobs[j.ID] = &memJob{job: j, tasks: newTasks(rooms)}
	}
	return nil
}

// Job implements JobBoard.
func (m *Memory) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	b, err := m.lockJobs(ctx)
	if err != nil {
		return push.Job{}, nil, false, fmt.Errorf("saver job %d: %w", id, err)
	}
	defer b.mu.Unlock()
	j := b.jobs[id]
	if j == nil {
		return push.Job{}, nil, false, nil
	}
	job := j.job
	job.Msg.Payload = slices.Clone(job.Msg.Payload)
	return job, slices.Clone(j.tasks), true, nil
}

// RunningJobs implements JobBoard.
func (m *Memory) RunningJobs(ctx context.Context) ([]uint64, error) {
	b, err := m.lockJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("saver running jobs: %w", err)
	}
	defer b.mu.Unlock()
	var ids []uint64
	for id, j := range b.jobs {
		if j.job.State == push.JobRunning {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ClaimTask implements JobBoard.
func (m *Memory) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	if err := checkClaimTask(id, room, owner, lease); err != nil {
		return false, fmt.Errorf("saver claim task: %w", err)
	}
	b, err := m.lockJobs(ctx)
	if err != nil {
		return false, fmt.Errorf("saver claim task %d: %w", id, err)
	}
	defer b.mu.Unlock()
	j := b.jobs[id]
	if j == nil || j.job.State != push.JobRunning {
		return false, nil
	}
	t := j.task(room)
	if t == nil || !claimableTask(t, owner, now.UnixMilli()) {
		return false, nil
	}
	t.State, t.Owner, t.Lease = push.TaskRunning, owner, now.Add(lease).UnixMilli()
	return true, nil
}

// UpdateTask implements JobBoard.
func (m *Memory) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	t, err := checkUpdateTask(id, t, now, lease)
	if err != nil {
		return false, fmt.Errorf("saver update task: %w", err)
	}
	b, err := m.lockJobs(ctx)
	if err != nil {
		return false, fmt.Errorf("saver update task %d: %w", id, err)
	}
	defer b.mu.Unlock()
	j := b.jobs[id]
	if j == nil || j.job.State != push.JobRunning {
		return false, nil
	}
	cur := j.task(t.Room)
	if cur == nil || !holdsTask(cur, t.Owner, now.UnixMilli()) {
		return false, nil
	}
	*cur = t
	return true, nil
}

// FinishJob implements JobBoard.
func (m *Memory) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	if err := checkFinishJob(id, state, keep); err != nil {
		return false, fmt.Errorf("saver: %w", err)
	}
	b, err := m.lockJobs(ctx)
	if err != nil {
		return false, fmt.Errorf("saver finish job %d: %w", id, err)
	}
	defer b.mu.Unlock()
	j := b.jobs[id]
	if j == nil || j.job.State != push.JobRunning {
		return false, nil
	}
	j.job = finishedJob(j.job, state, errMsg, now, keep)
	return true, nil
}

// expireJobs drops the jobs past their drop time (Keep, or Deadline plus
// jobRunningTTL while running).
func (m *Memory) expireJobs(now time.Time) {
	b := m.jobs
	b.mu.Lock()
	defer b.mu.Unlock()
	t := now.UnixMilli()
	for id, j := range b.jobs {
		if t >= jobDropAt(&j.job) {
			delete(b.jobs, id)
		}
	}
}
