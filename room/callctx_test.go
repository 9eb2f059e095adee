package room

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
)

// TestCallCtxShared: calls that start together share one deadline context,
// whose deadline is about callTimeout away; a later call gets a new one.
func TestCallCtxShared(t *testing.T) {
	a, b := callCtx(), callCtx()
	if a != b {
		t.Fatal("two calls in one window got different contexts")
	}
	dl, ok := a.Deadline()
	if left := time.Until(dl); !ok || left > callTimeout || left < callTimeout-sharedCallFor-time.Second {
		t.Fatalf("deadline in %v (set %v), want about %v", left, ok, callTimeout)
	}
	testkit.WaitFor(t, "a new shared context", 2*time.Second, func() bool { return callCtx() != a })
	if a.Err() != nil {
		t.Fatalf("the old context ended early: %v", a.Err())
	}
	if n := testing.AllocsPerRun(100, func() { _ = callCtx() }); n > 0.1 {
		t.Fatalf("%v allocations per call", n)
	}
}
