package remote

import (
	"context"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// DefaultTimeout bounds a call whose ctx has no deadline.
const DefaultTimeout = 3 * time.Second

// withTimeout returns ctx bounded by d (DefaultTimeout if d <= 0) when it has
// no deadline yet.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// call makes one call with the default timeout and maps its error.
func call(ctx context.Context, c *rpc.Client, timeout time.Duration, method uint16, req rpc.Message, resp rpc.Unmarshaler) error {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	return callErr(c.Call(ctx, method, req, resp))
}

// RegisterClient calls one register instance. The zero Timeout means
// DefaultTimeout for calls whose ctx has no deadline. It is a small value:
// copy it freely.
type RegisterClient struct {
	C       *rpc.Client
	Timeout time.Duration
}

var _ RegisterAPI = RegisterClient{}

// Register implements RegisterAPI.
func (c RegisterClient) Register(ctx context.Context, sess push.Session) ([]push.Session, error) {
	var out sessionsMsg
	if err := call(ctx, c.C, c.Timeout, MethodRegister, &sessionMsg{S: sess}, &out); err != nil {
		return nil, err
	}
	return out.S, nil
}

// Unregister implements RegisterAPI.
func (c RegisterClient) Unregister(ctx context.Context, uid, room string, connID uint64) (bool, error) {
	var out boolMsg
	err := call(ctx, c.C, c.Timeout, MethodUnregister, &connReq{UID: uid, Room: room, ConnID: connID}, &out)
	return out.V, err
}

// SetApps implements RegisterAPI.
func (c RegisterClient) SetApps(ctx context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error) {
	var out setAppsResp
	err := call(ctx, c.C, c.Timeout, MethodSetApps, &setAppsReq{UID: uid, ConnID: connID, Apps: apps}, &out)
	return out.Displaced, out.OK, err
}

// Get implements RegisterAPI.
func (c RegisterClient) Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error) {
	var out getResp
	if err := call(ctx, c.C, c.Timeout, MethodGet, &getReq{UID: uid, App: app}, &out); err != nil {
		return push.Session{}, false, err
	}
	return out.S, out.OK, nil
}

// Lookup implements RegisterAPI.
func (c RegisterClient) Lookup(ctx context.Context, uids []string) ([]push.Session, error) {
	var out sessionsMsg
	err := call(ctx, c.C, c.Timeout, MethodLookup, &stringsMsg{S: uids}, &out)
	return out.S, err
}

// Scan implements RegisterAPI.
func (c RegisterClient) Scan(ctx context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error) {
	var out scanResp
	if err := call(ctx, c.C, c.Timeout, MethodScan, &scanReq{App: app, Cursor: cursor, Limit: limit}, &out); err != nil {
		return nil, 0, err
	}
	return out.S, out.Next, nil
}

// DropRoom implements RegisterAPI.
func (c RegisterClient) DropRoom(ctx context.Context, room string) (int, error) {
	var out intMsg
	err := call(ctx, c.C, c.Timeout, MethodDropRoom, &stringMsg{S: room}, &out)
	return out.N, err
}

// Counts implements RegisterAPI.
func (c RegisterClient) Counts(ctx context.Context) (push.Counts, error) {
	var out countsMsg
	if err := call(ctx, c.C, c.Timeout, MethodCounts, nil, &out); err != nil {
		return push.Counts{}, err
	}
	return out.C, nil
}

// Restore implements RegisterAPI.
func (c RegisterClient) Restore(ctx context.Context, sessions []push.Session) error {
	return call(ctx, c.C, c.Timeout, MethodRestore, &sessionsMsg{S: sessions}, nil)
}

// SaverClient calls one saver instance (see RegisterClient).
type SaverClient struct {
	C       *rpc.Client
	Timeout time.Duration
}

var _ SaverAPI = SaverClient{}

// Save implements SaverAPI.
func (c SaverClient) Save(ctx context.Context, msg push.Message, uids []string) error {
	return call(ctx, c.C, c.Timeout, MethodSave, &saveReq{Msg: msg, UIDs: uids}, nil)
}

// SaveBroadcast implements SaverAPI.
func (c SaverClient) SaveBroadcast(ctx context.Context, msg push.Message) error {
	return call(ctx, c.C, c.Timeout, MethodSaveBroadcast, &messageMsg{M: msg}, nil)
}

