package remote

import (
	"math"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

// Smallest encodings, for wire.Reader.Count: a forged element count is
// refused before anything is allocated for it.
const (
	minSession  = 1 + 1 + 8 + 1 + 1 + 1 // uid, room, conn id, apps count, since, ip
	minMessage  = 8 + 4 + 1 + 1 + 1 + 1 // id, app, qos, expire, broadcast, payload
	minTarget   = 1 + 8                 // uid, conn id
	minApp      = 4
	minString   = 1
	minID       = 8
	minAppCount = 4 + 1                  // app, count
	minRoomCnt  = 1 + 1                  // room, count
	minDelta    = 8 + 4 + 1 + 1          // id, app, uid, sent
	minQueued   = minMessage + 1 + 1 + 1 // message, uids count, owner, at
	minJobTask  = 7                      // room, state, owner, lease, targets, pushed, error
)

// appendSession appends s:
//
//	uid string | room string | conn id uint64 | apps count, uint32 each |
//	since varint | ip string
func appendSession(b []byte, s *push.Session) []byte {
	b = wire.AppendString(b, s.UID)
	b = wire.AppendString(b, s.Room)
	b = wire.AppendUint64(b, s.ConnID)
	b = appendApps(b, s.Apps)
	b = wire.AppendVarint(b, s.Since)
	return wire.AppendString(b, s.IP)
}

// sessionScratch is shared by the sessions of one list: their Apps are cut
// from a few shared arrays, and a room id equal to the previous one is not
// allocated again (a page of sessions mostly comes from few rooms).
type sessionScratch struct {
	apps []uint32
	room string
}

// readSession decodes a session into s; sc may be nil.
func readSession(r *wire.Reader, s *push.Session, sc *sessionScratch) {
	s.UID = r.String()
	if sc == nil {
		s.Room = r.String()
	} else {
		if b := r.Bytes(); string(b) != sc.room {
			sc.room = string(b)
		}
		s.Room = sc.room
	}
	s.ConnID = r.Uint64()
	s.Apps = nil
	if n := r.Count(minApp); n > 0 {
		var buf []uint32
		if sc != nil {
			buf = sc.apps
		}
		start := len(buf)
		for range n {
			buf = append(buf, r.Uint32())
		}
		s.Apps = buf[start:len(buf):len(buf)]
		if sc != nil {
			sc.apps = buf
		}
	}
	s.Since = r.Varint()
	s.IP = r.String()
}

func appendSessions(b []byte, ss []push.Session) []byte {
	b = wire.AppendUvarint(b, uint64(len(ss)))
	for i := range ss {
		b = appendSession(b, &ss[i])
	}
	return b
}

// readSessions decodes a session list; an empty one is nil.
func readSessions(r *wire.Reader) []push.Session {
	n := r.Count(minSession)
	if n == 0 {
		return nil
	}
	out := make([]push.Session, n)
	sc := sessionScratch{apps: make([]uint32, 0, n)}
	for i := range out {
		readSession(r, &out[i], &sc)
	}
	if r.Err() != nil {
		return nil
	}
	return out
}

func appendApps(b []byte, apps []uint32) []byte {
	b = wire.AppendUvarint(b, uint64(len(apps)))
	for _, a := range apps {
		b = wire.AppendUint32(b, a)
	}
	return b
}

func readApps(r *wire.Reader) []uint32 {
	n := r.Count(minApp)
	if n == 0 {
		return nil
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = r.Uint32()
	}
	return out
}

func appendStrings(b []byte, ss []string) []byte {
	b = wire.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = wire.AppendString(b, s)
	}
	return b
}

func readStrings(r *wire.Reader) []string {
	n := r.Count(minString)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.String()
	}
	return out
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = wire.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = wire.AppendUint64(b, id)
	}
	return b
}

func readIDs(r *wire.Reader) []uint64 {
	n := r.Count(minID)
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = r.Uint64()
	}
	return out
}

// appendMessage appends m:
//
//	id uint64 | app uint32 | qos uint8 | expire varint | broadcast bool |
//	payload bytes
func appendMessage(b []byte, m *push.Message) []byte {
	b = wire.AppendUint64(b, m.ID)
	b = wire.AppendUint32(b, m.App)
	b = wire.AppendUint8(b, m.QoS)
	b = wire.AppendVarint(b, m.Expire)
	b = wire.AppendBool(b, m.Broadcast)
	return wire.AppendBytes(b, m.Payload)
}

// readMessage decodes a message into m; the payload is copied.
func readMessage(r *wire.Reader, m *push.Message) {
	m.ID = r.Uint64()
	m.App = r.Uint32()
	m.QoS = r.Uint8()
	m.Expire = r.Varint()
	m.Broadcast = r.Bool()
	m.Payload = cloneBytes(r.Bytes())
}

