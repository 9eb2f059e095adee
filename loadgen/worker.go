package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Fleet is a load running in this process or spread over worker processes.
type Fleet interface {
	Stats() Stats
	Close() error
}

// fleetOpts says how to spread a load over processes.
type fleetOpts struct {
	PerProc  int      // connections per process at most
	Self     string   // executable to re-run as a worker
	SelfArgs []string // arguments that reach Main (e.g. "bench")
	Stderr   io.Writer
}

// startFleet runs cfg in this process when it fits, else in
// ceil(N/PerProc) worker processes, each from its own source address.
func startFleet(ctx context.Context, cfg LoadConfig, o fleetOpts) (Fleet, error) {
	if cfg.N <= o.PerProc || o.PerProc <= 0 {
		return StartLoad(ctx, cfg)
	}
	k := (cfg.N + o.PerProc - 1) / o.PerProc
	rf := &remoteFleet{}
	off := 0
	for w := 0; w < k; w++ {
		sub := cfg
		sub.N = min(o.PerProc, cfg.N-off)
		sub.First = cfg.First + off
		sub.Rate = cfg.Rate / float64(k)
		if len(cfg.Sources) <= 1 {
			// ephemeral ports are per source address: one address per worker
			sub.Sources = []string{fmt.Sprintf("127.0.0.%d", 2+w)}
		}
		off += sub.N
		p, err := startWorker(ctx, sub, o)
		if err != nil {
			_ = rf.Close()
			return nil, err
		}
		rf.procs = append(rf.procs, p)
	}
	return rf, nil
}

type remoteFleet struct{ procs []*workerProc }

func (f *remoteFleet) Stats() Stats {
	var s Stats
	for _, p := range f.procs {
		s = s.Merge(p.stats())
	}
	return s
}

func (f *remoteFleet) Close() error {
	var errs []error
	for _, p := range f.procs {
		p.stop()
	}
	for _, p := range f.procs {
		errs = append(errs, p.wait())
	}
	return errors.Join(errs...)
}

// workerProc is one worker process; it sends Stats as JSON lines on stdout
// and stops when its stdin closes.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	mu    sync.Mutex
	last  Stats
	err   error
}

func startWorker(ctx context.Context, cfg LoadConfig, o fleetOpts) (*workerProc, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, o.SelfArgs...), "worker", "-config", string(js))
	cmd := exec.CommandContext(ctx, o.Self, args...)
	cmd.Stderr = o.Stderr
	cmd.WaitDelay = 5 * time.Second
	p := &workerProc{cmd: cmd, done: make(chan struct{}), last: Stats{Target: cfg.N}}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen worker %s: %w", o.Self, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var s Stats
			if json.Unmarshal(sc.Bytes(), &s) == nil {
				p.mu.Lock()
				p.last = s
				p.mu.Unlock()
			}
		}
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
	}()
	return p, nil
}

func (p *workerProc) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *workerProc) stop() { _ = p.stdin.Close() }

func (p *workerProc) wait() error {
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("loadgen worker: %w", p.err)
	}
	return nil
}

// runWorker is the "worker" subcommand: hold a slice of the load, report
// Stats on stdout every 200 ms, stop when stdin closes or -max passes.
func runWorker(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	js := fs.String("config", "", "LoadConfig as JSON")
	maxDur := fs.Duration("max", time.Hour, "stop by itself after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg LoadConfig
	if err := json.Unmarshal([]byte(*js), &cfg); err != nil {
		return fmt.Errorf("%w: worker -config: %v", ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *maxDur)
	defer cancel()
	l, err := StartLoad(ctx, cfg)
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	enc := json.NewEncoder(stdout)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := enc.Encode(l.Stats()); err != nil {
				cancel()
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	final := l.Stats()
	err = l.Close()
	_ = enc.Encode(final)
	return err
}

// selfExe is the executable that workers and spawned targets run.
func selfExe() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return os.Args[0]
}
