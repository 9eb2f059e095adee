package saver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/lcpush/lcpush/pkg/push"
)

// JobBoard keeps broadcast jobs where every center sees them (docs/cluster.md
// "Broadcast jobs"): the center that accepts a job records it with one task
// per room; any live center claims tasks under a lease, renews the lease
// while its room call runs, and another center takes a task whose lease
// lapsed (its holder died). Every Store implements it: Memory and Bolt for
// one process, RedisStore for a cluster. Times are the caller's now (unix
// ms in the records): centers compare leases on one clock, the store's
// own clock only drops what Expire would drop anyway (RedisStore's TTLs).
//
// Arguments are checked (ErrInvalid): a job needs an id, a Deadline, a
// finite Rate, an Owner of at most 128 bytes and at most 4096 rooms of
// 1..128 bytes each; owners of claims are 1..128 bytes, leases positive.
// Error texts longer than 1024 bytes are cut.
type JobBoard interface {
	// CreateJob records j (State running, no result: Finished, Error and
	// Keep are cleared) and one pending task per room (duplicates once).
	// Idempotent per j.ID: a second call changes nothing.
	CreateJob(ctx context.Context, j push.Job, rooms []string) error
	// Job returns the job and its tasks (by room, ascending); false when
	// unknown or dropped.
	Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error)
	// RunningJobs lists the ids of the jobs whose State is running, ascending.
	RunningJobs(ctx context.Context) ([]uint64, error)
	// ClaimTask gives owner the task of room in job id when it is pending,
	// running under a lease past at now (Lease <= now), or owner's already
	// (renewed): State running, Owner owner, Lease now+lease; its Targets,
	// Pushed and Error stay (a new holder resumes). Atomic: two owners
	// never both get it. false when the task is another owner's, final or
	// unknown, or the job unknown or final.
	ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error)
	// UpdateTask writes t.Targets, t.Pushed, t.Error and t.State of the
	// task t.Room when t.Owner still holds it (State running, its lease
	// not past at now: Lease > now) in a running job: State running renews
	// the lease to now+lease, done and failed are final (Lease then
	// records now, when it ended). false (nothing written) when t.Owner
	// does not hold it. t.State pending is invalid.
	UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error)
	// FinishJob sets a running job's State (JobDone or JobFailed), Error,
	// Finished now and Keep now+keep (keep >= 0), and drops its payload;
	// false when the job is unknown or final already (left as it is).
	// Its tasks are left as they are: a final job's are no longer claimed
	// or updated.
	FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error)
}

// Bounds of a job (docs/cluster.md "Broadcast jobs").
const (
	// maxJobTasks bounds the tasks (rooms) of one job.
	maxJobTasks = 4096
	// maxRoomLen bounds a room id in bytes.
	maxRoomLen = 128
	// maxJobError bounds a job's or task's error text (longer ones are cut).
	maxJobError = 1024
	// jobRunningTTL is how long past its Deadline a job still running is
	// kept: its centers are gone, nobody will finish it.
	jobRunningTTL = 24 * time.Hour
	// jobVersion is the first byte of an encoded job or task record.
	jobVersion = 1
)

