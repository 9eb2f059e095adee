package room

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// TestBroadcastOnceAcrossLoadAndLive: a stored broadcast reaches each
// connection once, whether a load (AUTH, Redeliver) or the live task gets
// there first.
func TestBroadcastOnceAcrossLoadAndLive(t *testing.T) {
	gen, err := idgen.New(7)
	if err != nil {
		t.Fatal(err)
	}
	bcast := func() push.Message {
		return push.Message{ID: gen.Next(), App: 1, QoS: push.QoS1, Broadcast: true, Payload: []byte("to all")}
	}
	for _, tc := range []struct {
		name   string
		perSec float64 // 20/s: steps of one connection, so two are paced
	}{{"unpaced", 0}, {"paced", 20}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("load first", func(t *testing.T) {
				e := startEnv(t, envOpt{})
				msg := bcast()
				e.inbox.store("early", msg) // stored before its task reached the room
				early, _ := e.login(1, "early")
				if id, _, _ := early.ExpectPush(); id != msg.ID {
					t.Fatalf("early got %d at login, want the stored broadcast %d", id, msg.ID)
				}
				plain, _ := e.login(1, "plain")
				n, err := e.room.Broadcast(t.Context(), msg, tc.perSec)
				if err != nil || n != 1 {
					t.Fatalf("Broadcast = %d, %v; want 1 write (the loaded connection skipped)", n, err)
				}
				if id, _, _ := plain.ExpectPush(); id != msg.ID {
					t.Fatalf("plain got %d live, want %d", id, msg.ID)
				}
				early.ExpectQuiet(0)
				plain.ExpectQuiet(0)
			})
			t.Run("live first", func(t *testing.T) {
				e := startEnv(t, envOpt{})
				msg := bcast()
				online, _ := e.login(1, "online")
				if n, err := e.room.Broadcast(t.Context(), msg, tc.perSec); err != nil || n != 1 {
					t.Fatalf("Broadcast = %d, %v; want 1", n, err)
				}
				if id, _, _ := online.ExpectPush(); id != msg.ID {
					t.Fatalf("online got %d, want %d", id, msg.ID)
				}
				// Not ACKed yet: a Redeliver loads it for both users, and a
				// user who logged in after the task loads it at AUTH.
				e.inbox.store("online", msg)
				e.inbox.store("later", msg)
				later, _ := e.login(1, "later")
				if id, _, _ := later.ExpectPush(); id != msg.ID {
					t.Fatalf("later got %d at login, want %d", id, msg.ID)
				}
				testkit.WaitFor(t, "both sessions registered", 5*time.Second, func() bool {
					return e.hasSession("online") && e.hasSession("later")
				})
				n, err := e.room.Redeliver(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				// later's copy came from a load, so it goes again (clients
				// dedup redelivered ids); online had it live: not again.
				if n != 1 {
					t.Fatalf("Redeliver wrote %d, want 1 (only the connection that had it from a load)", n)
				}
				if id, _, _ := later.ExpectPush(); id != msg.ID {
					t.Fatalf("later got %d redelivered, want %d", id, msg.ID)
				}
				online.ExpectQuiet(0)
				later.ExpectQuiet(0)
			})
		})
	}
}

// TestCoverLogBounds: the loop's coverage notes stay within their bounds and
// old broadcasts are never noted.
func TestCoverLogBounds(t *testing.T) {
	gen, err := idgen.New(3)
	if err != nil {
		t.Fatal(err)
	}
	var c coverLog
	now := time.Now()
	s := &connState{id: 1}
	s.cover = c.bump()
	old := push.Message{ID: 42, Broadcast: true} // 2024: never noted
	if c.skipLoad(s, &old, now) || len(c.m) != 0 {
		t.Fatalf("an old broadcast was noted: %d entries", len(c.m))
	}
	for i := range maxCoverIDs + 10 {
		s.id = uint64(i)
		m := push.Message{ID: gen.Next(), Broadcast: true}
		if c.skipLoad(s, &m, now) {
			t.Fatal("a load skipped a broadcast not live yet")
		}
	}
	if len(c.m) > maxCoverIDs || len(c.order) != len(c.m) || c.loaded > maxCoverLoaded {
		t.Fatalf("entries %d (order %d), notes %d: past the bounds", len(c.m), len(c.order), c.loaded)
	}
	m := push.Message{ID: gen.Next(), Broadcast: true}
	for i := range maxCoverLoaded + 10 {
		s.id = uint64(i)
		c.skipLoad(s, &m, now)
	}
	if c.loaded > maxCoverLoaded {
		t.Fatalf("%d notes, bound %d", c.loaded, maxCoverLoaded)
	}
	had := c.goLive(m.ID, now, c.seq)
	if len(had) == 0 {
		t.Fatal("goLive returned none of the loaded connections")
	}
	if c.goLive(m.ID, now, c.seq) != nil {
		t.Fatal("a second goLive returned notes again")
	}
	if !c.skipLoad(s, &m, now) {
		t.Fatal("a connection covered by the live delivery was not skipped by a load")
	}
	s.cover = c.bump()
	if c.skipLoad(s, &m, now) {
		t.Fatal("a connection that became a target after the live delivery was skipped")
	}
	// Everything past coverKeep goes at the next entry.
	c.entry(gen.Next(), now.Add(coverKeep+time.Second), true)
	if len(c.m) != 1 || c.loaded != 0 {
		t.Fatalf("after coverKeep: %d entries, %d notes; want 1, 0", len(c.m), c.loaded)
	}
}
