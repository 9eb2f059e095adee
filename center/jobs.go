package center

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
// walks its own connections, so a broadcast needs no register scan and the
// center's share of the work is one call per room. Its progress is the sum
// of its tasks'.
type Job struct {
	ID     uint64
	App    uint32
	Msg    push.Message
	Rate   float64 // deliveries per second, all tasks together
	Stored bool    // the message was stored for users offline now
	// Deadline is when the job is failed if it has not finished:
	// center.job_deadline after the start, or the message's expiry if that
	// comes first.
	Deadline time.Time

	started int64   // unix seconds
	release func()  // gives the job's slot back; idempotent
	appRate float64 // the app's broadcast_rate, shared by its running jobs

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
	JobID   string `json:"job_id"`
	MsgID   string `json:"msg_id"`
	App     uint32 `json:"app"`
	State   string `json:"state"`
	Targets int64  `json:"targets"`
	Pushed  int64  `json:"pushed"`
	Stored  int64  `json:"stored"`
	// Sent and Acked come from the message's delivery status: they move
	// while the job runs (the rooms report their writes every tick).
	Sent     int64  `json:"sent"`
	Acked    int64  `json:"acked"`
	Started  int64  `json:"started"`
	Finished int64  `json:"finished,omitempty"`
	Deadline int64  `json:"deadline,omitempty"` // unix: failed if still running then
	Error    string `json:"error,omitempty"`
}

func (j *Job) status() jobStatus {
	st := jobStatus{
		JobID:   strconv.FormatUint(j.ID, 10),
		MsgID:   strconv.FormatUint(j.Msg.ID, 10),
		App:     j.App,
		Started: j.started,
	}
	if !j.Deadline.IsZero() {
		st.Deadline = j.Deadline.Unix()
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

// jobSlots counts the broadcast jobs running on this center, in total and
// per app, so that one app cannot take every slot: a job with a very low
// rate holds its slot for as long as its deadline allows.
type jobSlots struct {
	mu     sync.Mutex
	total  int
	perApp map[uint32]int
}

// Why acquire refused a slot (the reason label of the refusal metric).
const (
	slotsOfApp   = "app_slots"
	slotsOfTotal = "total_slots"
)

// acquire takes one slot of app when the app has fewer than maxPerApp jobs
// running and the center fewer than maxTotal. It returns the function that
// gives the slot back (it does so once, however often it is called), or
// the reason of the refusal.
func (js *jobSlots) acquire(app uint32, maxTotal, maxPerApp int) (release func(), refused string) {
	js.mu.Lock()
	defer js.mu.Unlock()
	switch {
	case js.perApp[app] >= maxPerApp:
		return nil, slotsOfApp
	case js.total >= maxTotal:
		return nil, slotsOfTotal
	}
	if js.perApp == nil {
		js.perApp = make(map[uint32]int)
	}
	js.total++
	js.perApp[app]++
	var once sync.Once
	return func() {
		once.Do(func() {
			js.mu.Lock()
			defer js.mu.Unlock()
			js.total--
			if js.perApp[app]--; js.perApp[app] <= 0 {
				delete(js.perApp, app)
			}
		})
	}, ""
}

// running returns the jobs holding a slot, in total and of app.
func (js *jobSlots) running(app uint32) (total, ofApp int) {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.total, js.perApp[app]
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

// byMsg returns the kept job of app's broadcast message id, or nil.
func (st *jobStore) byMsg(app uint32, id uint64) *Job {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, j := range st.byID {
		if j.Msg.ID == id && j.App == app {
			return j
		}
	}
	return nil
}

func (st *jobStore) get(id uint64) (*Job, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	j, ok := st.byID[id]
	return j, ok
}
