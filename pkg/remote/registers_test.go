package remote

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

type regCluster struct {
	nodes []*regNode
	mem   *fakeMembers
	regs  *Registers
}

// newRegCluster starts n fake registers, lists them as members and returns
// a Registers over them (started when start is true).
func newRegCluster(t *testing.T, n int, start bool, cfg RegistersConfig) *regCluster {
	t.Helper()
	c := &regCluster{mem: newMembers()}
	for i := range n {
		node := startRegister(t, fmt.Sprintf("reg-%d", i), 1)
		c.nodes = append(c.nodes, node)
		c.mem.set(node.m)
	}
	c.regs = NewRegisters(c.mem, newPool(t), cfg)
	if start {
		if err := c.regs.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.regs.Shutdown(context.Background()) })
	}
	return c
}

// holder returns the node that stores uid, nil if none.
func (c *regCluster) holders(uid string) []*regNode {
	var out []*regNode
	for _, n := range c.nodes {
		if _, ok, _ := n.api.Get(context.Background(), uid, 0); ok {
			out = append(out, n)
		}
	}
	return out
}

// ownerNode is the node rendezvous hashing picks for uid among members.
func (c *regCluster) ownerNode(uid string) *regNode {
	ms := live(c.mem, RoleRegister)
	id := ms[owner(ms, uid)].ID
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

func session(i int, room string) push.Session {
	return push.Session{UID: fmt.Sprintf("user-%05d", i), Room: room, ConnID: uint64(1000 + i), Apps: []uint32{uint32(1 + i%3)}, Since: 1700000000, IP: "10.0.0.1"}
}

func TestRegistersSharding(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 3, false, RegistersConfig{})
	const n = 3000
	for i := range n {
		if _, err := c.regs.Register(ctx, session(i, "room-a")); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range c.nodes {
		if got := node.api.len(); got < n/3*7/10 || got > n/3*13/10 {
			t.Errorf("%s holds %d of %d sessions: uneven", node.id, got, n)
		}
	}
	for i := 0; i < n; i += 7 {
		uid := session(i, "").UID
		h := c.holders(uid)
		if len(h) != 1 || h[0] != c.ownerNode(uid) {
			t.Fatalf("%s is held by %d nodes, not by its owner only", uid, len(h))
		}
		s, ok, err := c.regs.Get(ctx, uid, 0)
		if err != nil || !ok || s.ConnID != uint64(1000+i) {
			t.Fatalf("Get %s: %+v %v %v", uid, s, ok, err)
		}
	}
	// The same uid again goes to the same owner, which reports the replaced session.
	again := session(5, "room-b")
	prev, err := c.regs.Register(ctx, again)
	if err != nil || len(prev) != 1 || prev[0].Room != "room-a" {
		t.Fatalf("second login: prev %+v err %v", prev, err)
	}
	if _, ok, err := c.regs.SetApps(ctx, again.UID, again.ConnID, []uint32{42}); err != nil || !ok {
		t.Fatalf("SetApps: %v %v", ok, err)
	}
	if ok, err := c.regs.Unregister(ctx, again.UID, "room-b", again.ConnID); err != nil || !ok {
		t.Fatalf("Unregister: %v %v", ok, err)
	}
	if len(c.holders(again.UID)) != 0 {
		t.Fatal("session still held after Unregister")
	}
}

func TestRegistersLookupAndCounts(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 3, true, RegistersConfig{})
	const n = 600
	var uids []string
	for i := range n {
		room := "room-a"
		if i%4 == 0 {
			room = "room-b"
		}
		s := session(i, room)
		uids = append(uids, s.UID)
		if _, err := c.regs.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	ask := append(slices.Clone(uids), "ghost-1", "ghost-2")
	got, err := c.regs.Lookup(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	gotUIDs := make([]string, 0, len(got))
	for _, s := range got {
		gotUIDs = append(gotUIDs, s.UID)
	}
	slices.Sort(gotUIDs)
	if !slices.Equal(gotUIDs, uids) {
		t.Fatalf("Lookup returned %d sessions, want the %d online", len(gotUIDs), len(uids))
	}
	if ss, err := c.regs.Lookup(ctx, nil); err != nil || len(ss) != 0 {
		t.Fatalf("empty Lookup: %v %v", ss, err)
	}

	cnt, err := c.regs.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Total != n || cnt.Unanswered != 0 || cnt.PerRoom["room-b"] != n/4 || cnt.PerRoom["room-a"] != n-n/4 || cnt.PerApp[1]+cnt.PerApp[2]+cnt.PerApp[3] != n {
		t.Fatalf("Counts %+v", cnt)
	}

	// One register goes down: its uids are unanswered (not offline), writes fail.
	down := c.nodes[1]
	stopRPC(down.srv)
	var downUID, upUID string
	for _, u := range uids {
		if c.ownerNode(u) == down {
			downUID = u
		} else {
			upUID = u
		}
	}
	if _, ok, err := c.regs.Get(ctx, downUID, 0); !errors.Is(err, push.ErrUnavailable) || ok {
		t.Fatalf("Get on a down owner: ok %v err %v, want ErrUnavailable", ok, err)
	}
	if _, ok, err := c.regs.Get(ctx, upUID, 0); err != nil || !ok {
		t.Fatalf("Get on a live owner: ok %v err %v", ok, err)
	}
	got, err = c.regs.Lookup(ctx, uids)
	var lerr *LookupError
	if !errors.As(err, &lerr) || !errors.Is(err, push.ErrUnavailable) || len(got) != n-down.api.len() {
		t.Fatalf("Lookup with a down owner: %d sessions, err %v; want %d and a LookupError", len(got), err, n-down.api.len())
	}
	// The partial answer: the sessions of the live owners, and exactly the
	// down owner's uids unanswered, naming it.
	unanswered := slices.Sorted(slices.Values(lerr.Unanswered()))
	if !slices.Equal(unanswered, down.api.uids()) || len(lerr.Owners) != 1 || lerr.Owners[down.id] == nil {
		t.Fatalf("unanswered %d uids by %v, want the %d of %s", len(unanswered), lerr.Owners, down.api.len(), down.id)
	}
	for _, s := range got {
		if c.ownerNode(s.UID) == down {
			t.Fatalf("Lookup returned %s, owned by the down register", s.UID)
		}
	}
	if _, err := c.regs.Register(ctx, push.Session{UID: downUID, Room: "r", ConnID: 1}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("Register on a down owner: %v, want ErrUnavailable", err)
	}
	// Counts leave the down register out and say so: a lower bound.
	cnt, err = c.regs.Counts(ctx)
	if err != nil || cnt.Total != n-down.api.len() || cnt.Unanswered != 1 {
		t.Fatalf("Counts with a down register: total %d unanswered %d, %v", cnt.Total, cnt.Unanswered, err)
	}
}

func TestRegistersNoMember(t *testing.T) {
	ctx := context.Background()
	regs := NewRegisters(newMembers(), newPool(t), RegistersConfig{})
	_, err1 := regs.Register(ctx, session(1, "r"))
	_, err2 := regs.Unregister(ctx, "u", "r", 1)
	_, _, err3 := regs.SetApps(ctx, "u", 1, nil)
	_, _, err4 := regs.Get(ctx, "u", 0)
	_, err5 := regs.Lookup(ctx, []string{"u"})
	_, err6 := regs.Counts(ctx)
	for i, err := range []error{err1, err2, err3, err4, err5, err6} {
		if !errors.Is(err, push.ErrUnavailable) || !errors.Is(err, ErrNoMember) {
			t.Errorf("call %d: err %v, want ErrNoMember", i+1, err)
		}
	}
}

// TestRegistersGoroutinesBounded: fan-out uses the resident workers, so the
// goroutine count stays flat under concurrent Lookups and Counts.
func TestRegistersGoroutinesBounded(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 3, true, RegistersConfig{FanOut: 4})
	var uids []string
	for i := range 300 {
		s := session(i, "room-a")
		uids = append(uids, s.UID)
		if _, err := c.regs.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.regs.Lookup(ctx, uids); err != nil { // every connection is up
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	const callers = 32
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if g := int64(runtime.NumGoroutine()); g > peak.Load() {
				peak.Store(g)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range callers {
		wg.Go(func() {
			for range 20 {
				got, err := c.regs.Lookup(ctx, uids)
				if err != nil || len(got) != len(uids) {
					failures.Add(1)
				}
				if _, err := c.regs.Counts(ctx); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	if failures.Load() > 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	// callers + the sampler; a handful of slack for the runtime.
	if p := peak.Load(); p > int64(base+callers+1+8) {
		t.Fatalf("goroutines peaked at %d with %d callers over a base of %d", p, callers, base)
	}
	testkit.WaitFor(t, "goroutines back to base", 10*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}
