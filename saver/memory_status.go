package saver

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Delivery status in Memory. A busy store holds a record per message for
// its TTL plus StatusGrace (hundreds of thousands at a few thousand
// pushes a second), so a record is one pointer-free value in a chunked
// slab: the GC neither scans the records nor the id map, and a unicast's
// one uid is an index into a table of interned uids (one string per uid
// that has records, not one per record). Only multi-uid records have a
// side table entry, their uids sorted. memStatusTab's methods run with
// m.mu held.

// memStatus is one message's delivery status: the counts of
// push.MessageStatus, its kind as kindCode, and for a unicast the uid's
// state byte (status.go) inline.
type memStatus struct {
	id               uint64 // 0: a free slot
	created, expires int64
	targets, stored  int64
	sent, acked      int64
	expired, parked  int64
	app              uint32
	uid              uint32 // the one uid, an index into memStatusTab.uids, when c is a state
	kind             uint8  // kindCode
	c                byte   // the one uid's state; 0: none (a broadcast, no uid given); suMulti: in memStatusTab.multi
}

// suMulti in memStatus.c: the record's uids are in memStatusTab.multi.
const suMulti = 'M'

func (r *memStatus) status() push.MessageStatus {
	return push.MessageStatus{
		MsgID: r.id, App: r.app, Kind: kindNames[r.kind], Created: r.created, Expires: r.expires,
		Targets: r.targets, Stored: r.stored, Sent: r.sent, Acked: r.acked, Expired: r.expired, Parked: r.parked,
	}
}

// kindCodeBroadcast is kindCode(push.KindBroadcast).
const kindCodeBroadcast = 2

func (r *memStatus) broadcast() bool { return r.kind == kindCodeBroadcast }

func (r *memStatus) live(now int64) bool { return now < statusDrop(r.expires) }

// memMulti is a multi-uid record's states: uids sorted and distinct (as
// checkStatus returns them), c[i] the state of uids[i].
type memMulti struct {
	uids []string
	c    []byte
}

// A slab chunk holds 1<<statusChunkBits records (88 KiB): chunks never
// move, so a *memStatus stays valid while records are added.
const statusChunkBits = 10

// memStatusTab is Memory's delivery status records.
type memStatusTab struct {
	slot   map[uint64]uint32 // message id -> slot
	chunks [][]memStatus     // slot s is chunks[s>>statusChunkBits][s&mask]
	n      uint32            // slots handed out
	free   []uint32          // slots given back
	multi  map[uint64]*memMulti
	uids   uidTab
}

func newMemStatusTab() memStatusTab {
	return memStatusTab{slot: make(map[uint64]uint32), multi: make(map[uint64]*memMulti), uids: uidTab{idx: make(map[string]uint32)}}
}

func (t *memStatusTab) at(s uint32) *memStatus {
	return &t.chunks[s>>statusChunkBits][s&(1<<statusChunkBits-1)]
}

// get returns id's record, nil when there is none.
func (t *memStatusTab) get(id uint64) *memStatus {
	if s, ok := t.slot[id]; ok {
		return t.at(s)
	}
	return nil
}

func (t *memStatusTab) len() int { return len(t.slot) }

// reset drops the slab of an empty table.
func (t *memStatusTab) reset() { t.chunks, t.n, t.free = nil, 0, nil }

// add stores a new record for st (which has none) and its distinct uids.
func (t *memStatusTab) add(st push.MessageStatus, uids []string) *memStatus {
	var s uint32
	if n := len(t.free); n > 0 {
		s, t.free = t.free[n-1], t.free[:n-1]
	} else {
		if t.n>>statusChunkBits == uint32(len(t.chunks)) {
			t.chunks = append(t.chunks, make([]memStatus, 1<<statusChunkBits))
		}
		s = t.n
		t.n++
	}
	rec := t.at(s)
	*rec = memStatus{
		id: st.MsgID, app: st.App, kind: uint8(max(kindCode(st.Kind), 0)), created: st.Created, expires: st.Expires,
		targets: st.Targets, stored: st.Stored, sent: st.Sent, acked: st.Acked, expired: st.Expired, parked: st.Parked,
	}
	switch {
	case rec.broadcast() || len(uids) == 0:
	case len(uids) == 1:
		rec.uid, rec.c = t.uids.ref(uids[0]), suUnknown
	default:
		c := make([]byte, len(uids))
		for i := range c {
			c[i] = suUnknown
		}
		t.multi[st.MsgID] = &memMulti{uids: uids, c: c} // checkStatus's own copy
		rec.c = suMulti
	}
	t.slot[st.MsgID] = s
	return rec
}

// drop forgets the record in slot s.
func (t *memStatusTab) drop(s uint32) {
	rec := t.at(s)
	switch rec.c {
	case 0:
	case suMulti:
		delete(t.multi, rec.id)
	default:
		t.uids.unref(rec.uid)
	}
	delete(t.slot, rec.id)
	*rec = memStatus{}
	t.free = append(t.free, s)
}

// user returns uid's state byte in rec, nil when rec (which may be nil)
// has no such uid.
func (t *memStatusTab) user(rec *memStatus, uid string) *byte {
	switch {
	case rec == nil || rec.c == 0 || uid == "":
		return nil
	case rec.c == suMulti:
		mu := t.multi[rec.id]
		if i, ok := slices.BinarySearch(mu.uids, uid); ok {
			return &mu.c[i]
		}
		return nil
	case t.uids.name[rec.uid] == uid:
		return &rec.c
	}
	return nil
}

