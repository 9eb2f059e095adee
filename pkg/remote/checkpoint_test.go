package remote

import (
	"context"
	"reflect"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// Checkpoint crosses RPC as it was given, and the saver's error comes back.
func TestServeSaverCheckpoint(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}
	ends := []push.SessionEnd{{UID: "a", Apps: []uint32{1, 3}}, {UID: "用户", Apps: []uint32{1<<32 - 1}}, {UID: "b"}}
	if err := c.Checkpoint(ctx, ends); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	got := api.ends
	api.err = push.ErrUnavailable
	api.mu.Unlock()
	if !reflect.DeepEqual(got, ends) {
		t.Fatalf("saver saw %+v, want %+v", got, ends)
	}
	if err := c.Checkpoint(ctx, ends); err == nil {
		t.Fatal("a failing saver's Checkpoint returned nil")
	}
}

// The cluster wrapper sends one call to one saver, fails over when that
// saver is down (Checkpoint is idempotent), and sends nothing for no ends.
func TestSaverCheckpointRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	nodes := startSavers(t, mem, 3)
	s := NewSaver(mem, newPool(t))
	ends := []push.SessionEnd{{UID: "alice", Apps: []uint32{1}}, {UID: "bob", Apps: []uint32{2}}}
	received := func() (calls, holders int) {
		for _, n := range nodes {
			n.api.mu.Lock()
			if len(n.api.ends) > 0 {
				holders++
				calls += len(n.api.ends) / len(ends)
			}
			n.api.ends = nil
			n.api.mu.Unlock()
		}
		return calls, holders
	}
	for _, tc := range []struct {
		name  string
		ends  []push.SessionEnd
		calls int
	}{
		{"ends", ends, 1},
		{"none", nil, 0},
	} {
		if err := s.Checkpoint(ctx, tc.ends); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if calls, holders := received(); calls != tc.calls || holders > 1 {
			t.Fatalf("%s: %d calls on %d savers, want %d on at most one", tc.name, calls, holders, tc.calls)
		}
	}
	ms := live(mem, RoleSaver)
	first := ms[owner(ms, "alice")].ID
	for _, n := range nodes {
		if n.id == first {
			stopRPC(n.srv)
		}
	}
	if err := s.Checkpoint(ctx, ends); err != nil {
		t.Fatalf("Checkpoint with its saver down: %v", err)
	}
	if calls, _ := received(); calls != 1 {
		t.Fatalf("%d calls after the failover, want 1", calls)
	}
}
