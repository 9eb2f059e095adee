package saver

import (
	"context"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// JobBoard keeps broadcast jobs where every center sees them (docs/cluster.md
// "Broadcast jobs"): the center that accepts a job records it with one task
// per room; any live center claims tasks under a lease, renews the lease
// while its room call runs, and another center takes a task whose lease
// lapsed (its holder died). Every Store implements it: Memory and Bolt for
// one process, RedisStore for a cluster.
type JobBoard interface {
	// CreateJob records j (State running) and one pending task per room.
	// Idempotent per j.ID: a second call changes nothing.
	CreateJob(ctx context.Context, j push.Job, rooms []string) error
	// Job returns the job and its tasks (by room, ascending); false when
	// unknown or dropped.
	Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error)
	// RunningJobs lists the ids of the jobs whose State is running, ascending.
	RunningJobs(ctx context.Context) ([]uint64, error)
	// ClaimTask gives owner the task of room in job id when it is pending,
	// running under a lease past at now, or owner's already (renewed):
	// State running, Owner owner, Lease now+lease. Atomic: two owners never
	// both get it. false when the task is another owner's, final, or the
	// job unknown or final.
	ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error)
	// UpdateTask writes t.Targets, t.Pushed, t.Error and t.State of the
	// task t.Room when t.Owner still holds it (its lease not past at now):
	// State running renews the lease to now+lease, done and failed are
	// final. false (nothing written) when t.Owner does not hold it.
	UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error)
	// FinishJob sets a running job's State (JobDone or JobFailed), Error,
	// Finished now and Keep now+keep, and drops its payload; false when the
	// job is unknown or final already (left as it is).
	FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error)
}
