package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// at once (Lookup, Counts, DropRoom, refills). Default 8.
	FanOut int
}

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
}

// Registers is the register service of a cluster: every uid is owned by one
// live "register" member, chosen by rendezvous hashing (xxhash of member ID
// and uid), and calls about a uid go to its owner. It implements what room
// (Registrar) and center (Registry) need, plus DropRoom.
//
// Registers keep sessions in memory only, so Start also runs the refill:
// when a register member appears or restarts (new Epoch: it is empty), the
// local sessions it owns (SetSource) are restored on it, and when ownership
// of a uid moves (a member joined or left), the local session is restored on
// its new owner and removed from the old one if that is still up.
//
// Calls about one uid return the owner's errors as they are (a write during a
// register restart fails with push.ErrUnavailable or rpc.ErrConnLost: the
// caller decides), except that Get and Lookup report an owner that is down
// or restarting as "not online". With no live register at all, every call
// fails with ErrNoMember (push.ErrUnavailable).
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
	polls atomic.Int64 // refill rounds done, for tests
}

// Source returns the sessions held by this process (room.Room.Sessions).
type Source func(ctx context.Context) ([]push.Session, error)

// NewRegisters returns a client of the "register" members of m, calling them
// through p. It does no I/O.
func NewRegisters(m Members, p *Pool, cfg RegistersConfig) *Registers {
	cfg.setDefaults()
	return &Registers{m: m, pool: p, cfg: cfg, log: cfg.Logger}
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
// restarting is reported as "not online".
func (r *Registers) Get(ctx context.Context, uid string, app uint32) (push.Session, bool, error) {
	c, id, err := r.pick(uid)
	if err != nil {
		return push.Session{}, false, err
	}
	s, ok, err := c.Get(ctx, uid, app)
	switch {
	case err == nil:
		return s, ok, nil
	case gone(err):
		return push.Session{}, false, nil
	}
	return push.Session{}, false, fmt.Errorf("remote get %s on %s: %w", uid, id, err)
}

// Lookup splits uids by owner, asks the owners at once (on the fan-out
// workers) and merges their answers. An owner that is down or restarting
// counts as holding no session.
func (r *Registers) Lookup(ctx context.Context, uids []string) ([]push.Session, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return nil, noMember(RoleRegister)
	}
	if len(uids) == 0 {
		return nil, nil
	}
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
		if err != nil && !gone(err) {
			res[i].err = fmt.Errorf("remote lookup on %s: %w", ms[i].ID, err)
		}
	})
	n := 0
	for i := range res {
		if res[i].err != nil {
			return nil, res[i].err
		}
		n += len(res[i].s)
	}
	if len(ms) == 1 {
		return res[0].s, nil
	}
	out := make([]push.Session, 0, n)
	for i := range res {
		out = append(out, res[i].s...)
	}
	return out, nil
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
	r.fanOut(len(ms), func(i int) {
		c, err := r.client(ms[i])
		if err == nil {
			res[i], err = c.Counts(ctx)
		}
		if err != nil && !gone(err) {
			errs[i] = fmt.Errorf("remote counts on %s: %w", ms[i].ID, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return push.Counts{}, err
	}
	sum := push.Counts{PerApp: make(map[uint32]int), PerRoom: make(map[string]int)}
	for _, c := range res {
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

// DropRoom removes room's sessions from every live register and returns how
// many were removed. On failures it returns what the others removed and the
// failures joined.
func (r *Registers) DropRoom(ctx context.Context, room string) (int, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return 0, noMember(RoleRegister)
	}
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ns := make([]int, len(ms))
	errs := make([]error, len(ms))
	r.fanOut(len(ms), func(i int) {
		c, err := r.client(ms[i])
		if err == nil {
			ns[i], err = c.DropRoom(ctx, room)
		}
		if err != nil {
			errs[i] = fmt.Errorf("remote drop room %s on %s: %w", room, ms[i].ID, err)
		}
	})
	n := 0
	for _, x := range ns {
		n += x
	}
	return n, errors.Join(errs...)
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
