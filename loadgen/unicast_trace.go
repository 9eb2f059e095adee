package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/trace"
	"strconv"
	"sync"
	"time"
)

// traceEnv names a folder: when set, each measured unicast step writes
// into it a runtime trace of this process (client-trace-RATE) and, from the
// server's admin port, a runtime trace, a CPU profile and the allocations
// of the step (server-trace-RATE, server-profile-RATE, server-allocs-RATE).
// They are what attributes the latency tail: go tool trace, go tool pprof.
const traceEnv = "LCPUSH_UNICAST_TRACE"

func startUnicastTrace(ctx context.Context, t *Target, rate float64, step time.Duration, stderr io.Writer) func() {
	dir := os.Getenv(traceEnv)
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "unicast trace:", err)
		return func() {}
	}
	name := func(s string) string { return filepath.Join(dir, fmt.Sprintf("%s-%.0f", s, rate)) }
	// The server's endpoints take whole seconds and the admin client gives
	// up after 10 s: a second short of the step, at most 9.
	secs := strconv.Itoa(min(9, max(1, int(step.Seconds())-1)))
	var wg sync.WaitGroup
	if t.Admin != "" {
		for _, kind := range []string{"trace", "profile", "allocs"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.Create(name("server-" + kind))
				if err != nil {
					fmt.Fprintln(stderr, "unicast trace:", err)
					return
				}
				defer f.Close()
				if err := t.get(ctx, t.Admin+"/debug/pprof/"+kind+"?seconds="+secs, f); err != nil {
					fmt.Fprintln(stderr, "unicast trace:", err)
				}
			}()
		}
	}
	f, err := os.Create(name("client-trace"))
	if err == nil {
		if err = trace.Start(f); err != nil {
			f.Close()
			f = nil
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "unicast trace:", err)
	}
	return func() {
		if f != nil {
			trace.Stop()
			f.Close()
		}
		wg.Wait()
	}
}