// checkJob validates a CreateJob and returns the job as it is recorded
// (running, no result yet) and its rooms sorted without duplicates.
func checkJob(j push.Job, rooms []string) (push.Job, []string, error) {
	switch {
	case j.ID == 0:
		return j, nil, fmt.Errorf("job id 0: %w", ErrInvalid)
	case j.Deadline <= 0:
		return j, nil, fmt.Errorf("job %d deadline %d: %w", j.ID, j.Deadline, ErrInvalid)
	case j.Msg.Expire < 0:
		return j, nil, fmt.Errorf("job %d expire %d: %w", j.ID, j.Msg.Expire, ErrInvalid)
	case len(j.Owner) > maxOwnerLen:
		return j, nil, fmt.Errorf("job %d owner %q: %w", j.ID, truncate(j.Owner), ErrInvalid)
	case math.IsNaN(j.Rate) || math.IsInf(j.Rate, 0):
		return j, nil, fmt.Errorf("job %d rate %v: %w", j.ID, j.Rate, ErrInvalid)
	case len(rooms) > maxJobTasks:
		return j, nil, fmt.Errorf("job %d: %d rooms, at most %d: %w", j.ID, len(rooms), maxJobTasks, ErrInvalid)
	}
	for _, r := range rooms {
		if err := checkRoom(r); err != nil {
			return j, nil, fmt.Errorf("job %d: %w", j.ID, err)
		}
	}
	rooms = slices.Clone(rooms)
	slices.Sort(rooms)
	rooms = slices.Compact(rooms)
	j.State, j.Finished, j.Error, j.Keep = push.JobRunning, 0, "", 0
	j.Msg.Payload = slices.Clone(j.Msg.Payload)
	return j, rooms, nil
}

func checkRoom(room string) error {
	if room == "" || len(room) > maxRoomLen {
		return fmt.Errorf("room %q: %w", truncate(room), ErrInvalid)
	}
	return nil
}

// checkClaimTask validates a ClaimTask.
func checkClaimTask(id uint64, room, owner string, lease time.Duration) error {
	if err := checkRoom(room); err != nil {
		return fmt.Errorf("job %d: %w", id, err)
	}
	if err := checkOwner(owner); err != nil {
		return fmt.Errorf("job %d: %w", id, err)
	}
	if lease <= 0 {
		return fmt.Errorf("job %d lease %v: %w", id, lease, ErrInvalid)
	}
	return nil
}

// checkUpdateTask validates an UpdateTask and returns the task as it is
// written: Lease now+lease while running, now once final.
func checkUpdateTask(id uint64, t push.JobTask, now time.Time, lease time.Duration) (push.JobTask, error) {
	if err := checkClaimTask(id, t.Room, t.Owner, lease); err != nil {
		return t, err
	}
	if t.Targets < 0 || t.Pushed < 0 {
		return t, fmt.Errorf("job %d room %q: targets %d pushed %d: %w", id, truncate(t.Room), t.Targets, t.Pushed, ErrInvalid)
	}
	switch t.State {
	case push.TaskRunning:
		t.Lease = now.Add(lease).UnixMilli()
	case push.TaskDone, push.TaskFailed:
		t.Lease = now.UnixMilli()
	default:
		return t, fmt.Errorf("job %d room %q: state %q: %w", id, truncate(t.Room), truncate(t.State), ErrInvalid)
	}
	t.Error = cutError(t.Error)
	return t, nil
}

// checkFinishJob validates a FinishJob.
func checkFinishJob(id uint64, state string, keep time.Duration) error {
	if state != push.JobDone && state != push.JobFailed {
		return fmt.Errorf("finish job %d: state %q: %w", id, truncate(state), ErrInvalid)
	}
	if keep < 0 {
		return fmt.Errorf("finish job %d: keep %v: %w", id, keep, ErrInvalid)
	}
	return nil
}

// finishedJob is j after a FinishJob at now.
func finishedJob(j push.Job, state, errMsg string, now time.Time, keep time.Duration) push.Job {
	j.State, j.Error = state, cutError(errMsg)
	j.Finished, j.Keep = now.UnixMilli(), now.Add(keep).UnixMilli()
	j.Msg.Payload = nil
	return j
}

// jobDropAt is when Expire drops j (unix ms).
func jobDropAt(j *push.Job) int64 {
	if j.State == push.JobRunning {
		return j.Deadline + jobRunningTTL.Milliseconds()
	}
	return j.Keep
}

// claimableTask reports whether owner may take t at now (ms).
func claimableTask(t *push.JobTask, owner string, now int64) bool {
	switch t.State {
	case push.TaskPending:
		return true
	case push.TaskRunning:
		return t.Owner == owner || t.Lease <= now
	}
	return false
}

