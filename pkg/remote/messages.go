package remote

import (
	"fmt"
	"math"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

// Request and reply bodies. Each encodes itself (rpc.Message) and decodes
// itself (rpc.Unmarshaler); decoders allow trailing bytes (see the package
// doc).

// decode runs f over a Reader of b and returns its error.
func decode(b []byte, f func(r *wire.Reader)) error {
	r := wire.NewReader(b)
	f(&r)
	return r.Err()
}

// sessionMsg: Register request.
type sessionMsg struct{ S push.Session }

func (m *sessionMsg) AppendBinary(b []byte) ([]byte, error) { return appendSession(b, &m.S), nil }
func (m *sessionMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readSession(r, &m.S, nil) })
}

// setAppsResp: SetApps reply (found, then the sessions that lost apps).
type setAppsResp struct {
	OK        bool
	Displaced []push.Session
}

func (m *setAppsResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendBool(b, m.OK)
	return appendSessions(b, m.Displaced), nil
}

func (m *setAppsResp) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.OK = r.Bool()
		m.Displaced = readSessions(r)
	})
}

// getReq: Get request (uid, then the app whose session is wanted).
type getReq struct {
	UID string
	App uint32
}

func (m *getReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	return wire.AppendUvarint(b, uint64(m.App)), nil
}

func (m *getReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.UID, m.App = r.String(), uint32(r.Uvarint())
	})
}

// connReq: Unregister request.
type connReq struct {
	UID, Room string
	ConnID    uint64
}

func (m *connReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	b = wire.AppendString(b, m.Room)
	return wire.AppendUint64(b, m.ConnID), nil
}

func (m *connReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.UID, m.Room, m.ConnID = r.String(), r.String(), r.Uint64()
	})
}

// setAppsReq: SetApps request.
type setAppsReq struct {
	UID    string
	ConnID uint64
	Apps   []uint32
}

func (m *setAppsReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	b = wire.AppendUint64(b, m.ConnID)
	return appendApps(b, m.Apps), nil
}

func (m *setAppsReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.UID, m.ConnID, m.Apps = r.String(), r.Uint64(), readApps(r)
	})
}

// boolMsg: a bool reply.
type boolMsg struct{ V bool }

func (m *boolMsg) AppendBinary(b []byte) ([]byte, error) { return wire.AppendBool(b, m.V), nil }
func (m *boolMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.V = r.Bool() })
}

// intMsg: an int reply (varint).
type intMsg struct{ N int }

func (m *intMsg) AppendBinary(b []byte) ([]byte, error) { return wire.AppendVarint(b, int64(m.N)), nil }
func (m *intMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.N = int(r.Varint()) })
}

// pairMsg: a reply of two ints (UserStats: pending, parked).
type pairMsg struct{ A, B int }

func (m *pairMsg) AppendBinary(b []byte) ([]byte, error) {
	return wire.AppendVarint(wire.AppendVarint(b, int64(m.A)), int64(m.B)), nil
}
func (m *pairMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.A, m.B = int(r.Varint()), int(r.Varint()) })
}

// getResp: Get reply (found, then the session).
type getResp struct {
	S  push.Session
	OK bool
}

func (m *getResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendBool(b, m.OK)
	if m.OK {
		b = appendSession(b, &m.S)
	}
	return b, nil
}

func (m *getResp) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.S = push.Session{}
		if m.OK = r.Bool(); m.OK {
			readSession(r, &m.S, nil)
		}
	})
}

// stringsMsg: Lookup request.
type stringsMsg struct{ S []string }

func (m *stringsMsg) AppendBinary(b []byte) ([]byte, error) { return appendStrings(b, m.S), nil }
func (m *stringsMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.S = readStrings(r) })
}

// sessionsMsg: Lookup and Sessions reply, Restore request.
type sessionsMsg struct{ S []push.Session }

func (m *sessionsMsg) AppendBinary(b []byte) ([]byte, error) { return appendSessions(b, m.S), nil }
func (m *sessionsMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.S = readSessions(r) })
}

// scanReq: Scan request.
type scanReq struct {
	App    uint32
	Cursor uint64
	Limit  int
}

func (m *scanReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint32(b, m.App)
	b = wire.AppendUint64(b, m.Cursor)
	return wire.AppendVarint(b, int64(m.Limit)), nil
}

func (m *scanReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.App, m.Cursor, m.Limit = r.Uint32(), r.Uint64(), int(r.Varint())
	})
}

// scanResp: Scan reply (next cursor, then the page).
type scanResp struct {
	S    []push.Session
	Next uint64
}

