package room

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// TestAckBurstFewStoreCalls: a burst of ACKs from many connections (a QoS
// 1 broadcast's answers) reaches the store as a few AckMany calls, not one
// call per ACK frame: while the store holds the first call of each loop,
// the rest queue and go as one call per loop.
func TestAckBurstFewStoreCalls(t *testing.T) {
	e := startEnv(t, envOpt{})
	const n = 200
	clients := make([]*testkit.Conn, n)
	for i := range clients {
		clients[i], _ = e.login(1, fmt.Sprintf("burst-%d", i))
	}
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release)
	e.inbox.mu.Lock()
	e.inbox.ackGate = gate
	calls0, entries0 := e.inbox.ackMany, e.inbox.ackEntries
	e.inbox.mu.Unlock()
	read := counterValue(mAcks)
	for i, c := range clients {
		c.Write(proto.AppendAck(nil, 7, []uint64{uint64(1000 + i), uint64(5000 + i)}))
	}
	// Every frame read and queued (or in a call the store holds).
	testkit.WaitFor(t, "acks read", testkit.Timeout, func() bool {
		return counterValue(mAcks)-read == 2*n
	})
	release()
	for i := range clients {
		uid := fmt.Sprintf("burst-%d", i)
		testkit.WaitFor(t, uid+" acked", 2*time.Second, func() bool {
			got := e.inbox.acked(uid)
			return len(got) == 2 && got[0] == uint64(1000+i) && got[1] == uint64(5000+i)
		})
	}
	for _, c := range clients {
		c.ExpectQuiet(0) // none refused
	}
	e.inbox.mu.Lock()
	calls, entries := e.inbox.ackMany-calls0, e.inbox.ackEntries-entries0
	e.inbox.mu.Unlock()
	loops := len(e.room.allLoops())
	if entries != n || calls > 2*loops {
		t.Fatalf("%d ACK frames reached the store as %d entries in %d AckMany calls, want %d in at most %d (2 per loop)",
			n, entries, calls, n, 2*loops)
	}
}

// ackChunks keeps every call within the AckMany bounds, in order, and
// cuts no more than it must.
func TestAckChunks(t *testing.T) {
	ids := func(n int) []uint64 { return make([]uint64, n) }
	reqs := func(sizes ...int) []push.AckReq {
		out := make([]push.AckReq, len(sizes))
		for i, s := range sizes {
			out[i] = push.AckReq{UID: "u", Apps: []uint32{1}, IDs: ids(s)}
		}
		return out
	}
	many := make([]int, push.MaxAckEntries+5)
	for i := range many {
		many[i] = 1
	}
	for _, tc := range []struct {
		name string
		reqs []push.AckReq
		want [][2]int
	}{
		{"one", reqs(3), [][2]int{{0, 1}}},
		{"entries", reqs(many...), [][2]int{{0, push.MaxAckEntries}, {push.MaxAckEntries, push.MaxAckEntries + 5}}},
		{"ids", reqs(65535, 1, 65534, 2), [][2]int{{0, 2}, {2, 4}}},
		{"ids just past", reqs(65535, 2), [][2]int{{0, 1}, {1, 2}}},
	} {
		got := ackChunks(nil, tc.reqs)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: chunks %v, want %v", tc.name, got, tc.want)
		}
		for _, c := range got {
			if err := push.CheckAckBatch(tc.reqs[c[0]:c[1]]); err != nil {
				t.Errorf("%s: chunk %v: %v", tc.name, c, err)
			}
		}
	}
}
