package remote

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRoomsRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	rooms := map[string]*fakeRoom{}
	for _, id := range []string{"room-a", "room-b"} {
		api := &fakeRoom{sessions: []push.Session{{UID: "u-" + id, Room: id, ConnID: 1}}}
		srv := startRPC(t, func(s *rpc.Server) { ServeRoom(s, api) })
		rooms[id] = api
		mem.set(push.Member{Role: RoleRoom, ID: id, RPCAddr: srv.Addr(), Epoch: 1})
	}
	mem.set(push.Member{Role: RoleRoom, ID: "room-local"}) // single-process member: no RPC address
	r := NewRooms(mem, newPool(t))

	if n, err := r.Push(ctx, "room-b", push.Message{ID: 1, App: 1}, []push.Target{{UID: "x", ConnID: 1}}); err != nil || n != 1 {
		t.Fatalf("Push: %d %v", n, err)
	}
	if ok, err := r.Kick(ctx, "room-a", "u", 7, nil, push.KickAdmin, "admin"); err != nil || !ok {
		t.Fatalf("Kick: %v %v", ok, err)
	}
	ss, err := r.Sessions(ctx, "room-b")
	if err != nil || len(ss) != 1 || ss[0].UID != "u-room-b" {
		t.Fatalf("Sessions: %+v %v", ss, err)
	}
	if n, err := r.Broadcast(ctx, "room-a", push.Message{ID: 2, App: 3, Payload: []byte("all")}, 2.5); err != nil || n != 1 {
		t.Fatalf("Broadcast: %d %v", n, err)
	}
	if got := rooms["room-a"].bcasts; !reflect.DeepEqual(got, []string{`2/3/"all"/2.5`}) || len(rooms["room-b"].bcasts) != 0 {
		t.Fatalf("broadcasts %v / %v", got, rooms["room-b"].bcasts)
	}
	// A paced broadcast outlives DefaultTimeout: without a deadline of its
	// own the call gets MaxBroadcastCall.
	if dl := rooms["room-a"].bcastDL; dl <= DefaultTimeout || dl > MaxBroadcastCall {
		t.Fatalf("broadcast deadline %v away, want above %v", dl, DefaultTimeout)
	}
	if ids := r.IDs(); !reflect.DeepEqual(sorted(ids), []string{"room-a", "room-b"}) {
		t.Fatalf("IDs %v, want the rooms with an RPC address", ids)
	}
	if len(rooms["room-a"].pushes) != 0 || len(rooms["room-b"].pushes) != 1 || len(rooms["room-a"].kicked) != 1 || len(rooms["room-b"].kicked) != 0 {
		t.Fatal("calls reached the wrong room")
	}
	for _, id := range []string{"room-z", "room-local", ""} {
		if _, err := r.Push(ctx, id, push.Message{}, nil); !errors.Is(err, push.ErrUnavailable) || !errors.Is(err, ErrNoMember) {
			t.Errorf("Push to %q: %v, want ErrNoMember", id, err)
		}
		if _, err := r.Broadcast(ctx, id, push.Message{}, 0); !errors.Is(err, ErrNoMember) {
			t.Errorf("Broadcast on %q: %v, want ErrNoMember", id, err)
		}
		if _, err := r.Kick(ctx, id, "u", 1, nil, 1, ""); !errors.Is(err, push.ErrUnavailable) {
			t.Errorf("Kick on %q: %v, want ErrUnavailable", id, err)
		}
	}
}

type saverNode struct {
	id  string
	api *fakeSaver
	srv *rpc.Server
}

func startSavers(t *testing.T, mem *fakeMembers, n int) []*saverNode {
	var out []*saverNode
	for i := range n {
		api := newFakeSaver()
		api.stats = push.StoreStats{Pending: 10, PendingPerApp: map[uint32]int64{1: 10}, Broadcasts: 2, Saved: uint64(i + 1), Acked: 1, Expired: 1, Parked: 3}
		srv := startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) })
		node := &saverNode{id: fmt.Sprintf("saver-%d", i), api: api, srv: srv}
		mem.set(push.Member{Role: RoleSaver, ID: node.id, RPCAddr: srv.Addr(), Epoch: 1})
		out = append(out, node)
	}
	return out
}

func TestSaverRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	nodes := startSavers(t, mem, 3)
	s := NewSaver(mem, newPool(t))

	// Load and Ack of one uid always reach the same saver; uids spread.
	used := map[*saverNode]bool{}
	for i := range 60 {
		uid := fmt.Sprintf("user-%d", i)
		calls := make([]int, len(nodes))
		for k, n := range nodes {
			calls[k] = n.api.count()
		}
		if _, err := s.Load(ctx, uid, []uint32{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Ack(ctx, uid, []uint32{1}, []uint64{1}); err != nil {
			t.Fatal(err)
		}
		for k, n := range nodes {
			switch d := n.api.count() - calls[k]; d {
			case 0:
			case 2:
				used[n] = true
			default:
				t.Fatalf("%s: %s got %d of the 2 calls", uid, n.id, d)
			}
		}
	}
	if len(used) != len(nodes) {
		t.Errorf("uids reached %d of %d savers", len(used), len(nodes))
	}

	// A Save goes to one saver; Load there finds it.
	msg := push.Message{ID: 77, App: 1, QoS: push.QoS1, Payload: []byte("m")}
	if err := s.Save(ctx, msg, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, n := range nodes {
		n.api.mu.Lock()
		if _, ok := n.api.saved[77]; ok {
			holders++
		}
		n.api.mu.Unlock()
	}
	if holders != 1 {
		t.Fatalf("Save reached %d savers, want 1", holders)
	}
	if err := s.SaveBroadcast(ctx, push.Message{ID: 78, App: 1, Broadcast: true}); err != nil {
		t.Fatal(err)
	}

	// Stats: counters summed, store gauges from the shared store once.
	st, err := s.Stats(ctx)
	want := push.StoreStats{Pending: 10, PendingPerApp: map[uint32]int64{1: 10}, Broadcasts: 2, Saved: 1 + 2 + 3, Acked: 3, Expired: 3, Parked: 3}
	if err != nil || !reflect.DeepEqual(st, want) {
		t.Fatalf("Stats: %+v %v", st, err)
	}

	// The owner of alice goes down (still listed): calls fail over.
	ms := live(mem, RoleSaver)
	first := ms[owner(ms, "alice")].ID
	for _, n := range nodes {
		if n.id == first {
			stopRPC(n.srv)
		}
	}
	if _, err := s.Load(ctx, "alice", []uint32{1}); err != nil {
		t.Fatalf("Load with its saver down: %v", err)
	}
	if _, err := s.Stats(ctx); err != nil {
		t.Fatalf("Stats with one saver down: %v", err)
	}

	// A saver's own failure is returned as it is.
	for _, n := range nodes {
		n.api.mu.Lock()
		n.api.err = fmt.Errorf("full: %w", push.ErrOverloaded)
		n.api.mu.Unlock()
	}
	if err := s.Save(ctx, msg, []string{"carol"}); !errors.Is(err, push.ErrOverloaded) {
		t.Fatalf("Save on an overloaded saver: %v", err)
	}

	empty := NewSaver(newMembers(), newPool(t))
	if _, err := empty.Load(ctx, "u", nil); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("no saver: %v", err)
	}
	if _, err := empty.Stats(ctx); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("no saver Stats: %v", err)
	}
}

// The journal calls of one owner reach one saver (the fakes do not share
// a store, so a call routed elsewhere would find nothing).
func TestSaverQueueRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	nodes := startSavers(t, mem, 3)
	s := NewSaver(mem, newPool(t))
	q := push.QueuedPush{Msg: push.Message{ID: 5, App: 1}, UIDs: []string{"u"}, Owner: "center-1", At: 1}
	if err := s.Enqueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, n := range nodes {
		n.api.mu.Lock()
		if _, ok := n.api.queue[5]; ok {
			holders++
		}
		n.api.mu.Unlock()
	}
	if holders != 1 {
		t.Fatalf("Enqueue reached %d savers, want 1", holders)
	}
	if qs, err := s.Queued(ctx, "center-1", 0); err != nil || len(qs) != 1 || !reflect.DeepEqual(qs[0], q) {
		t.Fatalf("Queued: %+v %v", qs, err)
	}
	if n, err := s.Claim(ctx, "center-1", "center-2"); err != nil || n != 1 {
		t.Fatalf("Claim: %d %v", n, err)
	}
	if _, err := s.QueueOwners(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Dequeue(ctx, []uint64{5}); err != nil {
		t.Fatal(err)
	}
	empty := NewSaver(newMembers(), newPool(t))
	if _, err := empty.Queued(ctx, "c", 0); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("no saver Queued: %v", err)
	}
}

