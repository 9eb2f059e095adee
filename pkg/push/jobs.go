package push

// States of a broadcast job (GET /v1/jobs/{id}).
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// States of one sub-task of a job (one room).
const (
	TaskPending = "pending" // nobody holds it
	TaskRunning = "running" // a center holds it under a lease
	TaskDone    = "done"    // final
	TaskFailed  = "failed"  // final
)

// Job is a broadcast job as the store keeps it, shared by every center:
// any of them answers for it and resumes its sub-tasks (docs/cluster.md
// "Broadcast jobs"). Times are unix milliseconds.
type Job struct {
	ID     uint64
	App    uint32
	Msg    Message // the broadcast (Broadcast true); its payload is dropped once the job is final
	Rate   float64 // deliveries per second, all tasks together
	Stored bool    // QoS 1: stored for users offline now
	Owner  string  // member id of the center that accepted it
	// Started, Deadline: the job fails if it has not finished by Deadline.
	Started  int64
	Deadline int64
	State    string // JobRunning, JobDone or JobFailed
	Finished int64  // 0 while running
	Error    string
	// Keep is when the store drops the job (set when it finishes); a job
	// still running is dropped at Deadline plus a day.
	Keep int64
}

// JobTask is one sub-task of a job: one room delivers the message to its
// connections of the app.
type JobTask struct {
	Room    string
	State   string // TaskPending, TaskRunning, TaskDone or TaskFailed
	Owner   string // member id of the center holding the claim ("" when pending)
	Lease   int64  // unix ms: the claim lapses then, and another center may take it
	Targets int64  // connections of the app the room had when the task started
	Pushed  int64  // frames written
	Error   string
}