// holdsTask reports whether owner holds t at now (ms).
func holdsTask(t *push.JobTask, owner string, now int64) bool {
	return t.State == push.TaskRunning && t.Owner == owner && t.Lease > now
}

func cutError(s string) string {
	if len(s) <= maxJobError {
		return s
	}
	s = s[:maxJobError]
	for len(s) > 0 && !utf8.ValidString(s) { // do not end in half a rune
		s = s[:len(s)-1]
	}
	return s
}

// Record codes of the states (the second byte of a job or task record:
// redis_jobs.go's scripts read them there).
const (
	codeJobRunning = 0
	codeJobDone    = 1
	codeJobFailed  = 2

	codeTaskPending = 0
	codeTaskRunning = 1
	codeTaskDone    = 2
	codeTaskFailed  = 3
)

var (
	jobStates  = []string{push.JobRunning, push.JobDone, push.JobFailed}
	taskStates = []string{push.TaskPending, push.TaskRunning, push.TaskDone, push.TaskFailed}
)

// Encoded job record (big-endian; the id lives in the key):
//
//	off 0  version  u8 (jobVersion)
//	off 1  state    u8 (codeJob*)
//	off 2  flags    u8: 1 stored, 2 msg.Broadcast
//	off 3  app      u32
//	off 7  rate     f64 bits
//	off 15 started, deadline, finished, keep  i64 each
//	off 47 owner    len u8 | bytes
//	       error    len u16 | bytes
//	       msg id   u64 | value (codec.go appendValue: app, expire, qos, payload)
const (
	offJobState = 1
	offJobFlags = 2
	offJobApp   = 3
	offJobRate  = 7
	offJobTimes = 15
	jobFixedLen = 47

	jobFlagStored    = 1
	jobFlagBroadcast = 2
)

func appendJob(dst []byte, j *push.Job) []byte {
	dst = append(dst, jobVersion, byte(slices.Index(jobStates, j.State)))
	var flags byte
	if j.Stored {
		flags |= jobFlagStored
	}
	if j.Msg.Broadcast {
		flags |= jobFlagBroadcast
	}
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, j.App)
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(j.Rate))
	for _, t := range []int64{j.Started, j.Deadline, j.Finished, j.Keep} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(t))
	}
	dst = append(dst, byte(len(j.Owner)))
	dst = append(dst, j.Owner...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(j.Error)))
	dst = append(dst, j.Error...)
	dst = binary.BigEndian.AppendUint64(dst, j.Msg.ID)
	return appendValue(dst, &j.Msg)
}

// decodeJob decodes a job record of id; the payload is copied. Malformed
// bytes give ErrCorrupt, never a panic.
func decodeJob(id uint64, v []byte) (push.Job, error) {
	bad := func(why string) (push.Job, error) {
		return push.Job{}, fmt.Errorf("job %d record of %d bytes: %s: %w", id, len(v), why, ErrCorrupt)
	}
	if len(v) < jobFixedLen+1 || v[0] != jobVersion {
		return bad("short or unknown version")
	}
	if int(v[offJobState]) >= len(jobStates) {
		return bad("state")
	}
	j := push.Job{ID: id, State: jobStates[v[offJobState]]}
	j.Stored = v[offJobFlags]&jobFlagStored != 0
	j.App = binary.BigEndian.Uint32(v[offJobApp:])
	j.Rate = math.Float64frombits(binary.BigEndian.Uint64(v[offJobRate:]))
	for i, p := range []*int64{&j.Started, &j.Deadline, &j.Finished, &j.Keep} {
		*p = int64(binary.BigEndian.Uint64(v[offJobTimes+8*i:]))
	}
	rest := v[jobFixedLen:]
	n := int(rest[0])
	if len(rest) < 1+n+2 {
		return bad("owner")
	}
	j.Owner, rest = string(rest[1:1+n]), rest[1+n:]
	n = int(binary.BigEndian.Uint16(rest))
	if n > maxJobError || len(rest) < 2+n+8 {
		return bad("error")
	}
	j.Error, rest = string(rest[2:2+n]), rest[2+n:]
	msg, err := decodeValue(binary.BigEndian.Uint64(rest), rest[8:])
	if err != nil {
		return bad(err.Error())
	}
	msg.Broadcast = v[offJobFlags]&jobFlagBroadcast != 0
	j.Msg = msg
	return j, nil
}