func (m *scanResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, m.Next)
	return appendSessions(b, m.S), nil
}

func (m *scanResp) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.Next, m.S = r.Uint64(), readSessions(r) })
}

// countsMsg: Counts reply.
type countsMsg struct{ C push.Counts }

func (m *countsMsg) AppendBinary(b []byte) ([]byte, error) { return appendCounts(b, &m.C), nil }
func (m *countsMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readCounts(r, &m.C) })
}

// saveReq: Save request.
type saveReq struct {
	Msg  push.Message
	UIDs []string
}

func (m *saveReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendMessage(b, &m.Msg)
	return appendStrings(b, m.UIDs), nil
}

func (m *saveReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		readMessage(r, &m.Msg)
		m.UIDs = readStrings(r)
	})
}

// messageMsg: SaveBroadcast request.
type messageMsg struct{ M push.Message }

func (m *messageMsg) AppendBinary(b []byte) ([]byte, error) { return appendMessage(b, &m.M), nil }
func (m *messageMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readMessage(r, &m.M) })
}

// loadReq: Load request.
type loadReq struct {
	UID  string
	Apps []uint32
}

func (m *loadReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	return appendApps(b, m.Apps), nil
}

func (m *loadReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.UID, m.Apps = r.String(), readApps(r) })
}

// messagesMsg: Load reply.
type messagesMsg struct{ M []push.Message }

func (m *messagesMsg) AppendBinary(b []byte) ([]byte, error) { return appendMessages(b, m.M), nil }
func (m *messagesMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.M = readMessages(r) })
}

// ackReq: Ack request: uid string | ids | apps. The apps were added after
// the first version; a request without them (a caller from before apps
// were tenants) is refused as malformed rather than read as "no app".
type ackReq struct {
	UID  string
	IDs  []uint64
	Apps []uint32
}

func (m *ackReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	b = appendIDs(b, m.IDs)
	return appendApps(b, m.Apps), nil
}

func (m *ackReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.UID, m.IDs, m.Apps = r.String(), readIDs(r), readApps(r) })
}

// ackManyReq: AckMany request: count, then (uid string | apps | ids) per
// entry. Bounded as push.CheckAckBatch has it: the encoder refuses a
// bigger batch (push.ErrAckBatch) and the decoder a bigger request
// (ErrMalformed), before it allocates for what is past the bounds.
type ackManyReq struct{ A []push.AckReq }

// minAckReq is the smallest encoded entry: uid, apps count, ids count.
const minAckReq = 1 + 1 + 1

func (m *ackManyReq) AppendBinary(b []byte) ([]byte, error) {
	if err := push.CheckAckBatch(m.A); err != nil {
		return b, err
	}
	b = wire.AppendUvarint(b, uint64(len(m.A)))
	for i := range m.A {
		b = wire.AppendString(b, m.A[i].UID)
		b = appendApps(b, m.A[i].Apps)
		b = appendIDs(b, m.A[i].IDs)
	}
	return b, nil
}

func (m *ackManyReq) UnmarshalBinary(b []byte) error {
	var bound error
	err := decode(b, func(r *wire.Reader) {
		m.A = nil
		n := r.Count(minAckReq)
		if n == 0 {
			return
		}
		if n > push.MaxAckEntries {
			bound = fmt.Errorf("%w: ack batch of %d entries, at most %d", wire.ErrMalformed, n, push.MaxAckEntries)
			return
		}
		m.A = make([]push.AckReq, n)
		ids := 0
		for i := range m.A {
			a := &m.A[i]
			a.UID = r.String()
			a.Apps = readApps(r)
			a.IDs = readIDs(r)
			ids += len(a.IDs)
			switch {
			case len(a.Apps) > push.MaxAckApps:
				bound = fmt.Errorf("%w: ack entry %d has %d apps, at most %d", wire.ErrMalformed, i, len(a.Apps), push.MaxAckApps)
			case ids > push.MaxAckIDs:
				bound = fmt.Errorf("%w: ack batch of more than %d ids", wire.ErrMalformed, push.MaxAckIDs)
			}
			if bound != nil || r.Err() != nil {
				return
			}
		}
	})
	if bound != nil {
		m.A = nil
		return bound
	}
	return err
}

// userStatsReq: UserStats request: uid string | app uint32 (0: every app).
// A request of the first version (uid alone) is refused as malformed, so
// that an old caller never gets every app's counts.
type userStatsReq struct {
	UID string
	App uint32
}

