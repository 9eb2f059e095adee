package keeper

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// member returns the member (role, id) as the directory or client sees it.
func member(ms []push.Member, id string) (push.Member, bool) {
	i := slices.IndexFunc(ms, func(m push.Member) bool { return m.ID == id })
	if i < 0 {
		return push.Member{}, false
	}
	return ms[i], true
}

func zkMembers(t *testing.T, z *ZKClient, role string) []push.Member {
	t.Helper()
	ms, err := z.Members(context.Background(), role)
	if err != nil {
		t.Fatalf("members %s: %v", role, err)
	}
	return ms
}

func TestZKMembership(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("k"))
	a := tt.startService(t, tt.zkConfig())
	b := tt.startService(t, tt.zkConfig())

	room := push.Member{Role: "room", ID: "room-a", RPCAddr: "127.0.0.1:9100", Addrs: []string{"10.0.0.1:7000", "10.0.0.1:7001"}, IDC: "bj", Load: 5}
	a.Directory().Join(room)
	b.Directory().Join(push.Member{Role: "center", ID: "center-b"})

	// Another process's directory mirrors the member, as does a plain client.
	testkit.WaitFor(t, "b to see room-a", 10*time.Second, func() bool {
		m, ok := member(b.Directory().Members("room"), "room-a")
		return ok && m.Load == 5 && m.IDC == "bj" && slices.Equal(m.Addrs, room.Addrs) && m.RPCAddr == room.RPCAddr
	})
	testkit.WaitFor(t, "a to see center-b", 10*time.Second, func() bool {
		_, ok := member(a.Directory().Members("center"), "center-b")
		return ok
	})
	if m, ok := member(zkMembers(t, tt.admin, "room"), "room-a"); !ok || m.Load != 5 {
		t.Fatalf("zookeeper holds %+v", m)
	}
	ok, st, err := tt.admin.exists(context.Background(), tt.admin.path(membersNode, "room", "room-a"))
	if err != nil || !ok || st.EphemeralOwner != a.ZK().SessionID() {
		t.Fatalf("room-a znode: exists %v, owner %#x, want ephemeral of a's session %#x (%v)", ok, st.EphemeralOwner, a.ZK().SessionID(), err)
	}

	// Load updates travel too.
	a.Directory().SetLoad("room", "room-a", 900)
	testkit.WaitFor(t, "b to see load 900", 10*time.Second, func() bool {
		m, _ := member(b.Directory().Members("room"), "room-a")
		return m.Load == 900
	})

	// A second room joins and leaves.
	a.Directory().Join(push.Member{Role: "room", ID: "room-a2"})
	testkit.WaitFor(t, "b to see room-a2", 10*time.Second, func() bool {
		return slices.Equal(ids(b.Directory().Members("room")), []string{"room-a", "room-a2"})
	})
	a.Directory().Leave("room", "room-a2")
	testkit.WaitFor(t, "b to see room-a2 leave", 10*time.Second, func() bool {
		return slices.Equal(ids(b.Directory().Members("room")), []string{"room-a"})
	})
	if ms := zkMembers(t, tt.admin, "room"); !slices.Equal(ids(ms), []string{"room-a"}) {
		t.Fatalf("zookeeper rooms = %v", ids(ms))
	}

	// Shutdown ends the session: its members go at once, not after a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "b to see room-a go", 3*time.Second, func() bool { return len(b.Directory().Members("room")) == 0 })
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestZKMemberBadNameStaysLocal(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("k"))
	a := tt.startService(t, tt.zkConfig())
	a.Directory().Join(push.Member{Role: "room", ID: "bad/id"})
	a.Directory().Join(push.Member{Role: "room", ID: "good"})
	testkit.WaitFor(t, "good to be published", 10*time.Second, func() bool {
		return slices.Equal(ids(zkMembers(t, tt.admin, "room")), []string{"good"})
	})
	if got := ids(a.Directory().Members("room")); !slices.Equal(got, []string{"bad/id", "good"}) {
		t.Fatalf("local view = %v", got)
	}
}

