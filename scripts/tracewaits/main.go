// Command tracewaits reads a Go runtime trace (the server's, written by
// `LCPUSH_UNICAST_TRACE=DIR lcpush bench unicast`) and prints how long
// goroutines waited runnable before they ran (p50/p99/p999/max), the
// longest such waits with what ran on the processors meanwhile, and the
// longest running slices. It is how docs/benchmarks.md attributes the
// unicast tail on one core:
//
//	cd scripts/tracewaits && go run . /tmp/ut/server-trace-5000
//
// A module of its own: golang.org/x/exp/trace stays out of the product's
// dependencies.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

func main() {
	top := flag.Int("top", 5, "longest waits (and running slices) to show")
	blocking := flag.Bool("blocking", false, "instead: syscall durations, and waits on -wait frames (blocking.go)")
	waits := flag.String("wait", "bbolt.(*DB).Batch,bbolt.(*DB).beginRWTx", "with -blocking: comma-separated frames whose waits to time")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracewaits [-top N | -blocking [-wait FRAMES]] TRACE")
		os.Exit(2)
	}
	var err error
	if *blocking {
		err = runBlocking(flag.Arg(0), strings.Split(*waits, ","), os.Stdout)
	} else {
		err = run(flag.Arg(0), *top)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracewaits:", err)
		os.Exit(1)
	}
}

type span struct {
	g    trace.GoID
	s, e trace.Time
	stk  string
}

func stk(s trace.Stack) string {
	var b []string
	for f := range s.Frames() {
		b = append(b, fmt.Sprintf("%s:%d", f.Func, f.Line))
		if len(b) == 6 {
			break
		}
	}
	return strings.Join(b, " <- ")
}

func run(file string, top int) error {
	runnableAt := map[trace.GoID]trace.Time{}
	runStart := map[trace.GoID]trace.Time{}
	var waits, spans []span
	var t0 trace.Time
	err := walkTrace(file, func(ev *trace.Event) {
		if t0 == 0 {
			t0 = ev.Time()
		}
		st, g, from, to, ok := goTransition(ev)
		if !ok {
			return
		}
		switch {
		case to == trace.GoRunnable:
			runnableAt[g] = ev.Time()
		case to == trace.GoRunning:
			if t, ok := runnableAt[g]; ok {
				waits = append(waits, span{g: g, s: t, e: ev.Time()})
				delete(runnableAt, g)
			}
			runStart[g] = ev.Time()
		case from == trace.GoRunning:
			if s, ok := runStart[g]; ok {
				spans = append(spans, span{g, s, ev.Time(), stk(st.Stack)})
				delete(runStart, g)
			}
		}
	})
	if err != nil {
		return err
	}
	if len(waits) == 0 {
		return fmt.Errorf("%s: no goroutine waits in the trace", file)
	}
	d := func(a, b trace.Time) float64 { return float64(b-a) / 1e6 }
	sort.Slice(waits, func(i, j int) bool { return waits[i].e-waits[i].s > waits[j].e-waits[j].s })
	ms := make([]float64, len(waits))
	for i, w := range waits {
		ms[i] = d(w.s, w.e)
	}
	sort.Float64s(ms)
	q := func(p float64) float64 { return ms[min(len(ms)-1, int(p*float64(len(ms))))] }
	fmt.Printf("runnable -> running waits: %d; p50 %.3f ms, p99 %.3f ms, p999 %.3f ms, max %.3f ms\n",
		len(ms), q(0.5), q(0.99), q(0.999), ms[len(ms)-1])
	shown := map[trace.Time]bool{}
	for _, w := range waits {
		if len(shown) >= top {
			break
		}
		if shown[w.s/1e6] { // one window per millisecond: the waits of a burst start together
			continue
		}
		shown[w.s/1e6] = true
		fmt.Printf("\ng%d waited %.2f ms from %.3f s; ran meanwhile (ms, end of the slice):\n", w.g, d(w.s, w.e), d(t0, w.s)/1e3)
		agg := map[string]trace.Time{}
		for _, sp := range spans {
			if sp.e > w.s && sp.s < w.e {
				agg[sp.stk] += min(sp.e, w.e) - max(sp.s, w.s)
			}
		}
		keys := make([]string, 0, len(agg))
		for k := range agg {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return agg[keys[i]] > agg[keys[j]] })
		for i, k := range keys {
			if i == 4 {
				break
			}
			if k == "" {
				k = "(exited; no stack)"
			}
			fmt.Printf("  %6.2f  %.220s\n", float64(agg[k])/1e6, k)
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].e-spans[i].s > spans[j].e-spans[j].s })
	fmt.Printf("\nlongest running slices:\n")
	for i := 0; i < top && i < len(spans); i++ {
		sp := spans[i]
		fmt.Printf("  %6.2f ms g%d at %.3f s, ending in %.220s\n", d(sp.s, sp.e), sp.g, d(t0, sp.s)/1e3, sp.stk)
	}
	return nil
}

// walkTrace calls fn with every event of the trace in file. A truncated
// trace ends the walk without an error: what was read is used.
func walkTrace(file string, fn func(*trace.Event)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return err
	}
	for {
		ev, err := r.ReadEvent()
		if err != nil {
			return nil // io.EOF, or a truncated trace
		}
		fn(&ev)
	}
}

// goTransition is ev as a goroutine's state change, if it is one.
func goTransition(ev *trace.Event) (st trace.StateTransition, g trace.GoID, from, to trace.GoState, ok bool) {
	if ev.Kind() != trace.EventStateTransition {
		return st, 0, 0, 0, false
	}
	st = ev.StateTransition()
	if st.Resource.Kind != trace.ResourceGoroutine {
		return st, 0, 0, 0, false
	}
	from, to = st.Goroutine()
	return st, st.Resource.Goroutine(), from, to, true
}
