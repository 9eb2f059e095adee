package room

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lcpush/lcpush/pkg/push"
)

// In-test fakes of the services the room calls. The real ones are wired in
// the end-to-end tests of the module root.

// fakeRegister behaves like register, simplified: it remembers the newest
// session per uid; a login returns the previous one as displaced with the
// apps both have (the apps it loses), and sessions are removed or changed
// only by the connection that owns them.
type fakeRegister struct {
	mu       sync.Mutex
	sessions map[string]push.Session
	unregs   []push.Session // (UID, Room, ConnID) of every Unregister call
	setApps  map[uint64][]uint32
	err      error         // returned by Register when set
	gate     chan struct{} // when set, Register waits for it
	entered  atomic.Int32  // Register calls started
}

func newFakeRegister() *fakeRegister {
	return &fakeRegister{sessions: map[string]push.Session{}, setApps: map[uint64][]uint32{}}
}

func (f *fakeRegister) Register(ctx context.Context, s push.Session) ([]push.Session, error) {
	f.entered.Add(1)
	f.mu.Lock()
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.sessions[s.UID]
	s.Apps = slices.Clone(s.Apps)
	f.sessions[s.UID] = s
	if ok && (old.Room != s.Room || old.ConnID != s.ConnID) {
		return displacedFrom(old, s.Apps), nil
	}
	return nil, nil
}

// displacedFrom returns old as displaced by a login through apps, with the
// apps it loses, or nil when it loses none.
func displacedFrom(old push.Session, apps []uint32) []push.Session {
	var lost []uint32
	for _, a := range old.Apps {
		if slices.Contains(apps, a) {
			lost = append(lost, a)
		}
	}
	if lost == nil {
		return nil
	}
	old.Apps = lost
	return []push.Session{old}
}

func (f *fakeRegister) Unregister(_ context.Context, uid, room string, connID uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregs = append(f.unregs, push.Session{UID: uid, Room: room, ConnID: connID})
	if s, ok := f.sessions[uid]; ok && s.Room == room && s.ConnID == connID {
		delete(f.sessions, uid)
		return true, nil
	}
	return false, nil
}

func (f *fakeRegister) SetApps(_ context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setApps[connID] = slices.Clone(apps)
	if s, ok := f.sessions[uid]; ok && s.ConnID == connID {
		s.Apps = slices.Clone(apps)
		f.sessions[uid] = s
		return nil, true, nil
	}
	return nil, false, nil
}

func (f *fakeRegister) session(uid string) (push.Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[uid]
	return s, ok
}

func (f *fakeRegister) unregistered(uid string, connID uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.unregs {
		if u.UID == uid && u.ConnID == connID {
			return true
		}
	}
	return false
}

func (f *fakeRegister) appsOf(connID uint64) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.setApps[connID])
}

func (f *fakeRegister) setGate(g chan struct{}) {
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
}

// fakeSaver holds stored messages per uid and records ACKs.
type fakeSaver struct {
	mu     sync.Mutex
	stored map[string][]push.Message
	acks   map[string][]uint64
	// ackApps records the apps each Ack was scoped to, per uid.
	ackApps map[string][][]uint32
	// ackErr, when set, is returned by Ack (the store refuses ACKs).
	ackErr  error
	ackCall int // Ack and AckMany calls, refused ones included
	// ackMany counts the AckMany calls, ackEntries their entries.
	ackMany, ackEntries int
	err                 error
	// ackGate, when set, holds every Ack until it is closed.
	ackGate chan struct{}
	sent    []push.StatusDelta // every AddSent delta
	// checkpoints are the Checkpoint calls, each call's ends.
	checkpoints [][]push.SessionEnd
	// checkpointFails: Checkpoint calls left to fail.
	checkpointFails int
}

func newFakeSaver() *fakeSaver {
	return &fakeSaver{stored: map[string][]push.Message{}, acks: map[string][]uint64{}, ackApps: map[string][][]uint32{}}
}

func (f *fakeSaver) Load(_ context.Context, uid string, apps []uint32) ([]push.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []push.Message
	for _, m := range f.stored[uid] {
		if slices.Contains(apps, m.App) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeSaver) Ack(_ context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	f.mu.Lock()
	gate := f.ackGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ackCall++
	if f.ackErr != nil {
		return 0, f.ackErr
	}
	f.acks[uid] = append(f.acks[uid], ids...)
	f.ackApps[uid] = append(f.ackApps[uid], slices.Clone(apps))
	return len(ids), nil
}

// AckMany records each entry as Ack does, in one call (and one wait at
// ackGate).
func (f *fakeSaver) AckMany(_ context.Context, acks []push.AckReq) (int, error) {
	f.mu.Lock()
	gate := f.ackGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ackCall++
	f.ackMany++
	f.ackEntries += len(acks)
	if f.ackErr != nil {
		return 0, f.ackErr
	}
	n := 0
	for _, a := range acks {
		f.acks[a.UID] = append(f.acks[a.UID], a.IDs...)
		f.ackApps[a.UID] = append(f.ackApps[a.UID], slices.Clone(a.Apps))
		n += len(a.IDs)
	}
	return n, nil
}

func (f *fakeSaver) AddSent(_ context.Context, deltas []push.StatusDelta) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, deltas...)
	return nil
}

func (f *fakeSaver) Checkpoint(_ context.Context, ends []push.SessionEnd) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.checkpointFails > 0 {
		f.checkpointFails--
		return push.ErrUnavailable
	}
	f.checkpoints = append(f.checkpoints, slices.Clone(ends))
	return nil
}

// sentTo sums the sent deltas of msg id (to uid, or all when uid is "").
func (f *fakeSaver) sentTo(id uint64, uid string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, d := range f.sent {
		if d.MsgID == id && (uid == "" || d.UID == uid) {
			n += d.Sent
		}
	}
	return n
}

func (f *fakeSaver) store(uid string, msgs ...push.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored[uid] = append(f.stored[uid], msgs...)
}

func (f *fakeSaver) acked(uid string) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acks[uid])
}

// fakeCoord records what the room sends to the coordinator. onKick, when
// set, is called for each Kick (e.g. to route it back to a room).
type fakeCoord struct {
	mu        sync.Mutex
	kicks     []push.Session
	upstreams []push.Upstream
	statuses  []push.StatusEvent
	upErr     error
	onKick    func(old push.Session, code int, reason string)
}

func (f *fakeCoord) Kick(_ context.Context, old push.Session, code int, reason string) error {
	f.mu.Lock()
	f.kicks = append(f.kicks, old)
	hook := f.onKick
	f.mu.Unlock()
	if hook != nil {
		hook(old, code, reason)
	}
	return nil
}

func (f *fakeCoord) Upstream(_ context.Context, up push.Upstream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upErr != nil {
		return f.upErr
	}
	f.upstreams = append(f.upstreams, up)
	return nil
}

func (f *fakeCoord) Status(_ context.Context, ev push.StatusEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses = append(f.statuses, ev)
	return nil
}

func (f *fakeCoord) hasStatus(uid string, app uint32, event string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.statuses {
		if e.UID == uid && e.App == app && e.Event == event {
			return true
		}
	}
	return false
}

func (f *fakeCoord) upstreamList() []push.Upstream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.upstreams)
}
