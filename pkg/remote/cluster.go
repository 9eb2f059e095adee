package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// router sends a call about a key to the rendezvous owner of the key among
// the live members of a role, and once more to the runner-up if the owner
// was unavailable (for roles whose instances are interchangeable: savers
// over one shared store, coordinators). An idempotent call is also retried
// when the connection broke with it in flight (rpc.ErrConnLost: the owner
// may have run it).
type router struct {
	m    Members
	pool *Pool
	role string
}

func (r router) call(ctx context.Context, key string, idempotent bool, f func(ctx context.Context, c *rpc.Client) error) error {
	ms := live(r.m, r.role)
	first, second := owners(ms, key)
	if first < 0 {
		return noMember(r.role)
	}
	ctx, cancel := withTimeout(ctx, DefaultTimeout) // both tries together
	defer cancel()
	err := r.try(ctx, ms[first], f)
	if err != nil && second >= 0 && ctx.Err() == nil && (failover(err) || idempotent && errors.Is(err, rpc.ErrConnLost)) {
		mFailover.WithLabelValues(r.role).Inc()
		err = r.try(ctx, ms[second], f)
	}
	return err
}

func (r router) try(ctx context.Context, m push.Member, f func(ctx context.Context, c *rpc.Client) error) error {
	c, err := r.pool.Get(m.RPCAddr)
	if err == nil {
		err = f(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("remote %s %s: %w", r.role, m.ID, err)
	}
	return nil
}

// Saver is the saver service of a cluster. The savers are expected to share
// one store (RedisStore): Load and Ack go to the rendezvous owner of the uid
// (its cache stays warm), a Save goes to one saver (the owner of its first
// uid), and a call is tried once more on another saver when the first is
// unavailable or its connection broke (every saver call is idempotent: a
// message is stored by id). No live saver: ErrNoMember (push.ErrUnavailable).
type Saver struct{ r router }

// NewSaver returns a client of the "saver" members of m; it does no I/O.
func NewSaver(m Members, p *Pool) *Saver {
	return &Saver{r: router{m: m, pool: p, role: RoleSaver}}
}

// Save stores msg for every uid (see saver.Service.Save).
func (s *Saver) Save(ctx context.Context, msg push.Message, uids []string) error {
	key := ""
	if len(uids) > 0 {
		key = uids[0]
	}
	return s.r.call(ctx, key, true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.Save(ctx, msg, uids)
	})
}

// SaveBroadcast stores a broadcast once.
func (s *Saver) SaveBroadcast(ctx context.Context, msg push.Message) error {
	return s.r.call(ctx, "app:"+strconv.FormatUint(uint64(msg.App), 10), true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.SaveBroadcast(ctx, msg)
	})
}

// Load returns the uid's stored messages of apps.
func (s *Saver) Load(ctx context.Context, uid string, apps []uint32) ([]push.Message, error) {
	var out []push.Message
	err := s.r.call(ctx, uid, true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		out, err = SaverClient{C: c}.Load(ctx, uid, apps)
		return err
	})
	return out, err
}

// Ack deletes the uid's messages ids of apps and returns how many took
// effect; other apps' ids are ignored like unknown ones.
func (s *Saver) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	var n int
	err := s.r.call(ctx, uid, true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		n, err = SaverClient{C: c}.Ack(ctx, uid, apps, ids)
		return err
	})
	return n, err
}

// AckMany applies many ACKs in one call on one saver (savers share the
// store: the first uid only spreads the calls) and returns the total
// count that took effect. ACKs are idempotent, so it is retried on
// another saver after a connection lost in flight.
func (s *Saver) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	if len(acks) == 0 {
		return 0, nil
	}
	var n int
	err := s.r.call(ctx, acks[0].UID, true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		n, err = SaverClient{C: c}.AckMany(ctx, acks)
		if errors.Is(err, rpc.ErrUnknownMethod) {
			// A saver of the previous version (a rolling upgrade): one
			// Ack per entry, as the rooms did before AckMany.
			n, err = ackEach(ctx, SaverClient{C: c}, acks)
		}
		return err
	})
	return n, err
}

