package remote

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// startRPC starts an rpc server on loopback with the bindings serve adds.
func startRPC(t testing.TB, serve func(s *rpc.Server)) *rpc.Server {
	t.Helper()
	srv, err := rpc.NewServer(rpc.ServerConfig{Addr: "127.0.0.1:0", Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	serve(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRPC(srv) })
	return srv
}

func stopRPC(srv *rpc.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func newPool(t testing.TB) *Pool {
	t.Helper()
	p := NewPool(rpc.ClientConfig{Conns: 1, BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// fakeMembers is a settable membership.
type fakeMembers struct {
	mu sync.Mutex
	m  map[string][]push.Member
}

func newMembers() *fakeMembers { return &fakeMembers{m: make(map[string][]push.Member)} }

func (f *fakeMembers) Members(role string) []push.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.m[role])
}

// set adds or replaces the member with m.ID.
func (f *fakeMembers) set(m push.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := f.m[m.Role]
	for i := range ms {
		if ms[i].ID == m.ID {
			ms[i] = m
			return
		}
	}
	f.m[m.Role] = append(ms, m)
}

func (f *fakeMembers) remove(role, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[role] = slices.DeleteFunc(f.m[role], func(m push.Member) bool { return m.ID == id })
}

// fakeRegister is an in-memory RegisterAPI. Scan pages through uids in
// sorted order; its cursor is the index of the next uid plus one.
type fakeRegister struct {
	mu        sync.Mutex
	m         map[string]push.Session
	restores  atomic.Int64 // sessions received by Restore
	failStore atomic.Int64 // Restore calls left to fail
	failUnreg atomic.Int64 // Unregister calls left to fail
	calls     atomic.Int64
	scans     atomic.Int64
	afterScan atomic.Pointer[func()] // runs after each Scan page, outside mu
}

func newFakeRegister() *fakeRegister { return &fakeRegister{m: make(map[string]push.Session)} }

func (f *fakeRegister) Register(_ context.Context, s push.Session) ([]push.Session, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	prev, ok := f.m[s.UID]
	f.m[s.UID] = s
	if ok && (prev.Room != s.Room || prev.ConnID != s.ConnID) {
		return []push.Session{prev}, nil
	}
	return nil, nil
}

func (f *fakeRegister) Unregister(_ context.Context, uid, room string, connID uint64) (bool, error) {
	f.calls.Add(1)
	if f.failUnreg.Add(-1) >= 0 {
		return false, push.ErrUnavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.m[uid]; ok && s.Room == room && s.ConnID == connID {
		delete(f.m, uid)
		return true, nil
	}
	return false, nil
}

func (f *fakeRegister) SetApps(_ context.Context, uid string, connID uint64, apps []uint32) ([]push.Session, bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[uid]
	if !ok || s.ConnID != connID {
		return nil, false, nil
	}
	s.Apps = slices.Clone(apps)
	f.m[uid] = s
	return nil, true, nil
}

func (f *fakeRegister) Get(_ context.Context, uid string, _ uint32) (push.Session, bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[uid]
	return s, ok, nil
}

func (f *fakeRegister) Lookup(_ context.Context, uids []string) ([]push.Session, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []push.Session
	for _, u := range uids {
		if s, ok := f.m[u]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeRegister) Scan(_ context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error) {
	f.calls.Add(1)
	f.scans.Add(1)
	if h := f.afterScan.Load(); h != nil {
		defer (*h)()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	uids := make([]string, 0, len(f.m))
	for u := range f.m {
		uids = append(uids, u)
	}
	slices.Sort(uids)
	var out []push.Session
	i := int(cursor)
	for ; i < len(uids) && len(out) < limit; i++ {
		if s := f.m[uids[i]]; app == 0 || s.HasApp(app) {
			out = append(out, s)
		}
	}
	if i >= len(uids) {
		return out, 0, nil
	}
	return out, uint64(i), nil
}

func (f *fakeRegister) DropRoom(_ context.Context, room string) (int, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for u, s := range f.m {
		if s.Room == room {
			delete(f.m, u)
			n++
		}
	}
	return n, nil
}

func (f *fakeRegister) Counts(context.Context) (push.Counts, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	c := push.Counts{Total: len(f.m), PerApp: map[uint32]int{}, PerRoom: map[string]int{}}
	for _, s := range f.m {
		for _, a := range s.Apps {
			c.PerApp[a]++
		}
		c.PerRoom[s.Room]++
	}
	return c, nil
}

func (f *fakeRegister) Restore(_ context.Context, ss []push.Session) error {
	f.calls.Add(1)
	if f.failStore.Add(-1) >= 0 {
		return push.ErrUnavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range ss {
		if old, ok := f.m[s.UID]; ok && (old.Room != s.Room || old.ConnID != s.ConnID) && old.Since >= s.Since {
			continue
		}
		f.m[s.UID] = s
	}
	f.restores.Add(int64(len(ss)))
	return nil
}

func (f *fakeRegister) uids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.m))
	for u := range f.m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (f *fakeRegister) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// regNode is one fake register behind a real rpc server.
type regNode struct {
	id  string
	api *fakeRegister
	srv *rpc.Server
	m   push.Member
}

func startRegister(t testing.TB, id string, epoch int64) *regNode {
	t.Helper()
	api := newFakeRegister()
	srv := startRPC(t, func(s *rpc.Server) { ServeRegister(s, api) })
	return &regNode{id: id, api: api, srv: srv, m: push.Member{Role: RoleRegister, ID: id, RPCAddr: srv.Addr(), Epoch: epoch}}
}
