package saver

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// memStatus is one message's delivery status in Memory; users holds the
// per-uid state bytes of status.go (nil for a broadcast). Its methods
// accept a nil receiver (no record: nothing counted); m.mu is held.
type memStatus struct {
	st    push.MessageStatus
	users map[string]byte
}

func (r *memStatus) onStore(uid string) {
	if r == nil || r.users == nil {
		return
	}
	if c, ok := r.users[uid]; ok {
		if n, counts := onStore(c); counts {
			r.users[uid] = n
			r.st.Stored++
		}
	}
}

func (r *memStatus) onPark(uid string) {
	if r == nil || r.users == nil {
		return
	}
	if c, ok := r.users[uid]; ok {
		if n, counts := onPark(c); counts {
			r.users[uid] = n
			r.st.Parked++
		}
	}
}

func (r *memStatus) onAck(uid string) {
	if r == nil || r.users == nil {
		return
	}
	if c, ok := r.users[uid]; ok {
		if n, counts := onAck(c); counts {
			r.users[uid] = n
			r.st.Acked++
		}
	}
}

func (r *memStatus) onExpire(uid string) {
	if r == nil || r.users == nil {
		return
	}
	if c, ok := r.users[uid]; ok {
		if n, counts := onExpire(c); counts {
			r.users[uid] = n
			r.st.Expired++
		}
	}
}

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
	if rec := m.status[st.MsgID]; rec != nil {
		return rec
	}
	rec := &memStatus{st: st}
	if st.Kind != push.KindBroadcast {
		rec.users = make(map[string]byte, len(uids))
		for _, uid := range uids {
			rec.users[uid] = suUnknown
		}
	}
	m.status[st.MsgID] = rec
	return rec
}

// AddSent implements Store.
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver add sent: %w", ErrClosed)
	}
	for _, d := range deltas {
		rec := m.status[d.MsgID]
		if rec == nil || rec.st.App != d.App {
			continue
		}
		rec.st.Sent += d.Sent
		if rec.st.Kind == push.KindBroadcast {
			rec.st.Targets += d.Targets
		}
		if c, ok := rec.users[d.UID]; ok && d.UID != "" {
			rec.users[d.UID] = onSent(c)
		}
	}
	return nil
}

// Status implements Store.
func (m *Memory) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, ErrClosed)
	}
	rec := m.status[msgID]
	if rec == nil || !ownApp(app, rec.st.App) || !statusLive(&rec.st, time.Now().Unix()) {
		return push.MessageStatus{}, false, nil
	}
	return rec.st, true, nil
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
	rec := m.status[msgID]
	if rec == nil || !ownApp(app, rec.st.App) || !statusLive(&rec.st, now) {
		return push.StateUnknown, nil
	}
	if rec.st.Kind != push.KindBroadcast {
		if c, ok := rec.users[uid]; ok {
			return stateName(c), nil
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
	return broadcastState(&rec.st, bs, now), nil
}