// ackEach applies acks one Ack call at a time.
func ackEach(ctx context.Context, c SaverClient, acks []push.AckReq) (int, error) {
	total := 0
	for _, a := range acks {
		n, err := c.Ack(ctx, a.UID, a.Apps, a.IDs)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// UserStats returns the uid's stored and parked message counts of app
// (0: every app).
func (s *Saver) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	err = s.r.call(ctx, uid, true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		pending, parked, err = SaverClient{C: c}.UserStats(ctx, uid, app)
		return err
	})
	return pending, parked, err
}

// msgKey is the routing key of a message's delivery status.
func msgKey(id uint64) string { return "msg:" + strconv.FormatUint(id, 10) }

// OpenStatus creates a message's delivery status record.
func (s *Saver) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	return s.r.call(ctx, msgKey(st.MsgID), true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.OpenStatus(ctx, st, uids)
	})
}

// AddSent records a batch of writes to sockets, on one saver (the owner
// of the first delta's message). Not idempotent (Sent counts writes): it
// is tried on another saver only when the first was unavailable, never
// after a connection lost with the call in flight.
func (s *Saver) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	key := ""
	if len(deltas) > 0 {
		key = msgKey(deltas[0].MsgID)
	}
	return s.r.call(ctx, key, false, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.AddSent(ctx, deltas)
	})
}

// Checkpoint makes the broadcast cursors of ended sessions durable, on one
// saver (savers share the store: the first uid only spreads the calls).
// Idempotent (a cursor row keeps the highest write count), so it is
// retried on another saver after a connection lost in flight.
func (s *Saver) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	if len(ends) == 0 {
		return nil
	}
	return s.r.call(ctx, ends[0].UID, true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.Checkpoint(ctx, ends)
	})
}

// Status returns the delivery status of app's message msgID.
func (s *Saver) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	var st push.MessageStatus
	var ok bool
	err := s.r.call(ctx, msgKey(msgID), true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		st, ok, err = SaverClient{C: c}.Status(ctx, app, msgID)
		return err
	})
	return st, ok, err
}

// UserState returns uid's state of app's message msgID.
func (s *Saver) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	var state string
	err := s.r.call(ctx, msgKey(msgID), true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		state, err = SaverClient{C: c}.UserState(ctx, app, msgID, uid)
		return err
	})
	return state, err
}

// queueKey is the routing key of an owner's send queue journal (savers
// share one store: the key only spreads the calls).
func queueKey(owner string) string { return "sq:" + owner }

// Enqueue journals a push waiting in a center's send queue.
func (s *Saver) Enqueue(ctx context.Context, q push.QueuedPush) error {
	return s.r.call(ctx, queueKey(q.Owner), true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.Enqueue(ctx, q)
	})
}

// Dequeue forgets journaled pushes.
func (s *Saver) Dequeue(ctx context.Context, ids []uint64) error {
	key := ""
	if len(ids) > 0 {
		key = msgKey(ids[0])
	}
	return s.r.call(ctx, key, true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.Dequeue(ctx, ids)
	})
}

// Queued lists owner's journaled pushes in id order.
func (s *Saver) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	var out []push.QueuedPush
	err := s.r.call(ctx, queueKey(owner), true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		out, err = SaverClient{C: c}.Queued(ctx, owner, limit)
		return err
	})
	return out, err
}

// QueueOwners lists the owners of journaled pushes.
func (s *Saver) QueueOwners(ctx context.Context) ([]string, error) {
	var out []string
	err := s.r.call(ctx, "sq", true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		out, err = SaverClient{C: c}.QueueOwners(ctx)
		return err
	})
	return out, err
}

// Claim moves every journaled push of from to to. Its count is not
// idempotent (a repeated Claim moves nothing and returns 0): it is tried on
// another saver only when the first was unavailable, never after a
// connection lost with the call in flight; the caller that gets an error
// may Claim again and reads the result with Queued.
func (s *Saver) Claim(ctx context.Context, from, to string) (int, error) {
	var n int
	err := s.r.call(ctx, queueKey(from), false, func(ctx context.Context, c *rpc.Client) error {
		var err error
		n, err = SaverClient{C: c}.Claim(ctx, from, to)
		return err
	})
	return n, err
}

// jobKey is the routing key of a broadcast job (savers share one store:
// the key only spreads the calls).
func jobKey(id uint64) string { return "job:" + strconv.FormatUint(id, 10) }

