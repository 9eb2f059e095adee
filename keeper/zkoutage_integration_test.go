package keeper

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// stallDialer dials ZooKeeper for one client; stalling it closes its
// connections, and while stalled its dials reach a server that accepts and
// never answers, so every handshake stalls (the ~67 s hang of issue 10
// without the handshake bound).
type stallDialer struct {
	hole *blackHole

	mu      sync.Mutex
	stalled bool
	conns   []net.Conn
}

func (s *stallDialer) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		addr = s.hole.addr()
	}
	conn, err := net.DialTimeout(network, addr, timeout)
	if err == nil {
		s.conns = append(s.conns, conn)
	}
	return conn, err
}

func (s *stallDialer) set(stalled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = stalled
	if stalled {
		for _, c := range s.conns {
			c.Close()
		}
		s.conns = nil
	}
}

// TestZKStalledHandshakeResumesSession: a client with the default 10 s
// session loses its connection and its next server stalls the handshake.
// go-zookeeper alone would wait 10 x recvTimeout (~67 s) on it and lose the
// session; with the bound it gives up after HandshakeTimeout (3 s), tries
// again, and resumes the same session, its member never gone.
func TestZKStalledHandshakeResumesSession(t *testing.T) {
	z := startPrivateZK(t)
	servers := []string{z.addr()}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := DialZK(dctx, ZKConfig{Servers: servers, Root: "/lcpush-stall", Logger: testLogger()})
	if err != nil {
		t.Fatalf("private zookeeper %s: %v", z.addr(), err)
	}
	t.Cleanup(admin.Close)
	tt := &testTree{servers: servers, root: "/lcpush-stall", admin: admin}
	tt.put(t, testYAML("k"))
	stall := &stallDialer{hole: newBlackHole(t)}
	zc := tt.zkConfig()
	zc.SessionTimeout = 10 * time.Second
	zc.dialer = stall.dial
	s := tt.startService(t, zc)
	if got := s.cfg.ZK.HandshakeTimeout; got != DefaultHandshakeTimeout {
		t.Fatalf("handshake bound %v", got)
	}
	s.Directory().Join(push.Member{Role: "room", ID: "room-s", RPCAddr: "127.0.0.1:9106"})
	testkit.WaitFor(t, "room-s published", 10*time.Second, func() bool { return len(zkMembers(t, admin, "room")) == 1 })
	sid := s.ZK().SessionID()

	stall.set(true)
	testkit.WaitFor(t, "the connection to drop", 5*time.Second, func() bool { return !s.ZK().hasSession() })
	testkit.WaitFor(t, "a handshake to stall", 5*time.Second, func() bool { return stall.hole.accepted.Load() > 0 })
	stall.set(false)
	t0 := time.Now()
	// At most the rest of the stalled handshake (3 s), 1 s of backoff, the dial.
	testkit.WaitFor(t, "the session to be resumed", 8*time.Second, func() bool { return s.ZK().hasSession() })
	t.Logf("session resumed %v after the stall ended", time.Since(t0).Round(time.Millisecond))
	if got := s.ZK().SessionID(); got != sid {
		t.Fatalf("session %#x, want the same %#x resumed", got, sid)
	}
	if ms := zkMembers(t, admin, "room"); !slices.Equal(ids(ms), []string{"room-s"}) {
		t.Fatalf("members %v", ids(ms))
	}
}

// viewSample is what a watcher's directory listed at one moment.
type viewSample struct {
	at    time.Time
	roles map[string][]string
}

