package loadgen

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/PID/stat's times (USER_HZ: 100 on every
// Linux the project runs on).
const userHZ = 100

// pidCPUTime returns pid's CPU time so far, user plus system, all threads
// (utime + stime of /proc/PID/stat), or 0 when it cannot be read.
func pidCPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state is field 3, utime field 14 and stime field 15.
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / userHZ
}

// targetCPU is the CPU time of every server process of t.
func targetCPU(t *Target) time.Duration {
	var d time.Duration
	for _, pid := range append([]int{t.PID}, t.PIDs...) {
		if pid > 0 {
			d += pidCPUTime(pid)
		}
	}
	return d
}

// settleCPU waits until the server is idle again (under 5% of a core over
// 250 ms), at most max: the work a stream leaves behind (ACKs queued to the
// store, batched status writes) is then counted with it.
func settleCPU(ctx context.Context, t *Target, max time.Duration) time.Duration {
	const window = 250 * time.Millisecond
	prev := targetCPU(t)
	for end := time.Now().Add(max); time.Now().Before(end) && ctx.Err() == nil; {
		settle(ctx, window)
		cur := targetCPU(t)
		if cur-prev <= window/20 {
			return cur
		}
		prev = cur
	}
	return targetCPU(t)
}
