package remote

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// uidOf returns the first uid of the form prefix-N that node owns.
func (c *regCluster) uidOf(node *regNode, prefix string) string {
	for i := 0; ; i++ {
		u := session(i, "").UID + "-" + prefix
		if c.ownerNode(u) == node {
			return u
		}
	}
}

func TestLookupFillWindow(t *testing.T) {
	ctx := context.Background()
	const window = time.Second
	c := newRegCluster(t, 3, false, RegistersConfig{FillWindow: window})
	on1 := push.Session{UID: c.uidOf(c.nodes[1], "on"), Room: "room-a", ConnID: 1, Apps: []uint32{1}, Since: 1}
	if _, err := c.regs.Register(ctx, on1); err != nil {
		t.Fatal(err)
	}
	ghost0, ghost1 := c.uidOf(c.nodes[0], "ghost"), c.uidOf(c.nodes[1], "ghost")
	// Registers up for long (Epoch far in the past): "no session" is an answer.
	if ss, err := c.regs.Lookup(ctx, []string{ghost0, ghost1, on1.UID}); err != nil || len(ss) != 1 {
		t.Fatalf("settled lookup: %v %v", ss, err)
	}

	// reg-1 restarts empty (new Epoch): for FillWindow its "no session" is
	// not an answer, the other owners' still is.
	stopRPC(c.nodes[1].srv)
	fresh := startRegister(t, c.nodes[1].id, 2)
	c.nodes[1] = fresh
	c.mem.set(fresh.m)
	ss, err := c.regs.Lookup(ctx, []string{ghost0, ghost1, on1.UID})
	var lerr *LookupError
	if !errors.As(err, &lerr) || !errors.Is(err, errFilling) || !errors.Is(err, push.ErrUnavailable) || len(ss) != 0 {
		t.Fatalf("lookup in the fill window: %v %v, want a LookupError", ss, err)
	}
	if got := slices.Sorted(slices.Values(lerr.Unanswered())); !slices.Equal(got, slices.Sorted(slices.Values([]string{ghost1, on1.UID}))) || lerr.Owners[fresh.id] == nil {
		t.Fatalf("unanswered %v by %v, want reg-1's two uids", got, lerr.Owners)
	}
	if _, _, err := c.regs.Get(ctx, ghost1, 0); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("Get in the fill window: %v, want ErrUnavailable", err)
	}
	if _, ok, err := c.regs.Get(ctx, ghost0, 0); err != nil || ok {
		t.Fatalf("Get on a settled owner: %v %v", ok, err)
	}
	// Re-filled: a session found is an answer at once.
	if err := fresh.api.Restore(ctx, []push.Session{on1}); err != nil {
		t.Fatal(err)
	}
	if ss, err := c.regs.Lookup(ctx, []string{on1.UID}); err != nil || len(ss) != 1 {
		t.Fatalf("lookup after the refill: %v %v", ss, err)
	}
	// After the window, "no session" is an answer again.
	testkit.WaitFor(t, "the fill window to pass", 10*time.Second, func() bool {
		_, err := c.regs.Lookup(ctx, []string{ghost1})
		return err == nil
	})

	// reg-0 leaves: its uids move to the others, whose "no session" for
	// them is not an answer for FillWindow (the rooms re-announce them).
	c.mem.remove(RoleRegister, c.nodes[0].id)
	if _, err := c.regs.Lookup(ctx, []string{ghost0}); !errors.Is(err, errFilling) {
		t.Fatalf("lookup of a moved uid: %v, want unanswered", err)
	}
	if _, err := c.regs.Lookup(ctx, []string{ghost1}); err != nil {
		t.Fatalf("lookup of a uid that did not move: %v", err)
	}
	testkit.WaitFor(t, "the fill window to pass", 10*time.Second, func() bool {
		_, err := c.regs.Lookup(ctx, []string{ghost0})
		return err == nil
	})
}