// CreateJob records a broadcast job with one pending task per room.
func (s *Saver) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	return s.r.call(ctx, jobKey(j.ID), true, func(ctx context.Context, c *rpc.Client) error {
		return SaverClient{C: c}.CreateJob(ctx, j, rooms)
	})
}

// Job returns a job and its tasks; false when unknown.
func (s *Saver) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	var j push.Job
	var ts []push.JobTask
	var ok bool
	err := s.r.call(ctx, jobKey(id), true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		j, ts, ok, err = SaverClient{C: c}.Job(ctx, id)
		return err
	})
	return j, ts, ok, err
}

// RunningJobs lists the ids of the running jobs.
func (s *Saver) RunningJobs(ctx context.Context) ([]uint64, error) {
	var ids []uint64
	err := s.r.call(ctx, "jobs", true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		ids, err = SaverClient{C: c}.RunningJobs(ctx)
		return err
	})
	return ids, err
}

// ClaimTask gives owner the task of room under a lease. Idempotent: a
// repeat by the owner that got it renews it and answers true again.
func (s *Saver) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	var ok bool
	err := s.r.call(ctx, jobKey(id), true, func(ctx context.Context, c *rpc.Client) error {
		var err error
		ok, err = SaverClient{C: c}.ClaimTask(ctx, id, room, owner, now, lease)
		return err
	})
	return ok, err
}

// UpdateTask writes a held task's progress. A repeat of a final update
// answers false (the task is final already), so it is tried on another
// saver only when the first was unavailable, never after a connection
// lost with the call in flight.
func (s *Saver) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	var ok bool
	err := s.r.call(ctx, jobKey(id), false, func(ctx context.Context, c *rpc.Client) error {
		var err error
		ok, err = SaverClient{C: c}.UpdateTask(ctx, id, t, now, lease)
		return err
	})
	return ok, err
}

// FinishJob sets a running job's final state; like UpdateTask, a repeat
// answers false, so it is not retried after a lost connection.
func (s *Saver) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	var ok bool
	err := s.r.call(ctx, jobKey(id), false, func(ctx context.Context, c *rpc.Client) error {
		var err error
		ok, err = SaverClient{C: c}.FinishJob(ctx, id, state, errMsg, now, keep)
		return err
	})
	return ok, err
}

