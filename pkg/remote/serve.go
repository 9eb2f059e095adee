package remote

import (
	"context"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// RegisterAPI is the register service as other processes call it
// (register.Service).
type RegisterAPI interface {
	Register(ctx context.Context, sess push.Session) ([]push.Session, error)
	Unregister(ctx context.Context, uid, room string, connID uint64) (bool, error)
	SetApps(ctx context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error)
	Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error)
	Lookup(ctx context.Context, uids []string) ([]push.Session, error)
	Scan(ctx context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error)
	Counts(ctx context.Context) (push.Counts, error)
	// DropRoom removes every session of a room instance that is gone for
	// good (Registers' room reaper) and returns how many.
	DropRoom(ctx context.Context, room string) (int, error)
	// Restore stores sessions re-announced by a room after the register
	// restarted or took over their uids. It never reports a replaced
	// session (nothing is kicked); a uid whose stored session is another
	// connection that logged in no earlier is left alone.
	Restore(ctx context.Context, sessions []push.Session) error
}

// SaverAPI is the saver service as other processes call it (saver.Service).
type SaverAPI interface {
	Save(ctx context.Context, msg push.Message, uids []string) error
	SaveBroadcast(ctx context.Context, msg push.Message) error
	Load(ctx context.Context, uid string, apps []uint32) ([]push.Message, error)
	// Ack acts only on messages of apps (the apps the caller acts for);
	// other apps' ids are ignored like unknown ones.
	Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error)
	// AckMany is Ack for each entry in order, in one call (saver.Store.AckMany),
	// within push.CheckAckBatch's bounds.
	AckMany(ctx context.Context, acks []push.AckReq) (int, error)
	Stats(ctx context.Context) (push.StoreStats, error)
	// UserStats counts uid's messages of app; app 0 counts every app.
	UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error)
	// OpenStatus creates a message's delivery status record (uids: its
	// unicast or multicast recipients); AddSent records batched writes to
	// sockets; Status and UserState read the record of app's message
	// (another app's answers as unknown; app 0 reads any, operators only).
	OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error
	AddSent(ctx context.Context, deltas []push.StatusDelta) error
	// Checkpoint makes the broadcast cursors of ended sessions durable
	// (saver.Store.Checkpoint); repeating it is harmless.
	Checkpoint(ctx context.Context, ends []push.SessionEnd) error
	Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error)
	UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error)
	// Send queue journal (saver.Store.Enqueue and the next ones): the
	// pushes waiting in a center's send queue, by owner (a center's
	// member id), so that another center can claim and re-queue them.
	Enqueue(ctx context.Context, q push.QueuedPush) error
	Dequeue(ctx context.Context, ids []uint64) error
	Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error)
	QueueOwners(ctx context.Context) ([]string, error)
	Claim(ctx context.Context, from, to string) (int, error)
	// Broadcast jobs (saver.JobBoard): any center reads a job and claims
	// its tasks (one per room) under a lease.
	CreateJob(ctx context.Context, j push.Job, rooms []string) error
	Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error)
	RunningJobs(ctx context.Context) ([]uint64, error)
	ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error)
	UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error)
	FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error)
}

// CoordinatorAPI is the coordinator as other processes call it
// (coordinator.Service; room.Coordinator).
type CoordinatorAPI interface {
	Kick(ctx context.Context, old push.Session, code int, reason string) error
	Upstream(ctx context.Context, up push.Upstream) error
	Status(ctx context.Context, ev push.StatusEvent) error
}

// RoomAPI is one room instance as other processes call it (room.Room).
type RoomAPI interface {
	Push(ctx context.Context, msg push.Message, targets []push.Target) (int, error)
	Kick(ctx context.Context, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error)
	// Broadcast delivers msg to the room's connections with msg.App bound,
	// at most perSec per second (<= 0: unpaced).
	Broadcast(ctx context.Context, msg push.Message, perSec float64) (int, error)
	// Sessions returns a snapshot of the room's authenticated sessions.
	Sessions(ctx context.Context) ([]push.Session, error)
}

