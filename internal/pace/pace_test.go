package pace

import (
	"slices"
	"testing"
	"time"
)

// TestPacer: Until never returns early, with the timerfd and with the
// fallback; the lateness is logged (time.Sleep's is ~1 ms on an idle
// process, the timerfd's tens of µs).
func TestPacer(t *testing.T) {
	for _, p := range []*Pacer{New(), {}} {
		var late []time.Duration
		for i := 0; i < 50; i++ {
			at := time.Now().Add(200 * time.Microsecond)
			p.Until(at)
			d := time.Since(at)
			if d < 0 {
				t.Fatalf("returned %v early", -d)
			}
			late = append(late, d)
		}
		p.Until(time.Now().Add(-time.Second)) // past: at once
		slices.Sort(late)
		t.Logf("timerfd %v: median lateness %v", p.f != nil, late[len(late)/2])
		p.Close()
	}
}