// Stats asks every live saver. The counters of what a process did since it
// started (Saved, Acked, Expired) are summed; what the store holds (Pending,
// PendingPerApp, Broadcasts, Parked) is taken from the saver reporting the
// most, since savers share one store and each reports all of it. Savers that
// are down are skipped; if every saver fails, so does Stats.
func (s *Saver) Stats(ctx context.Context) (push.StoreStats, error) {
	ms := live(s.r.m, RoleSaver)
	if len(ms) == 0 {
		return push.StoreStats{}, noMember(RoleSaver)
	}
	ctx, cancel := withTimeout(ctx, DefaultTimeout)
	defer cancel()
	sum := push.StoreStats{PendingPerApp: make(map[uint32]int64)}
	var errs []error
	for _, m := range ms {
		var st push.StoreStats
		err := s.r.try(ctx, m, func(ctx context.Context, c *rpc.Client) error {
			var err error
			st, err = SaverClient{C: c}.Stats(ctx)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sum.Saved += st.Saved
		sum.Acked += st.Acked
		sum.Expired += st.Expired
		if st.Pending > sum.Pending || (st.Pending == sum.Pending && len(st.PendingPerApp) > len(sum.PendingPerApp)) {
			sum.Pending = st.Pending
			clear(sum.PendingPerApp)
			for k, v := range st.PendingPerApp {
				sum.PendingPerApp[k] = v
			}
		}
		sum.Broadcasts = max(sum.Broadcasts, st.Broadcasts)
		sum.Parked = max(sum.Parked, st.Parked)
	}
	if len(errs) == len(ms) {
		return push.StoreStats{}, errors.Join(errs...)
	}
	return sum, nil
}

// Coordinator is the coordinator service of a cluster: each call goes to the
// rendezvous owner of its uid among the live "coordinator" members (so one
// user's events keep their order), and once more to another coordinator when
// that one is unavailable (and, for Kick only, when the connection broke: a
// second Upstream or Status could post a callback twice). No live
// coordinator: ErrNoMember.
type Coordinator struct{ r router }

// NewCoordinator returns a client of the "coordinator" members of m; it
// does no I/O.
func NewCoordinator(m Members, p *Pool) *Coordinator {
	return &Coordinator{r: router{m: m, pool: p, role: RoleCoordinator}}
}

// Kick kicks old wherever it is.
func (c *Coordinator) Kick(ctx context.Context, old push.Session, code int, reason string) error {
	return c.r.call(ctx, old.UID, true, func(ctx context.Context, cl *rpc.Client) error {
		return CoordinatorClient{C: cl}.Kick(ctx, old, code, reason)
	})
}

// Upstream queues client data for the app's callback.
func (c *Coordinator) Upstream(ctx context.Context, up push.Upstream) error {
	return c.r.call(ctx, up.UID, false, func(ctx context.Context, cl *rpc.Client) error {
		return CoordinatorClient{C: cl}.Upstream(ctx, up)
	})
}

// Status reports an online/offline event.
func (c *Coordinator) Status(ctx context.Context, ev push.StatusEvent) error {
	return c.r.call(ctx, ev.UID, false, func(ctx context.Context, cl *rpc.Client) error {
		return CoordinatorClient{C: cl}.Status(ctx, ev)
	})
}

// Rooms reaches room instances by id: the "room" member with that ID, at its
// RPC address (center.Rooms, coordinator.Rooms). An unknown room fails with
// ErrNoMember (push.ErrUnavailable).
type Rooms struct {
	m    Members
	pool *Pool
}

// NewRooms returns a client of the "room" members of m; it does no I/O.
func NewRooms(m Members, p *Pool) *Rooms { return &Rooms{m: m, pool: p} }

func (r *Rooms) client(room string) (RoomClient, error) {
	for _, m := range r.m.Members(RoleRoom) {
		if m.ID != room || m.RPCAddr == "" {
			continue
		}
		c, err := r.pool.Get(m.RPCAddr)
		if err != nil {
			return RoomClient{}, fmt.Errorf("remote room %s: %w", room, err)
		}
		return RoomClient{C: c}, nil
	}
	return RoomClient{}, fmt.Errorf("%w %s", noMember(RoleRoom), room)
}

// Push delivers msg to targets on room and returns how many are connected
// there.
func (r *Rooms) Push(ctx context.Context, room string, msg push.Message, targets []push.Target) (int, error) {
	c, err := r.client(room)
	if err != nil {
		return 0, err
	}
	n, err := c.Push(ctx, msg, targets)
	if err != nil {
		return 0, fmt.Errorf("remote push on room %s: %w", room, err)
	}
	return n, nil
}

// Kick takes apps from connID of uid on room (room.Room.Kick); false when
// it is no longer there.
func (r *Rooms) Kick(ctx context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	c, err := r.client(room)
	if err != nil {
		return false, err
	}
	ok, err := c.Kick(ctx, uid, connID, apps, code, reason)
	if err != nil {
		return false, fmt.Errorf("remote kick %s on room %s: %w", uid, room, err)
	}
	return ok, nil
}

// Broadcast has room deliver msg to its connections with msg.App bound, at
// most perSec per second; see RoomClient.Broadcast for its deadline.
func (r *Rooms) Broadcast(ctx context.Context, room string, msg push.Message, perSec float64) (int, error) {
	c, err := r.client(room)
	if err != nil {
		return 0, err
	}
	n, err := c.Broadcast(ctx, msg, perSec)
	if err != nil {
		return 0, fmt.Errorf("remote broadcast on room %s: %w", room, err)
	}
	return n, nil
}

// IDs lists the live room members.
func (r *Rooms) IDs() []string {
	ms := r.m.Members(RoleRoom)
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.RPCAddr != "" {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Sessions returns the authenticated sessions of room.
func (r *Rooms) Sessions(ctx context.Context, room string) ([]push.Session, error) {
	c, err := r.client(room)
	if err != nil {
		return nil, err
	}
	ss, err := c.Sessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("remote sessions of room %s: %w", room, err)
	}
	return ss, nil
}