// handle registers a handler that decodes the request into a fresh Req,
// bounds ctx by the caller's deadline, runs f and maps its error.
func handle[Req any, PReq interface {
	*Req
	rpc.Unmarshaler
}](s *rpc.Server, o *serveOpts, method uint16, f func(ctx context.Context, req PReq, rep *rpc.Reply) error) {
	s.Handle(method, func(ctx context.Context, body []byte, rep *rpc.Reply) error {
		req := PReq(new(Req))
		if err := req.UnmarshalBinary(body); err != nil {
			return err // wire.ErrMalformed: CodeBadRequest
		}
		if dl, ok := rep.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		return o.wireErr(f(ctx, req, rep))
	})
}

// empty is the request of methods that take no argument.
type empty struct{}

func (*empty) AppendBinary(b []byte) ([]byte, error) { return b, nil }
func (*empty) UnmarshalBinary([]byte) error          { return nil }

// ServeRegister serves api's methods on s. Call it before s.Start.
func ServeRegister(s *rpc.Server, api RegisterAPI, opts ...ServeOption) {
	o := newServeOpts(opts)
	handle(s, o, MethodRegister, func(ctx context.Context, req *sessionMsg, rep *rpc.Reply) error {
		displaced, err := api.Register(ctx, req.S)
		if err != nil {
			return err
		}
		return rep.Encode(&sessionsMsg{S: displaced})
	})
	handle(s, o, MethodUnregister, func(ctx context.Context, req *connReq, rep *rpc.Reply) error {
		ok, err := api.Unregister(ctx, req.UID, req.Room, req.ConnID)
		if err != nil {
			return err
		}
		return rep.Encode(&boolMsg{V: ok})
	})
	handle(s, o, MethodSetApps, func(ctx context.Context, req *setAppsReq, rep *rpc.Reply) error {
		displaced, ok, err := api.SetApps(ctx, req.UID, req.ConnID, req.Apps)
		if err != nil {
			return err
		}
		return rep.Encode(&setAppsResp{OK: ok, Displaced: displaced})
	})
	handle(s, o, MethodGet, func(ctx context.Context, req *getReq, rep *rpc.Reply) error {
		sess, ok, err := api.Get(ctx, req.UID, req.App)
		if err != nil {
			return err
		}
		return rep.Encode(&getResp{S: sess, OK: ok})
	})
	handle(s, o, MethodLookup, func(ctx context.Context, req *stringsMsg, rep *rpc.Reply) error {
		ss, err := api.Lookup(ctx, req.S)
		if err != nil {
			return err
		}
		return rep.Encode(&sessionsMsg{S: ss})
	})
	handle(s, o, MethodScan, func(ctx context.Context, req *scanReq, rep *rpc.Reply) error {
		ss, next, err := api.Scan(ctx, req.App, req.Cursor, req.Limit)
		if err != nil {
			return err
		}
		return rep.Encode(&scanResp{S: ss, Next: next})
	})
	handle(s, o, MethodCounts, func(ctx context.Context, _ *empty, rep *rpc.Reply) error {
		c, err := api.Counts(ctx)
		if err != nil {
			return err
		}
		return rep.Encode(&countsMsg{C: c})
	})
	handle(s, o, MethodDropRoom, func(ctx context.Context, req *stringMsg, rep *rpc.Reply) error {
		n, err := api.DropRoom(ctx, req.S)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodRestore, func(ctx context.Context, req *sessionsMsg, _ *rpc.Reply) error {
		return api.Restore(ctx, req.S)
	})
}

// ServeSaver serves api's methods on s. Call it before s.Start.
func ServeSaver(s *rpc.Server, api SaverAPI, opts ...ServeOption) {
	o := newServeOpts(opts)
	handle(s, o, MethodSave, func(ctx context.Context, req *saveReq, _ *rpc.Reply) error {
		return api.Save(ctx, req.Msg, req.UIDs)
	})
	handle(s, o, MethodSaveBroadcast, func(ctx context.Context, req *messageMsg, _ *rpc.Reply) error {
		return api.SaveBroadcast(ctx, req.M)
	})
	handle(s, o, MethodLoad, func(ctx context.Context, req *loadReq, rep *rpc.Reply) error {
		msgs, err := api.Load(ctx, req.UID, req.Apps)
		if err != nil {
			return err
		}
		return rep.Encode(&messagesMsg{M: msgs})
	})
	handle(s, o, MethodAck, func(ctx context.Context, req *ackReq, rep *rpc.Reply) error {
		n, err := api.Ack(ctx, req.UID, req.Apps, req.IDs)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodStats, func(ctx context.Context, _ *empty, rep *rpc.Reply) error {
		st, err := api.Stats(ctx)
		if err != nil {
			return err
		}
		return rep.Encode(&statsMsg{S: st})
	})
	handle(s, o, MethodUserStats, func(ctx context.Context, req *userStatsReq, rep *rpc.Reply) error {
		pending, parked, err := api.UserStats(ctx, req.UID, req.App)
		if err != nil {
			return err
		}
		return rep.Encode(&pairMsg{A: pending, B: parked})
	})
	handle(s, o, MethodOpenStatus, func(ctx context.Context, req *openStatusReq, _ *rpc.Reply) error {
		return api.OpenStatus(ctx, req.St, req.UIDs)
	})
	handle(s, o, MethodAddSent, func(ctx context.Context, req *addSentReq, _ *rpc.Reply) error {
		return api.AddSent(ctx, req.D)
	})
	handle(s, o, MethodAckMany, func(ctx context.Context, req *ackManyReq, rep *rpc.Reply) error {
		n, err := api.AckMany(ctx, req.A)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodCheckpoint, func(ctx context.Context, req *checkpointReq, _ *rpc.Reply) error {
		return api.Checkpoint(ctx, req.E)
	})
	handle(s, o, MethodStatus, func(ctx context.Context, req *statusReq, rep *rpc.Reply) error {
		st, ok, err := api.Status(ctx, req.App, req.ID)
		if err != nil {
			return err
		}
		return rep.Encode(&statusResp{St: st, OK: ok})
	})
	handle(s, o, MethodUserState, func(ctx context.Context, req *statusReq, rep *rpc.Reply) error {
		state, err := api.UserState(ctx, req.App, req.ID, req.UID)
		if err != nil {
			return err
		}
		return rep.Encode(&stringMsg{S: state})
	})
	handle(s, o, MethodEnqueue, func(ctx context.Context, req *queuedPushMsg, _ *rpc.Reply) error {
		return api.Enqueue(ctx, req.Q)
	})
	handle(s, o, MethodDequeue, func(ctx context.Context, req *idsMsg, _ *rpc.Reply) error {
		return api.Dequeue(ctx, req.IDs)
	})
	handle(s, o, MethodQueued, func(ctx context.Context, req *queuedReq, rep *rpc.Reply) error {
		qs, err := api.Queued(ctx, req.Owner, req.Limit)
		if err != nil {
			return err
		}
		return rep.Encode(&queuedResp{Q: qs})
	})
	handle(s, o, MethodQueueOwners, func(ctx context.Context, _ *empty, rep *rpc.Reply) error {
		owners, err := api.QueueOwners(ctx)
		if err != nil {
			return err
		}
		return rep.Encode(&stringsMsg{S: owners})
	})
	handle(s, o, MethodClaim, func(ctx context.Context, req *claimReq, rep *rpc.Reply) error {
		n, err := api.Claim(ctx, req.From, req.To)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodCreateJob, func(ctx context.Context, req *createJobReq, _ *rpc.Reply) error {
		return api.CreateJob(ctx, req.J, req.Rooms)
	})
	handle(s, o, MethodJob, func(ctx context.Context, req *idMsg, rep *rpc.Reply) error {
		j, ts, ok, err := api.Job(ctx, req.ID)
		if err != nil {
			return err
		}
		return rep.Encode(&jobResp{J: j, Tasks: ts, OK: ok})
	})
	handle(s, o, MethodRunningJobs, func(ctx context.Context, _ *empty, rep *rpc.Reply) error {
		ids, err := api.RunningJobs(ctx)
		if err != nil {
			return err
		}
		return rep.Encode(&idsMsg{IDs: ids})
	})
	handle(s, o, MethodClaimTask, func(ctx context.Context, req *claimTaskReq, rep *rpc.Reply) error {
		ok, err := api.ClaimTask(ctx, req.ID, req.Room, req.Owner, req.Now, req.Lease)
		if err != nil {
			return err
		}
		return rep.Encode(&boolMsg{V: ok})
	})
	handle(s, o, MethodUpdateTask, func(ctx context.Context, req *updateTaskReq, rep *rpc.Reply) error {
		ok, err := api.UpdateTask(ctx, req.ID, req.T, req.Now, req.Lease)
		if err != nil {
			return err
		}
		return rep.Encode(&boolMsg{V: ok})
	})
	handle(s, o, MethodFinishJob, func(ctx context.Context, req *finishJobReq, rep *rpc.Reply) error {
		ok, err := api.FinishJob(ctx, req.ID, req.State, req.Error, req.Now, req.Keep)
		if err != nil {
			return err
		}
		return rep.Encode(&boolMsg{V: ok})
	})
}

// ServeCoordinator serves api's methods on s. Call it before s.Start. Pass
// MapError(coordinator.ErrNoCallback, ErrNoCallback) to keep that error
// testable by callers.
func ServeCoordinator(s *rpc.Server, api CoordinatorAPI, opts ...ServeOption) {
	o := newServeOpts(opts)
	handle(s, o, MethodCoordKick, func(ctx context.Context, req *coordKickReq, _ *rpc.Reply) error {
		return api.Kick(ctx, req.Old, req.Code, req.Reason)
	})
	handle(s, o, MethodCoordUpstream, func(ctx context.Context, req *upstreamMsg, _ *rpc.Reply) error {
		return api.Upstream(ctx, req.U)
	})
	handle(s, o, MethodCoordStatus, func(ctx context.Context, req *statusMsg, _ *rpc.Reply) error {
		return api.Status(ctx, req.E)
	})
}

// ServeRoom serves api's methods on s. Call it before s.Start. A Sessions
// reply must fit in the server's MaxFrame (4 MiB: some 50 000 sessions);
// past it the caller gets rpc.ErrTooLarge.
func ServeRoom(s *rpc.Server, api RoomAPI, opts ...ServeOption) {
	o := newServeOpts(opts)
	handle(s, o, MethodRoomPush, func(ctx context.Context, req *pushReq, rep *rpc.Reply) error {
		n, err := api.Push(ctx, req.Msg, req.Targets)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodRoomKick, func(ctx context.Context, req *roomKickReq, rep *rpc.Reply) error {
		ok, err := api.Kick(ctx, req.UID, req.ConnID, req.Apps, req.Code, req.Reason)
		if err != nil {
			return err
		}
		return rep.Encode(&boolMsg{V: ok})
	})
	handle(s, o, MethodRoomBcast, func(ctx context.Context, req *broadcastReq, rep *rpc.Reply) error {
		n, err := api.Broadcast(ctx, req.Msg, req.PerSec)
		if err != nil {
			return err
		}
		return rep.Encode(&intMsg{N: n})
	})
	handle(s, o, MethodRoomSessions, func(ctx context.Context, _ *empty, rep *rpc.Reply) error {
		ss, err := api.Sessions(ctx)
		if err != nil {
			return err
		}
		return rep.Encode(&sessionsMsg{S: ss})
	})
}
