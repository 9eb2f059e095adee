package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lcpush/lcpush/loadgen"
)

// Config is one chaos run.
type Config struct {
	Cluster ClusterOptions
	// Servers the faults may stop, by kind (redis, mariadb, zookeeper);
	// a fault whose server is missing is an error.
	Servers map[string]*Server

	Devices  int           // default 200
	Rate     float64       // pushes per second, default 300
	Settle   time.Duration // after each fault is over, default 30 s
	Lead     time.Duration // load before each fault, default 2 s
	Drain    time.Duration // pushers paused, wait for the last deliveries, default 10 s
	Baseline time.Duration // a phase without a fault first, default 10 s (negative: none)
	Outage   time.Duration // how long mariadb and zookeeper stay stopped, default 10 s
	Faults   []string      // default DefaultFaults (with store bolt: without redis, mariadb)
	Log      io.Writer
}

// DefaultFaults are the faults of a full run, in order: kill -9 and
// restart of one process of each role, then the servers.
var DefaultFaults = []string{"room", "register", "saver", "center", "coordinator", "redis", "mariadb", "zookeeper"}

// roleProcess is the process a role's fault kills.
var roleProcess = map[string]string{
	"room": "room-a", "register": "register-1", "saver": "saver-1", "center": "center-1",
	"coordinator": "coordinator-1", "dispatcher": "dispatcher-1",
}

// Phase is what one fault did to the load.
type Phase struct {
	Fault  string `json:"fault"`  // none (baseline), room, register, ..., zookeeper
	Target string `json:"target"` // the process or server it hit
	Action string `json:"action"`
	Error  string `json:"error,omitempty"` // the fault itself failed: the run ended here
	// Seconds from the start of the phase; the fault began at FaultAt and
	// was over (restarted and answering) at RestoredAt.
	FaultAt    float64 `json:"fault_at_s"`
	RestoredAt float64 `json:"restored_at_s"`
	Seconds    float64 `json:"seconds"` // pushes were sent for this long

	Sent      int            `json:"sent"`
	Skipped   int64          `json:"skipped"` // turns not sent: maxInFlight requests pending
	Accepted  int            `json:"accepted"`
	Errors    map[string]int `json:"errors"` // by HTTP status or transport error
	Delivered int            `json:"delivered"`
	// Lost: accepted in this phase, not delivered to its device when the
	// phase ended (settle and drain over). LostAtEnd: still not at the end
	// of the run; Late: delivered after the phase ended.
	Lost      int `json:"lost"`
	LostAtEnd int `json:"lost_at_end"`
	Late      int `json:"late"`
	// Duplicates are deliveries beyond the first, counted in the phase they
	// arrived in; Wrong are deliveries to a device the message was not for.
	Duplicates int `json:"duplicates"`
	Wrong      int `json:"wrong_device"`
	// Unaccepted are message ids delivered that no accepted answer named
	// (a push that failed or timed out after the store had it).
	Unaccepted int `json:"unaccepted_delivered"`
	// WaitedReconnect: accepted while the device was connected, not
	// delivered on that connection although it stayed up 5 s or more, and
	// delivered only on a later connection of the device.
	WaitedReconnect int `json:"waited_reconnect"`
	// RecoverS: from the fault to the answer of the last push that failed
	// (or said online 0 for a device connected throughout); 0 when none did.
	// Recovered is false when pushes still failed in the last 5 s of the phase.
	RecoverS float64 `json:"recover_s"`
	// RecoverAfterS is the same from the end of the fault (the restart
	// ready, the server answering again): for the outages, the time the
	// cluster needs once the server is back.
	RecoverAfterS float64 `json:"recover_after_s"`
	Recovered     bool    `json:"recovered"`
	Reconnect     int     `json:"reconnects"` // device connections made in this phase
	// DeviceErrors are ERROR frames the devices got after AUTH_OK (an ACK or
	// a PING refused): 0 means no ACK failed.
	DeviceErrors int `json:"device_errors"`
	AuthFails    int `json:"auth_fails"`
	// LostMsgs are the first messages lost at settle, for a closer look.
	LostMsgs []LostMsg       `json:"lost_msgs,omitempty"`
	API      loadgen.Summary `json:"api_ms"`
	Latency  loadgen.Summary `json:"delivery_ms"` // send to first delivery

	start, faultAt, end, eval time.Time
	restored                  time.Time
	conns                     int
	authSeen                  int
	errsAt                    int64
}