func (m *userStatsReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	return wire.AppendUint32(b, m.App), nil
}

func (m *userStatsReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.UID, m.App = r.String(), r.Uint32() })
}

// openStatusReq: OpenStatus request: status | uids.
type openStatusReq struct {
	St   push.MessageStatus
	UIDs []string
}

func (m *openStatusReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendMessageStatus(b, &m.St)
	return appendStrings(b, m.UIDs), nil
}

func (m *openStatusReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		readMessageStatus(r, &m.St)
		m.UIDs = readStrings(r)
	})
}

// addSentReq: AddSent request: count, then (id uint64 | app uint32 | uid
// string | sent varint) each; then, when some delta has Targets, the count
// again and targets varint each. The targets come after the list (not in
// each delta) so that a saver of the first version, which ignores trailing
// bytes, still reads the deltas.
type addSentReq struct{ D []push.StatusDelta }

func (m *addSentReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUvarint(b, uint64(len(m.D)))
	targets := false
	for _, d := range m.D {
		b = wire.AppendUint64(b, d.MsgID)
		b = wire.AppendUint32(b, d.App)
		b = wire.AppendString(b, d.UID)
		b = wire.AppendVarint(b, d.Sent)
		targets = targets || d.Targets != 0
	}
	if targets {
		b = wire.AppendUvarint(b, uint64(len(m.D)))
		for _, d := range m.D {
			b = wire.AppendVarint(b, d.Targets)
		}
	}
	return b, nil
}

func (m *addSentReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.D = nil
		n := r.Count(minDelta)
		if n == 0 {
			return
		}
		m.D = make([]push.StatusDelta, n)
		for i := range m.D {
			d := &m.D[i]
			d.MsgID, d.App, d.UID, d.Sent = r.Uint64(), r.Uint32(), r.String(), r.Varint()
		}
		if r.Len() == 0 {
			return // no targets: a caller of the first version, or none to add
		}
		if r.Uvarint() != uint64(n) {
			return // not this section: a later version's field
		}
		for i := range m.D {
			m.D[i].Targets = r.Varint()
		}
	})
}

// checkpointReq: Checkpoint request: count, then (uid string | apps
// count, uint32 each) per ended session.
type checkpointReq struct{ E []push.SessionEnd }

// minEnd is the smallest encoded session end: uid, apps count.
const minEnd = 1 + 1

func (m *checkpointReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUvarint(b, uint64(len(m.E)))
	for i := range m.E {
		b = wire.AppendString(b, m.E[i].UID)
		b = appendApps(b, m.E[i].Apps)
	}
	return b, nil
}

func (m *checkpointReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.E = nil
		n := r.Count(minEnd)
		if n == 0 {
			return
		}
		m.E = make([]push.SessionEnd, n)
		for i := range m.E {
			m.E[i].UID = r.String()
			m.E[i].Apps = readApps(r)
		}
	})
}

// statusReq: Status request (app uint32 | id uint64) and UserState request
// (the same, then uid string).
type statusReq struct {
	App uint32
	ID  uint64
	UID string
}

func (m *statusReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint32(b, m.App)
	b = wire.AppendUint64(b, m.ID)
	return wire.AppendString(b, m.UID), nil
}

func (m *statusReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.App, m.ID, m.UID = r.Uint32(), r.Uint64(), r.String() })
}

// statusResp: Status reply (found, then the status).
type statusResp struct {
	St push.MessageStatus
	OK bool
}

func (m *statusResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendBool(b, m.OK)
	if m.OK {
		b = appendMessageStatus(b, &m.St)
	}
	return b, nil
}

func (m *statusResp) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.St = push.MessageStatus{}
		if m.OK = r.Bool(); m.OK {
			readMessageStatus(r, &m.St)
		}
	})
}

// statsMsg: Stats reply.
type statsMsg struct{ S push.StoreStats }

func (m *statsMsg) AppendBinary(b []byte) ([]byte, error) { return appendStoreStats(b, &m.S), nil }
func (m *statsMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readStoreStats(r, &m.S) })
}

// coordKickReq: coordinator Kick request.
type coordKickReq struct {
	Old    push.Session
	Code   int
	Reason string
}

func (m *coordKickReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendSession(b, &m.Old)
	b = wire.AppendVarint(b, int64(m.Code))
	return wire.AppendString(b, m.Reason), nil
}

func (m *coordKickReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		readSession(r, &m.Old, nil)
		m.Code, m.Reason = int(r.Varint()), r.String()
	})
}

