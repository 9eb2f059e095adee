package saver

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Memory is a Store held in process memory, for fast unit tests and for
// single-process demos: nothing survives a restart. One mutex guards
// everything; Expire scans every inbox and status record, giving the
// mutex up between chunks, as AddSent does between chunks of a batch.
type Memory struct {
	lim Limits

	mu      sync.Mutex
	closed  bool
	inbox   map[string][]memEntry // per uid, ascending ID
	bcasts  map[uint64]*memBroadcast
	bx      *bseqs                         // the broadcasts' seqs, per app (bcursor.go)
	cursors map[string]map[uint32]*bcursor // per uid, per app (bcursor.go)
	seq     uint64                         // the last broadcast seq given
	status  memStatusTab                   // delivery status (memory_status.go)
	squeue  map[uint64]push.QueuedPush     // send queue journal (squeue.go)
	jobs    *memJobs                       // broadcast jobs (memory_jobs.go), under their own lock
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

// memBroadcast is a stored broadcast; the uids' states of it are in their
// cursors, by seq.
type memBroadcast struct {
	msg push.Message
	seq uint64
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
		bx:      newBseqs(),
		cursors: make(map[string]map[uint32]*bcursor),
		status:  newMemStatusTab(),
		squeue:  make(map[uint64]push.QueuedPush),
		jobs:    newMemJobs(),
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
	rec := m.status.get(msg.ID)
	if st, su, ok := impliedStatus(&msg, uids); ok && rec == nil {
		rec = m.openStatus(st, su)
	}
	for _, uid := range uids {
		m.status.step(rec, uid, onStore, nStored)
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
	if rec := m.status.get(msg.ID); rec != nil && rec.broadcast() {
		rec.stored = 1
	}
	// A re-save keeps its seq, and so every uid's state of it; one that
	// had expired takes a new seq: cursors may have stepped over the old.
	b := m.bcasts[msg.ID]
	if b == nil || b.msg.Expired(time.Now().Unix()) {
		m.seq++
		b = &memBroadcast{seq: m.seq}
		m.bcasts[msg.ID] = b
	}
	b.msg = msg
	m.bx.put(bref{id: msg.ID, seq: b.seq, app: msg.App, expire: msg.Expire})
	return nil
}

// cursor returns uid's normalized cursor of app, created when missing;
// m.mu is held. putCursor drops it again if it ends up empty.
func (m *Memory) cursor(uid string, app uint32, live []uint64) *bcursor {
	c := m.cursors[uid][app]
	if c == nil {
		c = &bcursor{}
	}
	c.normalize(live)
	return c
}

// putCursor stores c as uid's cursor of app, normalized, or forgets it when
// it holds nothing; m.mu is held.
func (m *Memory) putCursor(uid string, app uint32, c *bcursor, live []uint64) {
	c.normalize(live)
	apps := m.cursors[uid]
	if c.empty() {
		if apps != nil {
			delete(apps, app)
			if len(apps) == 0 {
				delete(m.cursors, uid)
			}
		}
		return
	}
	if apps == nil {
		apps = make(map[uint32]*bcursor, 1)
		m.cursors[uid] = apps
	}
	apps[app] = c
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
	type appCursor struct {
		c    *bcursor
		live []uint64
	}
	curs := make(map[uint32]appCursor, len(apps))
	for _, app := range apps {
		if _, dup := curs[app]; dup {
			continue
		}
		live := m.bx.live(app, now)
		c := m.cursor(uid, app, live)
		curs[app] = appCursor{c, live}
		for _, r := range m.bx.liveRefs(app, now) {
			if c.wants(r.seq) {
				bc = append(bc, m.bcasts[r.id].msg)
			}
		}
	}
	sortByID(bc)
	out := mergeByID(uni, bc, limit)
	if max := m.lim.MaxLoads; max > 0 {
		for _, msg := range out {
			if msg.Broadcast {
				ac := curs[msg.App]
				if ac.c.load(m.bcasts[msg.ID].seq, max) {
					metricParkedBroadcast.Inc()
					if rec := m.status.get(msg.ID); rec != nil {
						rec.parked++
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
				m.status.step(m.status.get(msg.ID), uid, onPark, nParked)
			}
		}
		for app, ac := range curs {
			m.putCursor(uid, app, ac.c, ac.live)
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
	return m.ackLocked(uid, apps, ids, time.Now().Unix()), nil
}

// AckMany implements Store: every entry under one lock.
func (m *Memory) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	if err := checkAcks(acks); err != nil {
		return 0, fmt.Errorf("saver ack many: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack many: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver ack many: %w", ErrClosed)
	}
	n, now := 0, time.Now().Unix()
	for i := range acks {
		if a := &acks[i]; len(a.Apps) > 0 {
			n += m.ackLocked(a.UID, a.Apps, a.IDs, now)
		}
	}
	return n, nil
}

// ackLocked is one uid's Ack; m.mu is held.
func (m *Memory) ackLocked(uid string, apps []uint32, ids []uint64, now int64) int {
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
			m.status.step(m.status.get(id), uid, onAck, nAcked)
			continue
		}
		// An expired broadcast is as good as gone: Expire drops it.
		if b := m.bcasts[id]; b != nil && hasApp(apps, b.msg.App) && !b.msg.Expired(now) {
			live := m.bx.live(b.msg.App, now)
			c := m.cursor(uid, b.msg.App, live)
			if c.ack(b.seq) {
				n++
				if rec := m.status.get(id); rec != nil {
					rec.acked++
				}
			}
			m.putCursor(uid, b.msg.App, c, live)
		}
	}
	if len(box) == 0 {
		delete(m.inbox, uid)
	} else {
		m.inbox[uid] = box
	}
	return n
}

// Expire implements Store.
func (m *Memory) Expire(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver expire: %w", err)
	}
	n, err := m.expireEntries(now)
	if err != nil {
		return 0, err
	}
	m.sweepStatus(now.Unix()) // in chunks: the records may be many
	return n, nil
}

// expireEntries is Expire but for the status records. The inbox walk
// gives up the lock (and the P) every statusSweepChunk entries, between
// two boxes: a range over a map may go on after the map changed (what
// was added meanwhile may be skipped, to the next sweep), and the range
// reads each box when it reaches it, with the lock held.
func (m *Memory) expireEntries(now time.Time) (int, error) {
	t := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver expire: %w", ErrClosed)
	}
	n, seen := 0, 0
	for uid, box := range m.inbox {
		kept := box[:0]
		for _, e := range box {
			if e.msg.Expired(t) {
				m.forget(e)
				m.status.step(m.status.get(e.msg.ID), uid, onExpire, nExpired)
				m.expired++ // now, not at the end: Stats may run at a yield
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
		if seen += len(box); seen >= statusSweepChunk {
			seen = 0
			m.mu.Unlock()
			runtime.Gosched()
			m.mu.Lock()
			if m.closed {
				return 0, fmt.Errorf("saver expire: %w", ErrClosed)
			}
		}
	}
	for id, b := range m.bcasts {
		if b.msg.Expired(t) {
			// The cursors holding its seq shed it when next normalized.
			delete(m.bcasts, id)
			m.bx.drop(id)
			if rec := m.status.get(id); rec != nil {
				rec.expired = 1
			}
			m.expired++
			n++
		}
	}
	m.expireJobs(now) // not counted in n: jobs are no messages
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
	m.inbox, m.bcasts, m.status, m.pending = nil, nil, memStatusTab{}, map[uint32]int64{}
	m.bx, m.cursors = newBseqs(), nil
	return nil
}
