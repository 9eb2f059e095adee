package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/workpool"
)

// RegistersConfig configures Registers. Zero fields take the defaults shown.
type RegistersConfig struct {
	Logger *slog.Logger
	// Timeout bounds a call whose ctx has no deadline. Default DefaultTimeout.
	Timeout time.Duration
	// PollEvery is how often membership is checked for refills. Default 300ms.
	PollEvery time.Duration
	// RefillBatch is the most sessions per Restore call. Default 256.
	RefillBatch int
	// RefillTimeout bounds one refill (reading the source and every Restore
	// call it makes). Default 30s.
	RefillTimeout time.Duration
	// FanOut is the number of resident workers that call several registers
	// at once (Lookup, Counts, refills). Default 8.
	FanOut int
	// FillWindow is how long after a register appears (a restart: new
	// Epoch, or a join) or after ownership of a uid moved, an owner's "no
	// session" for that uid is not taken as an answer: the rooms may still
	// be re-filling it. Lookup and Get report such uids as unanswered.
	// Default DefaultFillWindow; negative: off.
	FillWindow time.Duration
	// ReconcileEvery is how often a process with a Source (a room) checks
	// that the registers hold exactly its sessions (see reconcile). Default
	// 3s; negative: off.
	ReconcileEvery time.Duration
	// ReapRoomsAfter is how long a room instance that still has sessions
	// on the registers must be absent from membership before they are
	// dropped (a room that died for good: a restarted one re-fills and
	// reconciles its own). Checked about every ReapRoomsAfter/4, only while
	// every register answers. Default 2m; negative: off.
	ReapRoomsAfter time.Duration
	// ForgetMax bounds the moved sessions waiting to be removed from their
	// old owner (retried until done); beyond it they are dropped, counted,
	// and left to the reconciliation. Default 100000.
	ForgetMax int
	// ForgetKeep is how long a removal from an old owner that is out of
	// membership is kept for retry. Default 10m.
	ForgetKeep time.Duration
	// RedeliverTimeout bounds one call of the OnRefilled hook. Default 2m.
	RedeliverTimeout time.Duration
}

// DefaultFillWindow is RegistersConfig.FillWindow's default: re-filling a
// register takes about 0.3 s (docs/cluster.md).
const DefaultFillWindow = 3 * time.Second

func (c *RegistersConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 300 * time.Millisecond
	}
	if c.RefillBatch <= 0 {
		c.RefillBatch = 256
	}
	if c.RefillTimeout <= 0 {
		c.RefillTimeout = 30 * time.Second
	}
	if c.FanOut <= 0 {
		c.FanOut = 8
	}
	if c.FillWindow == 0 {
		c.FillWindow = DefaultFillWindow
	}
	if c.ReconcileEvery == 0 {
		c.ReconcileEvery = 3 * time.Second
	}
	if c.ReapRoomsAfter == 0 {
		c.ReapRoomsAfter = 2 * time.Minute
	}
	if c.ForgetMax <= 0 {
		c.ForgetMax = 100000
	}
	if c.ForgetKeep <= 0 {
		c.ForgetKeep = 10 * time.Minute
	}
	if c.RedeliverTimeout <= 0 {
		c.RedeliverTimeout = 2 * time.Minute
	}
}

// Registers is the register service of a cluster: every uid is owned by one
// live "register" member, chosen by rendezvous hashing (xxhash of member ID
// and uid), and calls about a uid go to its owner. It implements what room
// (Registrar) and center (Registry) need.
//
// Registers keep sessions in memory only, so Start also runs the refill:
// when a register member appears or restarts (new Epoch: it is empty), the
// local sessions it owns (SetSource) are restored on it, and when ownership
// of a uid moves (a member joined or left), the local session is restored on
// its new owner and removed from the old one if that is still up.
//
// Calls about one uid return the owner's errors as they are (a write during a
// register restart fails with push.ErrUnavailable or rpc.ErrConnLost: the
// caller decides). A lookup that got no answer is never "not online": Get
// fails, and Lookup returns what the owners that answered hold plus a
// *LookupError naming the uids left unanswered, for an owner that failed
// and also for an owner that is still in its FillWindow and said "no
// session" (it may not have been re-filled yet). With no live register at
// all, every call fails with ErrNoMember (push.ErrUnavailable).
type Registers struct {
	m    Members
	pool *Pool
	cfg  RegistersConfig
	log  *slog.Logger

	fan    atomic.Pointer[workpool.Pool] // nil before Start: fan-out runs inline
	source atomic.Pointer[Source]

	mu       sync.Mutex
	started  bool
	stop     context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once

	rf    refillState  // owned by the poller goroutine
	reap  reapState    // owned by the poller goroutine
	polls atomic.Int64 // refill rounds done, for tests

	fillMu sync.Mutex                // serializes updates of fill
	fill   atomic.Pointer[fillState] // what FillWindow needs, see observe

	onRefilled atomic.Pointer[RefilledHook]
	redeliver  chan struct{} // cap 1: a run of onRefilled is owed
}

