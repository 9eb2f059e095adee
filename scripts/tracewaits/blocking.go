package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// runBlocking prints the distribution of two kinds of blocking in a trace:
// syscalls, by their syscall function (syscall.Fdatasync, unix.write...),
// and waits whose stack holds one of waitFrames (the first that matches
// names the row), each followed by the runnable wait before it ran again.
// It is how docs/benchmarks.md splits bolt's unicast tail into the fsync,
// the batch's wait and the commit:
//
//	cd scripts/tracewaits && go run . -blocking /tmp/utb/server-trace-1000
func runBlocking(file string, waitFrames []string, w io.Writer) error {
	type open struct {
		at   trace.Time
		name string
	}
	sys := map[trace.GoID]open{}      // in a syscall
	waiting := map[trace.GoID]open{}  // blocked on a named frame
	runnable := map[trace.GoID]open{} // woken from one, not running yet
	durs := map[string][]time.Duration{}
	err := walkTrace(file, func(ev *trace.Event) {
		_, g, from, to, ok := goTransition(ev)
		if !ok {
			return
		}
		switch {
		case to == trace.GoSyscall:
			sys[g] = open{ev.Time(), syscallName(ev.Stack())}
		case from == trace.GoSyscall:
			if o, ok := sys[g]; ok {
				durs["syscall "+o.name] = append(durs["syscall "+o.name], time.Duration(ev.Time()-o.at))
				delete(sys, g)
			}
		}
		switch {
		case to == trace.GoWaiting:
			if name := matchFrame(ev.Stack(), waitFrames); name != "" {
				waiting[g] = open{ev.Time(), name}
			}
		case from == trace.GoWaiting:
			if o, ok := waiting[g]; ok {
				durs["wait "+o.name] = append(durs["wait "+o.name], time.Duration(ev.Time()-o.at))
				delete(waiting, g)
				runnable[g] = open{ev.Time(), o.name}
			}
		case from == trace.GoRunnable && to == trace.GoRunning:
			if o, ok := runnable[g]; ok {
				k := "wait " + o.name + ", then runnable"
				durs[k] = append(durs[k], time.Duration(ev.Time()-o.at))
				delete(runnable, g)
			}
		}
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(durs))
	for k := range durs {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "| blocking | n | p50 | p99 | max | total |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, k := range names {
		d := durs[k]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		q := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
		fmt.Fprintf(w, "| %s | %d | %v | %v | %v | %v |\n", k, len(d), q(.5), q(.99), d[len(d)-1], sum)
	}
	return nil
}

// syscallName is the innermost frame of the syscall or x/sys/unix package.
func syscallName(s trace.Stack) string {
	for f := range s.Frames() {
		if name, ok := strings.CutPrefix(f.Func, "syscall."); ok {
			return name
		}
		if name, ok := strings.CutPrefix(f.Func, "golang.org/x/sys/unix."); ok {
			return name
		}
	}
	return "other"
}

// matchFrame is the first of frames found in the stack, innermost first.
func matchFrame(s trace.Stack, frames []string) string {
	for f := range s.Frames() {
		for _, m := range frames {
			if strings.Contains(f.Func, m) {
				return m
			}
		}
	}
	return ""
}
