package register

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func TestRestore(t *testing.T) {
	ctx := context.Background()
	at := func(s push.Session, since int64) push.Session { s.Since = since; return s }
	for _, tc := range []struct {
		name    string
		stored  push.Session // registered first; zero: none
		restore push.Session
		want    push.Session
	}{
		{"new uid", push.Session{}, sess("u", "r1", 1, 7), sess("u", "r1", 1, 7)},
		{"same connection refreshes", sess("u", "r1", 1, 7), sess("u", "r1", 1, 8, 9), sess("u", "r1", 1, 8, 9)},
		{"newer login elsewhere kept", at(sess("u", "r2", 5, 7), 200), at(sess("u", "r1", 1, 7), 100), at(sess("u", "r2", 5, 7), 200)},
		{"login in the same second kept", at(sess("u", "r2", 5, 7), 100), at(sess("u", "r1", 1, 7), 100), at(sess("u", "r2", 5, 7), 100)},
		{"older login replaced", at(sess("u", "r2", 5, 8), 100), at(sess("u", "r1", 1, 8), 200), at(sess("u", "r1", 1, 8), 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, 4)
			if tc.stored.UID != "" {
				if _, err := s.Register(ctx, tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Restore(ctx, []push.Session{tc.restore}); err != nil {
				t.Fatal(err)
			}
			got, ok := mustGet(t, s, "u")
			if !ok || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("get = %+v %v, want %+v", got, ok, tc.want)
			}
			c, _ := s.Counts(ctx)
			if c.Total != 1 || c.PerRoom[tc.want.Room] != 1 || len(c.PerRoom) != 1 {
				t.Fatalf("counts %+v after restore", c)
			}
			for _, a := range tc.want.Apps {
				if c.PerApp[a] != 1 {
					t.Fatalf("counts %+v: app %d not counted once", c, a)
				}
			}
		})
	}
}

func TestRestoreBatch(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	in := []push.Session{sess("a", "r1", 1, 1), sess("", "r1", 2), sess("b", "r1", 3, 1), sess("c", "", 4)}
	if err := s.Restore(ctx, in); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid for the sessions without uid or room", err)
	}
	if c, _ := s.Counts(ctx); c.Total != 2 || c.PerApp[1] != 2 {
		t.Fatalf("counts %+v: the valid sessions were not all stored", c)
	}
	// Restored sessions are scanned like registered ones.
	page, next, err := s.Scan(ctx, 1, 0, 10)
	if err != nil || next != 0 || len(page) != 2 {
		t.Fatalf("scan: %d sessions next %d err %v", len(page), next, err)
	}
	if err := s.Restore(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_ = s.Shutdown(ctx)
	if err := s.Restore(ctx, in[:1]); !errors.Is(err, ErrClosed) {
		t.Fatalf("after shutdown: %v, want ErrClosed", err)
	}
}
