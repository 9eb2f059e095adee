package center

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/lcpush/lcpush/pkg/push"
)

// Job states of GET /v1/jobs/{id}.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is one broadcast: a stored (QoS 1) or fire-and-forget (QoS 0) message
// and the tasks that reach the app's online users, one per room: each room
// walks its own connections, so a broadcast needs no registry scan and the
// center's share of the work is one call per room. Its progress is the sum
// of its tasks'.
type Job struct {
	ID     uint64
	App    uint32
	Msg    push.Message
	Rate   float64 // deliveries per second, all tasks together
	Stored bool    // the message was stored for users offline now

	started int64 // unix seconds

	mu       sync.Mutex
	tasks    []*Task
	state    string
	finished int64
	err      string
}

// Task is the unit of work of a job: one room delivers the message to its
// connections of the app.
type Task struct {
	Room    string
	targets atomic.Int64 // connections of the app the room reached
	pushed  atomic.Int64 // frames written (the same: the room counts on write)
}

// jobStatus is the answer of GET /v1/jobs/{id}. stored is 1 when the message
// was stored for users who are offline (QoS 1: they get it at their next
// login within the ttl), else 0.
type jobStatus struct {
	JobID    string `json:"job_id"`
	MsgID    string `json:"msg_id"`
	App      uint32 `json:"app"`
	State    string `json:"state"`
	Targets  int64  `json:"targets"`
	Pushed   int64  `json:"pushed"`
	Stored   int64  `json:"stored"`
	Started  int64  `json:"started"`
	Finished int64  `json:"finished,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (j *Job) status() jobStatus {
	st := jobStatus{
		JobID:   strconv.FormatUint(j.ID, 10),
		MsgID:   strconv.FormatUint(j.Msg.ID, 10),
		App:     j.App,
		Started: j.started,
	}
	if j.Stored {
		st.Stored = 1
	}
	j.mu.Lock()
	for _, t := range j.tasks {
		st.Targets += t.targets.Load()
		st.Pushed += t.pushed.Load()
	}
	st.State, st.Finished, st.Error = j.state, j.finished, j.err
	j.mu.Unlock()
	return st
}

func (j *Job) setTasks(ts []*Task) {
	j.mu.Lock()
	j.tasks = ts
	j.mu.Unlock()
}

func (j *Job) running() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state == JobRunning
}

func (j *Job) finish(now int64, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = now
	if err != nil {
		j.state, j.err = JobFailed, err.Error()
		return
	}
	j.state = JobDone
}

// jobStore keeps jobs queryable: every running job and the most recent
// finished ones, up to keep in all.
type jobStore struct {
	mu    sync.Mutex
	keep  int
	byID  map[uint64]*Job
	order []uint64 // oldest first
}

func newJobStore(keep int) *jobStore {
	return &jobStore{keep: keep, byID: make(map[uint64]*Job)}
}

func (st *jobStore) add(j *Job) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.byID[j.ID] = j
	st.order = append(st.order, j.ID)
	// Evict the oldest finished jobs; running ones are few (MaxJobs) and stay.
	for i := 0; len(st.byID) > st.keep && i < len(st.order); {
		id := st.order[i]
		if st.byID[id].running() {
			i++
			continue
		}
		delete(st.byID, id)
		st.order = append(st.order[:i], st.order[i+1:]...)
	}
}

func (st *jobStore) get(id uint64) (*Job, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	j, ok := st.byID[id]
	return j, ok
}
