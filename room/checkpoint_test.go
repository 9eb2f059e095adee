package room

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// endsOf returns the apps of every end reported for uid, one entry per end.
func (f *fakeSaver) endsOf(uid string) [][]uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]uint32
	for _, call := range f.checkpoints {
		for _, e := range call {
			if e.UID == uid {
				out = append(out, slices.Clone(e.Apps))
			}
		}
	}
	return out
}

// checkpointEnv is a room with a 100 ms tick and the given reconnect window.
func checkpointEnv(t *testing.T, window time.Duration) *env {
	return startEnv(t, envOpt{cfg: func(c *config.Config) {
		c.Room.ResumeWindow = window
		c.Room.HeartbeatGrace = 200 * time.Millisecond // a 100 ms tick
	}})
}

// reportWithin bounds the wait for a report: a few 100 ms ticks, with
// slack for a loaded machine.
const reportWithin = 3 * time.Second

// wantEnds waits for uid's ends to be exactly want, then checks that no
// other end follows within a few ticks.
func wantEnds(t *testing.T, e *env, uid string, want ...[]uint32) {
	t.Helper()
	testkit.WaitFor(t, uid+"'s session ends reported", reportWithin, func() bool { return len(e.inbox.endsOf(uid)) >= len(want) })
	if more := testkit.Poll(500*time.Millisecond, func() bool { return len(e.inbox.endsOf(uid)) > len(want) }); more {
		t.Fatalf("%s: ends %v, want %v", uid, e.inbox.endsOf(uid), want)
	}
	got := e.inbox.endsOf(uid)
	for i := range want {
		slices.Sort(got[i])
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%s: ends %v, want %v", uid, got, want)
		}
	}
}

func bindApp(t *testing.T, c *testkit.Conn, app uint32, uid string) {
	t.Helper()
	c.SendJSON(proto.OpBind, app, proto.Bind{Token: testkit.Token(app, uid)})
	c.Expect(proto.OpBindOK)
}

// A session that ends, whatever the reason, reaches Saver.Checkpoint once,
// within a tick, with the apps it had bound; an app unbound or kicked off
// a session that goes on ends there.
func TestCheckpointOnSessionEnd(t *testing.T) {
	e := checkpointEnv(t, 0)
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, uid string)
		want [][]uint32
	}{
		{"client close", func(t *testing.T, uid string) {
			c, _ := e.login(1, uid)
			bindApp(t, c, 2, uid)
			c.Close()
		}, [][]uint32{{1, 2}}},
		{"kick", func(t *testing.T, uid string) {
			c, _ := e.login(1, uid)
			if ok, err := e.room.Kick(t.Context(), uid, e.connID(uid), nil, push.KickAdmin, ""); !ok || err != nil {
				t.Fatalf("kick: %v %v", ok, err)
			}
			c.ExpectKick(push.KickAdmin)
		}, [][]uint32{{1}}},
		{"unbind, then close", func(t *testing.T, uid string) {
			c, _ := e.login(1, uid)
			bindApp(t, c, 2, uid)
			c.Send(proto.OpUnbind, 2, 0, nil)
			c.Expect(proto.OpUnbindOK)
			wantEnds(t, e, uid, []uint32{2})
			c.Close()
		}, [][]uint32{{2}, {1}}},
		{"one app kicked off, then an error", func(t *testing.T, uid string) {
			c, _ := e.login(1, uid)
			bindApp(t, c, 2, uid)
			if ok, err := e.room.Kick(t.Context(), uid, e.connID(uid), []uint32{1}, push.KickAdmin, ""); !ok || err != nil {
				t.Fatalf("kick app 1: %v %v", ok, err)
			}
			testkit.WaitFor(t, "app 1 taken", reportWithin, func() bool { return len(e.inbox.endsOf(uid)) == 1 })
			c.Write([]byte("not a frame at all, and long enough to be one"))
		}, [][]uint32{{1}, {2}}},
		{"never authenticated", func(t *testing.T, uid string) {
			c := testkit.Dial(t, e.room.Addr())
			c.Close()
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := "ck-" + tc.name
			tc.run(t, uid)
			if tc.want == nil {
				if testkit.Poll(500*time.Millisecond, func() bool { return len(e.inbox.endsOf(uid)) > 0 }) {
					t.Fatalf("ends %v for a session that never authenticated", e.inbox.endsOf(uid))
				}
				return
			}
			wantEnds(t, e, uid, tc.want...)
		})
	}
}

