package register

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func newTest(t testing.TB, shards int) *Service {
	t.Helper()
	s, err := New(Config{Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

func sess(uid, room string, conn uint64, apps ...uint32) push.Session {
	return push.Session{UID: uid, Room: room, ConnID: conn, Apps: apps, Since: 1700000000, IP: "10.0.0.1"}
}

func mustGet(t *testing.T, s *Service, uid string) (push.Session, bool) {
	t.Helper()
	got, ok, err := s.Get(context.Background(), uid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return got, ok
}

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		shards int
		ok     bool
	}{{0, true}, {1, true}, {MaxShards, true}, {-1, false}, {MaxShards + 1, false}} {
		_, err := New(Config{Shards: tc.shards})
		if (err == nil) != tc.ok {
			t.Errorf("shards %d: err %v, want ok=%v", tc.shards, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("shards %d: err %v is not ErrInvalid", tc.shards, err)
		}
	}
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		first    push.Session
		second   push.Session
		wantPrev []push.Session
	}{
		{"new uid", push.Session{}, sess("u", "r1", 1, 7), nil},
		{"same connection refreshes", sess("u", "r1", 1, 7), sess("u", "r1", 1, 7, 8), nil},
		{"new connection on same room", sess("u", "r1", 1, 7), sess("u", "r1", 2, 7), []push.Session{sess("u", "r1", 1, 7)}},
		{"same conn id on another room", sess("u", "r1", 1, 7), sess("u", "r2", 1, 7), []push.Session{sess("u", "r1", 1, 7)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, 4)
			if tc.first.UID != "" {
				if prev, err := s.Register(ctx, tc.first); err != nil || prev != nil {
					t.Fatalf("first register: prev %v err %v", prev, err)
				}
			}
			prev, err := s.Register(ctx, tc.second)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(prev, tc.wantPrev) {
				t.Fatalf("prev = %+v, want %+v", prev, tc.wantPrev)
			}
			got, ok := mustGet(t, s, tc.second.UID)
			if !ok || !reflect.DeepEqual(got, tc.second) {
				t.Fatalf("get = %+v %v, want %+v", got, ok, tc.second)
			}
			if c, _ := s.Counts(ctx); c.Total != 1 {
				t.Fatalf("total %d, want 1", c.Total)
			}
		})
	}
}

func TestRegisterInvalid(t *testing.T) {
	s := newTest(t, 4)
	for _, in := range []push.Session{sess("", "r", 1), sess("u", "", 1)} {
		if _, err := s.Register(context.Background(), in); !errors.Is(err, ErrInvalid) {
			t.Errorf("register %+v: err %v, want ErrInvalid", in, err)
		}
	}
}

func TestUnregister(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		uid     string
		room    string
		conn    uint64
		removed bool
	}{
		{"matching", "u", "r1", 5, true},
		{"stale conn id", "u", "r1", 4, false},
		{"other room", "u", "r2", 5, false},
		{"unknown uid", "x", "r1", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, 4)
			if _, err := s.Register(ctx, sess("u", "r1", 5, 1)); err != nil {
				t.Fatal(err)
			}
			removed, err := s.Unregister(ctx, tc.uid, tc.room, tc.conn)
			if err != nil || removed != tc.removed {
				t.Fatalf("unregister = %v %v, want %v", removed, err, tc.removed)
			}
			if _, ok := mustGet(t, s, "u"); ok == tc.removed {
				t.Fatalf("online after unregister = %v, want %v", ok, !tc.removed)
			}
		})
	}
}

// A reconnect must not be erased by the old connection's late close.
func TestReconnectNotErased(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	if _, err := s.Register(ctx, sess("u", "r1", 1, 7)); err != nil {
		t.Fatal(err)
	}
	prev, err := s.Register(ctx, sess("u", "r2", 9, 7))
	if err != nil || len(prev) != 1 || prev[0].Room != "r1" || prev[0].ConnID != 1 {
		t.Fatalf("reconnect: prev %+v err %v", prev, err)
	}
	if removed, _ := s.Unregister(ctx, "u", "r1", 1); removed {
		t.Fatal("late close of the old connection removed the new session")
	}
	got, ok := mustGet(t, s, "u")
	if !ok || got.Room != "r2" || got.ConnID != 9 {
		t.Fatalf("session after late close = %+v %v", got, ok)
	}
	if _, ok, _ := s.SetApps(ctx, "u", 1, []uint32{8}); ok {
		t.Fatal("SetApps of the old connection took effect")
	}
	if removed, _ := s.Unregister(ctx, "u", "r2", 9); !removed {
		t.Fatal("unregister of the live connection failed")
	}
}

