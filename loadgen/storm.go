package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StormResult is scenario (b): a connect storm past the room's cap, then
// a health check of the room.
type StormResult struct {
	Cap           int     `json:"max_conns"`           // room.max_conns of the started room (0: unknown)
	Tried         int     `json:"tried"`               // connections attempted
	Authed        int64   `json:"authed"`              // AUTH_OK received
	Refused       int64   `json:"refused"`             // closed by the room before AUTH_OK
	ServerRefused float64 `json:"server_refused"`      // lcpush_room_refused_total{reason="max_conns"}
	AuthedPerSec  float64 `json:"authed_per_sec"`      // until the last AUTH_OK
	HandshakeP99  float64 `json:"handshake_p99_ms"`    // dial start to AUTH_OK
	Ready         bool    `json:"readyz_ok"`           // /readyz answered 200 after the storm
	ReadyMs       float64 `json:"readyz_ms"`           // how long /readyz took
	Online        int64   `json:"online_before_check"` // authed and still open
	PongWaitSec   float64 `json:"pong_wait_seconds"`   // one heartbeat interval and a margin
	Pongs         int64   `json:"pongs"`               // PONGs received during the wait
	DroppedAfter  int64   `json:"dropped"`             // authed connections the room closed

	// CPU spent during the connect phase (first dial to the end of the
	// phase), from /proc/PID/stat: the server process(es), and this tool
	// when its clients ran in-process (0 with worker processes).
	ServerUserMs    float64 `json:"server_user_ms"`
	ServerSysMs     float64 `json:"server_sys_ms"`
	ServerUsPerConn float64 `json:"server_cpu_us_per_conn"` // (user + sys) / authed
	ClientUsPerConn float64 `json:"client_cpu_us_per_conn"` // the tool's (user + sys) / authed
	// CPUs: each core's share during the connect phase, from /proc/stat,
	// softirq apart: on loopback the kernel runs both ends' TCP in the
	// sender's softirq, which /proc/PID/stat may not charge to either
	// process. A core near 100 % busy is the storm's limit.
	CPUs    []CoreShare `json:"cpus,omitempty"`
	Profile string      `json:"profile,omitempty"` // LCPUSH_STORM_PROFILE: the server's Go CPU profile of the storm
	Perf    string      `json:"perf,omitempty"`    // LCPUSH_STORM_PERF: perf record of the server during the storm
}

// Environment of the storm scenario (no flags, so that every command line
// of the other scenarios stays the same):
//
//	LCPUSH_STORM_PROFILE=FILE  the server's Go CPU profile during the storm
//	                           (/debug/pprof/profile, whole seconds from the
//	                           first dial), written to FILE
//	LCPUSH_STORM_PERF=FILE     perf record -e cpu-clock -g of the server process(es)
//	                           during the connect phase (kernel frames too),
//	                           written to FILE; needs perf on PATH
//	LCPUSH_STORM_PERF_ALL=1    with LCPUSH_STORM_PERF: every CPU instead
//	                           (perf -a): the tool and the softirq work of
//	                           loopback are in it too (perf report --sort
//	                           cpu,comm,dso)
const (
	envStormProfile = "LCPUSH_STORM_PROFILE"
	envStormPerf    = "LCPUSH_STORM_PERF"
	envStormPerfAll = "LCPUSH_STORM_PERF_ALL"
)

// cpuTicks is utime and stime of one process, in clock ticks.
type cpuTicks struct{ user, sys int64 }

// clockTick is USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procTicks reads utime and stime (fields 14 and 15) of /proc/PID/stat, or
// zero when the process is gone or not on Linux.
func procTicks(pid string) cpuTicks {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return cpuTicks{}
	}
	return parseProcStat(b)
}

// parseProcStat reads utime and stime of a /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses: fields are
// counted after its last ')'.
func parseProcStat(b []byte) cpuTicks {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuTicks{}
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return cpuTicks{}
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return cpuTicks{}
	}
	return cpuTicks{u, s}
}

