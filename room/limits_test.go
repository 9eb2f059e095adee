package room

import (
	"context"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

func TestAdmission(t *testing.T) {
	cases := []struct {
		name    string
		cfg     func(*config.Config)
		allowed int // connections from 127.0.0.1 that are admitted
	}{
		{"per-IP limit", func(c *config.Config) { c.Room.MaxConnsPerIP = 2 }, 2},
		{"deny list", func(c *config.Config) { c.Room.Deny = []string{"127.0.0.0/8"} }, 0},
		{"allow list without us", func(c *config.Config) { c.Room.Allow = []string{"10.0.0.0/8"} }, 0},
		{"allow list with us", func(c *config.Config) { c.Room.Allow = []string{"127.0.0.1"}; c.Room.MaxConnsPerIP = 3 }, 3},
		{"max conns", func(c *config.Config) { c.Room.MaxConns = 3 }, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: tc.cfg})
			var admitted []*testkit.Conn
			for i := 0; i < tc.allowed; i++ {
				c, _ := e.login(1, "u"+string(rune('a'+i)))
				admitted = append(admitted, c)
			}
			// A storm past the limit: each one is closed at once, the engine keeps running.
			for i := 0; i < 10; i++ {
				c := testkit.Dial(t, e.room.Addr())
				c.ExpectClosed(testkit.Timeout)
			}
			for _, c := range admitted {
				c.ExpectQuiet(0)
			}
			// Closing an admitted connection frees its slot.
			if len(admitted) > 0 {
				admitted[0].Close()
				testkit.WaitFor(t, "slot freed", 2*time.Second, func() bool { return e.room.conns.Load() == int64(len(admitted)-1) })
				c, _ := e.login(1, "again")
				c.ExpectQuiet(0)
			}
		})
	}
}

func TestMaxPendingDuringAuth(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *config.Config) { c.Room.MaxPending = 2 }})
	gate := make(chan struct{})
	e.reg.setGate(gate)
	c := testkit.Dial(t, e.room.Addr())
	c.Auth(1, "q", testkit.Token(1, "q"), 0)
	testkit.WaitFor(t, "auth pending", 2*time.Second, func() bool { return e.room.idx.get("q", 0) != nil })
	for i := uint64(1); i <= 5; i++ {
		if n, _ := e.room.Push(t.Context(), push.Message{ID: i, App: 1, Payload: []byte("p")}, []push.Target{{UID: "q"}}); n != 1 {
			t.Fatalf("push %d found %d", i, n)
		}
	}
	close(gate)
	c.ExpectNext(proto.OpAuthOK)
	for i := uint64(1); i <= 2; i++ {
		if id, _, _ := c.ExpectPush(); id != i {
			t.Fatalf("pending push %d, want %d", id, i)
		}
	}
	c.ExpectQuiet(0) // the extras were dropped (QoS 1 ones stay stored)
}

func TestClientClosesDuringAuth(t *testing.T) {
	e := startEnv(t, envOpt{})
	gate := make(chan struct{})
	e.reg.setGate(gate)
	c := testkit.Dial(t, e.room.Addr())
	c.Auth(1, "gone", testkit.Token(1, "gone"), 0)
	testkit.WaitFor(t, "auth pending", 2*time.Second, func() bool { return e.room.idx.get("gone", 0) != nil })
	id := e.room.idx.get("gone", 0).id
	c.Close()
	testkit.WaitFor(t, "index cleared", 2*time.Second, func() bool { return e.room.idx.get("gone", 0) == nil })
	close(gate) // Register completes for a connection that is already gone
	testkit.WaitFor(t, "late unregister", 2*time.Second, func() bool { return e.reg.unregistered("gone", id) })
	if e.hasSession("gone") {
		t.Fatal("session of a closed connection left in register")
	}
}

func TestShutdown(t *testing.T) {
	e := startEnv(t, envOpt{})
	a, _ := e.login(1, "s1")
	b, _ := e.login(2, "s2")
	idA, idB := e.connID("s1"), e.connID("s2")
	unauth := testkit.Dial(t, e.room.Addr())
	// Accepted by the engine, not just by the kernel: gnet leaks a socket it
	// accepted but had not handed to a loop when the loops stop.
	testkit.WaitFor(t, "third connection admitted", 2*time.Second, func() bool { return e.room.conns.Load() == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Shutdown took %s", el)
	}
	for _, c := range []*testkit.Conn{a, b} {
		if k := c.ExpectKick(push.KickShutdown); k.Reason != "server_shutdown" {
			t.Fatalf("reason %q", k.Reason)
		}
		c.ExpectClosed(testkit.Timeout)
	}
	unauth.ExpectClosed(testkit.Timeout)
	if !e.reg.unregistered("s1", idA) || !e.reg.unregistered("s2", idB) {
		t.Fatal("sessions not unregistered by Shutdown")
	}
	if !e.coord.hasStatus("s2", 2, push.EventOffline) {
		t.Fatal("no offline event at shutdown")
	}
	if err := e.room.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := e.room.Push(ctx, push.Message{App: 1}, []push.Target{{UID: "s1"}}); err == nil {
		t.Fatal("Push after Shutdown succeeded")
	}
	if err := e.room.Start(ctx); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	e := startEnv(t, envOpt{noStart: true})
	if err := e.room.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.room.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.room.Addr() != "" {
		t.Fatal("Addr before Start")
	}
}

func TestNewValidates(t *testing.T) {
	h := config.NewHolder(roomTestConfig(t, nil))
	reg, inbox, coord := newFakeRegister(), newFakeSaver(), &fakeCoord{}
	cases := []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"no addr", Config{}, Deps{Config: h, Register: reg, Saver: inbox, Coordinator: coord}},
		{"no holder", Config{Addr: ":0"}, Deps{Register: reg, Saver: inbox, Coordinator: coord}},
		{"no registrar", Config{Addr: ":0"}, Deps{Config: h, Saver: inbox, Coordinator: coord}},
		{"no inbox", Config{Addr: ":0"}, Deps{Config: h, Register: reg, Coordinator: coord}},
		{"no coordinator", Config{Addr: ":0"}, Deps{Config: h, Register: reg, Saver: inbox}},
	}
	for _, tc := range cases {
		if _, err := New(tc.cfg, tc.deps); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
	r, err := New(Config{Addr: ":0"}, Deps{Config: h, Register: reg, Saver: inbox, Coordinator: coord})
	if err != nil || r.ID() != "room-1" {
		t.Fatalf("defaults: %v %v", r, err)
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	e := startEnv(t, envOpt{})
	r2, err := New(Config{ID: "room-2", Addr: e.room.Addr(), NumLoops: 1, Logger: testLogger()},
		Deps{Config: e.holder, Register: e.reg, Saver: e.inbox, Coordinator: e.coord})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Shutdown(t.Context())
	if err := r2.Start(t.Context()); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
}