// jobStateOf reads the state of a job record without decoding the rest
// (RunningJobs peeks at every job); "" when malformed.
func jobStateOf(v []byte) string {
	if len(v) < jobFixedLen+1 || v[0] != jobVersion || int(v[offJobState]) >= len(jobStates) {
		return ""
	}
	return jobStates[v[offJobState]]
}

// Encoded task record (big-endian; the job id and room live in the key or
// field). The scripts of redis_jobs.go read state, lease and owner at
// these offsets and splice a claim into the record, so they never move:
//
//	off 0  version  u8 (jobVersion)
//	off 1  state    u8 (codeTask*)
//	off 2  lease    i64 unix ms
//	off 10 targets  i64
//	off 18 pushed   i64
//	off 26 owner    len u8 | bytes
//	       error    len u16 | bytes
const (
	offTaskState   = 1
	offTaskLease   = 2
	offTaskTargets = 10
	offTaskPushed  = 18
	offTaskOwner   = 26
	taskFixedLen   = 27
)

func appendTask(dst []byte, t *push.JobTask) []byte {
	dst = append(dst, jobVersion, byte(slices.Index(taskStates, t.State)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Lease))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Targets))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Pushed))
	dst = append(dst, byte(len(t.Owner)))
	dst = append(dst, t.Owner...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.Error)))
	return append(dst, t.Error...)
}

// decodeTask decodes the task record of room. Malformed bytes give
// ErrCorrupt, never a panic.
func decodeTask(room string, v []byte) (push.JobTask, error) {
	bad := func(why string) (push.JobTask, error) {
		return push.JobTask{}, fmt.Errorf("task %q record of %d bytes: %s: %w", truncate(room), len(v), why, ErrCorrupt)
	}
	if len(v) < taskFixedLen || v[0] != jobVersion {
		return bad("short or unknown version")
	}
	if int(v[offTaskState]) >= len(taskStates) {
		return bad("state")
	}
	t := push.JobTask{Room: room, State: taskStates[v[offTaskState]]}
	t.Lease = int64(binary.BigEndian.Uint64(v[offTaskLease:]))
	t.Targets = int64(binary.BigEndian.Uint64(v[offTaskTargets:]))
	t.Pushed = int64(binary.BigEndian.Uint64(v[offTaskPushed:]))
	rest := v[offTaskOwner:]
	n := int(rest[0])
	if len(rest) < 1+n+2 {
		return bad("owner")
	}
	t.Owner, rest = string(rest[1:1+n]), rest[1+n:]
	n = int(binary.BigEndian.Uint16(rest))
	if n > maxJobError || len(rest) < 2+n {
		return bad("error")
	}
	t.Error = string(rest[2 : 2+n])
	return t, nil
}

// newTasks are the pending tasks of rooms (sorted already).
func newTasks(rooms []string) []push.JobTask {
	ts := make([]push.JobTask, len(rooms))
	for i, r := range rooms {
		ts[i] = push.JobTask{Room: r, State: push.TaskPending}
	}
	return ts
}

// checkDeltaTargets refuses negative targets in AddSent deltas (Targets
// only adds to a broadcast's record: the connections a room's task found).
func checkDeltaTargets(deltas []push.StatusDelta) error {
	for _, d := range deltas {
		if d.Targets < 0 {
			return fmt.Errorf("message %d targets %d: %w", d.MsgID, d.Targets, ErrInvalid)
		}
	}
	return nil
}
