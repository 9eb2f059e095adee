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

// A loop's notes between two sweeps are bounded: past maxSentUIDs per-uid
// notes, writes are only counted, and nothing is lost from the total.
func TestSentLogBounded(t *testing.T) {
	var l sentLog
	m := push.Message{ID: 7, App: 1}
	for range maxSentUIDs + 5000 {
		l.note(&m, "u")
	}
	if len(l.uids) != maxSentUIDs || l.counts[sentKey{7, 1}] != 5000 {
		t.Fatalf("%d per-uid notes and %d counted, want %d and 5000", len(l.uids), l.counts[sentKey{7, 1}], maxSentUIDs)
	}
	p := l.take()
	var sum int64
	for _, d := range *p {
		sum += d.Sent
	}
	l.putDeltas(p)
	if sum != maxSentUIDs+5000 || len(l.uids) != 0 || len(l.counts) != 0 {
		t.Fatalf("took %d writes, left %d notes and %d counts", sum, len(l.uids), len(l.counts))
	}
}
