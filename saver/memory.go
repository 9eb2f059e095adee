package saver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Memory is a Store held in process memory, for fast unit tests and for
// single-process demos: nothing survives a restart. One mutex guards
// everything and Expire scans every inbox, which is fine at test sizes.
type Memory struct {
	lim Limits

	mu      sync.Mutex
	closed  bool
	inbox   map[string][]memEntry // per uid, ascending ID
	bcasts  map[uint64]*memBroadcast
	status  map[uint64]*memStatus      // delivery status (memory_status.go)
	squeue  map[uint64]push.QueuedPush // send queue journal (squeue.go)
	pending map[uint32]int64
	parked  int64
	saved   uint64
	acked   uint64
	expired uint64
}

type memEntry struct {
	msg    push.Message
	loads  int
	parked bool
}

// States of a broadcast for one uid, beside a positive load count.
const (
	memAcked  = -1
	memParked = -2
)

type memBroadcast struct {
	msg   push.Message
	users map[string]int // uid -> loads so far, memAcked or memParked
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store with the default Limits.
func NewMemory() *Memory { return NewMemoryWith(Limits{}) }

// NewMemoryWith returns an empty in-memory store enforcing lim.
func NewMemoryWith(lim Limits) *Memory {
	return &Memory{
		lim:     lim.withDefaults(),
		inbox:   make(map[string][]memEntry),
		bcasts:  make(map[uint64]*memBroadcast),
		status:  make(map[uint64]*memStatus),
		squeue:  make(map[uint64]push.QueuedPush),
		pending: make(map[uint32]int64),
	}
}

// Save implements Store.
func (m *Memory) Save(ctx context.Context, msg push.Message, uids []string) error {
	if err := checkMessage(&msg, false); err != nil {
		return fmt.Errorf("saver save: %w", err)
	}
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return fmt.Errorf("saver save %d: %w", msg.ID, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver save %d: %w", msg.ID, err)
	}
	msg.Payload = slices.Clone(msg.Payload) // one copy shared by every inbox
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver save %d: %w", msg.ID, ErrClosed)
	}
	rec := m.status[msg.ID]
	if st, su, ok := impliedStatus(&msg, uids); ok && rec == nil {
		rec = m.openStatus(st, su)
	}
	for _, uid := range uids {
		rec.onStore(uid)
		box := m.inbox[uid]
		i, found := slices.BinarySearchFunc(box, msg.ID, cmpEntry)
		if found {
			m.uncount(box[i].msg.App)
			box[i].msg = msg
		} else {
			box = slices.Insert(box, i, memEntry{msg: msg})
			m.saved++
		}
		m.pending[msg.App]++
		if cap := m.lim.InboxCap; cap > 0 && len(box) > cap {
			drop := len(box) - cap
			for _, e := range box[:drop] {
				m.forget(e)
			}
			metricInboxDropped.Add(float64(drop))
			box = slices.Delete(box, 0, drop)
		}
		m.inbox[uid] = box
	}
	return nil
}

func cmpID(m push.Message, id uint64) int {
	switch {
	case m.ID < id:
		return -1
	case m.ID > id:
		return 1
	}
	return 0
}

func cmpEntry(e memEntry, id uint64) int { return cmpID(e.msg, id) }

func (m *Memory) uncount(app uint32) {
	if m.pending[app]--; m.pending[app] <= 0 {
		delete(m.pending, app)
	}
}

// forget uncounts an entry leaving the store; m.mu is held.
func (m *Memory) forget(e memEntry) {
	m.uncount(e.msg.App)
	if e.parked {
		m.parked--
	}
}

// SaveBroadcast implements Store.
func (m *Memory) SaveBroadcast(ctx context.Context, msg push.Message) error {
	if err := checkMessage(&msg, true); err != nil {
		return fmt.Errorf("saver save broadcast: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, err)
	}
	msg.Broadcast = true
	msg.Payload = slices.Clone(msg.Payload)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, ErrClosed)
	}
	if rec := m.status[msg.ID]; rec != nil && rec.st.Kind == push.KindBroadcast {
		rec.st.Stored = 1
	}
	if b := m.bcasts[msg.ID]; b != nil {
		b.msg = msg
		return nil
	}
	m.bcasts[msg.ID] = &memBroadcast{msg: msg, users: make(map[string]int)}
	return nil
}

