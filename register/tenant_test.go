package register

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// Apps are tenants: a login through app A takes only A from the uid's other
// connections, and a connection is removed only when it has no app left.
func TestLoginTakesOnlyItsApp(t *testing.T) {
	ctx := context.Background()
	type conn struct {
		room string
		id   uint64
		apps []uint32
	}
	tests := []struct {
		name      string
		before    []push.Session // registered in order
		login     push.Session
		displaced []push.Session // Apps = what each lost
		after     []conn         // the uid's connections afterwards, any order
	}{
		{
			name:   "other app only: both stay",
			before: []push.Session{sess("u", "r1", 1, 2)},
			login:  sess("u", "r2", 9, 1),
			after:  []conn{{"r1", 1, []uint32{2}}, {"r2", 9, []uint32{1}}},
		},
		{
			name:      "same app only: the old one goes",
			before:    []push.Session{sess("u", "r1", 1, 1)},
			login:     sess("u", "r2", 9, 1),
			displaced: []push.Session{sess("u", "r1", 1, 1)},
			after:     []conn{{"r2", 9, []uint32{1}}},
		},
		{
			name:      "both apps: the old one keeps the other",
			before:    []push.Session{sess("u", "r1", 1, 1, 2)},
			login:     sess("u", "r2", 9, 1),
			displaced: []push.Session{sess("u", "r1", 1, 1)},
			after:     []conn{{"r1", 1, []uint32{2}}, {"r2", 9, []uint32{1}}},
		},
		{
			name:      "three connections, the first one loses its only app",
			before:    []push.Session{sess("u", "r1", 1, 1), sess("u", "r1", 2, 2)},
			login:     sess("u", "r3", 3, 1),
			displaced: []push.Session{sess("u", "r1", 1, 1)},
			after:     []conn{{"r1", 2, []uint32{2}}, {"r3", 3, []uint32{1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t, 4)
			for _, b := range tt.before {
				if _, err := s.Register(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Register(ctx, tt.login)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.displaced) {
				t.Fatalf("displaced %+v, want %+v", got, tt.displaced)
			}
			all, _ := s.Lookup(ctx, []string{"u"})
			var have []conn
			for _, x := range all {
				have = append(have, conn{x.Room, x.ConnID, x.Apps})
			}
			sortConns := func(cs []conn) { slices.SortFunc(cs, func(a, b conn) int { return int(a.id) - int(b.id) }) }
			sortConns(have)
			sortConns(tt.after)
			if !reflect.DeepEqual(have, tt.after) {
				t.Fatalf("connections %+v, want %+v", have, tt.after)
			}
			// Each app is served by exactly one connection, and Get finds it.
			for _, c := range tt.after {
				for _, app := range c.apps {
					g, ok, _ := s.Get(ctx, "u", app)
					if !ok || g.ConnID != c.id {
						t.Fatalf("Get(app %d) = %+v %v, want conn %d", app, g, ok, c.id)
					}
				}
			}
			counts, _ := s.Counts(ctx)
			if counts.Total != 1 {
				t.Fatalf("total %d, want 1 user", counts.Total)
			}
			for app, n := range counts.PerApp {
				if n != 1 {
					t.Fatalf("app %d counted %d times", app, n)
				}
			}
		})
	}
}

// BIND through another app takes that app from the uid's other connection.
func TestSetAppsTakesGainedApps(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	mustRegister := func(se push.Session) {
		if _, err := s.Register(ctx, se); err != nil {
			t.Fatal(err)
		}
	}
	mustRegister(sess("u", "r1", 1, 2))
	mustRegister(sess("u", "r2", 9, 1))
	displaced, ok, err := s.SetApps(ctx, "u", 9, []uint32{1, 2})
	if err != nil || !ok {
		t.Fatalf("SetApps = %v %v", ok, err)
	}
	if want := []push.Session{sess("u", "r1", 1, 2)}; !reflect.DeepEqual(displaced, want) {
		t.Fatalf("displaced %+v, want %+v", displaced, want)
	}
	all, _ := s.Lookup(ctx, []string{"u"})
	if len(all) != 1 || all[0].ConnID != 9 || !slices.Equal(all[0].Apps, []uint32{1, 2}) {
		t.Fatalf("after BIND: %+v", all)
	}
	// The old connection's late close and SetApps change nothing.
	if removed, _ := s.Unregister(ctx, "u", "r1", 1); removed {
		t.Fatal("the displaced connection was still stored")
	}
	// Unregistering the second of two connections keeps the first.
	mustRegister(sess("v", "r1", 1, 1))
	mustRegister(sess("v", "r1", 2, 2))
	if removed, _ := s.Unregister(ctx, "v", "r1", 1); !removed {
		t.Fatal("first connection not removed")
	}
	if g, ok, _ := s.Get(ctx, "v", 2); !ok || g.ConnID != 2 {
		t.Fatalf("second connection lost: %+v %v", g, ok)
	}
	if _, ok, _ := s.Get(ctx, "v", 1); ok {
		t.Fatal("app 1 still online for v")
	}
}
