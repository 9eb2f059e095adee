package remote

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

var fastPoll = RegistersConfig{PollEvery: 10 * time.Millisecond, RefillBatch: 50}

// localSessions is a room's sessions as a refill Source.
func localSessions(n int) (Source, []push.Session) {
	ss := make([]push.Session, n)
	for i := range ss {
		ss[i] = session(i, "room-local")
	}
	return func(context.Context) ([]push.Session, error) { return slices.Clone(ss), nil }, ss
}

// owned returns the uids of ss that node owns under the current membership.
func (c *regCluster) owned(node *regNode, ss []push.Session) []string {
	var out []string
	for _, s := range ss {
		if c.ownerNode(s.UID) == node {
			out = append(out, s.UID)
		}
	}
	slices.Sort(out)
	return out
}

// waitShares waits until every live node holds exactly the sessions of ss it owns.
func (c *regCluster) waitShares(t *testing.T, ss []push.Session, nodes ...*regNode) {
	t.Helper()
	testkit.WaitFor(t, "every register to hold exactly its share", 10*time.Second, func() bool {
		for _, n := range nodes {
			if !slices.Equal(n.api.uids(), c.owned(n, ss)) {
				return false
			}
		}
		return true
	})
}

func TestRefillAfterRestart(t *testing.T) {
	c := newRegCluster(t, 3, false, fastPoll)
	src, ss := localSessions(300)
	c.regs.SetSource(src)
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	c.waitShares(t, ss, c.nodes...)

	before0, before2 := c.nodes[0].api.restores.Load(), c.nodes[2].api.restores.Load()
	// reg-1 restarts empty: same id, new epoch, new port.
	old := c.nodes[1]
	stopRPC(old.srv)
	fresh := startRegister(t, old.id, 2)
	c.nodes[1] = fresh
	c.mem.set(fresh.m)
	c.waitShares(t, ss, c.nodes...)

	if got, want := fresh.api.restores.Load(), int64(len(c.owned(fresh, ss))); got != want {
		t.Errorf("restarted register got %d sessions restored, want its %d", got, want)
	}
	if c.nodes[0].api.restores.Load() != before0 || c.nodes[2].api.restores.Load() != before2 {
		t.Error("registers that did not restart were refilled again")
	}
	// Nothing more happens while membership stays put.
	calls := fresh.api.calls.Load()
	time.Sleep(5 * fastPoll.PollEvery) // a quiet period, not a wait for a state
	if fresh.api.calls.Load() != calls {
		t.Error("refill keeps calling a register whose membership did not change")
	}
}

func TestRefillOwnershipMoves(t *testing.T) {
	c := newRegCluster(t, 2, false, fastPoll)
	src, ss := localSessions(400)
	c.regs.SetSource(src)
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	c.waitShares(t, ss, c.nodes...)

	// A third register joins: it receives the uids it now owns, and the old
	// owners forget them.
	joined := startRegister(t, "reg-2", 1)
	c.nodes = append(c.nodes, joined)
	c.mem.set(joined.m)
	c.waitShares(t, ss, c.nodes...)
	if len(joined.api.uids()) == 0 {
		t.Fatal("the joining register owns nothing: test too small")
	}

	// reg-0 leaves: its uids move to the others.
	left := c.nodes[0]
	c.mem.remove(RoleRegister, left.id)
	stopRPC(left.srv)
	c.nodes = c.nodes[1:]
	c.waitShares(t, ss, c.nodes...)
	total := 0
	for _, n := range c.nodes {
		total += n.api.len()
	}
	if total != len(ss) {
		t.Fatalf("registers hold %d sessions, want %d", total, len(ss))
	}
}

func TestRefillAllRegistersGone(t *testing.T) {
	c := newRegCluster(t, 2, false, fastPoll)
	src, ss := localSessions(100)
	c.regs.SetSource(src)
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	c.waitShares(t, ss, c.nodes...)
	// Every register leaves (a ZooKeeper outage as seen from here), then
	// they come back restarted.
	for _, n := range c.nodes {
		c.mem.remove(RoleRegister, n.id)
	}
	seen := c.regs.polls.Load()
	testkit.WaitFor(t, "the poller to run with no register", 10*time.Second, func() bool { return c.regs.polls.Load() >= seen+2 })
	for i, n := range c.nodes {
		stopRPC(n.srv)
		c.nodes[i] = startRegister(t, n.id, 2)
		c.mem.set(c.nodes[i].m)
	}
	c.waitShares(t, ss, c.nodes...)
}

func TestRefillRetries(t *testing.T) {
	c := newRegCluster(t, 2, false, fastPoll)
	_, ss := localSessions(100)
	var srcFails atomic.Int64
	srcFails.Store(2)
	c.regs.SetSource(func(context.Context) ([]push.Session, error) {
		if srcFails.Add(-1) >= 0 {
			return nil, errors.New("room busy")
		}
		return slices.Clone(ss), nil
	})
	c.nodes[1].api.failStore.Store(3) // its first Restore calls fail
	if err := c.regs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	c.waitShares(t, ss, c.nodes...)
}

func TestRegistersLifecycle(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 1, false, fastPoll)
	if err := c.regs.Shutdown(ctx); err != nil { // before Start
		t.Fatal(err)
	}
	if err := c.regs.Start(ctx); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
	c = newRegCluster(t, 1, false, fastPoll)
	if err := c.regs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.regs.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	for range 2 {
		if err := c.regs.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Calls still work after Shutdown, without the fan-out workers.
	if _, err := c.regs.Register(ctx, session(1, "r")); err != nil {
		t.Fatal(err)
	}
	if cnt, err := c.regs.Counts(ctx); err != nil || cnt.Total != 1 {
		t.Fatalf("Counts after Shutdown: %+v %v", cnt, err)
	}
}