// The calls of one job reach one saver (the fakes do not share a store:
// a call routed elsewhere would find nothing).
func TestSaverJobRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	nodes := startSavers(t, mem, 3)
	s := NewSaver(mem, newPool(t))
	now := time.Unix(1700000000, 0)
	j := push.Job{ID: 41, App: 1, Msg: push.Message{ID: 41, App: 1, Broadcast: true}, Owner: "center-1", Deadline: 1700000600000, State: push.JobRunning}
	if err := s.CreateJob(ctx, j, []string{"r1", "r2"}); err != nil {
		t.Fatal(err)
	}
	var holder *saverNode
	for _, n := range nodes {
		n.api.mu.Lock()
		if n.api.job.ID == 41 {
			if holder != nil {
				t.Fatal("CreateJob reached two savers")
			}
			holder = n
		}
		n.api.mu.Unlock()
	}
	if holder == nil {
		t.Fatal("CreateJob reached no saver")
	}
	if got, ts, ok, err := s.Job(ctx, 41); err != nil || !ok || got.ID != 41 || len(ts) != 2 {
		t.Fatalf("Job: %+v %+v %v %v", got, ts, ok, err)
	}
	if ok, err := s.ClaimTask(ctx, 41, "r1", "winner", now, time.Second); err != nil || !ok {
		t.Fatalf("ClaimTask: %v %v", ok, err)
	}
	if ok, err := s.UpdateTask(ctx, 41, push.JobTask{Room: "r1", State: push.TaskDone, Owner: "winner"}, now, time.Second); err != nil || !ok {
		t.Fatalf("UpdateTask: %v %v", ok, err)
	}
	if ok, err := s.FinishJob(ctx, 41, push.JobDone, "", now, time.Hour); err != nil || !ok {
		t.Fatalf("FinishJob: %v %v", ok, err)
	}
	holder.api.mu.Lock()
	if holder.api.claim.ID != 41 || holder.api.update.T.Room != "r1" || holder.api.finish.ID != 41 {
		t.Errorf("the job's calls went elsewhere: %+v %+v %+v", holder.api.claim, holder.api.update, holder.api.finish)
	}
	holder.api.mu.Unlock()
	if _, err := s.RunningJobs(ctx); err != nil {
		t.Fatal(err)
	}
	empty := NewSaver(newMembers(), newPool(t))
	if _, err := empty.RunningJobs(ctx); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("no saver RunningJobs: %v", err)
	}
}

func TestCoordinatorRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	noCallback := errors.New("coordinator: app has no callback")
	var apis []*fakeCoord
	for i := range 2 {
		api := &fakeCoord{}
		srv := startRPC(t, func(s *rpc.Server) { ServeCoordinator(s, api, MapError(noCallback, ErrNoCallback)) })
		mem.set(push.Member{Role: RoleCoordinator, ID: fmt.Sprintf("coord-%d", i), RPCAddr: srv.Addr()})
		apis = append(apis, api)
	}
	c := NewCoordinator(mem, newPool(t))
	failovers := testutil.ToFloat64(mFailover.WithLabelValues(RoleCoordinator))
	base0, base1 := 0, 0
	for i := range 40 {
		uid := fmt.Sprintf("u%d", i)
		if err := c.Kick(ctx, push.Session{UID: uid, Room: "r", ConnID: 1}, push.KickLoginElsewhere, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.Upstream(ctx, push.Upstream{App: 1, UID: uid}); err != nil {
			t.Fatal(err)
		}
		if err := c.Status(ctx, push.StatusEvent{App: 1, UID: uid, Event: push.EventOnline}); err != nil {
			t.Fatal(err)
		}
		// All three calls about one uid reached one coordinator, unless one
		// of them failed over (a connection that broke under a loaded CI
		// machine is not a routing fault; the failover is tested apart).
		a, b := apis[0].total(), apis[1].total()
		if fo := testutil.ToFloat64(mFailover.WithLabelValues(RoleCoordinator)); fo != failovers {
			t.Logf("%s: %v failover(s) under load; counts re-based", uid, fo-failovers)
			failovers, base0, base1 = fo, a, b
			continue
		}
		if (a-base0)%3 != 0 || (b-base1)%3 != 0 {
			t.Fatalf("calls about %s split over coordinators: %d, %d", uid, a, b)
		}
	}
	if apis[0].total() == 0 || apis[1].total() == 0 {
		t.Error("every uid went to one coordinator")
	}
	for _, a := range apis {
		a.mu.Lock()
		a.err = noCallback
		a.mu.Unlock()
	}
	if err := c.Upstream(ctx, push.Upstream{App: 9, UID: "u"}); !errors.Is(err, ErrNoCallback) {
		t.Fatalf("Upstream for an app without callback: %v", err)
	}
	if err := NewCoordinator(newMembers(), newPool(t)).Status(ctx, push.StatusEvent{}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("no coordinator: %v", err)
	}
}

func TestPool(t *testing.T) {
	srv := startRPC(t, func(s *rpc.Server) { ServeRoom(s, &fakeRoom{}) })
	p := NewPool(rpc.ClientConfig{})
	var wg sync.WaitGroup
	got := make([]*rpc.Client, 16)
	for i := range got {
		wg.Go(func() {
			c, err := p.Get(srv.Addr())
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	for _, c := range got {
		if c != got[0] {
			t.Fatal("one address got several clients")
		}
	}
	if p.Len() != 1 {
		t.Fatalf("pool holds %d clients", p.Len())
	}
	if _, err := (RoomClient{C: got[0]}).Sessions(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(""); err == nil {
		t.Fatal("empty address accepted")
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Get(srv.Addr()); !errors.Is(err, rpc.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := (RoomClient{C: got[0]}).Sessions(context.Background()); !errors.Is(err, rpc.ErrClosed) {
		t.Fatalf("call on a closed pool's client: %v", err)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }
