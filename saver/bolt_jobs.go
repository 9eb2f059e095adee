package saver

import (
	"context"
	
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)


func (*Bolt) CreateJob(context.Context, push.Job, []string) error { return errJobsTODO }
func (*Bolt) Job(context.Context, uint64) (push.Job, []push.JobTask, bool, error) {
	return push.Job{}, nil, false, errJobsTODO
}
func (*Bolt) RunningJobs(context.Context) ([]uint64, error) { return nil, errJobsTODO }
func (*Bolt) ClaimTask(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*Bolt) UpdateTask(context.Context, uint64, push.JobTask, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*Bolt) FinishJob(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