// upstreamMsg: Upstream request.
type upstreamMsg struct{ U push.Upstream }

func (m *upstreamMsg) AppendBinary(b []byte) ([]byte, error) { return appendUpstream(b, &m.U), nil }
func (m *upstreamMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readUpstream(r, &m.U) })
}

// statusMsg: Status request.
type statusMsg struct{ E push.StatusEvent }

func (m *statusMsg) AppendBinary(b []byte) ([]byte, error) { return appendStatus(b, &m.E), nil }
func (m *statusMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readStatus(r, &m.E) })
}

// pushReq: room Push request.
type pushReq struct {
	Msg     push.Message
	Targets []push.Target
}

func (m *pushReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendMessage(b, &m.Msg)
	return appendTargets(b, m.Targets), nil
}

func (m *pushReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		readMessage(r, &m.Msg)
		m.Targets = readTargets(r)
	})
}

// broadcastReq: room Broadcast request.
type broadcastReq struct {
	Msg    push.Message
	PerSec float64
}

func (m *broadcastReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendMessage(b, &m.Msg)
	return wire.AppendUint64(b, math.Float64bits(m.PerSec)), nil
}

func (m *broadcastReq) UnmarshalBinary(b []byte) error {
	err := decode(b, func(r *wire.Reader) {
		readMessage(r, &m.Msg)
		m.PerSec = math.Float64frombits(r.Uint64())
	})
	if err == nil && (math.IsNaN(m.PerSec) || math.IsInf(m.PerSec, 0)) {
		return fmt.Errorf("%w: broadcast rate %v", wire.ErrMalformed, m.PerSec)
	}
	return err
}

// roomKickReq: room Kick request (the apps to take: none = the whole connection).
type roomKickReq struct {
	UID    string
	ConnID uint64
	Apps   []uint32
	Code   int
	Reason string
}

func (m *roomKickReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.UID)
	b = wire.AppendUint64(b, m.ConnID)
	b = appendApps(b, m.Apps)
	b = wire.AppendVarint(b, int64(m.Code))
	return wire.AppendString(b, m.Reason), nil
}

func (m *roomKickReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.UID, m.ConnID, m.Apps = r.String(), r.Uint64(), readApps(r)
		m.Code, m.Reason = int(r.Varint()), r.String()
	})
}

// stringMsg: a room id request.
type stringMsg struct{ S string }

func (m *stringMsg) AppendBinary(b []byte) ([]byte, error) { return wire.AppendString(b, m.S), nil }
func (m *stringMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.S = r.String() })
}

// queuedPushMsg: Enqueue request.
type queuedPushMsg struct{ Q push.QueuedPush }

func (m *queuedPushMsg) AppendBinary(b []byte) ([]byte, error) { return appendQueuedPush(b, &m.Q), nil }
func (m *queuedPushMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { readQueuedPush(r, &m.Q) })
}

// idsMsg: Dequeue request (count, then uint64 each).
type idsMsg struct{ IDs []uint64 }

func (m *idsMsg) AppendBinary(b []byte) ([]byte, error) { return appendIDs(b, m.IDs), nil }
func (m *idsMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.IDs = readIDs(r) })
}

// queuedReq: Queued request: owner string | limit varint.
type queuedReq struct {
	Owner string
	Limit int
}

func (m *queuedReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, m.Owner)
	return wire.AppendVarint(b, int64(m.Limit)), nil
}

func (m *queuedReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.Owner, m.Limit = r.String(), int(r.Varint()) })
}

// queuedResp: Queued reply: count, then the queued pushes.
type queuedResp struct{ Q []push.QueuedPush }

func (m *queuedResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUvarint(b, uint64(len(m.Q)))
	for i := range m.Q {
		b = appendQueuedPush(b, &m.Q[i])
	}
	return b, nil
}

func (m *queuedResp) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.Q = nil
		n := r.Count(minQueued)
		if n == 0 {
			return
		}
		m.Q = make([]push.QueuedPush, n)
		for i := range m.Q {
			readQueuedPush(r, &m.Q[i])
		}
		if r.Err() != nil {
			m.Q = nil
		}
	})
}

// claimReq: Claim request: from string | to string.
type claimReq struct{ From, To string }

func (m *claimReq) AppendBinary(b []byte) ([]byte, error) {
	return wire.AppendString(wire.AppendString(b, m.From), m.To), nil
}

func (m *claimReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.From, m.To = r.String(), r.String() })
}

// Job board (saver.JobBoard). Times (now) travel as unix nanoseconds,
// durations (lease, keep) as nanoseconds, both varints.