func TestSetApps(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	if _, err := s.Register(ctx, sess("u", "r1", 3, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn uint64
		apps []uint32
		ok   bool
		want []uint32
	}{
		{3, []uint32{1, 2}, true, []uint32{1, 2}},
		{4, []uint32{9}, false, []uint32{1, 2}},
		{3, []uint32{2, 2, 5}, true, []uint32{2, 5}}, // duplicates dropped
		{3, nil, true, nil},
	} {
		_, ok, err := s.SetApps(ctx, "u", tc.conn, tc.apps)
		if err != nil || ok != tc.ok {
			t.Fatalf("SetApps(%d, %v) = %v %v, want %v", tc.conn, tc.apps, ok, err, tc.ok)
		}
		got, _ := mustGet(t, s, "u")
		if !slices.Equal(got.Apps, tc.want) {
			t.Fatalf("apps %v, want %v", got.Apps, tc.want)
		}
		c, _ := s.Counts(ctx)
		want := map[uint32]int{}
		for _, a := range tc.want {
			want[a] = 1
		}
		if !reflect.DeepEqual(c.PerApp, want) {
			t.Fatalf("per app %v, want %v", c.PerApp, want)
		}
	}
	if _, ok, _ := s.SetApps(ctx, "nobody", 3, []uint32{1}); ok {
		t.Fatal("SetApps of an offline uid took effect")
	}
}

// The store keeps its own copies: neither the caller's input nor the slices
// it hands out alias its state.
func TestSlicesAreCopied(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	apps := []uint32{1, 2}
	if _, err := s.Register(ctx, sess("a", "r", 1, apps...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, sess("b", "r", 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	apps[0] = 99
	got, _ := mustGet(t, s, "a")
	if !slices.Equal(got.Apps, []uint32{1, 2}) {
		t.Fatalf("input aliasing: %v", got.Apps)
	}
	got.Apps[0] = 99
	list, err := s.Lookup(ctx, []string{"a", "b"})
	if err != nil || len(list) != 2 {
		t.Fatalf("lookup %v %v", list, err)
	}
	_ = append(list[0].Apps, 77) // must not spill into list[1].Apps
	for _, se := range list {
		want := map[string][]uint32{"a": {1, 2}, "b": {3, 4}}[se.UID]
		if !slices.Equal(se.Apps, want) {
			t.Fatalf("%s apps %v, want %v", se.UID, se.Apps, want)
		}
	}
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 8)
	for i := range 10 {
		if _, err := s.Register(ctx, sess(fmt.Sprintf("u%d", i), "r", uint64(i+1), uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		uids []string
		want []string
	}{
		{nil, nil},
		{[]string{"u1"}, []string{"u1"}},
		{[]string{"u1", "nope", "u9", "u3"}, []string{"u1", "u3", "u9"}},
		{[]string{"x", "y"}, nil},
	} {
		got, err := s.Lookup(ctx, tc.uids)
		if err != nil {
			t.Fatal(err)
		}
		var uids []string
		for _, se := range got {
			uids = append(uids, se.UID)
			if want := fmt.Sprintf("u%d", se.ConnID-1); want != se.UID || !slices.Equal(se.Apps, []uint32{uint32(se.ConnID - 1)}) {
				t.Fatalf("lookup returned %+v", se)
			}
		}
		slices.Sort(uids)
		if !slices.Equal(uids, tc.want) {
			t.Fatalf("lookup %v = %v, want %v", tc.uids, uids, tc.want)
		}
	}
}

func TestCounts(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 16)
	steps := []struct {
		name    string
		do      func() error
		total   int
		perApp  map[uint32]int
		perRoom map[string]int
	}{
		{"empty", func() error { return nil }, 0, map[uint32]int{}, map[string]int{}},
		{"three users", func() error {
			for _, se := range []push.Session{sess("a", "r1", 1, 1), sess("b", "r1", 2, 1, 2), sess("c", "r2", 1, 2)} {
				if _, err := s.Register(ctx, se); err != nil {
					return err
				}
			}
			return nil
		}, 3, map[uint32]int{1: 2, 2: 2}, map[string]int{"r1": 2, "r2": 1}},
		{"a moves to r2", func() error { _, err := s.Register(ctx, sess("a", "r2", 7, 1, 3)); return err },
			3, map[uint32]int{1: 2, 2: 2, 3: 1}, map[string]int{"r1": 1, "r2": 2}},
		{"b leaves", func() error { _, err := s.Unregister(ctx, "b", "r1", 2); return err },
			2, map[uint32]int{1: 1, 2: 1, 3: 1}, map[string]int{"r2": 2}},
		{"stale leave ignored", func() error { _, err := s.Unregister(ctx, "a", "r1", 1); return err },
			2, map[uint32]int{1: 1, 2: 1, 3: 1}, map[string]int{"r2": 2}},
		{"c logs in through app 1 on r1: a second connection", func() error { _, err := s.Register(ctx, sess("c", "r1", 8, 1)); return err },
			2, map[uint32]int{1: 2, 2: 1, 3: 1}, map[string]int{"r1": 1, "r2": 2}},
		{"r2's connections close", func() error {
			for _, k := range []struct {
				uid  string
				conn uint64
			}{{"a", 7}, {"c", 1}} {
				if _, err := s.Unregister(ctx, k.uid, "r2", k.conn); err != nil {
					return err
				}
			}
			return nil
		},
			1, map[uint32]int{1: 1}, map[string]int{"r1": 1}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		c, err := s.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Total != st.total || !reflect.DeepEqual(c.PerApp, st.perApp) || !reflect.DeepEqual(c.PerRoom, st.perRoom) {
			t.Fatalf("%s: counts %+v, want total %d apps %v rooms %v", st.name, c, st.total, st.perApp, st.perRoom)
		}
	}
}

func TestShutdown(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	if _, err := s.Register(ctx, sess("u", "r", 1)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	calls := map[string]error{}
	_, calls["register"] = s.Register(ctx, sess("u", "r", 1))
	_, calls["unregister"] = s.Unregister(ctx, "u", "r", 1)
	_, _, calls["setapps"] = s.SetApps(ctx, "u", 1, nil)
	_, _, calls["get"] = s.Get(ctx, "u", 0)
	_, calls["lookup"] = s.Lookup(ctx, []string{"u"})
	_, _, calls["scan"] = s.Scan(ctx, 0, 0, 10)
	_, calls["counts"] = s.Counts(ctx)
	calls["start"] = s.Start(ctx)
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after shutdown: %v, want ErrClosed", name, err)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	s := newTest(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Register(ctx, sess("u", "r", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("register with cancelled ctx: %v", err)
	}
	if _, _, err := s.Scan(ctx, 0, 0, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("scan with cancelled ctx: %v", err)
	}
}

// Many goroutines register, re-register, rebind and unregister a small set of
// uids at once; afterwards the counters must agree with the sessions held.
func TestConcurrentRegisterUnregister(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 8)
	const workers, rounds, users = 8, 2000, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			room := fmt.Sprint("r", w%3)
			for i := range rounds {
				uid := fmt.Sprint("u", (i*7+w)%users)
				conn := uint64(w*rounds + i + 1)
				if _, err := s.Register(ctx, sess(uid, room, conn, uint32(i%4), uint32(w))); err != nil {
					t.Error(err)
					return
				}
				switch i % 3 {
				case 0:
					_, _ = s.Unregister(ctx, uid, room, conn)
				case 1:
					_, _, _ = s.SetApps(ctx, uid, conn, []uint32{uint32(i % 5)})
				}
				if i%50 == 0 {
					_, _, _ = s.Scan(ctx, 1, 0, 10)
					_, _ = s.Lookup(ctx, []string{uid, "u1"})
					_, _ = s.Counts(ctx)
				}
			}
		})
	}
	wg.Wait()
	assertCountsMatch(t, s)
}

// assertCountsMatch checks Counts against a full scan; no writer may run.
func assertCountsMatch(t *testing.T, s *Service) {
	t.Helper()
	c, err := s.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all := scanAll(t, s, 0, 13)
	perApp, perRoom, users := map[uint32]int{}, map[string]int{}, map[string]bool{}
	for _, se := range all {
		users[se.UID] = true
		perRoom[se.Room]++
		for _, a := range se.Apps {
			perApp[a]++
		}
	}
	if c.Total != len(users) || !reflect.DeepEqual(c.PerApp, perApp) || !reflect.DeepEqual(c.PerRoom, perRoom) {
		t.Fatalf("counts %+v disagree with scan: total %d apps %v rooms %v", c, len(users), perApp, perRoom)
	}
}

func TestDropRoom(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 8)
	for i := range 300 {
		room := []string{"r1", "r2", "r3"}[i%3]
		if _, err := s.Register(ctx, sess(fmt.Sprint("u", i), room, uint64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DropRoom(ctx, "r2")
	if err != nil || n != 100 {
		t.Fatalf("drop = %d %v, want 100", n, err)
	}
	if n, _ := s.DropRoom(ctx, "r2"); n != 0 {
		t.Fatalf("second drop = %d", n)
	}
	all := scanAll(t, s, 0, 7)
	if len(all) != 200 {
		t.Fatalf("scan after drop: %d sessions", len(all))
	}
	for uid, se := range all {
		if se.Room == "r2" {
			t.Fatalf("%s still on r2", uid)
		}
	}
	if c, _ := s.Counts(ctx); c.Total != 200 || c.PerRoom["r2"] != 0 {
		t.Fatalf("counts after drop: %+v", c)
	}
}