// sampleView records the ids the directory lists for roles every 10 ms until stop.
func sampleView(d *Directory, roles []string) (stop func() []viewSample) {
	var (
		out  []viewSample
		quit = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			s := viewSample{at: time.Now(), roles: make(map[string][]string, len(roles))}
			for _, r := range roles {
				s.roles[r] = ids(d.Members(r))
			}
			out = append(out, s)
			select {
			case <-quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() []viewSample { close(quit); <-done; return out }
}

// TestZKOutageMembership stops a private ZooKeeper for 10 s (kill -9) and
// starts it again on the same port and data. A watcher process must list the
// same members throughout the outage; once ZooKeeper is back it must keep
// listing every member still alive, including one whose handshake stalls
// until its session has expired on the server and which re-creates its
// znode in a new session; it never lists an empty room or saver list. A
// member whose process really ended during the outage is removed once
// ZooKeeper is healthy (its session expires there, and the grace ends), and
// a member that joins and leaves after the outage is removed at once.
func TestZKOutageMembership(t *testing.T) {
	z := startPrivateZK(t)
	servers := []string{z.addr()}
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := DialZK(dctx, ZKConfig{Servers: servers, Root: "/lcpush-outage", Logger: testLogger()})
	if err != nil {
		t.Fatalf("private zookeeper %s: %v", z.addr(), err)
	}
	t.Cleanup(admin.Close)
	tt := &testTree{servers: servers, root: "/lcpush-outage", admin: admin}
	tt.put(t, testYAML("k"))

	zc := tt.zkConfig() // 2 s sessions: default handshake bound 2 s, grace 11 s
	watcher := tt.startService(t, zc)
	watcher.Directory().Join(push.Member{Role: "center", ID: "center-w"})
	a := tt.startService(t, zc)
	a.Directory().Join(push.Member{Role: "room", ID: "room-a", RPCAddr: "127.0.0.1:9101"})
	stall := &stallDialer{hole: newBlackHole(t)}
	zb := zc
	zb.dialer = stall.dial
	b := tt.startService(t, zb)
	b.Directory().Join(push.Member{Role: "saver", ID: "saver-b", RPCAddr: "127.0.0.1:9102"})
	c := tt.startService(t, zc)
	c.Directory().Join(push.Member{Role: "register", ID: "reg-c", RPCAddr: "127.0.0.1:9103"})
	d := tt.startService(t, zc)
	d.Directory().Join(push.Member{Role: "coordinator", ID: "coord-d", RPCAddr: "127.0.0.1:9104"})

	roles := []string{"room", "saver", "register", "coordinator"}
	view := func() map[string][]string {
		out := make(map[string][]string)
		for _, r := range roles {
			out[r] = ids(watcher.Directory().Members(r))
		}
		return out
	}
	testkit.WaitFor(t, "the watcher to list every member", 10*time.Second, func() bool {
		v := view()
		return slices.Equal(v["room"], []string{"room-a"}) && slices.Equal(v["saver"], []string{"saver-b"}) &&
			slices.Equal(v["register"], []string{"reg-c"}) && slices.Equal(v["coordinator"], []string{"coord-d"})
	})

	// A process that leaves while ZooKeeper is healthy is gone at once.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := d.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "coord-d to leave the watcher's list", 3*time.Second, func() bool { return len(view()["coordinator"]) == 0 })
	before := view()
	stop := sampleView(watcher.Directory(), roles)
	frozen0, removed0 := counterValue(t, metricFrozen), counterValue(t, metricOutageRemoved)
	bSession := b.ZK().SessionID()

	// The outage: ZooKeeper is killed; saver-b's handshakes will stall; the
	// process of reg-c ends meanwhile (its session cannot be closed: it
	// expires on the server once ZooKeeper is back).
	stall.set(true)
	z.kill()
	tKill := time.Now()
	testkit.WaitFor(t, "the watcher to lose its connection", 10*time.Second, func() bool { return !watcher.ZK().hasSession() })
	if err := c.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if counterValue(t, metricFrozen) <= frozen0 {
		t.Error("the freeze was not counted")
	}
	time.Sleep(time.Until(tKill.Add(10 * time.Second)))
	z.start()
	tBack := time.Now()
	t.Logf("zookeeper down for %v", tBack.Sub(tKill).Round(time.Millisecond))

	testkit.WaitFor(t, "the watcher to have a session again", 10*time.Second, func() bool { return watcher.ZK().hasSession() })
	// saver-b's old session expires on the server while its handshakes stall.
	bPath := admin.path(membersNode, "saver", "saver-b")
	testkit.WaitFor(t, "saver-b's old session to expire on the server", 15*time.Second, func() bool {
		ok, _, err := admin.exists(ctx, bPath)
		return err == nil && !ok
	})
	tExpired := time.Now()
	stall.set(false)
	// Its own member znode is re-created promptly in its new session.
	testkit.WaitFor(t, "saver-b re-created in a new session", 10*time.Second, func() bool {
		ok, st, err := admin.exists(ctx, bPath)
		sid := b.ZK().SessionID()
		return err == nil && ok && sid != 0 && sid != bSession && st.EphemeralOwner == sid
	})
	t.Logf("saver-b: old session expired %v after zookeeper was back, re-created %v later",
		tExpired.Sub(tBack).Round(time.Millisecond), time.Since(tExpired).Round(time.Millisecond))
	// The watcher lists it from ZooKeeper again (not only held), and room-a.
	testkit.WaitFor(t, "the watcher to mirror room-a and saver-b from zookeeper", 5*time.Second, func() bool {
		w := watcher.zk
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.mirror["room"]["room-a"] != nil && w.mirror["saver"]["saver-b"] != nil
	})

	// A member that joins after the outage and leaves is removed at once,
	// grace or not.
	e := tt.startService(t, zc)
	e.Directory().Join(push.Member{Role: "room", ID: "room-e", RPCAddr: "127.0.0.1:9105"})
	testkit.WaitFor(t, "the watcher to list room-e", 5*time.Second, func() bool {
		return slices.Equal(view()["room"], []string{"room-a", "room-e"})
	})
	e.Directory().Leave("room", "room-e")
	testkit.WaitFor(t, "room-e to leave the watcher's list", 3*time.Second, func() bool {
		return slices.Equal(view()["room"], []string{"room-a"})
	})

	// reg-c, whose process ended, goes once its session expired and the
	// grace (11 s after the watcher's reconnect) ended.
	grace := watcher.cfg.ZK.OutageGrace
	testkit.WaitFor(t, "reg-c to be removed", grace+10*time.Second, func() bool { return len(view()["register"]) == 0 })
	tRemoved := time.Now()
	t.Logf("reg-c removed %v after zookeeper was back (grace %v)", tRemoved.Sub(tBack).Round(time.Millisecond), grace)
	if held := tRemoved.Sub(tBack); held < grace-time.Second {
		t.Errorf("reg-c removed %v after zookeeper was back: not held for the grace (%v)", held, grace)
	}
	if counterValue(t, metricOutageRemoved) <= removed0 {
		t.Error("the removal after the grace was not counted")
	}
	samples := stop()

	for _, s := range samples {
		switch {
		case s.at.After(tKill) && s.at.Before(tBack):
			for _, r := range roles {
				if !slices.Equal(s.roles[r], before[r]) {
					t.Fatalf("during the outage (%v in) the watcher listed %s %v, before it %v",
						s.at.Sub(tKill).Round(time.Millisecond), r, s.roles[r], before[r])
				}
			}
		}
		if !slices.Contains(s.roles["room"], "room-a") || !slices.Equal(s.roles["saver"], []string{"saver-b"}) {
			t.Fatalf("%v after the kill the watcher listed rooms %v, savers %v: a live member was dropped",
				s.at.Sub(tKill).Round(time.Millisecond), s.roles["room"], s.roles["saver"])
		}
	}
	t.Logf("%d samples checked", len(samples))
}
