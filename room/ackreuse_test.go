package room

import (
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// TestAckArraysReused: the ACK queue's reused arrays (its entries, their
// ids, the drain's scratch) never let a later ACK overwrite ids still to
// be applied: ACKs refused by the store, ACKs read during the retries and
// ACKs read after it came back, over many drains, all reach the store
// once and in order.
func TestAckArraysReused(t *testing.T) {
	e := startEnv(t, envOpt{})
	c, _ := e.login(1, "reuser")
	var want []uint64
	next := uint64(1)
	ack := func(n int) {
		ids := make([]uint64, n)
		for i := range ids {
			ids[i] = next
			next++
		}
		want = append(want, ids...)
		c.Write(proto.AppendAck(nil, uint32(next), ids))
	}
	setErr := func(err error) {
		e.inbox.mu.Lock()
		e.inbox.ackErr = err
		e.inbox.mu.Unlock()
	}
	steps := []struct {
		name    string
		refused bool // the store refuses ACKs during the step
		frames  []int
	}{
		{"refused", true, []int{2, 1}},
		{"read during the retries", true, []int{3, 1, 2}},
		{"store back", false, []int{1}},
		{"reuse, one id each", false, []int{1, 1, 1, 1, 1, 1, 1, 1}},
		{"reuse, longer frames", false, []int{5, 40, 2, 300, 1}},
		{"refused again", true, []int{4, 4}},
		{"back again", false, []int{7, 1, 1}},
	}
	for _, st := range steps {
		if st.refused {
			setErr(push.ErrUnavailable)
		} else {
			setErr(nil)
		}
		if st.refused { // a frame per retry: each lands while the refused ones wait
			for _, n := range st.frames {
				retries := counterValue(mAckRetries)
				ack(n)
				testkit.WaitFor(t, st.name+": a retry", testkit.Timeout, func() bool {
					return counterValue(mAckRetries) > retries
				})
			}
			continue
		}
		for _, n := range st.frames {
			ack(n)
		}
		testkit.WaitFor(t, st.name+": every id applied in order", 5*time.Second, func() bool {
			return slices.Equal(e.inbox.acked("reuser"), want)
		})
	}
	c.ExpectQuiet(0) // every ACK was accepted
	if got := e.inbox.acked("reuser"); !slices.Equal(got, want) {
		t.Fatalf("store has %v, want %v", got, want)
	}
}
