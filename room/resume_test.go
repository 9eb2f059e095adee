package room

import (
	"context"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

func resumeEnv(t *testing.T, window time.Duration, max int) *env {
	return startEnv(t, envOpt{cfg: func(c *config.Config) {
		c.Room.ResumeWindow = window
		if max > 0 {
			c.Room.ResumeMax = max
		}
		c.Room.HeartbeatGrace = 200 * time.Millisecond // a 100 ms tick expires holds promptly
	}})
}

func (f *fakeCoord) statusCount(uid, event string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.statuses {
		if e.UID == uid && e.Event == event {
			n++
		}
	}
	return n
}

func (f *fakeRegister) unregCount(uid string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, u := range f.unregs {
		if u.UID == uid {
			n++
		}
	}
	return n
}

// A client that drops and logs in again within the window resumes its
// session: same connection id in the register, no Unregister, no
// offline/online events, one Register call in all; its unACKed QoS 1
// message is loaded and pushed again.
func TestResumeWithinWindow(t *testing.T) {
	e := resumeEnv(t, 5*time.Second, 0)
	e.inbox.store("flash", push.Message{ID: 7, App: 1, QoS: 1, Payload: []byte("unacked")})
	regBefore := counterValue(mBackendCalls.WithLabelValues("register"))

	c, _ := e.login(1, "flash")
	c.ExpectPushText(1, "unacked")
	id := e.connID("flash")
	c.Close()
	testkit.WaitFor(t, "the session held", 5*time.Second, func() bool { return e.room.Online() == 0 })

	c2, _ := e.login(1, "flash")
	c2.ExpectPushText(1, "unacked") // at least once: loaded from storage again
	if got := e.connID("flash"); got != id {
		t.Fatalf("register conn id %d after the resume, want the held %d", got, id)
	}
	if n := e.reg.unregCount("flash"); n != 0 {
		t.Fatalf("%d Unregister calls for a resumed session", n)
	}
	if on, off := e.coord.statusCount("flash", push.EventOnline), e.coord.statusCount("flash", push.EventOffline); on != 1 || off != 0 {
		t.Fatalf("status events online %d offline %d, want 1 and 0", on, off)
	}
	if n := counterValue(mBackendCalls.WithLabelValues("register")) - regBefore; n != 1 {
		t.Fatalf("%v Register calls for a login and a resume, want 1", n)
	}
	// The resumed connection is the session: a push reaches it, and its
	// own close later is held (and unregistered) like the first.
	c2.Close()
}

// Outside the window, or for a close the room decided (a kick), the
// session ends as before: Unregister and an offline event.
func TestResumeEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		end    func(e *env, c *testkit.Conn, uid string)
	}{
		{"window off", 0, func(e *env, c *testkit.Conn, uid string) { c.Close() }},
		{"window over", 300 * time.Millisecond, func(e *env, c *testkit.Conn, uid string) { c.Close() }},
		{"kicked", 5 * time.Second, func(e *env, c *testkit.Conn, uid string) {
			if ok, err := e.room.Kick(context.Background(), uid, e.connID(uid), nil, push.KickAdmin, ""); !ok || err != nil {
				e.t.Fatalf("kick: %v %v", ok, err)
			}
			c.ExpectKick(push.KickAdmin)
		}},
		{"kicked while held", 5 * time.Second, func(e *env, c *testkit.Conn, uid string) {
			id := e.connID(uid)
			c.Close()
			testkit.WaitFor(e.t, "the session held", 5*time.Second, func() bool { return e.room.Online() == 0 })
			if ok, err := e.room.Kick(context.Background(), uid, id, nil, push.KickAdmin, ""); !ok || err != nil {
				e.t.Fatalf("kick of a held session: %v %v", ok, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := resumeEnv(t, tc.window, 0)
			uid := "u-" + tc.name
			c, _ := e.login(1, uid)
			tc.end(e, c, uid)
			testkit.WaitFor(t, "unregistered and reported offline", 5*time.Second, func() bool {
				return e.reg.unregCount(uid) == 1 && e.coord.hasStatus(uid, 1, push.EventOffline)
			})
			// A new login is a fresh one.
			regs := e.reg.entered.Load()
			e.login(1, uid)
			testkit.WaitFor(t, "a fresh Register", 5*time.Second, func() bool { return e.reg.entered.Load() == regs+1 })
		})
	}
}

// The table of held sessions is bounded: beyond resume_max a closed
// session is unregistered at once.
func TestResumeBounded(t *testing.T) {
	e := resumeEnv(t, 5*time.Second, 1)
	a, _ := e.login(1, "first")
	b, _ := e.login(1, "second")
	a.Close()
	testkit.WaitFor(t, "first held", 5*time.Second, func() bool { return e.room.Online() == 1 })
	b.Close()
	testkit.WaitFor(t, "second unregistered", 5*time.Second, func() bool { return e.reg.unregCount("second") == 1 })
	if n := e.reg.unregCount("first"); n != 0 {
		t.Fatalf("the held session was unregistered (%d)", n)
	}
	// Shutdown unregisters what is still held.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.unregCount("first"); n != 1 {
		t.Fatalf("held session unregistered %d times at shutdown, want 1", n)
	}
}
