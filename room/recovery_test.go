package room

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

func TestSessionsSnapshot(t *testing.T) {
	e := startEnv(t, envOpt{})
	a, _ := e.login(1, "snap-a")
	e.login(2, "snap-b")
	a.SendJSON(proto.OpBind, 2, proto.Bind{Token: testkit.Token(2, "snap-a")})
	a.ExpectNext(proto.OpBindOK)
	quiet := testkit.Dial(t, e.room.Addr()) // connected, not authenticated: not a session
	_ = quiet

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := e.room.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d sessions, want 2: %+v", len(got), got)
	}
	for _, s := range got {
		reg, ok := e.reg.session(s.UID)
		if !ok || reg.ConnID != s.ConnID || s.Room != "room-t" || s.Since == 0 || s.IP == "" {
			t.Fatalf("session %+v, register has %+v", s, reg)
		}
		if s.UID == "snap-a" && !slices.Equal(s.Apps, []uint32{1, 2}) {
			t.Fatalf("apps %v, want [1 2]", s.Apps)
		}
	}

	a.Close()
	testkit.WaitFor(t, "snap-a gone from the snapshot", 5*time.Second, func() bool {
		got, err := e.room.Sessions(ctx)
		return err == nil && len(got) == 1 && got[0].UID == "snap-b"
	})
}
