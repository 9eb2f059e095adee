package saver

import (
	"context"
	"errors"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

var errJobsTODO = errors.New("saver: job board not written yet")

func (*Memory) CreateJob(context.Context, push.Job, []string) error { return errJobsTODO }
func (*Memory) Job(context.Context, uint64) (push.Job, []push.JobTask, bool, error) {
	return push.Job{}, nil, false, errJobsTODO
}
func (*Memory) RunningJobs(context.Context) ([]uint64, error) { return nil, errJobsTODO }
func (*Memory) ClaimTask(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*Memory) UpdateTask(context.Context, uint64, push.JobTask, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
func (*Memory) FinishJob(context.Context, uint64, string, string, time.Time, time.Duration) (bool, error) {
	return false, errJobsTODO
}
