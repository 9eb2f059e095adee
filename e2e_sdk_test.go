package main

import (
	"context"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/sdk"
	"github.com/lcpush/lcpush/system"
)

// sdkClient connects an SDK client through the dispatcher; onMsg may be nil
// to read from Messages().
func sdkClient(t *testing.T, sys *system.System, app uint32, uid string, onMsg func(sdk.Message)) *sdk.Client {
	t.Helper()
	c, err := sdk.New(sdk.Config{
		DispatchURL: "http://" + sys.DispatchAddr(),
		Addrs:       []string{sys.RoomAddr()},
		App:         app,
		UID:         uid,
		Token:       testkit.Token(app, uid),
		Heartbeat:   10 * time.Second,
		OnMessage:   onMsg,
		BackoffMin:  50 * time.Millisecond,
		BackoffMax:  500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("sdk connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The README's demo path: a push reaches an SDK client, which ACKs it
// automatically, and the stats show the store empty again.
func TestE2ESDKReceiveAndAutoAck(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""))
	c := sdkClient(t, sys, 1, "sdk-user", nil)

	out := testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"sdk-user"}, "hello sdk", 1)
	select {
	case m := <-c.Messages():
		if string(m.Payload) != "hello sdk" || m.App != 1 || !m.QoS1 {
			t.Fatalf("message %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message; push answered %v", out)
	}
	testkit.WaitFor(t, "automatic ACK to empty the store", 5*time.Second, func() bool { return pendingOf(t, sys) == 0 })
}

// The SDK reconnects by itself when the room goes away and comes back on
// the same address (a restart: the KICK code 4 it gets is not final).
func TestE2ESDKReconnectsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	sys := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir))
	addr := sys.RoomAddr()
	c := sdkClient(t, sys, 1, "phoenix", nil)
	systest.Stop(t, sys)

	// Same room port after restart, so the client's address list still works.
	sys2 := systest.Start(t, testkit.ConfigYAML(""), systest.DataDir(dir), systest.RoomAddr(addr))
	testkit.WaitFor(t, "SDK to log in again", 10*time.Second, func() bool {
		_, out, _ := testkit.API(t, sys2.CenterAddr(), "GET", "/v1/apps/1/users/phoenix", testkit.Key1, "")
		return out["online"] == true
	})
	testkit.PushText(t, sys2.CenterAddr(), 1, testkit.Key1, []string{"phoenix"}, "after restart", 1)
	select {
	case m := <-c.Messages():
		if string(m.Payload) != "after restart" {
			t.Fatalf("got %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message after reconnect")
	}
}