// Load implements Store.
func (m *Memory) Load(ctx context.Context, uid string, apps []uint32, limit int) ([]push.Message, error) {
	if err := checkUID(uid); err != nil {
		return nil, fmt.Errorf("saver load: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	if len(apps) == 0 {
		return nil, nil
	}
	limit = loadLimit(limit)
	now := time.Now().Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("saver load %s: %w", uid, ErrClosed)
	}
	var uni, bc []push.Message
	box := m.inbox[uid]
	for _, e := range box {
		if len(uni) == limit {
			break
		}
		if !e.parked && hasApp(apps, e.msg.App) && !e.msg.Expired(now) {
			uni = append(uni, e.msg)
		}
	}
	for _, b := range m.bcasts {
		if b.users[uid] >= 0 && hasApp(apps, b.msg.App) && !b.msg.Expired(now) {
			bc = append(bc, b.msg)
		}
	}
	sortByID(bc)
	out := mergeByID(uni, bc, limit)
	if max := m.lim.MaxLoads; max > 0 {
		for _, msg := range out {
			if msg.Broadcast {
				b := m.bcasts[msg.ID]
				if b.users[uid]++; b.users[uid] >= max {
					b.users[uid] = memParked
					metricParkedBroadcast.Inc()
					if rec := m.status[msg.ID]; rec != nil {
						rec.st.Parked++
					}
				}
				continue
			}
			i, _ := slices.BinarySearchFunc(box, msg.ID, cmpEntry)
			e := &box[i]
			if e.loads++; e.loads >= max {
				e.parked = true
				m.parked++
				metricParkedUnicast.Inc()
				m.status[msg.ID].onPark(uid)
			}
		}
	}
	return out, nil
}

// Ack implements Store.
func (m *Memory) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, fmt.Errorf("saver ack: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	if len(apps) == 0 || len(ids) == 0 {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver ack %s: %w", uid, ErrClosed)
	}
	n := 0
	box := m.inbox[uid]
	for _, id := range ids {
		if i, found := slices.BinarySearchFunc(box, id, cmpEntry); found {
			if !hasApp(apps, box[i].msg.App) {
				continue // another app's: as if unknown
			}
			m.forget(box[i])
			box = slices.Delete(box, i, i+1)
			m.acked++
			n++
			m.status[id].onAck(uid)
			continue
		}
		if b := m.bcasts[id]; b != nil && hasApp(apps, b.msg.App) {
			if b.users[uid] != memAcked {
				b.users[uid] = memAcked
				n++
				if rec := m.status[id]; rec != nil {
					rec.st.Acked++
				}
			}
		}
	}
	if len(box) == 0 {
		delete(m.inbox, uid)
	} else {
		m.inbox[uid] = box
	}
	return n, nil
}

// Expire implements Store.
func (m *Memory) Expire(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver expire: %w", err)
	}
	t := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver expire: %w", ErrClosed)
	}
	n := 0
	for uid, box := range m.inbox {
		kept := box[:0]
		for _, e := range box {
			if e.msg.Expired(t) {
				m.forget(e)
				m.status[e.msg.ID].onExpire(uid)
				n++
				continue
			}
			kept = append(kept, e)
		}
		clear(box[len(kept):]) // release the dropped payloads
		if len(kept) == 0 {
			delete(m.inbox, uid)
		} else {
			m.inbox[uid] = kept
		}
	}
	for id, b := range m.bcasts {
		if b.msg.Expired(t) {
			delete(m.bcasts, id)
			if rec := m.status[id]; rec != nil {
				rec.st.Expired = 1
			}
			n++
		}
	}
	for id, rec := range m.status {
		if !statusLive(&rec.st, t) {
			delete(m.status, id)
		}
	}
	m.expired += uint64(n)
	return n, nil
}

// Stats implements Store.
func (m *Memory) Stats(ctx context.Context) (push.StoreStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", ErrClosed)
	}
	st := push.StoreStats{
		PendingPerApp: maps.Clone(m.pending),
		Broadcasts:    int64(len(m.bcasts)),
		Saved:         m.saved,
		Acked:         m.acked,
		Expired:       m.expired,
		Parked:        m.parked,
	}
	for _, n := range m.pending {
		st.Pending += n
	}
	return st, nil
}

// UserStats implements Store.
func (m *Memory) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	if err := checkUID(uid); err != nil {
		return 0, 0, fmt.Errorf("saver user stats: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, 0, fmt.Errorf("saver user stats %s: %w", uid, ErrClosed)
	}
	for _, e := range m.inbox[uid] {
		if app != 0 && e.msg.App != app {
			continue
		}
		pending++
		if e.parked {
			parked++
		}
	}
	return pending, parked, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.inbox, m.bcasts, m.status, m.pending = nil, nil, nil, map[uint32]int64{}
	return nil
}