func appendTime(b []byte, t time.Time) []byte { return wire.AppendVarint(b, t.UnixNano()) }
func readTime(r *wire.Reader) time.Time       { return time.Unix(0, r.Varint()) }

// createJobReq: CreateJob request: job | rooms.
type createJobReq struct {
	J     push.Job
	Rooms []string
}

func (m *createJobReq) AppendBinary(b []byte) ([]byte, error) {
	b = appendJob(b, &m.J)
	return appendStrings(b, m.Rooms), nil
}

func (m *createJobReq) UnmarshalBinary(b []byte) error {
	err := decode(b, func(r *wire.Reader) {
		readJob(r, &m.J)
		m.Rooms = readStrings(r)
	})
	return cmpErr(err, checkRate(m.J.Rate))
}

// checkRate refuses a rate no job has (the stores refuse it too): NaN
// would not even compare equal to itself.
func checkRate(rate float64) error {
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		return fmt.Errorf("%w: job rate %v", wire.ErrMalformed, rate)
	}
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// idMsg: Job request (id uint64).
type idMsg struct{ ID uint64 }

func (m *idMsg) AppendBinary(b []byte) ([]byte, error) { return wire.AppendUint64(b, m.ID), nil }
func (m *idMsg) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) { m.ID = r.Uint64() })
}

// jobResp: Job reply: found bool, then job | tasks count, task each.
type jobResp struct {
	J     push.Job
	Tasks []push.JobTask
	OK    bool
}

func (m *jobResp) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendBool(b, m.OK)
	if !m.OK {
		return b, nil
	}
	b = appendJob(b, &m.J)
	b = wire.AppendUvarint(b, uint64(len(m.Tasks)))
	for i := range m.Tasks {
		b = appendJobTask(b, &m.Tasks[i])
	}
	return b, nil
}

func (m *jobResp) UnmarshalBinary(b []byte) error {
	err := decode(b, func(r *wire.Reader) {
		m.J, m.Tasks = push.Job{}, nil
		if m.OK = r.Bool(); !m.OK {
			return
		}
		readJob(r, &m.J)
		if n := r.Count(minJobTask); n > 0 {
			m.Tasks = make([]push.JobTask, n)
			for i := range m.Tasks {
				readJobTask(r, &m.Tasks[i])
			}
		}
		if r.Err() != nil {
			m.Tasks = nil
		}
	})
	return cmpErr(err, checkRate(m.J.Rate))
}

// claimTaskReq: ClaimTask request: id uint64 | room string | owner string |
// now | lease varint.
type claimTaskReq struct {
	ID          uint64
	Room, Owner string
	Now         time.Time
	Lease       time.Duration
}

func (m *claimTaskReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, m.ID)
	b = wire.AppendString(b, m.Room)
	b = wire.AppendString(b, m.Owner)
	b = appendTime(b, m.Now)
	return wire.AppendVarint(b, int64(m.Lease)), nil
}

func (m *claimTaskReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.ID, m.Room, m.Owner = r.Uint64(), r.String(), r.String()
		m.Now, m.Lease = readTime(r), time.Duration(r.Varint())
	})
}

// updateTaskReq: UpdateTask request: id uint64 | task | now | lease varint.
type updateTaskReq struct {
	ID    uint64
	T     push.JobTask
	Now   time.Time
	Lease time.Duration
}

func (m *updateTaskReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, m.ID)
	b = appendJobTask(b, &m.T)
	b = appendTime(b, m.Now)
	return wire.AppendVarint(b, int64(m.Lease)), nil
}

func (m *updateTaskReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.ID = r.Uint64()
		readJobTask(r, &m.T)
		m.Now, m.Lease = readTime(r), time.Duration(r.Varint())
	})
}

// finishJobReq: FinishJob request: id uint64 | state string | error string
// | now | keep varint.
type finishJobReq struct {
	ID           uint64
	State, Error string
	Now          time.Time
	Keep         time.Duration
}

func (m *finishJobReq) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, m.ID)
	b = wire.AppendString(b, m.State)
	b = wire.AppendString(b, m.Error)
	b = appendTime(b, m.Now)
	return wire.AppendVarint(b, int64(m.Keep)), nil
}

func (m *finishJobReq) UnmarshalBinary(b []byte) error {
	return decode(b, func(r *wire.Reader) {
		m.ID, m.State, m.Error = r.Uint64(), r.String(), r.String()
		m.Now, m.Keep = readTime(r), time.Duration(r.Varint())
	})
}
