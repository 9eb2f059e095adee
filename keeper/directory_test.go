package keeper

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func ids(ms []push.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestDirectoryLocal(t *testing.T) {
	d := NewDirectory()
	var changes atomic.Int32
	d.setChanged(func() { changes.Add(1) })

	addrs := []string{"10.0.0.1:7000"}
	d.Join(push.Member{Role: "room", ID: "r2", Addrs: addrs})
	d.Join(push.Member{Role: "room", ID: "r1"})
	d.Join(push.Member{Role: "center", ID: "c1"})
	addrs[0] = "mutated" // Join keeps its own copy

	if got := ids(d.Members("room")); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Fatalf("rooms = %v, want [r1 r2] sorted", got)
	}
	if got := d.Members("room")[1].Addrs[0]; got != "10.0.0.1:7000" {
		t.Fatalf("addrs = %q: Join kept the caller's slice", got)
	}
	if !d.SetLoad("room", "r1", 42) || d.Members("room")[0].Load != 42 {
		t.Fatal("SetLoad did not update r1")
	}
	if d.SetLoad("room", "nope", 1) {
		t.Fatal("SetLoad of an unknown member reported true")
	}
	d.Leave("room", "r2")
	if got := ids(d.Members("room")); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("rooms after leave = %v", got)
	}
	if got := d.Roles(); !slices.Equal(got, []string{"center", "room"}) {
		t.Fatalf("roles = %v", got)
	}
	// 3 joins, 1 load change, 1 leave; the unknown SetLoad is not a change.
	if n := changes.Load(); n != 5 {
		t.Fatalf("changed called %d times, want 5", n)
	}
	if len(d.Members("nobody")) != 0 {
		t.Fatal("unknown role has members")
	}
}

func TestDirectoryMergesRemote(t *testing.T) {
	d := NewDirectory()
	d.setRemote(map[string]map[string]push.Member{
		"room": {
			"r1": {Role: "room", ID: "r1", Load: 1, Addrs: []string{"a"}},
			"r3": {Role: "room", ID: "r3", Load: 3},
		},
		"register": {"g1": {Role: "register", ID: "g1"}},
	})
	// A member joined here wins over its (older) mirrored copy.
	d.Join(push.Member{Role: "room", ID: "r1", Load: 100})
	d.Join(push.Member{Role: "room", ID: "r2"})

	got := d.Members("room")
	if !slices.Equal(ids(got), []string{"r1", "r2", "r3"}) {
		t.Fatalf("rooms = %v", ids(got))
	}
	if got[0].Load != 100 {
		t.Fatalf("r1 load = %d, want the local 100", got[0].Load)
	}
	got[2].ID = "changed"
	if d.Members("room")[2].ID != "r3" {
		t.Fatal("Members returned shared state")
	}
	// A change after a cached read is seen.
	d.SetLoad("room", "r2", 7)
	if got := d.Members("room"); got[1].Load != 7 {
		t.Fatalf("r2 load = %d after SetLoad", got[1].Load)
	}
	d.setRemote(map[string]map[string]push.Member{"room": {"r4": {Role: "room", ID: "r4"}}})
	if got := ids(d.Members("room")); !slices.Equal(got, []string{"r1", "r2", "r4"}) {
		t.Fatalf("rooms after a new mirror = %v", got)
	}
	if roles := d.Roles(); !slices.Equal(roles, []string{"room"}) {
		t.Fatalf("roles = %v", roles)
	}
	own := d.ownMembers()
	if len(own) != 2 {
		t.Fatalf("own members = %v, want the 2 joined here", own)
	}
}

func BenchmarkDirectoryMembers(b *testing.B) {
	d := NewDirectory()
	remote := map[string]push.Member{}
	for i := range 64 {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		remote[id] = push.Member{Role: "room", ID: id, Addrs: []string{"10.0.0.1:7000"}}
	}
	d.setRemote(map[string]map[string]push.Member{"room": remote})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if len(d.Members("room")) != 64 {
				b.Fatal("wrong count")
			}
		}
	})
}

// TestDirectoryJoinCopiesAddrs: the caller may reuse its slices after Join.
func TestDirectoryJoinCopiesAddrs(t *testing.T) {
	d := NewDirectory()
	m := push.Member{Role: "room", ID: "r1", Addrs: []string{"a:1"}, TLSAddrs: []string{"b:2"},
		WSAddrs: []string{"ws://c:3/v1/ws"}, WSSAddrs: []string{"wss://d:4/v1/ws"}}
	d.Join(m)
	m.Addrs[0], m.TLSAddrs[0], m.WSAddrs[0], m.WSSAddrs[0] = "x", "x", "x", "x"
	got := d.Members("room")
	if len(got) != 1 || got[0].Addrs[0] != "a:1" || got[0].TLSAddrs[0] != "b:2" ||
		got[0].WSAddrs[0] != "ws://c:3/v1/ws" || got[0].WSSAddrs[0] != "wss://d:4/v1/ws" {
		t.Fatalf("members = %+v", got)
	}
}
