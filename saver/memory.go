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
	mu      sync.RWMutex
	closed  bool
	inbox   map[string][]push.Message // per uid, ascending ID
	bcasts  map[uint64]*memBroadcast
	pending map[uint32]int64
	saved   uint64
	acked   uint64
	expired uint64
}

type memBroadcast struct {
	msg   push.Message
	acked map[string]struct{} // uids that have it
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		inbox:   make(map[string][]push.Message),
		bcasts:  make(map[uint64]*memBroadcast),
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
	for _, uid := range uids {
		box := m.inbox[uid]
		i, found := slices.BinarySearchFunc(box, msg.ID, cmpID)
		if found {
			m.uncount(box[i].App)
			box[i] = msg
		} else {
			box = slices.Insert(box, i, msg)
			m.saved++
		}
		m.pending[msg.App]++
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

func (m *Memory) uncount(app uint32) {
	if m.pending[app]--; m.pending[app] <= 0 {
		delete(m.pending, app)
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
	if b := m.bcasts[msg.ID]; b != nil {
		b.msg = msg
		return nil
	}
	m.bcasts[msg.ID] = &memBroadcast{msg: msg, acked: make(map[string]struct{})}
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
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("saver load %s: %w", uid, ErrClosed)
	}
	var uni, bc []push.Message
	for _, msg := range m.inbox[uid] {
		if len(uni) == limit {
			break
		}
		if hasApp(apps, msg.App) && !msg.Expired(now) {
			uni = append(uni, msg)
		}
	}
	for _, b := range m.bcasts {
		if _, done := b.acked[uid]; !done && hasApp(apps, b.msg.App) && !b.msg.Expired(now) {
			bc = append(bc, b.msg)
		}
	}
	sortByID(bc)
	return mergeByID(uni, bc, limit), nil
}

// Ack implements Store.
func (m *Memory) Ack(ctx context.Context, uid string, ids []uint64) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, fmt.Errorf("saver ack: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver ack %s: %w", uid, ErrClosed)
	}
	n := 0
	box := m.inbox[uid]
	for _, id := range ids {
		if i, found := slices.BinarySearchFunc(box, id, cmpID); found {
			m.uncount(box[i].App)
			box = slices.Delete(box, i, i+1)
			m.acked++
			n++
			continue
		}
		if b := m.bcasts[id]; b != nil {
			if _, done := b.acked[uid]; !done {
				b.acked[uid] = struct{}{}
				n++
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
		for _, msg := range box {
			if msg.Expired(t) {
				m.uncount(msg.App)
				n++
				continue
			}
			kept = append(kept, msg)
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
			n++
		}
	}
	m.expired += uint64(n)
	return n, nil
}

// Stats implements Store.
func (m *Memory) Stats(ctx context.Context) (push.StoreStats, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", ErrClosed)
	}
	st := push.StoreStats{
		PendingPerApp: maps.Clone(m.pending),
		Broadcasts:    int64(len(m.bcasts)),
		Saved:         m.saved,
		Acked:         m.acked,
		Expired:       m.expired,
	}
	for _, n := range m.pending {
		st.Pending += n
	}
	return st, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.inbox, m.bcasts, m.pending = nil, nil, map[uint32]int64{}
	return nil
}