func appendMessages(b []byte, ms []push.Message) []byte {
	b = wire.AppendUvarint(b, uint64(len(ms)))
	for i := range ms {
		b = appendMessage(b, &ms[i])
	}
	return b
}

func readMessages(r *wire.Reader) []push.Message {
	n := r.Count(minMessage)
	if n == 0 {
		return nil
	}
	out := make([]push.Message, n)
	for i := range out {
		readMessage(r, &out[i])
	}
	if r.Err() != nil {
		return nil
	}
	return out
}

// appendTarget appends t: uid string | conn id uint64.
func appendTarget(b []byte, t *push.Target) []byte {
	b = wire.AppendString(b, t.UID)
	return wire.AppendUint64(b, t.ConnID)
}

func readTarget(r *wire.Reader, t *push.Target) {
	t.UID = r.String()
	t.ConnID = r.Uint64()
}

func appendTargets(b []byte, ts []push.Target) []byte {
	b = wire.AppendUvarint(b, uint64(len(ts)))
	for i := range ts {
		b = appendTarget(b, &ts[i])
	}
	return b
}

func readTargets(r *wire.Reader) []push.Target {
	n := r.Count(minTarget)
	if n == 0 {
		return nil
	}
	out := make([]push.Target, n)
	for i := range out {
		readTarget(r, &out[i])
	}
	if r.Err() != nil {
		return nil
	}
	return out
}

// appendUpstream appends u:
//
//	app uint32 | uid string | type uint16 | data bytes | ts varint
func appendUpstream(b []byte, u *push.Upstream) []byte {
	b = wire.AppendUint32(b, u.App)
	b = wire.AppendString(b, u.UID)
	b = wire.AppendUint16(b, u.Type)
	b = wire.AppendBytes(b, u.Data)
	return wire.AppendVarint(b, u.TS)
}

// readUpstream decodes u; the data is copied.
func readUpstream(r *wire.Reader, u *push.Upstream) {
	u.App = r.Uint32()
	u.UID = r.String()
	u.Type = r.Uint16()
	u.Data = cloneBytes(r.Bytes())
	u.TS = r.Varint()
}

// appendStatus appends e:
//
//	app uint32 | uid string | event string | room string | ts varint
func appendStatus(b []byte, e *push.StatusEvent) []byte {
	b = wire.AppendUint32(b, e.App)
	b = wire.AppendString(b, e.UID)
	b = wire.AppendString(b, e.Event)
	b = wire.AppendString(b, e.Room)
	return wire.AppendVarint(b, e.TS)
}

func readStatus(r *wire.Reader, e *push.StatusEvent) {
	e.App = r.Uint32()
	e.UID = r.String()
	e.Event = r.String()
	e.Room = r.String()
	e.TS = r.Varint()
}

// appendCounts appends c:
//
//	total varint | per-app count, (app uint32, n varint) each |
//	per-room count, (room string, n varint) each
func appendCounts(b []byte, c *push.Counts) []byte {
	b = wire.AppendVarint(b, int64(c.Total))
	b = wire.AppendUvarint(b, uint64(len(c.PerApp)))
	for app, n := range c.PerApp {
		b = wire.AppendUint32(b, app)
		b = wire.AppendVarint(b, int64(n))
	}
	b = wire.AppendUvarint(b, uint64(len(c.PerRoom)))
	for room, n := range c.PerRoom {
		b = wire.AppendString(b, room)
		b = wire.AppendVarint(b, int64(n))
	}
	return b
}

// readCounts decodes c; its maps are never nil. A key that repeats adds up.
func readCounts(r *wire.Reader, c *push.Counts) {
	c.Total = int(r.Varint())
	n := r.Count(minAppCount)
	c.PerApp = make(map[uint32]int, n)
	for range n {
		app := r.Uint32()
		c.PerApp[app] += int(r.Varint())
	}
	n = r.Count(minRoomCnt)
	c.PerRoom = make(map[string]int, n)
	for range n {
		room := r.String()
		c.PerRoom[room] += int(r.Varint())
	}
}

// appendStoreStats appends s:
//
//	pending varint | per-app count, (app uint32, n varint) each |
//	broadcasts varint | saved, acked, expired uvarint | parked varint
func appendStoreStats(b []byte, s *push.StoreStats) []byte {
	b = wire.AppendVarint(b, s.Pending)
	b = wire.AppendUvarint(b, uint64(len(s.PendingPerApp)))
	for app, n := range s.PendingPerApp {
		b = wire.AppendUint32(b, app)
		b = wire.AppendVarint(b, n)
	}
	b = wire.AppendVarint(b, s.Broadcasts)
	b = wire.AppendUvarint(b, s.Saved)
	b = wire.AppendUvarint(b, s.Acked)
	b = wire.AppendUvarint(b, s.Expired)
	return wire.AppendVarint(b, s.Parked)
}

