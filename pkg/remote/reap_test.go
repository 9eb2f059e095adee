package remote

import (
	"context"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// A room that is out of membership for ReapRoomsAfter has its sessions
// dropped from every register; a room that is a member keeps them, and a
// room that came back before the time is forgotten by the reaper.
func TestReapRooms(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 2, false, RegistersConfig{ReapRoomsAfter: time.Second})
	c.mem.set(push.Member{Role: RoleRoom, ID: "room-live", RPCAddr: "127.0.0.1:1"})
	for i := range 40 {
		room := []string{"room-live", "room-dead", "room-back"}[i%3]
		if _, err := c.regs.Register(ctx, session(i, room)); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() push.Counts {
		cnt, err := c.regs.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cnt
	}
	before := counts()
	now := time.Now()
	c.regs.reapRooms(ctx, now) // room-dead and room-back seen absent
	c.mem.set(push.Member{Role: RoleRoom, ID: "room-back", RPCAddr: "127.0.0.1:2"})
	c.regs.reapRooms(ctx, now.Add(500*time.Millisecond)) // not yet due: no check
	c.regs.reapRooms(ctx, now.Add(1100*time.Millisecond))
	after := counts()
	if after.PerRoom["room-dead"] != 0 {
		t.Fatalf("room-dead still has %d sessions", after.PerRoom["room-dead"])
	}
	for _, room := range []string{"room-live", "room-back"} {
		if after.PerRoom[room] != before.PerRoom[room] || before.PerRoom[room] == 0 {
			t.Fatalf("%s: %d sessions, had %d", room, after.PerRoom[room], before.PerRoom[room])
		}
	}
	if _, seen := c.regs.reap.absent["room-back"]; seen {
		t.Fatal("room-back, a member again, is still remembered as absent")
	}
}

// Nothing is dropped while a register does not answer, and the reaper
// runs in the poller of a started Registers.
func TestReapRoomsWaitsForEveryRegister(t *testing.T) {
	ctx := context.Background()
	c := newRegCluster(t, 2, false, RegistersConfig{ReapRoomsAfter: time.Second})
	for i := range 20 {
		if _, err := c.regs.Register(ctx, session(i, "room-dead")); err != nil {
			t.Fatal(err)
		}
	}
	held := c.nodes[0].api.len()
	stopRPC(c.nodes[1].srv)
	now := time.Now()
	c.regs.reapRooms(ctx, now)
	c.regs.reapRooms(ctx, now.Add(5*time.Second))
	if n := c.nodes[0].api.len(); n != held || held == 0 {
		// node 0 answered, but with node 1 down the reaper must not judge.
		t.Fatalf("register 0 holds %d sessions, had %d, while register 1 was down", n, held)
	}
	if len(c.regs.reap.absent) != 0 {
		t.Fatalf("rooms judged on a partial answer: %v", c.regs.reap.absent)
	}

	started := newRegCluster(t, 1, true, RegistersConfig{ReapRoomsAfter: time.Second})
	for i := range 5 {
		if _, err := started.regs.Register(ctx, session(i, "room-gone")); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "the poller to reap room-gone", 10*time.Second, func() bool { return started.nodes[0].api.len() == 0 })
}