// Source returns the sessions held by this process (room.Room.Sessions).
type Source func(ctx context.Context) ([]push.Session, error)

// NewRegisters returns a client of the "register" members of m, calling them
// through p. It does no I/O.
func NewRegisters(m Members, p *Pool, cfg RegistersConfig) *Registers {
	cfg.setDefaults()
	return &Registers{m: m, pool: p, cfg: cfg, log: cfg.Logger, redeliver: make(chan struct{}, 1)}
}

// pick returns a client of uid's owner and the owner's ID.
func (r *Registers) pick(uid string) (RegisterClient, string, error) {
	ms := live(r.m, RoleRegister)
	i := owner(ms, uid)
	if i < 0 {
		return RegisterClient{}, "", noMember(RoleRegister)
	}
	c, err := r.client(ms[i])
	return c, ms[i].ID, err
}

func (r *Registers) client(m push.Member) (RegisterClient, error) {
	c, err := r.pool.Get(m.RPCAddr)
	if err != nil {
		return RegisterClient{}, fmt.Errorf("remote register %s: %w", m.ID, err)
	}
	return RegisterClient{C: c, Timeout: r.cfg.Timeout}, nil
}

// Register stores sess on the owner of sess.UID (see register.Service).
func (r *Registers) Register(ctx context.Context, sess push.Session) ([]push.Session, error) {
	c, id, err := r.pick(sess.UID)
	if err != nil {
		return nil, err
	}
	displaced, err := c.Register(ctx, sess)
	if err != nil {
		return nil, fmt.Errorf("remote register %s on %s: %w", sess.UID, id, err)
	}
	return displaced, nil
}

// Unregister removes the uid's session from its owner if it is still
// (room, connID).
func (r *Registers) Unregister(ctx context.Context, uid, room string, connID uint64) (bool, error) {
	c, id, err := r.pick(uid)
	if err != nil {
		return false, err
	}
	ok, err := c.Unregister(ctx, uid, room, connID)
	if err != nil {
		return false, fmt.Errorf("remote unregister %s on %s: %w", uid, id, err)
	}
	return ok, nil
}

// SetApps replaces the apps of the uid's session on its owner.
func (r *Registers) SetApps(ctx context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error) {
	c, id, err := r.pick(uid)
	if err != nil {
		return nil, false, err
	}
	displaced, ok, err := c.SetApps(ctx, uid, connID, apps)
	if err != nil {
		return nil, false, fmt.Errorf("remote set apps %s on %s: %w", uid, id, err)
	}
	return displaced, ok, nil
}

// Get returns the uid's session from its owner. An owner that is down or
// restarting is an error (push.ErrUnavailable), and so is "no session" from
// an owner still in its FillWindow: neither says the uid is offline.
func (r *Registers) Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error) {
	ms := live(r.m, RoleRegister)
	i := owner(ms, uid)
	if i < 0 {
		return push.Session{}, false, noMember(RoleRegister)
	}
	fs := r.observe(ms, time.Now())
	c, err := r.client(ms[i])
	if err != nil {
		return push.Session{}, false, err
	}
	s, ok, err := c.Get(ctx, uid, app)
	if err != nil {
		if gone(err) && !errors.Is(err, push.ErrUnavailable) { // rpc.ErrConnLost: no answer either
			return push.Session{}, false, fmt.Errorf("remote get %s on %s: %w (%w)", uid, ms[i].ID, err, push.ErrUnavailable)
		}
		return push.Session{}, false, fmt.Errorf("remote get %s on %s: %w", uid, ms[i].ID, err)
	}
	if !ok {
		if err := fs.filling(ms, i, uid, time.Now(), r.cfg.FillWindow); err != nil {
			return push.Session{}, false, fmt.Errorf("remote get %s: %w", uid, err)
		}
	}
	return s, ok, nil
}

