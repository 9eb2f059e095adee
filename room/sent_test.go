package room

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// Every PUSH the room writes reaches the delivery status: a stored message
// loaded at AUTH and a live unicast per uid, a broadcast as a count.
func TestSentReported(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.inbox.store("s1", push.Message{ID: 31, App: 1, QoS: 1, Payload: []byte("stored")})
	c1, _ := e.login(1, "s1")
	c1.ExpectPushText(1, "stored")
	c2, _ := e.login(1, "s2")

	n, err := e.room.Push(t.Context(), push.Message{ID: 32, App: 1, QoS: 1, Payload: []byte("live")},
		[]push.Target{{UID: "s1", ConnID: e.connID("s1")}})
	if err != nil || n != 1 {
		t.Fatalf("push: %d %v", n, err)
	}
	c1.ExpectPushText(1, "live")
	if k, err := e.room.Broadcast(t.Context(), push.Message{ID: 33, App: 1, QoS: 0, Broadcast: true, Payload: []byte("all")}, 0); err != nil || k != 2 {
		t.Fatalf("broadcast: %d %v", k, err)
	}
	c1.ExpectPushText(1, "all")
	c2.ExpectPushText(1, "all")

	testkit.WaitFor(t, "the sweep to report the writes", 5*time.Second, func() bool {
		return e.inbox.sentTo(31, "s1") == 1 && e.inbox.sentTo(32, "s1") == 1 && e.inbox.sentTo(33, "") == 2
	})
	if n := e.inbox.sentTo(33, "s1"); n != 0 {
		t.Fatalf("a broadcast noted per uid (%d): it must only count", n)
	}
}
