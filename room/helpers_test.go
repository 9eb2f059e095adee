package room

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
)

// testLogger is silent unless ROOM_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ROOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// roomTestConfig is the kit's test configuration (testkit.Config: its apps
// 1..3, secrets and keys) with the room tests' own settings, then mod.
func roomTestConfig(t testing.TB, mod func(*config.Config)) *config.Config {
	t.Helper()
	return testkit.Config(t, func(c *config.Config) {
		// The heartbeat bounds the room's tests are written for (TestAuthOK
		// clamps to min 5 and defaults to 60), and the default deadlines:
		// the kit's 700 ms auth deadline and 500 ms grace suit the system
		// tests; the room's tests of the deadlines set their own.
		c.Room.HeartbeatMin = 5
		c.Room.HeartbeatMax = 300
		c.Room.HeartbeatDefault = 60
		c.Room.HeartbeatGrace = 10 * time.Second
		c.Room.AuthDeadline = 10 * time.Second
		// The kit's liveness probe (ExpectQuiet) is a PING: tests of the
		// PING limit set it back (limits_test.go).
		c.Room.Limits.Ping = config.OpLimit{Rate: 1000, Burst: 10000}
		if mod != nil {
			mod(c)
		}
	})
}

// env is one started room with its fakes.
type env struct {
	t      testing.TB
	room   *Room
	holder *config.Holder
	reg    *fakeRegister
	inbox  *fakeSaver
	coord  *fakeCoord
}

type envOpt struct {
	cfg     func(*config.Config)
	room    func(*Config)
	noStart bool
}

func startEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	e := &env{
		t:      t,
		holder: config.NewHolder(roomTestConfig(t, o.cfg)),
		reg:    newFakeRegister(),
		inbox:  newFakeSaver(),
		coord:  &fakeCoord{},
	}
	rc := Config{ID: "room-t", Addr: "127.0.0.1:0", NumLoops: 2, Workers: 8, Queue: 256, Logger: testLogger()}
	if o.room != nil {
		o.room(&rc)
	}
	r, err := New(rc, Deps{Config: e.holder, Register: e.reg, Saver: e.inbox, Coordinator: e.coord})
	if err != nil {
		t.Fatal(err)
	}
	e.room = r
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	if !o.noStart {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// login dials and authenticates uid on app with a valid token and a 30 s
// heartbeat, returning the AUTH_OK body.
func (e *env) login(app uint32, uid string) (*testkit.Conn, proto.AuthOK) {
	e.t.Helper()
	c := testkit.Dial(e.t, e.room.Addr())
	return c, c.Login(app, uid, testkit.Token(app, uid), 30)
}

// connID returns the register's connID of uid's session.
func (e *env) connID(uid string) uint64 {
	e.t.Helper()
	s, ok := e.reg.session(uid)
	if !ok {
		e.t.Fatalf("%s not registered", uid)
	}
	return s.ConnID
}

func (e *env) hasSession(uid string) bool {
	_, ok := e.reg.session(uid)
	return ok
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