// CoreShare is one core's time during a phase, in percent of the phase.
type CoreShare struct {
	CPU     int     `json:"cpu"`
	Busy    float64 `json:"busy_pct"` // everything but idle and iowait
	User    float64 `json:"user_pct"` // user + nice
	Sys     float64 `json:"sys_pct"`
	Softirq float64 `json:"softirq_pct"` // irq + softirq
}

// coreTicks is one /proc/stat "cpuN" line: user nice system idle iowait
// irq softirq steal.
type coreTicks [8]int64

// readCores reads the per-core lines of /proc/stat (nil off Linux).
func readCores() []coreTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	return parseCores(b)
}

// parseCores reads the "cpuN" lines of a /proc/stat.
func parseCores(b []byte) []coreTicks {
	var out []coreTicks
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var c coreTicks
		for i := range c {
			c[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		out = append(out, c)
	}
	return out
}

// coreShares turns two readings into each core's shares.
func coreShares(a, b []coreTicks) []CoreShare {
	if len(a) != len(b) {
		return nil
	}
	out := make([]CoreShare, 0, len(a))
	pct := func(n, total int64) float64 { return float64(n) * 100 / float64(max(total, 1)) }
	for i := range a {
		var d coreTicks
		var total int64
		for j := range d {
			d[j] = b[i][j] - a[i][j]
			total += d[j]
		}
		out = append(out, CoreShare{CPU: i, Busy: pct(total-d[3]-d[4], total), User: pct(d[0]+d[1], total),
			Sys: pct(d[2], total), Softirq: pct(d[5]+d[6], total)})
	}
	return out
}

// stormProbe measures the server during the connect phase of a storm:
// made just before the first dial, ended as soon as the phase is over.
type stormProbe struct {
	pids     []string
	server   cpuTicks
	self     cpuTicks
	cores    []coreTicks
	profile  chan error // the pprof fetch, when asked
	perf     *exec.Cmd
	perfFile string
}

func (t *Target) pidList() []string {
	var out []string
	for _, pid := range append([]int{t.PID}, t.PIDs...) {
		if pid > 0 {
			out = append(out, strconv.Itoa(pid))
		}
	}
	return out
}

func sumCPU(pids []string) cpuTicks {
	var c cpuTicks
	for _, p := range pids {
		t := procTicks(p)
		c.user += t.user
		c.sys += t.sys
	}
	return c
}

// stormBegin takes the first CPU readings and starts the profilers asked
// for in the environment. Only for the storm scenario; nil otherwise.
func stormBegin(ctx context.Context, t *Target, o runOpts, stderr io.Writer) *stormProbe {
	if o.Scenario != "storm" {
		return nil
	}
	p := &stormProbe{pids: t.pidList()}
	if file := os.Getenv(envStormPerf); file != "" && len(p.pids) > 0 {
		scope := []string{"-p", strings.Join(p.pids, ",")}
		if os.Getenv(envStormPerfAll) == "1" {
			scope = []string{"-a"}
		}
		cmd := exec.CommandContext(ctx, "perf", append([]string{"record", "-q", "-e", "cpu-clock", "-g", "-F", "1999", "-o", file}, scope...)...)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "storm: %s: %v\n", envStormPerf, err)
		} else {
			p.perf, p.perfFile = cmd, file
			time.Sleep(300 * time.Millisecond) // perf attaches to every thread first
		}
	}
	if file := os.Getenv(envStormProfile); file != "" && t.Admin != "" {
		// Long enough for the phase at the asked rate, at least 1 s.
		secs := max(1, int(float64(o.Load.N)/max(o.Load.Rate, 1))+1)
		p.profile = make(chan error, 1)
		go func() {
			f, err := os.Create(file)
			if err != nil {
				p.profile <- fmt.Errorf("storm profile: %w", err)
				return
			}
			err = t.get(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.Admin, secs), f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			p.profile <- err
		}()
	}
	p.server = sumCPU(p.pids)
	p.self = procTicks("self")
	p.cores = readCores()
	return p
}

