package loadgen

import (
	"context"
	"strconv"
	"time"
)

// pidCPUTime returns pid's CPU time so far, user plus system, all threads
// (utime + stime of /proc/PID/stat), or 0 when it cannot be read.
func pidCPUTime(pid int) time.Duration {
	c := procTicks(strconv.Itoa(pid))
	return time.Duration(c.user+c.sys) * clockTick
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