// LostMsg is one message not delivered at the end of its phase: times are
// seconds from the start of the phase.
type LostMsg struct {
	ID        uint64  `json:"msg_id"`
	UID       string  `json:"uid"`
	Center    int     `json:"center"` // 1 or 2
	SentS     float64 `json:"sent_s"`
	AnswerMs  float64 `json:"answer_ms"`
	Status    int     `json:"status"`
	Online    int     `json:"online"`
	ConnSent  int     `json:"conn_at_send"` // the device's connection number (0: none yet)
	UpSent    bool    `json:"up_at_send"`
	ConnDone  int     `json:"conn_at_answer"`
	Delivered float64 `json:"delivered_s,omitempty"` // when it arrived after all (0: never, by the end)
	ConnDlv   int     `json:"conn_at_delivery,omitempty"`
}

// maxLostMsgs bounds LostMsgs per phase.
const maxLostMsgs = 20

// Result is a whole run.
type Result struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Devices  int       `json:"devices"`
	Rate     float64   `json:"rate"`
	SettleS  float64   `json:"settle_s"`
	Store    string    `json:"store"`
	Phases   []*Phase  `json:"phases"`
	Total    Phase     `json:"total"`
	Stats    *Stats    `json:"stats_after,omitempty"`
	Machine  Machine   `json:"machine"`
	Args     []string  `json:"args,omitempty"`
	Commit   string    `json:"commit,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Stats is the cluster's own account after the run (/v1/stats) against the truth.
type Stats struct {
	Online      int   `json:"online"`
	Pending     int64 `json:"pending"`
	TrueOnline  int   `json:"true_online"`
	TruePending int   `json:"true_pending"` // accepted, never delivered
	// Unanswered counts pushes that reached a center and got no answer or a
	// 5xx (connection reset, timeout: the center was killed mid-call). The
	// store may hold them (saved, never pushed: the next login of the
	// device delivers them), so pending agrees when it lies in
	// [TruePending, TruePending+Unanswered].
	Unanswered int     `json:"unanswered"`
	ConvergedS float64 `json:"converged_s"` // -1: not within the wait
	WaitedS    float64 `json:"waited_s"`
	Error      string  `json:"error,omitempty"`
}

func (c *Config) defaults() {
	if c.Devices <= 0 {
		c.Devices = 200
	}
	if c.Rate <= 0 {
		c.Rate = 300
	}
	if c.Settle <= 0 {
		c.Settle = 30 * time.Second
	}
	if c.Lead <= 0 {
		c.Lead = 2 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.Baseline == 0 {
		c.Baseline = 10 * time.Second
	}
	if c.Outage <= 0 {
		c.Outage = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Cluster.Log == nil {
		c.Cluster.Log = c.Log
	}
	if len(c.Faults) == 0 {
		for _, f := range DefaultFaults {
			if c.Cluster.Store != "redis" && (f == "redis" || f == "mariadb") {
				continue
			}
			c.Faults = append(c.Faults, f)
		}
	}
}

// CheckFaults refuses unknown fault names.
func CheckFaults(faults []string) error {
	for _, f := range faults {
		if _, ok := roleProcess[f]; ok {
			continue
		}
		switch f {
		case "redis", "mariadb", "zookeeper":
			continue
		}
		if strings.HasPrefix(f, "kill:") {
			continue
		}
		return fmt.Errorf("chaos: unknown fault %q (want room, register, saver, center, coordinator, dispatcher, redis, mariadb, zookeeper or kill:PROCESS)", f)
	}
	return nil
}

// Run starts the cluster, the devices and the pushers, runs the faults one
// at a time and returns what each did. The cluster is stopped at the end.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if err := CheckFaults(cfg.Faults); err != nil {
		return nil, err
	}
	for _, f := range cfg.Faults {
		switch f {
		case "redis", "mariadb", "zookeeper":
			if cfg.Servers[f] == nil {
				return nil, fmt.Errorf("chaos: fault %s needs the server's pid (services.sh env: REDIS_PID, MYSQL_PID, ZK_PID)", f)
			}
			if (f == "redis" || f == "mariadb") && cfg.Cluster.Store != "redis" {
				return nil, fmt.Errorf("chaos: fault %s needs -store redis", f)
			}
		}
	}
	res := &Result{Started: time.Now(), Devices: cfg.Devices, Rate: cfg.Rate, SettleS: cfg.Settle.Seconds(),
		Store: cfg.Cluster.Store, Machine: machine()}
	cl, err := StartCluster(ctx, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	defer cl.Stop()

	rec := newRecorder()
	prefix := fmt.Sprintf("chaos-%d-", time.Now().Unix()%100000)
	fl := newFleet(cfg.Devices, prefix, cl.Dispatch, cl.Rooms, rec)
	dctx, stopDevices := context.WithCancel(ctx)
	defer func() { stopDevices(); fl.wg.Wait() }()
	fl.start(dctx)
	deadline := time.Now().Add(60 * time.Second)
	for fl.upCount() < cfg.Devices {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("chaos: %d of %d devices connected after 60 s", fl.upCount(), cfg.Devices)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Log, "chaos: %d devices connected\n", cfg.Devices)
	if err := sleep(ctx, time.Second); err != nil { // sessions reach their registers
		return nil, err
	}

	ps := newPushers(cl.Centers, fl, rec, cfg.Rate)
	pctx, stopPushers := context.WithCancel(ctx)
	pdone := make(chan struct{})
	defer func() { stopPushers(); <-pdone; ps.wait() }()
	go func() { defer close(pdone); ps.run(pctx) }()

	// A fault that fails (a server that does not come back) ends the run:
	// the phases so far are counted, the failing one with its error.
	fail := func(i int, ph *Phase, err error) (*Result, error) {
		ps.paused.Store(true)
		ps.wait()
		ph.Error = err.Error()
		if ph.faultAt.IsZero() {
			ph.faultAt = time.Now()
		}
		if ph.restored.IsZero() {
			ph.restored = time.Now()
		}
		ph.end, ph.eval = time.Now(), time.Now()
		ph.Seconds = ph.end.Sub(ph.start).Seconds()
		evaluate(rec, fl, res.Phases, i)
		final(rec, fl, res)
		res.Seconds = time.Since(res.Started).Seconds()
		return res, err
	}
	faults := cfg.Faults
	if cfg.Baseline > 0 {
		faults = append([]string{"none"}, faults...)
	}
	for i, f := range faults {
		ph := &Phase{Fault: f, start: time.Now(), conns: fl.connections(), errsAt: fl.frameErrs.Load()}
		rec.mu.Lock()
		ph.authSeen = len(rec.authFails)
		rec.mu.Unlock()
		res.Phases = append(res.Phases, ph)
		ps.phase.Store(int64(i))
		ps.paused.Store(false)
		fmt.Fprintf(cfg.Log, "chaos: phase %d: %s\n", i, f)
		if err := sleep(ctx, cfg.Lead); err != nil {
			return fail(i, ph, err)
		}
		ph.faultAt = time.Now()
		if err := inject(ctx, cl, cfg, fl, ph); err != nil {
			return fail(i, ph, err)
		}
		ph.restored = time.Now()
		ph.FaultAt = ph.faultAt.Sub(ph.start).Seconds()
		ph.RestoredAt = ph.restored.Sub(ph.start).Seconds()
		settle := cfg.Settle
		if f == "none" {
			settle = cfg.Baseline
		}
		if err := sleep(ctx, settle); err != nil {
			return fail(i, ph, err)
		}
		ps.paused.Store(true)
		ph.end = time.Now()
		ph.Seconds = ph.end.Sub(ph.start).Seconds()
		ps.wait()
		drain(ctx, rec, i, cfg.Drain)
		ph.eval = time.Now()
		ph.Skipped = ps.skippedIn(i)
		evaluate(rec, fl, res.Phases, i)
		fmt.Fprintf(cfg.Log, "chaos:   %s\n", ph.line())
		if dead := cl.Dead(); len(dead) > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("after %s: not running: %s", f, strings.Join(dead, ", ")))
		}
	}
	stopPushers()
	ps.wait()
	// The end: late deliveries, then the cluster's own counts.
	_ = sleep(ctx, min(cfg.Drain, 5*time.Second))
	final(rec, fl, res)
	res.Stats = checkStats(ctx, cl, fl, rec, 10*time.Second) // issue 10: within 10 s
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// inject runs one fault and returns once it is over (restarted, answering).
func inject(ctx context.Context, cl *Cluster, cfg Config, fl *fleet, ph *Phase) error {
	name := roleProcess[ph.Fault]
	if ph.Fault == "room" {
		// The room that holds more devices: a repeated room fault keeps
		// hitting devices after they all moved to the other one.
		if a, b := fl.onRoom(cl.Rooms[0]), fl.onRoom(cl.Rooms[1]); b > a {
			name = "room-b"
		}
	}
	if n, ok := strings.CutPrefix(ph.Fault, "kill:"); ok {
		name = n
	}
	switch ph.Fault {
	case "none":
		ph.Action = "no fault"
		return nil
	case "redis":
		s := cfg.Servers["redis"]
		ph.Target, ph.Action = "redis "+s.Addr, "SIGKILL, restart at once (no persistence: empty)"
		if err := s.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
			return err
		}
		return s.Restart(ctx, 60*time.Second)
	case "mariadb", "zookeeper":
		s := cfg.Servers[ph.Fault]
		ph.Target, ph.Action = ph.Fault+" "+s.Addr, fmt.Sprintf("SIGTERM, stopped %s, restart", cfg.Outage)
		if err := s.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			return err
		}
		if err := sleep(ctx, cfg.Outage); err != nil {
			return err
		}
		return s.Restart(ctx, 90*time.Second)
	}
	ph.Target, ph.Action = name, "kill -9, restart"
	if err := cl.Kill9(name); err != nil {
		return err
	}
	return cl.Start(ctx, name)
}

// drain waits until every message accepted in phase i was delivered, or d.
func drain(ctx context.Context, rec *recorder, i int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := 0
		rec.mu.Lock()
		for _, a := range rec.attempts {
			if a.phase == i && a.accepted() {
				if ar := rec.arrivals[a.id]; ar == nil || ar.dev != a.dev {
					missing++
				}
			}
		}
		rec.mu.Unlock()
		if missing == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// devUp: the device had one connection from at least 500 ms before the
// send (its session registered) to the answer.
func devUp(a *attempt) bool {
	return a.upSent && a.upDone && a.genSent == a.genDone && a.sent.Sub(a.sinceSent) >= 500*time.Millisecond
}

// evaluate fills phases[i] from the record (at its evaluation time).
func evaluate(rec *recorder, fl *fleet, phases []*Phase, i int) {
	ph := phases[i]
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ph.Errors = map[string]int{}
	var api, lat loadgen.Hist
	var lastBad time.Time

	for _, a := range rec.attempts {
		if a.phase != i {
			continue
		}
		ph.Sent++
		api.Record(a.done.Sub(a.sent))
		if !a.accepted() {
			ph.Errors[a.errKey]++
		} else {
			ph.Accepted++

			if ar := rec.arrivals[a.id]; ar != nil && ar.dev == a.dev && !ar.first.After(ph.eval) {
				ph.Delivered++
				lat.Record(ar.first.Sub(a.sent))
			} else {
				ph.Lost++
				if len(ph.LostMsgs) < maxLostMsgs {
					ph.LostMsgs = append(ph.LostMsgs, LostMsg{ID: a.id, UID: fl.devs[a.dev].uid, Center: a.center + 1,
						SentS: a.sent.Sub(ph.start).Seconds(), AnswerMs: float64(a.done.Sub(a.sent)) / 1e6, Status: a.status,
						Online: a.online, ConnSent: a.genSent, UpSent: a.upSent, ConnDone: a.genDone})
				}
			}
		}
		ok := a.accepted() && a.status == 200 && a.online >= 1
		bad := !a.accepted() || (!ok && devUp(a))
		if bad && !a.sent.Before(ph.faultAt) && a.done.After(lastBad) {
			lastBad = a.done
		}
	}
	if !lastBad.IsZero() {
		ph.RecoverS = lastBad.Sub(ph.faultAt).Seconds()
		ph.RecoverAfterS = max(0, lastBad.Sub(ph.restored).Seconds())
	}
	ph.Recovered = lastBad.IsZero() || lastBad.Before(ph.end.Add(-5*time.Second))
	// Arrivals in this phase's window: duplicates and unaccepted ids.
	accepted := map[uint64]bool{}
	for _, a := range rec.attempts {
		if a.accepted() {
			accepted[a.id] = true
		}
	}
	in := func(t time.Time) bool {
		return !t.Before(ph.start) && t.Before(ph.eval)
	}
	for id, ar := range rec.arrivals {
		for _, t := range ar.extra {
			if in(t) {
				ph.Duplicates++
			}
		}
		if ar.wrong > 0 && in(ar.first) {
			ph.Wrong += ar.wrong
		}
		if !accepted[id] && in(ar.first) {
			ph.Unaccepted++
		}
	}
	for _, t := range rec.authFails[ph.authSeen:] {
		if in(t) {
			ph.AuthFails++
		}
	}
	ph.Reconnect = fl.connections() - ph.conns
	ph.DeviceErrors = int(fl.frameErrs.Load() - ph.errsAt)
	ph.API = api.Snapshot().Summarize()
	ph.Latency = lat.Snapshot().Summarize()

}

// final computes what only the end of the run knows: messages still
// missing, late ones, those that waited for a reconnect; and the totals.
func final(rec *recorder, fl *fleet, res *Result) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	tot := &res.Total
	tot.Fault, tot.Errors = "total", map[string]int{}
	for _, a := range rec.attempts {
		if !a.accepted() || a.phase >= len(res.Phases) {
			continue
		}
		ph := res.Phases[a.phase]
		ar := rec.arrivals[a.id]
		if ar == nil || ar.dev != a.dev {
			ph.LostAtEnd++
			continue
		}
		if ar.first.After(ph.eval) {
			ph.Late++
		}
		if a.upSent && ar.firstGen > a.genSent {
			sp, _ := fl.devs[a.dev].spanOf(a.genSent)
			if sp.end.IsZero() || sp.end.Sub(a.sent) >= 5*time.Second {
				ph.WaitedReconnect++
			}
		}
	}
	for _, ph := range res.Phases {
		for i := range ph.LostMsgs {
			m := &ph.LostMsgs[i]
			if ar := rec.arrivals[m.ID]; ar != nil {
				m.Delivered, m.ConnDlv = ar.first.Sub(ph.start).Seconds(), ar.firstGen
			}
		}
		tot.Sent += ph.Sent
		tot.Skipped += ph.Skipped
		tot.Accepted += ph.Accepted
		tot.Delivered += ph.Delivered
		tot.Lost += ph.Lost
		tot.LostAtEnd += ph.LostAtEnd
		tot.Late += ph.Late
		tot.Duplicates += ph.Duplicates
		tot.Wrong += ph.Wrong
		tot.Unaccepted += ph.Unaccepted
		tot.WaitedReconnect += ph.WaitedReconnect
		tot.Reconnect += ph.Reconnect
		tot.AuthFails += ph.AuthFails
		tot.Seconds += ph.Seconds
		tot.RecoverS = max(tot.RecoverS, ph.RecoverS)
		tot.RecoverAfterS = max(tot.RecoverAfterS, ph.RecoverAfterS)
		for k, v := range ph.Errors {
			tot.Errors[k] += v
		}
	}
	tot.Recovered = true
	for _, ph := range res.Phases {
		tot.Recovered = tot.Recovered && ph.Recovered
	}
	tot.API = rec.api.Snapshot().Summarize()
}

// checkStats compares /v1/stats with the truth: every device online, no
// message pending (all were ACKed), waiting up to within for it to agree.
func checkStats(ctx context.Context, cl *Cluster, fl *fleet, rec *recorder, within time.Duration) *Stats {
	st := &Stats{TrueOnline: fl.upCount(), ConvergedS: -1}
	rec.mu.Lock()
	for _, a := range rec.attempts {
		switch {
		case a.accepted():
			if ar := rec.arrivals[a.id]; ar == nil {
				st.TruePending++
			}
		case a.errKey != "conn refused" && (a.status == 0 || a.status >= 500):
			st.Unanswered++
		}
	}
	rec.mu.Unlock()
	start := time.Now()
	hc := http.Client{Timeout: 3 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", cl.Centers[1]+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := hc.Do(req)
		if err == nil {
			var out struct {
				Online   struct{ Total int }
				Messages struct{ Pending int64 }
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			st.Online, st.Pending = out.Online.Total, out.Messages.Pending
		}
		if err != nil {
			st.Error = err.Error()
		} else if st.Online == st.TrueOnline && st.Pending >= int64(st.TruePending) && st.Pending <= int64(st.TruePending+st.Unanswered) {
			st.ConvergedS = time.Since(start).Seconds()
			st.Error = ""
		}
		st.WaitedS = time.Since(start).Seconds()
		if st.ConvergedS >= 0 || time.Since(start) > within || ctx.Err() != nil {
			return st
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// line is the one-line summary printed during the run.
func (ph *Phase) line() string {
	rec := fmt.Sprintf("%.1f s", ph.RecoverS)
	if !ph.Recovered {
		rec += " (not recovered)"
	}
	return fmt.Sprintf("accepted %d, delivered %d, lost %d, duplicates %d, errors %s, recover %s, waited-for-reconnect (so far) %d, reconnects %d, auth fails %d",
		ph.Accepted, ph.Delivered, ph.Lost, ph.Duplicates, errString(ph.Errors), rec, ph.WaitedReconnect, ph.Reconnect, ph.AuthFails)
}

func errString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + ": " + strconv.Itoa(m[k]))
	}
	return b.String()
}

// Machine is where the run ran.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
	MemGiB int    `json:"mem_gib"`
	Go     string `json:"go"`
	Kernel string `json:"kernel"`
}

// ErrFailed is returned by Main when a run shows losses or waits.
var ErrFailed = errors.New("chaos: messages lost or waiting for a reconnect")

func machine() Machine {
	m := Machine{CPUs: numCPU(), Go: goVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemGiB = int((kb + 512*1024) / (1024 * 1024))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