// Lookup splits uids by owner, asks the owners at once (on the fan-out
// workers) and merges their answers. When an owner fails (down, restarting)
// or answers "no session" for a uid while in its FillWindow, Lookup still
// returns the sessions the others hold, with a *LookupError listing the uids
// left unanswered (it wraps push.ErrUnavailable and each owner's error).
func (r *Registers) Lookup(ctx context.Context, uids []string) ([]push.Session, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return nil, noMember(RoleRegister)
	}
	if len(uids) == 0 {
		return nil, nil
	}
	fs := r.observe(ms, time.Now())
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	groups := make([][]string, len(ms))
	if len(ms) == 1 {
		groups[0] = uids
	} else {
		for _, uid := range uids {
			i := owner(ms, uid)
			groups[i] = append(groups[i], uid)
		}
	}
	type result struct {
		s   []push.Session
		err error
	}
	res := make([]result, len(ms))
	r.fanOut(len(ms), func(i int) {
		if len(groups[i]) == 0 {
			return
		}
		c, err := r.client(ms[i])
		if err == nil {
			res[i].s, err = c.Lookup(ctx, groups[i])
		}
		if err != nil {
			res[i].err = fmt.Errorf("remote lookup on %s: %w", ms[i].ID, err)
		}
	})
	now := time.Now()
	var lerr *LookupError
	n := 0
	for i := range res {
		switch {
		case res[i].err != nil:
			lerr = lerr.add(ms[i].ID, res[i].err, groups[i]...)
			res[i].s = nil
		case len(res[i].s) < len(groups[i]):
			// Some uids have no session: an answer unless the owner may
			// still be being re-filled.
			found := make(map[string]struct{}, len(res[i].s))
			for _, s := range res[i].s {
				found[s.UID] = struct{}{}
			}
			for _, uid := range groups[i] {
				if _, ok := found[uid]; ok {
					continue
				}
				if err := fs.filling(ms, i, uid, now, r.cfg.FillWindow); err != nil {
					lerr = lerr.add(ms[i].ID, err, uid)
				}
			}
		}
		n += len(res[i].s)
	}
	var out []push.Session
	if len(ms) == 1 {
		out = res[0].s
	} else {
		out = make([]push.Session, 0, n)
		for i := range res {
			out = append(out, res[i].s...)
		}
	}
	if lerr != nil {
		mLookupUnanswered.Add(float64(len(lerr.UIDs)))
		return out, lerr
	}
	return out, nil
}

// LookupError is what Lookup returns when some owners gave no answer: the
// sessions returned with it are complete for every uid except UIDs.
type LookupError struct {
	UIDs   []string         // uids whose owner did not answer, in no particular order
	Owners map[string]error // owner register ID -> why it did not answer
}

// add records that owner did not answer for uids; it allocates e if nil.
func (e *LookupError) add(owner string, why error, uids ...string) *LookupError {
	if e == nil {
		e = &LookupError{Owners: make(map[string]error)}
	}
	e.UIDs = append(e.UIDs, uids...)
	if _, ok := e.Owners[owner]; !ok {
		e.Owners[owner] = why
	}
	return e
}

// Unanswered returns the uids left without an answer (center looks for
// this method with errors.As, without importing this package).
func (e *LookupError) Unanswered() []string { return e.UIDs }

func (e *LookupError) Error() string {
	ids := slices.Sorted(maps.Keys(e.Owners))
	var b strings.Builder
	fmt.Fprintf(&b, "remote lookup: %d uids unanswered by register", len(e.UIDs))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s (%v)", id, e.Owners[id])
	}
	return b.String()
}

// Unwrap makes errors.Is(err, push.ErrUnavailable) hold, and the owners'
// errors reachable.
func (e *LookupError) Unwrap() []error {
	out := []error{push.ErrUnavailable}
	for _, id := range slices.Sorted(maps.Keys(e.Owners)) {
		out = append(out, e.Owners[id])
	}
	return out
}

// errFilling is why an owner's "no session" is not an answer.
var errFilling = errors.New("register may still be being re-filled")

// fillState is what FillWindow needs: since when each live register has
// been up (as this process saw it), and the view before the last change
// with its time (a uid whose owner changed may not be on its new owner yet).
// It is replaced, never changed.
type fillState struct {
	view    []push.Member
	since   map[string]time.Time // member ID -> start of its window
	prev    []push.Member
	changed time.Time
}