// Load implements SaverAPI.
func (c SaverClient) Load(ctx context.Context, uid string, apps []uint32) ([]push.Message, error) {
	var out messagesMsg
	err := call(ctx, c.C, c.Timeout, MethodLoad, &loadReq{UID: uid, Apps: apps}, &out)
	return out.M, err
}

// Ack implements SaverAPI.
func (c SaverClient) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	var out intMsg
	err := call(ctx, c.C, c.Timeout, MethodAck, &ackReq{UID: uid, IDs: ids, Apps: apps}, &out)
	return out.N, err
}

// AckMany implements SaverAPI: acks past push.CheckAckBatch's bounds are
// refused before anything is sent.
func (c SaverClient) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	var out intMsg
	err := call(ctx, c.C, c.Timeout, MethodAckMany, &ackManyReq{A: acks}, &out)
	return out.N, err
}

// Stats implements SaverAPI.
func (c SaverClient) Stats(ctx context.Context) (push.StoreStats, error) {
	var out statsMsg
	if err := call(ctx, c.C, c.Timeout, MethodStats, nil, &out); err != nil {
		return push.StoreStats{}, err
	}
	return out.S, nil
}

// UserStats implements SaverAPI.
func (c SaverClient) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	var out pairMsg
	err = call(ctx, c.C, c.Timeout, MethodUserStats, &userStatsReq{UID: uid, App: app}, &out)
	return out.A, out.B, err
}

// OpenStatus implements SaverAPI.
func (c SaverClient) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	return call(ctx, c.C, c.Timeout, MethodOpenStatus, &openStatusReq{St: st, UIDs: uids}, nil)
}

// AddSent implements SaverAPI.
func (c SaverClient) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	return call(ctx, c.C, c.Timeout, MethodAddSent, &addSentReq{D: deltas}, nil)
}

// Checkpoint implements SaverAPI.
func (c SaverClient) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	return call(ctx, c.C, c.Timeout, MethodCheckpoint, &checkpointReq{E: ends}, nil)
}

// Status implements SaverAPI.
func (c SaverClient) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	var out statusResp
	if err := call(ctx, c.C, c.Timeout, MethodStatus, &statusReq{App: app, ID: msgID}, &out); err != nil {
		return push.MessageStatus{}, false, err
	}
	return out.St, out.OK, nil
}

// UserState implements SaverAPI.
func (c SaverClient) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	var out stringMsg
	err := call(ctx, c.C, c.Timeout, MethodUserState, &statusReq{App: app, ID: msgID, UID: uid}, &out)
	return out.S, err
}

// Enqueue implements SaverAPI.
func (c SaverClient) Enqueue(ctx context.Context, q push.QueuedPush) error {
	return call(ctx, c.C, c.Timeout, MethodEnqueue, &queuedPushMsg{Q: q}, nil)
}

// Dequeue implements SaverAPI.
func (c SaverClient) Dequeue(ctx context.Context, ids []uint64) error {
	return call(ctx, c.C, c.Timeout, MethodDequeue, &idsMsg{IDs: ids}, nil)
}

// Queued implements SaverAPI.
func (c SaverClient) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	var out queuedResp
	err := call(ctx, c.C, c.Timeout, MethodQueued, &queuedReq{Owner: owner, Limit: limit}, &out)
	return out.Q, err
}

// QueueOwners implements SaverAPI.
func (c SaverClient) QueueOwners(ctx context.Context) ([]string, error) {
	var out stringsMsg
	err := call(ctx, c.C, c.Timeout, MethodQueueOwners, nil, &out)
	return out.S, err
}

// Claim implements SaverAPI.
func (c SaverClient) Claim(ctx context.Context, from, to string) (int, error) {
	var out intMsg
	err := call(ctx, c.C, c.Timeout, MethodClaim, &claimReq{From: from, To: to}, &out)
	return out.N, err
}

// CreateJob implements SaverAPI.
func (c SaverClient) CreateJob(ctx context.Context, j push.Job, rooms []string) error {
	return call(ctx, c.C, c.Timeout, MethodCreateJob, &createJobReq{J: j, Rooms: rooms}, nil)
}

// Job implements SaverAPI.
func (c SaverClient) Job(ctx context.Context, id uint64) (push.Job, []push.JobTask, bool, error) {
	var out jobResp
	if err := call(ctx, c.C, c.Timeout, MethodJob, &idMsg{ID: id}, &out); err != nil {
		return push.Job{}, nil, false, err
	}
	return out.J, out.Tasks, out.OK, nil
}

