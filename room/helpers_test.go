package room

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

const (
	secret1 = "secret-of-app-one-0123"
	secret2 = "secret-of-app-two-0123"
	secret3 = "secret-of-app-three-01"
)

// testLogger is silent unless ROOM_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ROOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig returns a prepared config with apps 1..3, changed by mod.
func testConfig(t testing.TB, mod func(*config.Config)) *config.Config {
	t.Helper()
	c := &config.Config{
		AdminKey: "admin-key",
		Apps: []config.App{
			{ID: 1, Name: "one", Secret: secret1, APIKey: "key-1"},
			{ID: 2, Name: "two", Secret: secret2, APIKey: "key-2"},
			{ID: 3, Name: "three", Secret: secret3, APIKey: "key-3"},
		},
	}
	c.Room.HeartbeatMin = 5
	c.Room.HeartbeatMax = 300
	c.Room.HeartbeatDefault = 60
	// The kit's liveness probe (expectQuiet) is a PING: tests of the PING
	// limit set it back (limits_test.go).
	c.Room.Limits.Ping = config.OpLimit{Rate: 1000, Burst: 10000}
	if mod != nil {
		mod(c)
	}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	return c
}

func secretOf(app uint32) string {
	switch app {
	case 1:
		return secret1
	case 2:
		return secret2
	case 3:
		return secret3
	}
	return "unknown-app-secret-000"
}

func tokenFor(app uint32, uid string) string {
	return token.Sign([]byte(secretOf(app)), app, uid, time.Now().Add(time.Hour).Unix())
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
		holder: config.NewHolder(testConfig(t, o.cfg)),
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a raw protocol client.
type client struct {
	t   testing.TB
	c   net.Conn
	dec *proto.Decoder
	seq uint32
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, dec: proto.NewDecoder(c, 16<<20)}
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send writes one frame and returns its Seq.
func (c *client) send(op uint8, flags uint16, app uint32, body []byte) uint32 {
	c.t.Helper()
	c.seq++
	c.write(proto.AppendFrame(nil, proto.Header{Op: op, Flags: flags, Seq: c.seq, App: app}, body))
	return c.seq
}

func (c *client) sendJSON(op uint8, app uint32, v any) uint32 {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.send(op, 0, app, b)
}

func (c *client) auth(app uint32, uid, tok string, hb int) uint32 {
	c.t.Helper()
	return c.sendJSON(proto.OpAuth, app, proto.Auth{UID: uid, Token: tok, HB: hb})
}

// next reads one frame (body copied).
func (c *client) next(d time.Duration) (proto.Frame, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	f, err := c.dec.Next()
	if err != nil {
		return f, err
	}
	f.Body = append([]byte(nil), f.Body...)
	return f, nil
}

func (c *client) expect(op uint8) proto.Frame {
	c.t.Helper()
	f, err := c.next(3 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for op %#x: %v", op, err)
	}
	if f.Op != op {
		c.t.Fatalf("got op %#x (%s), want %#x", f.Op, f.Body, op)
	}
	return f
}

func (c *client) expectError(code string) proto.Frame {
	c.t.Helper()
	f := c.expect(proto.OpError)
	var e proto.Error
	if err := json.Unmarshal(f.Body, &e); err != nil {
		c.t.Fatalf("ERROR body %q: %v", f.Body, err)
	}
	if e.Code != code {
		c.t.Fatalf("ERROR code %q (%s), want %q", e.Code, e.Message, code)
	}
	return f
}

func (c *client) expectPush() (uint64, []byte, proto.Frame) {
	c.t.Helper()
	f := c.expect(proto.OpPush)
	id, p, err := proto.ParsePush(f.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return id, p, f
}

func (c *client) expectKick(code int) proto.Kick {
	c.t.Helper()
	f := c.expect(proto.OpKick)
	var k proto.Kick
	if err := json.Unmarshal(f.Body, &k); err != nil {
		c.t.Fatal(err)
	}
	if k.Code != code || f.Seq != 0 {
		c.t.Fatalf("KICK %+v seq %d, want code %d", k, f.Seq, code)
	}
	return k
}

// expectClosed reads until the server closes the connection.
func (c *client) expectClosed(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := c.next(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %s", d)
		}
		return // EOF, reset, or a refused frame
	}
}

// expectQuiet checks that nothing but a PONG answers a PING: no frame was queued.
func (c *client) expectQuiet() {
	c.t.Helper()
	c.send(proto.OpPing, 0, 0, nil)
	c.expect(proto.OpPong)
}

// login dials and authenticates, returning the AUTH_OK body.
func (e *env) login(app uint32, uid string) (*client, proto.AuthOK) {
	e.t.Helper()
	c := dial(e.t, e.room.Addr())
	seq := c.auth(app, uid, tokenFor(app, uid), 30)
	f := c.expect(proto.OpAuthOK)
	if f.Seq != seq {
		e.t.Fatalf("AUTH_OK seq %d, want %d", f.Seq, seq)
	}
	var ok proto.AuthOK
	if err := json.Unmarshal(f.Body, &ok); err != nil {
		e.t.Fatal(err)
	}
	return c, ok
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