// observe returns the fill state for the live registers ms (sorted), after
// recording a change of membership. The first view uses each member's Epoch
// (its start time, unix nanos) so that a process starting next to
// long-running registers does not treat them as filling; later, a member
// that is new or has a new Epoch starts its window when seen.
func (r *Registers) observe(ms []push.Member, now time.Time) *fillState {
	if fs := r.fill.Load(); fs != nil && sameMembers(fs.view, ms) {
		return fs
	}
	r.fillMu.Lock()
	defer r.fillMu.Unlock()
	old := r.fill.Load()
	if old != nil && sameMembers(old.view, ms) {
		return old
	}
	fs := &fillState{view: slices.Clone(ms), since: make(map[string]time.Time, len(ms))}
	if old == nil {
		for _, m := range ms {
			t := time.Unix(0, m.Epoch)
			if t.After(now) { // its clock is ahead of ours
				t = now
			}
			fs.since[m.ID] = t
		}
	} else {
		prevEpoch := make(map[string]int64, len(old.view))
		for _, m := range old.view {
			prevEpoch[m.ID] = m.Epoch
		}
		for _, m := range ms {
			if e, ok := prevEpoch[m.ID]; ok && e == m.Epoch {
				fs.since[m.ID] = old.since[m.ID]
			} else {
				fs.since[m.ID] = now
			}
		}
		fs.prev, fs.changed = old.view, now
	}
	r.fill.Store(fs)
	return fs
}

// filling returns a non-nil error when ms[i]'s "no session" for uid is not
// an answer: ms[i] came up (restart or join) less than window ago, or the
// uid's owner changed less than window ago.
func (fs *fillState) filling(ms []push.Member, i int, uid string, now time.Time, window time.Duration) error {
	if window < 0 || fs == nil {
		return nil
	}
	if t, ok := fs.since[ms[i].ID]; ok && now.Sub(t) < window {
		return fmt.Errorf("%s up for %v: %w: %w", ms[i].ID, now.Sub(t).Round(time.Millisecond), errFilling, push.ErrUnavailable)
	}
	if len(fs.prev) > 0 && now.Sub(fs.changed) < window {
		if p := fs.prev[owner(fs.prev, uid)]; p.ID != ms[i].ID {
			return fmt.Errorf("%s owns %s since %v (was %s): %w: %w", ms[i].ID, uid, now.Sub(fs.changed).Round(time.Millisecond), p.ID, errFilling, push.ErrUnavailable)
		}
	}
	return nil
}

// Counts sums the counts of every live register. A register that is down or
// restarting counts as empty (it is: a restarted register starts empty);
// any other failure fails the call.
func (r *Registers) Counts(ctx context.Context) (push.Counts, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return push.Counts{}, noMember(RoleRegister)
	}
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	res := make([]push.Counts, len(ms))
	errs := make([]error, len(ms))
	unanswered := make([]bool, len(ms))
	r.fanOut(len(ms), func(i int) {
		c, err := r.client(ms[i])
		if err == nil {
			res[i], err = c.Counts(ctx)
		}
		switch {
		case err != nil && gone(err):
			// Down or restarting: its sessions are re-filled within
			// seconds. Counted as unanswered, never as zero sessions.
			unanswered[i] = true
		case err != nil:
			errs[i] = fmt.Errorf("remote counts on %s: %w", ms[i].ID, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return push.Counts{}, err
	}
	sum := push.Counts{PerApp: make(map[uint32]int), PerRoom: make(map[string]int)}
	for i, c := range res {
		if unanswered[i] {
			sum.Unanswered++
		}
		sum.Total += c.Total
		for k, v := range c.PerApp {
			sum.PerApp[k] += v
		}
		for k, v := range c.PerRoom {
			sum.PerRoom[k] += v
		}
	}
	return sum, nil
}

// fanOut runs f(0..n-1) on the fan-out workers and the calling goroutine,
// and waits. A task the workers cannot take at once runs inline, so a busy
// pool slows a call down but never queues it unboundedly.
func (r *Registers) fanOut(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	p := r.fan.Load()
	var wg sync.WaitGroup
	for i := 0; i < n-1; i++ {
		wg.Add(1)
		task := func() {
			defer wg.Done()
			f(i)
		}
		if p == nil || !p.TrySubmit(task) {
			task()
		}
	}
	f(n - 1)
	wg.Wait()
}