// readStoreStats decodes s; PendingPerApp is never nil.
func readStoreStats(r *wire.Reader, s *push.StoreStats) {
	s.Pending = r.Varint()
	n := r.Count(minAppCount)
	s.PendingPerApp = make(map[uint32]int64, n)
	for range n {
		app := r.Uint32()
		s.PendingPerApp[app] += r.Varint()
	}
	s.Broadcasts = r.Varint()
	s.Saved = r.Uvarint()
	s.Acked = r.Uvarint()
	s.Expired = r.Uvarint()
	s.Parked = r.Varint()
}

// appendMessageStatus appends s:
//
//	id uint64 | app uint32 | kind string | created, expires varint |
//	targets, stored, sent, acked, expired, parked varint
func appendMessageStatus(b []byte, s *push.MessageStatus) []byte {
	b = wire.AppendUint64(b, s.MsgID)
	b = wire.AppendUint32(b, s.App)
	b = wire.AppendString(b, s.Kind)
	for _, v := range []int64{s.Created, s.Expires, s.Targets, s.Stored, s.Sent, s.Acked, s.Expired, s.Parked} {
		b = wire.AppendVarint(b, v)
	}
	return b
}

func readMessageStatus(r *wire.Reader, s *push.MessageStatus) {
	s.MsgID = r.Uint64()
	s.App = r.Uint32()
	s.Kind = r.String()
	for _, p := range []*int64{&s.Created, &s.Expires, &s.Targets, &s.Stored, &s.Sent, &s.Acked, &s.Expired, &s.Parked} {
		*p = r.Varint()
	}
}

// appendQueuedPush appends q:
//
//	message | uids count, string each | owner string | at varint
func appendQueuedPush(b []byte, q *push.QueuedPush) []byte {
	b = appendMessage(b, &q.Msg)
	b = appendStrings(b, q.UIDs)
	b = wire.AppendString(b, q.Owner)
	return wire.AppendVarint(b, q.At)
}

func readQueuedPush(r *wire.Reader, q *push.QueuedPush) {
	readMessage(r, &q.Msg)
	q.UIDs = readStrings(r)
	q.Owner = r.String()
	q.At = r.Varint()
}

func cloneBytes(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// appendJob appends j:
//
//	id uint64 | app uint32 | message | rate float64 bits | stored bool |
//	owner string | started, deadline varint | state string |
//	finished varint | error string | keep varint
func appendJob(b []byte, j *push.Job) []byte {
	b = wire.AppendUint64(b, j.ID)
	b = wire.AppendUint32(b, j.App)
	b = appendMessage(b, &j.Msg)
	b = wire.AppendUint64(b, math.Float64bits(j.Rate))
	b = wire.AppendBool(b, j.Stored)
	b = wire.AppendString(b, j.Owner)
	b = wire.AppendVarint(b, j.Started)
	b = wire.AppendVarint(b, j.Deadline)
	b = wire.AppendString(b, j.State)
	b = wire.AppendVarint(b, j.Finished)
	b = wire.AppendString(b, j.Error)
	return wire.AppendVarint(b, j.Keep)
}

// readJob decodes a job into j; the payload is copied.
func readJob(r *wire.Reader, j *push.Job) {
	j.ID = r.Uint64()
	j.App = r.Uint32()
	readMessage(r, &j.Msg)
	j.Rate = math.Float64frombits(r.Uint64())
	j.Stored = r.Bool()
	j.Owner = r.String()
	j.Started = r.Varint()
	j.Deadline = r.Varint()
	j.State = r.String()
	j.Finished = r.Varint()
	j.Error = r.String()
	j.Keep = r.Varint()
}

// appendJobTask appends t:
//
//	room string | state string | owner string | lease, targets, pushed
//	varint | error string
func appendJobTask(b []byte, t *push.JobTask) []byte {
	b = wire.AppendString(b, t.Room)
	b = wire.AppendString(b, t.State)
	b = wire.AppendString(b, t.Owner)
	b = wire.AppendVarint(b, t.Lease)
	b = wire.AppendVarint(b, t.Targets)
	b = wire.AppendVarint(b, t.Pushed)
	return wire.AppendString(b, t.Error)
}

func readJobTask(r *wire.Reader, t *push.JobTask) {
	t.Room, t.State, t.Owner = r.String(), r.String(), r.String()
	t.Lease, t.Targets, t.Pushed = r.Varint(), r.Varint(), r.Varint()
	t.Error = r.String()
}