func TestLookupPartialAnswer(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 3, true, RegistersConfig{FillWindow: -1})
	var uids []string
	for i := range 300 {
		s := session(i, "room-a")
		uids = append(uids, s.UID)
		if _, err := c.regs.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Two owners down: the third's sessions come back with the others' uids.
	stopRPC(c.nodes[0].srv)
	stopRPC(c.nodes[2].srv)
	ss, err := c.regs.Lookup(ctx, append(slices.Clone(uids), "ghost"))
	var lerr *LookupError
	if !errors.As(err, &lerr) || len(ss) != c.nodes[1].api.len() {
		t.Fatalf("lookup: %d sessions, %v; want reg-1's %d and a LookupError", len(ss), err, c.nodes[1].api.len())
	}
	want := append(c.nodes[0].api.uids(), c.nodes[2].api.uids()...)
	if c.ownerNode("ghost") != c.nodes[1] {
		want = append(want, "ghost")
	}
	slices.Sort(want)
	if got := slices.Sorted(slices.Values(lerr.UIDs)); !slices.Equal(got, want) {
		t.Fatalf("unanswered %d uids, want %d", len(got), len(want))
	}
	if len(lerr.Owners) != 2 || lerr.Owners["reg-0"] == nil || lerr.Owners["reg-2"] == nil {
		t.Fatalf("owners %v, want reg-0 and reg-2", lerr.Owners)
	}
}

// TestRefillConvergesWhenRestoreFails is issue 10's stale sessions: a
// register leaves, its uids move to an interim owner, it comes back empty
// and the first Restores to it fail, and so do the first removals from the
// interim owner. The removals must still happen.
func TestRefillConvergesWhenRestoreFails(t *testing.T) {
	cfg := fastPoll
	cfg.ReconcileEvery = -1 // the refill alone converges
	c := newRegCluster(t, 2, false, cfg)
	src, ss := localSessions(300)
	c.regs.SetSource(src)
	var hook atomic.Int64
	c.regs.SetOnRefilled(func(context.Context) (int, error) { hook.Add(1); return 0, nil })
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	c.waitShares(t, ss, c.nodes...)
	testkit.WaitFor(t, "the hook after the first refill", 10*time.Second, func() bool { return hook.Load() >= 1 })

	interim, back := c.nodes[0], c.nodes[1]
	c.mem.remove(RoleRegister, back.id)
	stopRPC(back.srv)
	testkit.WaitFor(t, "the interim owner to hold every session", 10*time.Second, func() bool { return interim.api.len() == len(ss) })

	fresh := startRegister(t, back.id, 2)
	fresh.api.failStore.Store(3)
	interim.api.failUnreg.Store(5)
	h := hook.Load()
	c.nodes[1] = fresh
	c.mem.set(fresh.m)
	c.waitShares(t, ss, c.nodes...)
	if n := interim.api.len() + fresh.api.len(); n != len(ss) {
		t.Fatalf("registers hold %d sessions for %d connections", n, len(ss))
	}
	testkit.WaitFor(t, "the hook after the refill", 10*time.Second, func() bool { return hook.Load() > h })
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	cfg := fastPoll
	cfg.ReconcileEvery = 20 * time.Millisecond
	c := newRegCluster(t, 2, false, cfg)
	src, ss := localSessions(100)
	c.regs.SetSource(src)
	var hook atomic.Int64
	c.regs.SetOnRefilled(func(context.Context) (int, error) { hook.Add(1); return 0, nil })
	if err := c.regs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(ctx) })
	c.waitShares(t, ss, c.nodes...)
	testkit.WaitFor(t, "the hook after the first refill", 10*time.Second, func() bool { return hook.Load() >= 1 })
	h := hook.Load()

	old := time.Now().Add(-time.Minute).Unix()
	// A connection that closed, whose removal was lost.
	closed := push.Session{UID: "closed-1", Room: "room-local", ConnID: 9001, Apps: []uint32{1}, Since: old}
	// A login younger than the grace: registered, not yet listed by the room.
	young := push.Session{UID: "young-1", Room: "room-local", ConnID: 9002, Apps: []uint32{1}, Since: time.Now().Unix()}
	// Another room's session: not this room's business.
	other := push.Session{UID: "other-1", Room: "room-x", ConnID: 9003, Apps: []uint32{1}, Since: old}
	for _, s := range []push.Session{closed, young, other} {
		if _, err := c.ownerNode(s.UID).api.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// A copy of a local session on the register that does not own it.
	cp := ss[0]
	notOwner := c.nodes[0]
	if c.ownerNode(cp.UID) == notOwner {
		notOwner = c.nodes[1]
	}
	if _, err := notOwner.api.Register(ctx, cp); err != nil {
		t.Fatal(err)
	}
	// A local session missing from its owner.
	gone := ss[1]
	if _, err := c.ownerNode(gone.UID).api.Unregister(ctx, gone.UID, gone.Room, gone.ConnID); err != nil {
		t.Fatal(err)
	}

	want := func(n *regNode) []string {
		out := c.owned(n, ss)
		for _, s := range []push.Session{young, other} {
			if c.ownerNode(s.UID) == n {
				out = append(out, s.UID)
			}
		}
		slices.Sort(out)
		return out
	}
	testkit.WaitFor(t, "the registers to hold exactly the room's sessions", 10*time.Second, func() bool {
		for _, n := range c.nodes {
			if !slices.Equal(n.api.uids(), want(n)) {
				return false
			}
		}
		return true
	})
	testkit.WaitFor(t, "the hook after restoring the missing session", 10*time.Second, func() bool { return hook.Load() > h })
}

