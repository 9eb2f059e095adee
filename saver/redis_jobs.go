package saver

import (
	"context"
	
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)


func (*RedisStore) CreateJob(context.Context, push.Job, []string) error { return errJobsTODO }
func (*RedisStore) Job(context.Context, uint64) (push.Job, []push.JobTask, bool, error) {
	return push.Job{}, nil, false, errJobsTODO
}
func (*RedisStore) RunningJobs(context.Context) ([]uint64, error) { return nil, errJobsTODO }
func (*RedisStore) ClaimTask(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*RedisStore) UpdateTask(context.Context, uint64, push.JobTask, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*RedisStore) FinishJob(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