// end takes the second readings and stops perf (the pprof fetch runs its
// seconds out; wait collects it).
func (p *stormProbe) end(sr *StormResult, clientsInProcess bool) {
	srv := sumCPU(p.pids)
	self := procTicks("self")
	sr.CPUs = coreShares(p.cores, readCores())
	sr.ServerUserMs = float64(srv.user-p.server.user) * float64(clockTick/time.Millisecond)
	sr.ServerSysMs = float64(srv.sys-p.server.sys) * float64(clockTick/time.Millisecond)
	if sr.Authed > 0 {
		sr.ServerUsPerConn = (sr.ServerUserMs + sr.ServerSysMs) * 1000 / float64(sr.Authed)
		if clientsInProcess {
			sr.ClientUsPerConn = float64((self.user-p.self.user)+(self.sys-p.self.sys)) * float64(clockTick/time.Microsecond) / float64(sr.Authed)
		}
	}
	if p.perf != nil {
		_ = p.perf.Process.Signal(syscall.SIGINT)
		if err := p.perf.Wait(); err == nil || errors.As(err, new(*exec.ExitError)) {
			sr.Perf = p.perfFile
		}
	}
}

// wait collects the pprof fetch, if one runs.
func (p *stormProbe) wait(sr *StormResult, stderr io.Writer) {
	if p.profile == nil {
		return
	}
	if err := <-p.profile; err != nil {
		fmt.Fprintf(stderr, "storm: %s: %v\n", envStormProfile, err)
		return
	}
	sr.Profile = os.Getenv(envStormProfile)
}

// stormCheck runs after the connect phase: it reads the refusals, asks
// /readyz, then waits one heartbeat interval and checks that every
// connection still online had its PING answered.
func stormCheck(ctx context.Context, t *Target, f Fleet, o runOpts, res *Result, probe *stormProbe, stderr io.Writer) error {
	s := f.Stats()
	sr := &StormResult{Cap: o.MaxConns, Tried: o.Load.N, Authed: s.Authed, Refused: s.Refused,
		AuthedPerSec: res.Connect.PerSec, HandshakeP99: res.Connect.Handshake.P99ms}
	if probe != nil {
		probe.end(sr, res.Processes == 1)
		defer probe.wait(sr, stderr)
	}
	if t.Kind == "lcpush" && sr.Cap == 0 {
		sr.Cap = defaultMaxConns
	}
	res.Storm = sr
	if t.Admin != "" {
		var buf bytes.Buffer
		if t.get(ctx, t.Admin+"/metrics", &buf) == nil {
			sr.ServerRefused = labelledValue(buf.Bytes(), "lcpush_room_refused_total", `reason="max_conns"`)
		}
		start := time.Now()
		sr.Ready = t.get(ctx, t.Admin+"/readyz", io.Discard) == nil
		sr.ReadyMs = float64(time.Since(start)) / 1e6
	}
	sr.Online = s.Authed - s.Dropped
	// The interval asked (-hb); a server granting a longer one fails the
	// check, which is why the bench asks for the room's heartbeat_min.
	hb := o.Load.HB
	if hb <= 0 {
		hb = 30
	}
	wait := time.Duration(hb)*time.Second + 3*time.Second
	sr.PongWaitSec = wait.Seconds()
	bar := newBar(int64(wait/time.Second), "heartbeat check (s)", stderr, o.Quiet)
	end := time.Now().Add(wait)
	for time.Now().Before(end) && ctx.Err() == nil {
		settle(ctx, time.Second)
		_ = bar.Add(1)
		if now := f.Stats(); now.Pongs-s.Pongs >= sr.Online {
			break
		}
	}
	_ = bar.Finish()
	after := f.Stats()
	sr.Pongs = after.Pongs - s.Pongs
	sr.DroppedAfter = after.Dropped
	if !sr.Ready && t.Admin != "" {
		return fmt.Errorf("%w: /readyz failed after the storm", ErrTarget)
	}
	return nil
}

// labelledValue sums the samples of name whose labels contain label.
func labelledValue(text []byte, name, label string) float64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, label) {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		sum += v
	}
	return sum
}