func TestRedeliverStopsOnShutdown(t *testing.T) {
	c := newRegCluster(t, 1, false, fastPoll)
	src, ss := localSessions(10)
	c.regs.SetSource(src)
	started := make(chan struct{}, 1)
	c.regs.SetOnRefilled(func(ctx context.Context) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.waitShares(t, ss, c.nodes...)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.regs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a running hook: %v", err)
	}
}

// TestReconcileIgnoresLoginsDuringScan: a login registered just after its
// register's scan, and listed by the room when the reconciliation reads its
// sessions again, is not "missing": restoring it would run the hook (a
// Redeliver of every stored message to every session of the room, sent
// and unACKed ones again) for nothing.
func TestReconcileIgnoresLoginsDuringScan(t *testing.T) {
	ctx := context.Background()
	cfg := fastPoll
	cfg.ReconcileEvery = 5 * time.Millisecond
	c := newRegCluster(t, 1, false, cfg)
	var (
		mu    sync.Mutex
		local []push.Session
	)
	for i := range 20 {
		local = append(local, session(i, "room-local"))
	}
	c.regs.SetSource(func(context.Context) ([]push.Session, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(local), nil
	})
	var hook atomic.Int64
	c.regs.SetOnRefilled(func(context.Context) (int, error) { hook.Add(1); return 0, nil })
	if err := c.regs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(ctx) })
	reg := c.nodes[0].api
	testkit.WaitFor(t, "the first refill and its hook", 10*time.Second, func() bool { return reg.len() == len(local) && hook.Load() >= 1 })
	h, restores := hook.Load(), reg.restores.Load()

	// Every scan is followed by a login: registered after the scan, held by
	// the room before its second read.
	var logins atomic.Int64
	after := func() {
		n := int(logins.Add(1))
		s := session(1000+n, "room-local")
		s.Since = time.Now().Unix()
		if _, err := reg.Register(ctx, s); err != nil {
			t.Error(err)
		}
		mu.Lock()
		local = append(local, s)
		mu.Unlock()
	}
	reg.afterScan.Store(&after)
	testkit.WaitFor(t, "several reconciliation scans", 10*time.Second, func() bool { return logins.Load() >= 5 })
	reg.afterScan.Store(nil)
	scans := reg.scans.Load()
	testkit.WaitFor(t, "two more scans", 10*time.Second, func() bool { return reg.scans.Load() >= scans+2 })
	if got := reg.restores.Load() - restores; got != 0 {
		t.Errorf("%d sessions restored: logins registered during the scan were taken for missing ones", got)
	}
	if got := hook.Load() - h; got != 0 {
		t.Errorf("the redeliver hook ran %d times for logins that raced the scan", got)
	}
	if reg.len() != len(local) {
		t.Errorf("register holds %d sessions, the room %d", reg.len(), len(local))
	}
}
