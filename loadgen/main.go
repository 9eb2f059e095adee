package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/lcpush/lcpush/loadgen/naive"
)

const usageText = `load tool: loopback only, every run bounded in time and count

usage (SUB is the subcommand that reaches Main, "bench" in lcpush):
  lcpush bench idle   [flags]   (a) N idle authenticated connections: memory per connection
  lcpush bench storm  [flags]   (b) connect storm past the room's cap (-max-conns), then a health check
  lcpush bench fanout [flags]   (c) broadcast rounds to N connections, then a sustained stream
  lcpush bench unicast [flags]  (d) open-loop pushes to one uid each at -rates, N connections online
  lcpush bench qos-stream [flags]  a -stream of broadcasts at -qos, one id each: server RSS every second, every client checked
  lcpush bench bcast-qos [flags]   qos-stream at QoS 0, then QoS 1, each on a fresh server, -runs times: RSS side by side
                                   (defaults: -n 5000 -stream 60s -stream-rate 10 -store bolt)
  lcpush bench bcast [flags]       one broadcast at -bcast-rate: its job through every center (-api, comma separated),
                                   the rate the clients saw, every client counted
  lcpush bench sustain [flags]     closed loop: -publishers calls in flight, one API call per broadcast, for -stream (10 s);
                                   deliveries/s from the first send to the last receive, every client checked, -runs fresh servers
  lcpush bench smoke  [flags]   idle + fanout (+ unicast at 50/s against lcpush) with N=50 for a few seconds (CI)
  lcpush bench compare DIR [OUT]      side-by-side tables (compare.md) and SVG charts of the runs under DIR (OUT: DIR/compare)
  lcpush bench redraw DIR             draw the SVG charts under DIR again from the values they hold (e.g. docs/bench)
  lcpush bench naive-server [flags]   the goroutine-per-connection baseline server
  lcpush bench worker -config JSON    (internal) one client process of a large N

run "lcpush bench idle -h" for the flags.
`