// TestZKSessionExpiry cuts one process off ZooKeeper until the server expires
// its session (its members vanish for everyone), then lets it back: it gets a
// new session, re-creates its members and watches again.
func TestZKSessionExpiry(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("before"))
	cut := &netCutter{}
	zc := tt.zkConfig()
	zc.SessionTimeout = 2 * time.Second
	zc.dialer = cut.dial
	a := tt.startService(t, zc)
	a.Directory().Join(push.Member{Role: "room", ID: "room-x", Load: 1})
	testkit.WaitFor(t, "room-x published", 10*time.Second, func() bool { return len(zkMembers(t, tt.admin, "room")) == 1 })
	oldSession := a.ZK().SessionID()
	sessionsBefore := counterValue(t, metricSessions)

	cut.set(true)
	// The server expires the session after its timeout (2 s here, or the
	// server's minimum, 2 x tickTime): the ephemeral member goes.
	testkit.WaitFor(t, "the session to expire on the server", 60*time.Second, func() bool {
		return len(zkMembers(t, tt.admin, "room")) == 0
	})
	// While a is cut off, the config changes and someone else joins.
	tt.put(t, testYAML("during"))
	b := tt.startService(t, tt.zkConfig())
	b.Directory().Join(push.Member{Role: "room", ID: "room-y"})
	a.Directory().SetLoad("room", "room-x", 2)

	cut.set(false)
	testkit.WaitFor(t, "room-x re-created in a new session", 30*time.Second, func() bool {
		m, ok := member(zkMembers(t, tt.admin, "room"), "room-x")
		return ok && m.Load == 2
	})
	if s := a.ZK().SessionID(); s == oldSession || s == 0 {
		t.Fatalf("session %#x after expiry, was %#x", s, oldSession)
	}
	if counterValue(t, metricSessions) <= sessionsBefore {
		t.Fatal("the new session was not counted")
	}
	// Watches are set again on the new session: what changed while cut off
	// is seen, and so is what changes next.
	testkit.WaitFor(t, "a to load the config written while cut off", 10*time.Second, func() bool {
		return a.Holder().Load().AdminKey == "during"
	})
	testkit.WaitFor(t, "a to mirror room-y", 10*time.Second, func() bool {
		_, ok := member(a.Directory().Members("room"), "room-y")
		return ok
	})
	tt.put(t, testYAML("after"))
	testkit.WaitFor(t, "a to load the next config", 10*time.Second, func() bool { return a.Holder().Load().AdminKey == "after" })
	b.Directory().Leave("room", "room-y")
	testkit.WaitFor(t, "a to see room-y leave", 10*time.Second, func() bool {
		_, ok := member(a.Directory().Members("room"), "room-y")
		return !ok
	})
}

// TestZKMemberHeldByOldSession: a restarted instance whose previous session
// still holds its znode waits for that session to end, then joins.
func TestZKMemberHeldByOldSession(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("k"))
	old := tt.startService(t, tt.zkConfig())
	old.Directory().Join(push.Member{Role: "room", ID: "room-1", Load: 1})
	testkit.WaitFor(t, "old room-1", 10*time.Second, func() bool { return len(zkMembers(t, tt.admin, "room")) == 1 })

	restarted := tt.startService(t, tt.zkConfig())
	restarted.Directory().Join(push.Member{Role: "room", ID: "room-1", Load: 2})
	held := tt.admin.path(membersNode, "room", "room-1")
	testkit.WaitFor(t, "the restarted instance to find room-1 held", 10*time.Second, func() bool {
		b := restarted.zk
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.held[held]
	})
	if m, _ := member(zkMembers(t, tt.admin, "room"), "room-1"); m.Load != 1 {
		t.Fatalf("the new instance took a znode another live session holds: %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the restarted instance to join", 10*time.Second, func() bool {
		m, ok := member(zkMembers(t, tt.admin, "room"), "room-1")
		return ok && m.Load == 2
	})
}