// step applies a transition to uid's state in rec and counts it in *n.
func (t *memStatusTab) step(rec *memStatus, uid string, f func(byte) (byte, bool), n func(*memStatus) *int64) {
	if p := t.user(rec, uid); p != nil {
		if c, counts := f(*p); counts {
			*p = c
			*n(rec)++
		}
	}
}

func nStored(r *memStatus) *int64  { return &r.stored }
func nAcked(r *memStatus) *int64   { return &r.acked }
func nExpired(r *memStatus) *int64 { return &r.expired }
func nParked(r *memStatus) *int64  { return &r.parked }

// uidTab interns the uids of unicast records, counting the records that
// hold each.
type uidTab struct {
	idx  map[string]uint32
	name []string
	refs []uint32
	free []uint32
}

func (u *uidTab) ref(uid string) uint32 {
	if i, ok := u.idx[uid]; ok {
		u.refs[i]++
		return i
	}
	uid = strings.Clone(uid) // not a part of some larger buffer kept alive
	var i uint32
	if n := len(u.free); n > 0 {
		i, u.free = u.free[n-1], u.free[:n-1]
		u.name[i], u.refs[i] = uid, 1
	} else {
		i = uint32(len(u.name))
		u.name, u.refs = append(u.name, uid), append(u.refs, 1)
	}
	u.idx[uid] = i
	return i
}

func (u *uidTab) unref(i uint32) {
	if u.refs[i]--; u.refs[i] == 0 {
		delete(u.idx, u.name[i])
		u.name[i] = ""
		u.free = append(u.free, i)
	}
}

// Batches that take m.mu in turns: a long AddSent or sweep gives the lock
// and, on one P, the CPU back between chunks (runtime.Gosched), so that
// API calls wait for one chunk, not the whole batch.
const (
	addSentChunk     = 256
	statusSweepChunk = 4096
)

// OpenStatus implements Store.
func (m *Memory) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	st, uids, err := checkStatus(st, uids)
	if err != nil {
		return fmt.Errorf("saver open status: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, ErrClosed)
	}
	m.openStatus(st, uids)
	return nil
}

// openStatus creates st's record unless it exists; m.mu is held.
func (m *Memory) openStatus(st push.MessageStatus, uids []string) *memStatus {
	if rec := m.status.get(st.MsgID); rec != nil {
		return rec
	}
	return m.status.add(st, uids)
}

// AddSent implements Store. A big batch is applied addSentChunk deltas at
// a time, the lock given up in between.
func (m *Memory) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	if err := checkDeltas(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if err := checkDeltaTargets(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	for len(deltas) > 0 {
		n := min(len(deltas), addSentChunk)
		if err := m.addSent(deltas[:n]); err != nil {
			return err
		}
		if deltas = deltas[n:]; len(deltas) > 0 {
			runtime.Gosched()
		}
	}
	return nil
}

// addSent applies one chunk of AddSent under m.mu.
func (m *Memory) addSent(deltas []push.StatusDelta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver add sent: %w", ErrClosed)
	}
	for i := range deltas {
		d := &deltas[i]
		rec := m.status.get(d.MsgID)
		if rec == nil || rec.app != d.App {
			continue
		}
		rec.sent += d.Sent
		if rec.broadcast() {
			rec.targets += d.Targets
		}
		if p := m.status.user(rec, d.UID); p != nil {
			*p = onSent(*p)
		}
	}
	return nil
}

// sweepStatus drops the records no longer live at t, statusSweepChunk
// slots under m.mu at a time; m.mu is not held.
func (m *Memory) sweepStatus(t int64) {
	for s := uint32(0); ; {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		end := min(s+statusSweepChunk, m.status.n)
		for ; s < end; s++ {
			if rec := m.status.at(s); rec.id != 0 && !rec.live(t) {
				m.status.drop(s)
			}
		}
		done := s >= m.status.n
		if done && m.status.len() == 0 {
			m.status.reset() // the slab of a past peak goes back
		}
		m.mu.Unlock()
		if done {
			return
		}
		runtime.Gosched()
	}
}

// Status implements Store.
func (m *Memory) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, ErrClosed)
	}
	rec := m.status.get(msgID)
	if rec == nil || !ownApp(app, rec.app) || !rec.live(time.Now().Unix()) {
		return push.MessageStatus{}, false, nil
	}
	return rec.status(), true, nil
}

// UserState implements Store.
func (m *Memory) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	if err := checkUID(uid); err != nil {
		return "", fmt.Errorf("saver user state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", fmt.Errorf("saver user state %d: %w", msgID, ErrClosed)
	}
	now := time.Now().Unix()
	rec := m.status.get(msgID)
	if rec == nil || !ownApp(app, rec.app) || !rec.live(now) {
		return push.StateUnknown, nil
	}
	if !rec.broadcast() {
		if p := m.status.user(rec, uid); p != nil {
			return stateName(*p), nil
		}
		return push.StateUnknown, nil
	}
	var bs byte
	if b := m.bcasts[msgID]; b != nil && !b.msg.Expired(now) {
		live := m.bx.live(b.msg.App, now)
		c := bcursor{}
		if cur := m.cursors[uid][b.msg.App]; cur != nil {
			c = bcursor{Cur: cur.Cur, Exc: slices.Clone(cur.Exc)} // read only
		}
		c.normalize(live)
		switch acked, parked := c.state(b.seq); {
		case acked:
			bs = suAcked
		case parked:
			bs = suParked
		}
	}
	st := rec.status()
	return broadcastState(&st, bs, now), nil
}