// A session held for the reconnect window ends when the hold expires, not
// when the client's connection closes; a new login that takes it over ends
// nothing.
func TestCheckpointHeldSession(t *testing.T) {
	e := checkpointEnv(t, 700*time.Millisecond)
	c, _ := e.login(1, "held")
	c.Close()
	testkit.WaitFor(t, "the session held", reportWithin, func() bool { return e.room.Online() == 0 })
	c2, _ := e.login(1, "held") // takes the hold over
	if n := len(e.inbox.endsOf("held")); n != 0 {
		t.Fatalf("%d ends for a session taken over", n)
	}
	c2.Close()
	testkit.WaitFor(t, "the hold to expire", 5*time.Second, func() bool { return e.reg.unregCount("held") == 1 })
	wantEnds(t, e, "held", []uint32{1})
}

// Shutdown reports the sessions it closes and the held ones, before it
// returns, with the ends the last sweep had not reported.
func TestCheckpointAtShutdown(t *testing.T) {
	e := checkpointEnv(t, time.Minute)
	a, _ := e.login(1, "open-a")
	bindApp(t, a, 2, "open-a")
	e.login(3, "open-b")
	h, _ := e.login(1, "held-c")
	h.Close()
	testkit.WaitFor(t, "the session held", reportWithin, func() bool { return e.room.Online() == 2 })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for uid, want := range map[string][]uint32{"open-a": {1, 2}, "open-b": {3}, "held-c": {1}} {
		got := e.inbox.endsOf(uid)
		if len(got) != 1 {
			t.Fatalf("%s: ends %v after the shutdown, want one", uid, got)
		}
		slices.Sort(got[0])
		if !slices.Equal(got[0], want) {
			t.Errorf("%s: ended with apps %v, want %v", uid, got[0], want)
		}
	}
}

// A loop's waiting ends are bounded: past maxEndsQueued they are dropped
// and counted; a report takes at most maxCheckpointEnds, oldest first, and
// the rest wait for the next ones; at shutdown the bounds are lifted.
func TestCheckpointLogBounded(t *testing.T) {
	apps := []uint32{1}
	var l endLog
	dropped := counterValue(mCheckpointsDropped)
	for i := range maxEndsQueued + 5000 {
		l.note(strconv.Itoa(i), apps)
	}
	l.note("v", nil) // no app bound: no end
	if len(l.ends) != maxEndsQueued {
		t.Fatalf("%d ends noted, want %d", len(l.ends), maxEndsQueued)
	}
	if d := counterValue(mCheckpointsDropped) - dropped; d != 5000 {
		t.Fatalf("%v ends counted as dropped, want 5000", d)
	}
	next := 0
	for range maxEndsQueued / maxCheckpointEnds {
		p := l.take()
		if len(*p) != maxCheckpointEnds || (*p)[0].UID != strconv.Itoa(next) {
			t.Fatalf("a report took %d ends from %q, want %d from %d", len(*p), (*p)[0].UID, maxCheckpointEnds, next)
		}
		next += len(*p)
		putEnds(p)
	}
	if len(l.ends) != 0 || l.take() != nil {
		t.Fatalf("%d ends left after every report", len(l.ends))
	}
	l.all = true
	for range maxEndsQueued + 1 {
		l.note("u", apps)
	}
	if p := l.take(); len(*p) != maxEndsQueued+1 {
		t.Fatalf("%d ends taken at shutdown, want all %d", len(*p), maxEndsQueued+1)
	}
}

// The ends of a report the store failed go with a later one, once.
func TestCheckpointRetriedAfterFailure(t *testing.T) {
	e := checkpointEnv(t, 0)
	e.inbox.mu.Lock()
	e.inbox.checkpointFails = 2
	e.inbox.mu.Unlock()
	retries := counterValue(mCheckpointRetries)
	c, _ := e.login(1, "flaky")
	c.Close()
	wantEnds(t, e, "flaky", []uint32{1})
	if d := counterValue(mCheckpointRetries) - retries; d < 2 {
		t.Fatalf("%v ends counted as retried, want at least 2 (two failed reports)", d)
	}
}