// Main runs the load tool. args are the arguments after the subcommand
// that selected the tool; results go under -out, the summary to stdout,
// progress bars to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usageText)
		return nil
	}
	switch args[0] {
	case "worker":
		return runWorker(ctx, args[1:], os.Stdin, stdout)
	case "naive-server":
		return runNaive(ctx, args[1:], stderr)
	case "compare":
		if len(args) < 2 || len(args) > 3 {
			return fmt.Errorf("%w: compare DIR [OUT]", ErrUsage)
		}
		out := filepath.Join(args[1], "compare")
		if len(args) == 3 {
			out = args[2]
		}
		if err := Compare(args[1], out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "compare: %s\n", filepath.Join(out, "compare.md"))
		return nil
	case "redraw":
		if len(args) != 2 {
			return fmt.Errorf("%w: redraw DIR", ErrUsage)
		}
		done, err := redrawCharts(args[1])
		for _, p := range done {
			fmt.Fprintf(stdout, "redrawn: %s\n", p)
		}
		return err
	case "idle", "fanout", "storm", "unicast", "smoke", "qos-stream", "bcast-qos", "bcast", "sustain":
		return runCommand(ctx, args[0], args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
}

func runCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runOpts
	fs.StringVar(&o.TargetKind, "target", "lcpush", "server to start and measure: lcpush, naive, nats (nats-server), mqtt (mosquitto) or centrifugo (centrifugo v6 on PATH or ~/go/bin, WebSocket clients) (ignored with -room)")
	fs.StringVar(&o.Load.Transport, "transport", transportTCP, "lcpush clients: tcp (raw frames) or ws (WebSocket on the room's -room-ws-addr, /v1/ws, lcpush.v1; with -room, the addresses are WebSocket listeners)")
	fs.StringVar(&o.Bin, "bin", selfExe(), "binary holding the server and this tool (re-run for targets and workers)")
	selfArgs := fs.String("self-args", "bench", "arguments of -bin that reach the load tool (space separated)")
	rooms := fs.String("room", "", "measure a running server: room address(es), comma separated (loopback)")
	api := fs.String("api", "", "with -room: push API base URL, e.g. http://127.0.0.1:8000; bcast: more centers' after commas (the job is read through each)")
	adminURL := fs.String("admin", "", "with -room: admin base URL (/metrics, /debug/pprof), e.g. http://127.0.0.1:9000")
	pids := fs.String("pid", "", "with -room: server process id(s), comma separated, for their RSS (summed)")
	apiKey := fs.String("api-key", demoAPIKey, "with -room: API key of -app")
	secret := fs.String("secret", demoSecret, "with -room: secret of -app (tokens are signed locally)")
	app := fs.Uint("app", 1, "with -room: app id")
	fs.IntVar(&o.Load.N, "n", 1000, "connections")
	fs.Float64Var(&o.Load.Rate, "rate", 5000, "authentications started per second")
	fs.IntVar(&o.Load.HB, "hb", 60, "heartbeat seconds asked for")
	fs.IntVar(&o.Load.Retry, "retry", 0, "dial a login the server refused (closed before AUTH_OK, e.g. overloaded) again, up to this many times, backing off 0.5 s to 8 s")
	fs.IntVar(&o.Load.Loops, "loops", 2, "client event loops per process (they also dial)")
	sources := fs.String("src", "", "loopback source addresses, comma separated (default 127.0.0.1, one per worker process); each a.b.c.d is extended with a.b+k.c.d when it would hold more connections to a room than the kernel's source-port search handles cheaply")
	fs.IntVar(&o.PerProc, "per-proc", 18000, "connections per client process; more spawn worker processes")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "the whole run stops after this long")
	fs.StringVar(&o.Out, "out", "results", "results folder (a <scenario>-<timestamp> folder is made inside)")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress bars")
	fs.IntVar(&o.Rounds, "rounds", 20, "fanout: broadcast rounds")
	fs.IntVar(&o.QoS, "qos", 0, "fanout: QoS of the pushes (1 = stored and ACKed)")
	fs.DurationVar(&o.Gap, "gap", 200*time.Millisecond, "fanout: pause between rounds")
	fs.DurationVar(&o.RoundTO, "round-timeout", 10*time.Second, "fanout: give up on a round after this long")
	fs.DurationVar(&o.StreamDur, "stream", 5*time.Second, "fanout: sustained stream duration (0: none)")
	fs.Float64Var(&o.StreamRate, "stream-rate", 20, "fanout: broadcasts per second during the stream")
	fs.IntVar(&o.PayloadLen, "payload", 256, "payload bytes (first 8: send time, next 8: round)")
	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "idle: wait before each memory reading")
	fs.IntVar(&o.Load.Dialers, "dialers", 8, "ignored: the event loops dial (kept so older commands run)")
	fs.StringVar(&o.ServerCPU, "server-cpu", "", "pin the started server with taskset -c (e.g. 0; run the tool itself under taskset -c 1)")
	fs.StringVar(&o.Store, "store", "memory", "message store of the started lcpush: memory or bolt (embedded, fsync per commit)")
	fs.IntVar(&o.MaxConns, "max-conns", 0, "room.max_conns of the started lcpush (0: 18000)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this tool process (not the server, not workers) to this file")
	rates := fs.String("rates", "1000,5000", "unicast: pushes per second, one step each, comma separated")
	fs.DurationVar(&o.StepDur, "step", 10*time.Second, "unicast: duration of each rate step")
	fs.IntVar(&o.Senders, "senders", 64, "unicast: concurrent push API requests at most")
	fs.Float64Var(&o.BcastRate, "bcast-rate", 0, "bcast: deliveries per second asked of the broadcast (0: the app's broadcast_rate)")
	fs.DurationVar(&o.Drain, "drain", 30*time.Second, "qos-stream, bcast: wait this long for the last deliveries and for the job to end")
	fs.IntVar(&o.TTL, "ttl", 60, "bcast: the broadcast's ttl in seconds")
	fs.DurationVar(&o.Hold, "hold", 0, "bcast: keep the connections open this long after the job (a script counts store rows meanwhile)")
	runs := fs.Int("runs", 1, "bcast-qos: pairs of runs (QoS 0, QoS 1); medians of the ratios; sustain: runs, each on a fresh server")
	fs.IntVar(&o.Publishers, "publishers", defaultPublishers, "sustain: lcpush: keep-alive HTTP connections, each posting its next broadcast when answered")
	fs.IntVar(&o.NATSWindow, "nats-window", defaultNATSWindow, "sustain: nats: one connection, PUB+PING per message, at most this many PINGs unanswered")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cmd == "bcast-qos" {
		// The measurement of issue 15 unless told otherwise: 5,000
		// connections, 60 s at 10 broadcasts/s (50,000 deliveries/s: what QoS 1
		// sustained here, 20/s had the job slots answer 429), the default store (bolt).
		for name, v := range map[string]string{"n": "5000", "stream": "60s", "stream-rate": "10", "store": "bolt"} {
			if !flagSet(fs, name) {
				_ = fs.Set(name, v)
			}
		}
		if *runs < 1 || *runs > 20 {
			return fmt.Errorf("%w: -runs in 1..20", ErrUsage)
		}
	}
	if cmd == "sustain" {
		if !flagSet(fs, "stream") {
			o.StreamDur = 10 * time.Second
		}
		if o.StreamDur <= 0 || *runs < 1 || *runs > 20 || o.Publishers < 1 || o.Publishers > 256 {
			return fmt.Errorf("%w: sustain: -stream > 0, -runs in 1..20, -publishers in 1..256", ErrUsage)
		}
	}
	if (cmd == "qos-stream" || cmd == "bcast-qos") && (o.StreamDur <= 0 || o.StreamRate*o.StreamDur.Seconds() >= maxRounds-1) {
		return fmt.Errorf("%w: -stream > 0 and -stream-rate x -stream below %d broadcasts (one round id each)", ErrUsage, maxRounds-1)
	}
	o.SelfArgs = strings.Fields(*selfArgs)
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 || v > 1e6 {
			return fmt.Errorf("%w: -rates: %q", ErrUsage, r)
		}
		o.Rates = append(o.Rates, v)
	}
	if o.StepDur <= 0 || o.StepDur > time.Hour {
		return fmt.Errorf("%w: -step in (0, 1h]", ErrUsage)
	}
	if *sources != "" {
		o.Load.Sources = strings.Split(*sources, ",")
	}
	if o.Load.Transport != transportTCP && o.Load.Transport != transportWS {
		return fmt.Errorf("%w: -transport tcp or ws", ErrUsage)
	}
	if o.Load.N <= 0 || o.Load.N > 200000 {
		return fmt.Errorf("%w: -n must be in 1..200000", ErrUsage)
	}
	if o.Rounds < 0 || o.Rounds >= maxRounds || o.StreamRate <= 0 {
		return fmt.Errorf("%w: -rounds in 0..%d, -stream-rate > 0", ErrUsage, maxRounds-1)
	}
	if *rooms != "" {
		apis := strings.Split(*api, ",")
		t := &Target{Kind: "external", Rooms: strings.Split(*rooms, ","), API: apis[0], APIs: apis[1:], Admin: *adminURL,
			App: uint32(*app), Secret: *secret, APIKey: *apiKey}
		if err := checkLoopback(t.Rooms...); err != nil {
			return err
		}
		for i, p := range strings.Split(*pids, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			v, err := strconv.Atoi(p)
			if err != nil || v <= 0 {
				return fmt.Errorf("%w: -pid %q", ErrUsage, p)
			}
			if i == 0 {
				t.PID = v
			} else {
				t.PIDs = append(t.PIDs, v)
			}
		}
		for _, u := range append([]string{t.Admin}, apis...) {
			if u != "" {
				if err := checkLoopbackURL(u); err != nil {
					return err
				}
			}
		}
		o.External = t
	}
	full := append([]string{cmd}, args...)
	if cmd == "bcast-qos" {
		return runBcastQoS(ctx, o, *runs, full, stdout, stderr)
	}
	if cmd == "sustain" {
		return runSustain(ctx, o, *runs, full, stdout, stderr)
	}
	if cmd != "smoke" {
		o.Scenario = cmd
		return runOne(ctx, o, full, stdout, stderr)
	}
	o.Load.N = min(o.Load.N, 50)
	if !flagSet(fs, "n") {
		o.Load.N = 50
	}
	o.Rounds, o.StreamDur, o.Settle = min(o.Rounds, 3), min(o.StreamDur, time.Second), min(o.Settle, 200*time.Millisecond)
	o.Timeout = min(o.Timeout, time.Minute)
	o.Rates, o.StepDur = []float64{50}, time.Second
	for _, sc := range []string{"idle", "fanout", "unicast"} {
		if sc == "unicast" && (o.TargetKind == "naive" || o.External != nil) {
			continue // the naive server has no unicast; an external one may not either
		}
		o.Scenario = sc
		if err := runOne(ctx, o, full, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

// startCPUProfile profiles this process until the returned func runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%w: -cpuprofile: %v", ErrUsage, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: -cpuprofile: %v", ErrUsage, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// commandLine is the shell command that runs the load tool with args:
// "lcpush", then selfArgs (the arguments that reach the tool, "bench"),
// then args, each quoted when the shell would split or expand it. It names
// the binary "lcpush", not this process's path: under go run that is a
// temporary file.
func commandLine(selfArgs, args []string) string {
	words := append([]string{"lcpush"}, selfArgs...)
	words = append(words, args...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

// shellQuote returns w as one POSIX shell word.
func shellQuote(w string) string {
	if w != "" && strings.IndexFunc(w, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) < 0 {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runOne(ctx context.Context, o runOpts, args []string, stdout, stderr io.Writer) error {
	_, _, err := runOneResult(ctx, o, args, stdout, stderr)
	return err
}

// runOneResult is runOne that also returns the result and its folder.
func runOneResult(ctx context.Context, o runOpts, args []string, stdout, stderr io.Writer) (*Result, string, error) {
	res, err := run(ctx, o, stderr)
	if res == nil {
		return nil, "", err
	}
	res.Args = args
	res.Command = commandLine(o.SelfArgs, args)
	if res.Seconds == 0 {
		res.Seconds = time.Since(res.Started).Seconds()
	}
	kind := o.TargetKind
	if o.External != nil {
		kind = "external"
	} else if res.Target != nil {
		kind = res.Target.Kind // lcpush-ws with -transport ws
	}
	dir := filepath.Join(o.Out, fmt.Sprintf("%s-%s-%d-%s", o.Scenario, kind, o.Load.N, res.Started.Format("20060102-150405")))
	if werr := writeResults(dir, res); werr != nil {
		return res, dir, errors.Join(err, werr)
	}
	fmt.Fprintf(stdout, "\n%s against %s, N=%d\n\n", o.Scenario, kind, o.Load.N)
	summary(stdout, res)
	fmt.Fprintf(stdout, "results: %s\n", dir)
	return res, dir, err
}

// runNaive is the naive-server subcommand; it serves until ctx ends.
func runNaive(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("naive-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7100", "client TCP address")
	httpAddr := fs.String("http", "127.0.0.1:7101", "push trigger, /metrics and pprof address")
	app := fs.Uint("app", 1, "app id")
	secret := fs.String("secret", demoSecret, "app secret")
	hb := fs.Int("hb", 60, "heartbeat seconds granted")
	maxDur := fs.Duration("max", 2*time.Hour, "stop by itself after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr, *httpAddr); err != nil {
		return err
	}
	s, err := naive.New(naive.Config{Addr: *addr, HTTPAddr: *httpAddr, HB: *hb,
		Secrets: map[uint32][]byte{uint32(*app): []byte(*secret)}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *maxDur)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "naive-server on "+s.Addr()+", http "+s.HTTPAddr()+", pid "+strconv.Itoa(os.Getpid()))
	<-ctx.Done()
	sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer c2()
	return s.Shutdown(sctx)
}