// RunningJobs implements SaverAPI.
func (c SaverClient) RunningJobs(ctx context.Context) ([]uint64, error) {
	var out idsMsg
	err := call(ctx, c.C, c.Timeout, MethodRunningJobs, nil, &out)
	return out.IDs, err
}

// ClaimTask implements SaverAPI.
func (c SaverClient) ClaimTask(ctx context.Context, id uint64, room, owner string, now time.Time, lease time.Duration) (bool, error) {
	var out boolMsg
	err := call(ctx, c.C, c.Timeout, MethodClaimTask, &claimTaskReq{ID: id, Room: room, Owner: owner, Now: now, Lease: lease}, &out)
	return out.V, err
}

// UpdateTask implements SaverAPI.
func (c SaverClient) UpdateTask(ctx context.Context, id uint64, t push.JobTask, now time.Time, lease time.Duration) (bool, error) {
	var out boolMsg
	err := call(ctx, c.C, c.Timeout, MethodUpdateTask, &updateTaskReq{ID: id, T: t, Now: now, Lease: lease}, &out)
	return out.V, err
}

// FinishJob implements SaverAPI.
func (c SaverClient) FinishJob(ctx context.Context, id uint64, state, errMsg string, now time.Time, keep time.Duration) (bool, error) {
	var out boolMsg
	err := call(ctx, c.C, c.Timeout, MethodFinishJob, &finishJobReq{ID: id, State: state, Error: errMsg, Now: now, Keep: keep}, &out)
	return out.V, err
}

// CoordinatorClient calls one coordinator instance (see RegisterClient).
type CoordinatorClient struct {
	C       *rpc.Client
	Timeout time.Duration
}

var _ CoordinatorAPI = CoordinatorClient{}

// Kick implements CoordinatorAPI.
func (c CoordinatorClient) Kick(ctx context.Context, old push.Session, code int, reason string) error {
	return call(ctx, c.C, c.Timeout, MethodCoordKick, &coordKickReq{Old: old, Code: code, Reason: reason}, nil)
}

// Upstream implements CoordinatorAPI.
func (c CoordinatorClient) Upstream(ctx context.Context, up push.Upstream) error {
	return call(ctx, c.C, c.Timeout, MethodCoordUpstream, &upstreamMsg{U: up}, nil)
}

// Status implements CoordinatorAPI.
func (c CoordinatorClient) Status(ctx context.Context, ev push.StatusEvent) error {
	return call(ctx, c.C, c.Timeout, MethodCoordStatus, &statusMsg{E: ev}, nil)
}

// RoomClient calls one room instance (see RegisterClient).
type RoomClient struct {
	C       *rpc.Client
	Timeout time.Duration
}

var _ RoomAPI = RoomClient{}

// Push implements RoomAPI.
func (c RoomClient) Push(ctx context.Context, msg push.Message, targets []push.Target) (int, error) {
	var out intMsg
	err := call(ctx, c.C, c.Timeout, MethodRoomPush, &pushReq{Msg: msg, Targets: targets}, &out)
	return out.N, err
}

// Kick implements RoomAPI.
func (c RoomClient) Kick(ctx context.Context, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	var out boolMsg
	err := call(ctx, c.C, c.Timeout, MethodRoomKick, &roomKickReq{UID: uid, ConnID: connID, Apps: apps, Code: code, Reason: reason}, &out)
	return out.V, err
}

// MaxBroadcastCall bounds a room Broadcast call whose ctx has no deadline:
// a paced broadcast lasts as long as its rate needs, not DefaultTimeout.
const MaxBroadcastCall = time.Hour

// Broadcast implements RoomAPI.
func (c RoomClient) Broadcast(ctx context.Context, msg push.Message, perSec float64) (int, error) {
	var out intMsg
	err := call(ctx, c.C, MaxBroadcastCall, MethodRoomBcast, &broadcastReq{Msg: msg, PerSec: perSec}, &out)
	return out.N, err
}

// Sessions implements RoomAPI.
func (c RoomClient) Sessions(ctx context.Context) ([]push.Session, error) {
	var out sessionsMsg
	err := call(ctx, c.C, c.Timeout, MethodRoomSessions, nil, &out)
	return out.S, err
}
