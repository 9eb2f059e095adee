package loadgen

import (
	"os"
	"testing"
	"time"
)

// pidCPUTime reads this process's CPU time, which grows with work done.
func TestPidCPUTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		zero bool
	}{
		{"self", os.Getpid(), false},
		{"no such process", 1 << 30, true},
	} {
		before := pidCPUTime(tc.pid)
		if tc.zero {
			if before != 0 {
				t.Errorf("%s: %v", tc.name, before)
			}
			continue
		}
		x := 0
		for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
			x++
		}
		after := pidCPUTime(tc.pid)
		if after-before < 50*time.Millisecond || x == 0 {
			t.Errorf("%s: CPU %v -> %v over 100 ms of spinning", tc.name, before, after)
		}
	}
}
