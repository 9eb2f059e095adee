package main

// Issue 9, "Done when" 1: the adversarial suite. Every attack of the issue
// runs against the whole system started as a separate process (one process
// per case, so that RSS figures are per attack), while a bystander client
// receives a QoS 1 push every 200 ms. Each case asserts that the attacker is
// refused, throttled or closed with the documented error, that the server's
// RSS grows by less than 64 MiB, and that the bystander gets every push with
// p99 under 100 ms.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// The documented limits (docs/protocol.md, issue 9) the cases assert.
const (
	atkRSSBound      = 64 << 20 // bytes of RSS growth allowed per attack
	atkRSSSafety     = 1 << 30  // growth at which the server is killed to protect the machine
	atkBystanderP99  = 100 * time.Millisecond
	atkPingBurst     = 10  // PINGs per connection: burst, then 1/s
	atkPingRate      = 1.0 //
	atkErrBurst      = 20  // ERROR replies per connection: burst, then 2/s
	atkErrRate       = 2.0 //
	atkUnauthedPerIP = 64  // room.max_unauthed_per_ip default
	atkConnectBurst  = 200 // room.connect_burst_per_ip default
	atkConnectRate   = 50  // room.connect_rate_per_ip default, per second
	atkMaxJobsPerApp = 8   // center.max_jobs_per_app written in the broadcast case's config
	atkFloodFor      = 5 * time.Second
	atkClosedWithin  = 3 * time.Second // "closed within a few seconds"
)

type attackCase struct {
	name  string
	store string // -store: memory or bolt
	// config is the YAML the process runs with (default testkit.ConfigYAML("")).
	config string
	// adminHost replaces 127.0.0.1 in -admin-addr (case 10: off loopback).
	adminHost string
	deadline  time.Duration
	// saturates, when set, says why this attack saturates the core by
	// design: the bystander's latency is then reported, not asserted (every
	// push must still arrive). No case sets it today.
	saturates string
	attack    func(t *testing.T, h *harness)
}

func TestAdversarial(t *testing.T) {
	if testing.Short() {
		t.Skip("adversarial suite: whole-system processes and floods (skipped with -short)")
	}
	bin := buildBinary(t)
	slotsConfig := testkit.ConfigYAML("") + fmt.Sprintf("center:\n  max_jobs: 16\n  max_jobs_per_app: %d\n", atkMaxJobsPerApp)
	unauthedConfig := strings.Replace(testkit.ConfigYAML(""), "auth_deadline: 700ms", "auth_deadline: 10s", 1)
	cases := []attackCase{
		{name: "1_ping_flood", attack: attackPingFlood},
		{name: "2_upstream_flood_unbound_app", attack: attackUpstreamFlood},
		{name: "3_ack_flood_memory", attack: attackAckFlood},
		{name: "3_ack_flood_bolt", store: "bolt", attack: attackAckFlood},
		{name: "4_cross_tenant_ack", attack: attackCrossTenantAck},
		{name: "5_cross_tenant_kick", attack: attackCrossTenantKick},
		{name: "6_broadcast_slots", config: slotsConfig, attack: attackBroadcastSlots},
		{name: "7_unauthenticated_connections", config: unauthedConfig, deadline: 60 * time.Second, attack: attackUnauthed},
		{name: "8_bad_uid", attack: attackBadUID},
		{name: "9_token_lifetime", attack: attackTokenLifetime},
		{name: "10_leaks", adminHost: "0.0.0.0", attack: attackLeaks},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runAttackCase(t, bin, tc) })
	}
}

// runAttackCase starts a fresh server and the bystander, runs the attack in
// its own subtest, then checks RSS and the bystander in theirs, so that a
// failing attacker assertion still yields the case's figures.
func runAttackCase(t *testing.T, bin string, tc attackCase) {
	if tc.store == "" {
		tc.store = "memory"
	}
	if tc.config == "" {
		tc.config = testkit.ConfigYAML("")
	}
	if tc.deadline == 0 {
		tc.deadline = 40 * time.Second
	}
	h := startHarness(t, bin, tc)
	watchdog := time.AfterFunc(tc.deadline, func() {
		h.timedOut.Store(true)
		h.kill() // unblocks every read and write of the case
	})
	defer watchdog.Stop()

	h.bys = startBystander(t, h)
	h.rss.setBaseline()
	attackStart := time.Now()
	h.bys.attackStart = attackStart
	t.Run("attacker", func(t *testing.T) { tc.attack(t, h) })
	attackDur := time.Since(attackStart)

	// The bystander keeps receiving, and RSS keeps being sampled, for at
	// least the flood's planned length even when the attacker was thrown out
	// at once, and a second after the attack: the issue saw memory keep
	// growing after the client left.
	after := time.NewTimer(max(time.Second, time.Until(attackStart.Add(atkFloodFor+time.Second))))
	<-after.C
	h.bys.stopPushing()
	t.Run("bystander", func(t *testing.T) {
		defer h.bys.report(t, tc.saturates)
		testkit.WaitFor(t, "every bystander push to be answered and received", 8*time.Second, h.bys.settled)
	})
	h.rss.stop()
	base, peak := h.rss.figures()
	t.Run("rss", func(t *testing.T) {
		if h.safetyKilled.Load() {
			t.Errorf("server killed by the test: RSS grew past %d MiB", atkRSSSafety>>20)
		}
		if peak-base >= atkRSSBound {
			t.Errorf("RSS grew by %.1f MiB (%.1f -> %.1f MiB), want < %d MiB", mib(peak-base), mib(base), mib(peak), atkRSSBound>>20)
		}
	})
	if h.timedOut.Load() {
		t.Errorf("case exceeded its deadline of %s: server killed", tc.deadline)
	}
	st := h.bys.stats()
	t.Logf("SUMMARY %s: attack %s; RSS base %.1f MiB peak %.1f MiB growth %.1f MiB; bystander %d pushes, p50 %s p99 %s max %s (sent at attack %+v), missing %d, failed calls %d",
		tc.name, attackDur.Round(time.Millisecond), mib(base), mib(peak), mib(peak-base),
		st.sent, st.p50, st.p99, st.max, st.worstAt.Sub(attackStart).Round(time.Millisecond), st.missing, st.failed)
	if t.Failed() {
		t.Logf("server log (tail):\n%s", h.logTail(4000))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// ---- the server process ----

type harness struct {
	srv          *allInOne
	admin        string // host:port to query the admin port on
	kill         func()
	rss          *rssSampler
	bys          *bystander
	timedOut     atomic.Bool
	safetyKilled atomic.Bool
}

func startHarness(t *testing.T, bin string, tc attackCase) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(tc.config), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := testkit.FreePort(t)
	listen := admin
	if tc.adminHost != "" {
		// Probed on the wildcard itself: free on loopback is not enough.
		listen = testkit.FreePortOn(t, tc.adminHost)
		_, port, _ := net.SplitHostPort(listen)
		admin = net.JoinHostPort("127.0.0.1", port)
	}
	p := &allInOne{t: t, bin: bin, room: testkit.FreePort(t), center: testkit.FreePort(t), admin: listen,
		args: []string{"-config", cfg, "-store", tc.store, "-data", filepath.Join(dir, "data")}}
	p.start()
	h := &harness{srv: p, admin: admin}
	h.kill = sync.OnceFunc(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	})
	h.rss = startRSSSampler(p.cmd.Process.Pid, func() {
		h.safetyKilled.Store(true)
		h.kill()
	})
	t.Cleanup(func() {
		h.rss.stop()
		h.kill()
	})
	return h
}

func (h *harness) room() string   { return h.srv.room }
func (h *harness) center() string { return h.srv.center }

func (h *harness) logTail(n int) string {
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	s := h.srv.log.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// login authenticates a raw connection on this case's room.
func (h *harness) login(t *testing.T, app uint32, uid string) *testkit.Conn {
	t.Helper()
	return testkit.Login(t, h.room(), app, uid)
}

// push sends text to uid through the Center API and requires 200.
func (h *harness) push(t *testing.T, app uint32, key, uid, text string, qos int) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"uids": []string{uid}, "text": text, "qos": qos})
	code, out, _ := testkit.API(t, h.center(), "POST", fmt.Sprintf("/v1/apps/%d/push", app), key, string(body))
	if code != 200 {
		t.Fatalf("push app %d to %q: %d %v", app, uid, code, out)
	}
	return out
}

// online reports GET /v1/apps/{app}/users/{uid} "online" with the app's key.
func (h *harness) online(t *testing.T, app uint32, key, uid string) bool {
	t.Helper()
	code, out, _ := testkit.API(t, h.center(), "GET", fmt.Sprintf("/v1/apps/%d/users/%s", app, uid), key, "")
	if code != 200 {
		t.Fatalf("GET users/%s on app %d: %d %v", uid, app, code, out)
	}
	return out["online"] == true
}

// ---- RSS ----

type rssSampler struct {
	pid     int
	onLimit func()
	mu      sync.Mutex
	base    int64
	peak    int64
	done    chan struct{}
	once    sync.Once
	stopped chan struct{}
}

func startRSSSampler(pid int, onLimit func()) *rssSampler {
	s := &rssSampler{pid: pid, onLimit: onLimit, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tk.C:
			}
			cur, err := readRSS(s.pid)
			if err != nil {
				continue // the process is gone
			}
			s.mu.Lock()
			if s.base > 0 && cur > s.peak {
				s.peak = cur
			}
			over := s.base > 0 && cur-s.base > atkRSSSafety
			s.mu.Unlock()
			if over {
				s.onLimit()
			}
		}
	}()
	return s
}

func (s *rssSampler) setBaseline() {
	cur, err := readRSS(s.pid)
	if err != nil {
		cur = 1
	}
	s.mu.Lock()
	s.base, s.peak = cur, cur
	s.mu.Unlock()
}

func (s *rssSampler) stop() {
	s.once.Do(func() { close(s.done) })
	<-s.stopped
}

func (s *rssSampler) figures() (base, peak int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base, s.peak
}

// readRSS returns VmRSS of pid in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// ---- the bystander ----

// bystander is uid "bystander" on app 1, connected from 127.0.0.2 (so the
// per-IP attacks from 127.0.0.1 are not its business). It ACKs every QoS 1
// push; a pusher sends it a QoS 1 push through the Center API every 200 ms.
type bystander struct {
	r        *testkit.Conn
	center   string
	mu       sync.Mutex
	sent     map[int]time.Time // just before the HTTP call
	answered map[int]bool      // the call answered 200
	got      map[int]time.Time // PUSH frame read
	failed   []string
	readErr  error
	inflight atomic.Int32
	// attackStart is set by the case before the attack (for the report).
	attackStart time.Time
	stop        chan struct{}
	pushing     chan struct{} // closed when the pusher stopped
}

func startBystander(t *testing.T, h *harness) *bystander {
	t.Helper()
	r := testkit.DialFrom(t, h.room(), "127.0.0.2")
	r.Auth(1, "bystander", testkit.Token(1, "bystander"), 30)
	r.Expect(proto.OpAuthOK)
	b := &bystander{r: r, center: h.center(), sent: map[int]time.Time{}, answered: map[int]bool{},
		got: map[int]time.Time{}, stop: make(chan struct{}), pushing: make(chan struct{})}
	go b.read()
	go b.pushLoop()
	testkit.WaitFor(t, "the bystander's first 3 pushes", 5*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.got) >= 3
	})
	return b
}

func (b *bystander) read() {
	for {
		f, err := b.r.Next(time.Hour)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.mu.Lock()
				b.readErr = err
				b.mu.Unlock()
			}
			return
		}
		if f.Op != proto.OpPush {
			if f.Op != proto.OpPong {
				b.mu.Lock()
				b.failed = append(b.failed, fmt.Sprintf("unexpected frame op 0x%02x body %q", f.Op, f.Body))
				b.mu.Unlock()
			}
			continue
		}
		now := time.Now()
		id, payload, err := proto.ParsePush(f.Body)
		if err != nil {
			continue
		}
		if f.Flags&proto.FlagAckRequired != 0 {
			_ = b.r.NetConn().SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = b.r.NetConn().Write(proto.AppendAck(nil, 0, []uint64{id}))
		}
		if s, ok := strings.CutPrefix(string(payload), "bys-"); ok {
			if n, err := strconv.Atoi(s); err == nil {
				b.mu.Lock()
				if _, dup := b.got[n]; !dup {
					b.got[n] = now
				}
				b.mu.Unlock()
			}
		}
	}
}

func (b *bystander) pushLoop() {
	defer close(b.pushing)
	tk := time.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	for n := 0; ; n++ {
		select {
		case <-b.stop:
			return
		case <-tk.C:
		}
		b.inflight.Add(1)
		go func() {
			defer b.inflight.Add(-1)
			body := fmt.Sprintf(`{"uids":["bystander"],"text":"bys-%d","qos":1}`, n)
			b.mu.Lock()
			b.sent[n] = time.Now()
			b.mu.Unlock()
			code, out, _, err := testkit.TryAPI(b.center, "POST", "/v1/apps/1/push", testkit.Key1, body)
			b.mu.Lock()
			defer b.mu.Unlock()
			switch {
			case err != nil:
				b.failed = append(b.failed, fmt.Sprintf("push %d: %v", n, err))
			case code != 200:
				b.failed = append(b.failed, fmt.Sprintf("push %d: %d %v", n, code, out))
			default:
				b.answered[n] = true
			}
		}()
	}
}

func (b *bystander) stopPushing() {
	close(b.stop)
	<-b.pushing
}

// settled: no call in flight and every push answered 200 was received.
func (b *bystander) settled() bool {
	if b.inflight.Load() != 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := range b.answered {
		if _, ok := b.got[n]; !ok {
			return false
		}
	}
	return true
}

type bystanderStats struct {
	sent, missing, failed int
	p50, p99, max         time.Duration
	missingIDs            []int
	worst                 int       // push number of the slowest delivery
	worstAt               time.Time // when it was sent
}

func (b *bystander) stats() bystanderStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st bystanderStats
	var lat []time.Duration
	for n, at := range b.sent {
		st.sent++
		if g, ok := b.got[n]; ok {
			lat = append(lat, g.Sub(at))
			if d := g.Sub(at); st.worstAt.IsZero() || d > b.got[st.worst].Sub(b.sent[st.worst]) {
				st.worst, st.worstAt = n, at
			}
		} else {
			st.missing++
			st.missingIDs = append(st.missingIDs, n)
		}
	}
	slices.Sort(st.missingIDs)
	st.failed = len(b.failed)
	slices.Sort(lat)
	if len(lat) > 0 {
		pct := func(p float64) time.Duration {
			i := int(math.Ceil(p*float64(len(lat)))) - 1
			return lat[max(i, 0)].Round(10 * time.Microsecond)
		}
		st.p50, st.p99, st.max = pct(0.50), pct(0.99), lat[len(lat)-1].Round(10*time.Microsecond)
	}
	return st
}

func (b *bystander) report(t *testing.T, saturates string) {
	st := b.stats()
	t.Logf("bystander: %d pushes, p50 %s, p99 %s, max %s (push %d, sent %s after the attack started), missing %d %v, failed calls %d",
		st.sent, st.p50, st.p99, st.max, st.worst, st.worstAt.Sub(b.attackStart).Round(time.Millisecond), st.missing, st.missingIDs, st.failed)
	b.mu.Lock()
	failed, readErr := slices.Clone(b.failed), b.readErr
	b.mu.Unlock()
	for i, f := range failed {
		if i == 5 {
			t.Errorf("... and %d more", len(failed)-5)
			break
		}
		t.Errorf("bystander: %s", f)
	}
	if readErr != nil {
		t.Errorf("bystander connection failed: %v", readErr)
	}
	if st.missing > 0 {
		t.Errorf("bystander missed %d of %d pushes: %v", st.missing, st.sent, st.missingIDs)
	}
	if st.p99 >= atkBystanderP99 {
		if saturates != "" {
			t.Logf("bystander p99 %s not asserted: %s", st.p99, saturates)
		} else {
			t.Errorf("bystander p99 %s, want < %s (p50 %s, max %s)", st.p99, atkBystanderP99, st.p50, st.max)
		}
	}
}

// ---- floods (cases 1-3) ----

// tcpEstablished is Linux's TCP_ESTABLISHED (tcp_states.h); 7 is
// TCP_CLOSE (after a reset), 8 TCP_CLOSE_WAIT (the peer's FIN arrived).
const tcpEstablished = 1

// tcpState reads the kernel's TCP state of c (tcpi_state, the first byte of
// TCP_INFO): CLOSE_WAIT once the server sent its FIN, CLOSE after a reset.
// It tells that the server closed without reading anything.
func tcpState(c net.Conn) int {
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1
	}
	st := -1
	_ = sc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO); err == nil {
			st = v & 0xff
		}
	})
	return st
}

type floodResult struct {
	closedAfter time.Duration // -1: still open when the flood ended
	how         string
	written     int64
	elapsed     time.Duration // flood start to the end of the flood
}

// flood writes batch (whole frames) to a again and again for up to d, never
// reading, and stops when the server has closed the connection. Partial
// writes are completed, so the stream stays framed.
func flood(a *testkit.Conn, batch []byte, d time.Duration) floodResult {
	start := time.Now()
	res := floodResult{closedAfter: -1}
	off := 0
	for time.Since(start) < d {
		if st := tcpState(a.NetConn()); st != tcpEstablished {
			res.closedAfter, res.how = time.Since(start), fmt.Sprintf("TCP state %d (8 CLOSE_WAIT: FIN received, 7 CLOSE: reset)", st)
			break
		}
		_ = a.NetConn().SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := a.NetConn().Write(batch[off:])
		res.written += int64(n)
		off = (off + n) % len(batch)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			res.closedAfter, res.how = time.Since(start), "write: "+err.Error()
			break
		}
	}
	res.elapsed = time.Since(start)
	_ = a.NetConn().SetWriteDeadline(time.Time{})
	return res
}

// repeatFrames concatenates frames (cycling) up to about size bytes.
func repeatFrames(size int, frames ...[]byte) []byte {
	var b []byte
	for i := 0; len(b) < size; i++ {
		b = append(b, frames[i%len(frames)]...)
	}
	return b
}

// floodWant is what the attacker must see after a flood.
type floodWant struct {
	codes   map[string]bool // ERROR codes allowed on the way
	maxOK   int             // non-ERROR replies allowed (burst), plus okRate per second
	okRate  float64
	okOp    uint8 // the allowed non-ERROR reply (0: none)
	errLast string
}

// checkFlood asserts the flood's outcome: the server closed the connection
// within atkClosedWithin, and what the attacker finally reads is some
// replies within the limits, ERRORs within the error budget, the last one
// ERROR rate_limited, then EOF or a reset.
func checkFlood(t *testing.T, h *harness, a *testkit.Conn, res floodResult, want floodWant) {
	t.Helper()
	t.Logf("flood: %.1f MiB written in %s; closed after %v (%s)", float64(res.written)/(1<<20), res.elapsed.Round(time.Millisecond), res.closedAfter, res.how)
	if h.safetyKilled.Load() || h.timedOut.Load() {
		t.Fatalf("server killed by the test (RSS safety limit or deadline): the attacker's fate is unknown")
	}
	if res.closedAfter < 0 {
		t.Errorf("attacker still connected after %s of flood (%.1f MiB written, never read): want ERROR %s and close within %s",
			res.elapsed.Round(time.Millisecond), float64(res.written)/(1<<20), want.errLast, atkClosedWithin)
	} else if res.closedAfter > atkClosedWithin {
		t.Errorf("attacker closed only after %s, want within %s", res.closedAfter, atkClosedWithin)
	}
	// Read what the server sent, until EOF, within 3 s.
	ops := map[uint8]int{}
	codes := map[string]int{}
	var lastErr string
	var frames int
	deadline := time.Now().Add(3 * time.Second)
	var end error
	for {
		f, err := a.Next(time.Until(deadline))
		if err != nil {
			end = err
			break
		}
		frames++
		ops[f.Op]++
		if f.Op == proto.OpError {
			var e proto.Error
			_ = json.Unmarshal(f.Body, &e)
			codes[e.Code]++
			lastErr = e.Code
		}
	}
	elapsed := res.elapsed.Seconds() + 3
	t.Logf("attacker read %d frames: ops %v, ERROR codes %v, last ERROR %q, then %v", frames, ops, codes, lastErr, end)
	var ne net.Error
	switch {
	case errors.Is(end, io.EOF), errors.Is(end, syscall.ECONNRESET):
	case errors.As(end, &ne) && ne.Timeout():
		t.Errorf("attacker's connection still open after reading %d frames for 3 s: want EOF after the last ERROR", frames)
	default:
		t.Errorf("attacker's read ended with %v, want EOF or a reset", end)
	}
	if lastErr != want.errLast {
		t.Errorf("last ERROR code %q, want %q", lastErr, want.errLast)
	}
	for c, n := range codes {
		if !want.codes[c] {
			t.Errorf("%d ERROR %q, want only %v", n, c, keys(want.codes))
		}
	}
	if maxErr := atkErrBurst + 1 + int(math.Ceil(atkErrRate*elapsed)); ops[proto.OpError] > maxErr {
		t.Errorf("%d ERROR frames, want at most %d (error budget: burst %d, %g/s, then one last ERROR)", ops[proto.OpError], maxErr, atkErrBurst, atkErrRate)
	}
	for op, n := range ops {
		switch {
		case op == proto.OpError:
		case op == want.okOp && want.okOp != 0:
			if maxOK := want.maxOK + int(math.Ceil(want.okRate*elapsed)); n > maxOK {
				t.Errorf("%d replies op 0x%02x, want at most %d (burst %d, %g/s)", n, op, maxOK, want.maxOK, want.okRate)
			}
		default:
			t.Errorf("%d unexpected frames op 0x%02x", n, op)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Case 1: PINGs in 64 KiB batches, never read.
func attackPingFlood(t *testing.T, h *harness) {
	a := h.login(t, 1, "pinger")
	batch := repeatFrames(64<<10, proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil))
	res := flood(a, batch, atkFloodFor)
	checkFlood(t, h, a, res, floodWant{
		codes: map[string]bool{proto.ErrCodeRateLimited: true},
		okOp:  proto.OpPong, maxOK: atkPingBurst, okRate: atkPingRate,
		errLast: proto.ErrCodeRateLimited,
	})
}

// Case 2: UPSTREAM to app 2, not bound on this app-1 session, never read.
func attackUpstreamFlood(t *testing.T, h *harness) {
	a := h.login(t, 1, "upper")
	batch := repeatFrames(64<<10, proto.AppendUpstream(nil, 7, 2, false, 1, []byte("12345678")))
	res := flood(a, batch, atkFloodFor)
	checkFlood(t, h, a, res, floodWant{
		codes:   map[string]bool{proto.ErrCodeRateLimited: true, proto.ErrCodeNotBound: true},
		errLast: proto.ErrCodeRateLimited,
	})
}

// Case 3: ACKs of 1000 random unknown ids per frame, as fast as possible.
// ACKs within the limit get no reply; ERROR overloaded (the ACK queue is
// full, documented for ACK) is tolerated on the way, the last must be
// rate_limited.
func attackAckFlood(t *testing.T, h *harness) {
	a := h.login(t, 1, "acker")
	rng := rand.New(rand.NewPCG(9, 9))
	var frames [][]byte
	for range 64 {
		ids := make([]uint64, 1000)
		for i := range ids {
			ids[i] = rng.Uint64()
		}
		frames = append(frames, proto.AppendAck(nil, 3, ids))
	}
	batch := repeatFrames(len(frames)*len(frames[0]), frames...)
	res := flood(a, batch, atkFloodFor)
	checkFlood(t, h, a, res, floodWant{
		codes:   map[string]bool{proto.ErrCodeRateLimited: true, proto.ErrCodeOverloaded: true},
		errLast: proto.ErrCodeRateLimited,
	})
}

// ---- tenants (cases 4-5) ----

// Case 4: an app-1 session of uid "victim" ACKs the real ids of victim's
// stored app-2 messages; victim's app-2 login still gets all 3.
func attackCrossTenantAck(t *testing.T, h *harness) {
	var ids []uint64
	for i := range 3 {
		out := h.push(t, 2, testkit.Key2, "victim", fmt.Sprintf("app2 secret %d", i), 1)
		id, err := strconv.ParseUint(fmt.Sprint(out["msg_id"]), 10, 64)
		if err != nil || out["stored"] != 1.0 {
			t.Fatalf("push answer %v", out)
		}
		ids = append(ids, id)
	}
	a := h.login(t, 1, "victim")
	// The worst case: the real ids, as a plain ACK and with App 2 in the header.
	a.Write(proto.AppendAck(nil, 1, ids))
	body := binary.BigEndian.AppendUint16(nil, uint16(len(ids)))
	for _, id := range ids {
		body = binary.BigEndian.AppendUint64(body, id)
	}
	a.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpAck, Seq: 2, App: 2}, body))
	// A sentinel: an app-1 message ACKed after the attack. The loop's ACK
	// queue applies ACKs in order, so once the store's acked counter has
	// moved for the sentinel, the attack's ACKs were applied too.
	h.push(t, 1, testkit.Key1, "victim", "app1 sentinel", 1)
	sid, _, f := a.ExpectPush()
	if f.App != 1 {
		t.Fatalf("sentinel came with app %d", f.App)
	}
	acked := func() float64 {
		code, out, _ := testkit.API(t, h.center(), "GET", "/v1/stats", testkit.AdminKey, "")
		m, _ := out["messages"].(map[string]any)
		n, ok := m["acked"].(float64)
		if code != 200 || !ok {
			t.Fatalf("stats: %d %v", code, out)
		}
		return n
	}
	before := acked()
	a.Write(proto.AppendAck(nil, 3, []uint64{sid}))
	testkit.WaitFor(t, "the sentinel ACK to be applied", 5*time.Second, func() bool { return acked() > before })
	// Any ERROR to the attack's ACKs (none documented) is only logged.
	a.Send(proto.OpPing, 0, 0, nil)
	for {
		f, err := a.Next(3 * time.Second)
		if err != nil {
			t.Fatalf("attacker session: %v", err)
		}
		if f.Op == proto.OpPong {
			break
		}
		t.Logf("attacker got op 0x%02x %q", f.Op, f.Body)
	}
	a.Close()
	testkit.WaitFor(t, "victim offline on app 1", 5*time.Second, func() bool { return !h.online(t, 1, testkit.Key1, "victim") })

	v := testkit.Dial(t, h.room())
	v.Auth(2, "victim", testkit.Token(2, "victim"), 30)
	v.Expect(proto.OpAuthOK)
	var got []uint64
	for range ids {
		f, err := v.Next(3 * time.Second)
		if err != nil || f.Op != proto.OpPush {
			t.Fatalf("victim on app 2 received %d of its 3 stored messages %v, then op 0x%02x err %v: the app-1 session's ACK deleted them",
				len(got), ids, f.Op, err)
		}
		id, _, _ := proto.ParsePush(f.Body)
		got = append(got, id)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("victim got %v, want %v", got, ids)
	}
}

// Case 5: logins through app 1 must not disturb app 2.
func attackCrossTenantKick(t *testing.T, h *harness) {
	t.Run("app2 session untouched by an app1 login", func(t *testing.T) {
		v := testkit.Dial(t, h.room())
		v.Auth(2, "victim2", testkit.Token(2, "victim2"), 30)
		v.Expect(proto.OpAuthOK)
		if !h.online(t, 2, testkit.Key2, "victim2") {
			t.Fatal("victim2 not online on app 2 before the attack")
		}
		a := h.login(t, 1, "victim2")
		if !h.online(t, 2, testkit.Key2, "victim2") {
			t.Error("victim2 offline on app 2 after the app-1 login")
		}
		h.push(t, 2, testkit.Key2, "victim2", "app2 after attack", 1)
		v.As("victim2 (app 2)").ExpectPushText(2, "app2 after attack")
		v.As("victim2 (app 2)").ExpectQuiet(0)
		h.push(t, 1, testkit.Key1, "victim2", "app1 to attacker", 1)
		a.As("attacker (app 1)").ExpectPushText(1, "app1 to attacker")
		if !h.online(t, 2, testkit.Key2, "victim2") {
			t.Error("victim2 offline on app 2 at the end")
		}
	})
	t.Run("uid on apps 1+2, new app1 login takes app 1 only", func(t *testing.T) {
		old := h.login(t, 1, "multi")
		seq := old.Send(proto.OpBind, 2, 0, mustJSON(proto.Bind{Token: testkit.Token(2, "multi")}))
		if f := old.Expect(proto.OpBindOK); f.Seq != seq {
			t.Fatalf("BIND_OK seq %d, want %d", f.Seq, seq)
		}
		nw := h.login(t, 1, "multi")
		// docs/protocol.md rule 6: A is taken from a connection that keeps
		// other apps without a frame (no KICK); it keeps serving app 2.
		h.push(t, 2, testkit.Key2, "multi", "m2-a", 1)
		old.As("old connection").ExpectPushText(2, "m2-a")
		h.push(t, 1, testkit.Key1, "multi", "m1", 1)
		nw.As("new connection").ExpectPushText(1, "m1")
		h.push(t, 2, testkit.Key2, "multi", "m2-b", 1)
		old.As("old connection (must not get app-1 pushes any more)").ExpectPushText(2, "m2-b")
		nw.As("new connection (app 1 only)").ExpectQuiet(0)
		old.As("old connection").ExpectQuiet(0)
		// The old connection's room took app 1 from it: its app-1 frames
		// are refused (the revocation reaches its loop asynchronously).
		testkit.WaitFor(t, "app 1 to be unbound on the old connection", 3*time.Second, func() bool {
			seq := old.Send(proto.OpUpstream, 1, proto.FlagReplyWanted, []byte{0, 1})
			f := old.As("old connection").ExpectNonPong()
			if f.Op != proto.OpError || f.Seq != seq {
				t.Fatalf("UPSTREAM to app 1 answered by op 0x%02x seq %d, want ERROR seq %d", f.Op, f.Seq, seq)
			}
			return strings.Contains(string(f.Body), `"not_bound"`)
		})
	})
	t.Run("uid on app 1 only, new app1 login kicks", func(t *testing.T) {
		old := h.login(t, 1, "single")
		nw := h.login(t, 1, "single")
		if k := old.ExpectKick(1); k.Reason != "login_elsewhere" {
			t.Fatalf("KICK %+v, want code 1 login_elsewhere", k)
		}
		old.ExpectClosed(3 * time.Second)
		h.push(t, 1, testkit.Key1, "single", "to the new one", 1)
		nw.As("new connection").ExpectPushText(1, "to the new one")
	})
}

// ---- broadcast slots (case 6) ----

func attackBroadcastSlots(t *testing.T, h *harness) {
	// Connections of app 1 that keep a 10/s broadcast running for seconds.
	for i := range 50 {
		h.login(t, 1, fmt.Sprintf("bc-%d", i))
	}
	bcast := func(app uint32, key, body string) (int, map[string]any, http.Header) {
		return testkit.API(t, h.center(), "POST", fmt.Sprintf("/v1/apps/%d/broadcast", app), key, body)
	}
	for i := range 3 {
		code, out, _ := bcast(1, testkit.Key1, `{"text":"tiny rate","rate":1e-300}`)
		if code != 400 || testkit.ErrCode(out) != "bad_request" {
			t.Errorf("broadcast %d with rate 1e-300: %d %v, want 400 bad_request", i, code, out)
		}
	}
	accepted := 0
	for i := 0; i < 70; i++ {
		code, out, hdr := bcast(1, testkit.Key1, fmt.Sprintf(`{"text":"slot %d","qos":0,"rate":10}`, i))
		if code == 202 {
			accepted++
			continue
		}
		if code != 429 || testkit.ErrCode(out) != "rate_limited" || hdr.Get("Retry-After") == "" {
			t.Fatalf("broadcast %d: %d %v (Retry-After %q), want 202 or 429 rate_limited with Retry-After", i, code, out, hdr.Get("Retry-After"))
		}
		break
	}
	if accepted != atkMaxJobsPerApp {
		t.Errorf("app 1 got %d broadcasts running before 429, want max_jobs_per_app = %d", accepted, atkMaxJobsPerApp)
	}
	if code, out, _ := bcast(2, testkit.Key2, `{"text":"app 2 news","qos":0}`); code != 202 {
		t.Errorf("app 2's broadcast after app 1 took its slots: %d %v, want 202", code, out)
	}
	if code, out, _ := bcast(3, testkit.AdminKey, `{"text":"admin on app 3","qos":0}`); code != 202 {
		t.Errorf("the admin's broadcast (app 3) after app 1 took its slots: %d %v, want 202", code, out)
	}
	code, out, _ := bcast(1, testkit.AdminKey, `{"text":"admin on app 1","qos":0}`)
	t.Logf("admin key on app 1 (not asserted: the contract does not say whether the admin shares app 1's slots): %d %v", code, out)
}

// ---- unauthenticated connections (case 7) ----

// probeClosed reads from c until deadline: it reports whether the server
// closed it (EOF or reset) and how many bytes came first.
func probeClosed(c net.Conn, deadline time.Time) (closed bool, n int, err error) {
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 512)
	for {
		k, err := c.Read(buf)
		n += k
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, n, nil
			}
			return true, n, err
		}
	}
}

func attackUnauthed(t *testing.T, h *harness) {
	dialer := func(src string) *net.Dialer {
		return &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	}
	freshLogin := func(t *testing.T) {
		t.Helper()
		r := testkit.DialFrom(t, h.room(), "127.0.0.3")
		r.Auth(1, "fresh", testkit.Token(1, "fresh"), 30)
		r.Expect(proto.OpAuthOK)
		r.Close()
	}

	t.Run("a_big_frame_before_auth", func(t *testing.T) {
		r := testkit.Dial(t, h.room())
		var b [16]byte
		binary.BigEndian.PutUint32(b[:], 65536+12)
		b[4], b[5] = 1, proto.OpAuth
		r.Write(b[:])
		r.ExpectError(proto.ErrCodeFrameTooLarge)
		r.ExpectClosed(3 * time.Second)
	})

	t.Run("b_partial_frames_held", func(t *testing.T) {
		const n = 500
		partial := make([]byte, 1000)
		binary.BigEndian.PutUint32(partial, 1020) // Len within max_auth_frame (1024): the room waits for the rest
		partial[4], partial[5] = 1, proto.OpAuth
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		dialErrs := 0
		d := dialer("127.0.0.1")
		for range n {
			c, err := d.Dial("tcp", h.room())
			if err != nil {
				dialErrs++
				continue
			}
			conns = append(conns, c)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(partial)
		}
		var held, closed, withBytes atomic.Int32
		var wg sync.WaitGroup
		deadline := time.Now().Add(1500 * time.Millisecond)
		for _, c := range conns {
			wg.Go(func() {
				isClosed, got, _ := probeClosed(c, deadline)
				switch {
				case !isClosed:
					held.Add(1)
				case got > 0:
					withBytes.Add(1)
				default:
					closed.Add(1)
				}
			})
		}
		wg.Wait()
		t.Logf("%d partial-frame connections from 127.0.0.1: %d held open, %d closed with no frame, %d closed after sending bytes, %d dials failed",
			n, held.Load(), closed.Load(), withBytes.Load(), dialErrs)
		if held.Load() != atkUnauthedPerIP {
			t.Errorf("%d unauthenticated connections held from one IP, want max_unauthed_per_ip = %d", held.Load(), atkUnauthedPerIP)
		}
		if withBytes.Load() != 0 {
			t.Errorf("%d refused connections got bytes before the close, want none (closed at accept with no frame)", withBytes.Load())
		}
		freshLogin(t) // another IP is not locked out while they are held
	})

	t.Run("c_connect_rate", func(t *testing.T) {
		const n = 400
		var accepted, refused atomic.Int32
		var odd sync.Map
		var mu sync.Mutex
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		d := dialer("127.0.0.4")
		var next atomic.Int32
		var wg sync.WaitGroup
		start := time.Now()
		for range 16 { // at most 16 unauthenticated at a time: below max_unauthed_per_ip
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					c, err := d.Dial("tcp", h.room())
					if err != nil {
						refused.Add(1)
						continue
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
					uid := fmt.Sprintf("rate-%d", i)
					body, _ := json.Marshal(proto.Auth{UID: uid, Token: testkit.Token(1, uid), HB: 30})
					_ = c.SetDeadline(time.Now().Add(3 * time.Second))
					if _, err := c.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, body)); err != nil {
						refused.Add(1)
						continue
					}
					f, err := proto.NewDecoder(c, 1<<16).Next()
					switch {
					case err == nil && f.Op == proto.OpAuthOK:
						accepted.Add(1)
					case err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
						refused.Add(1)
					case err != nil:
						odd.Store(i, err.Error())
					default:
						odd.Store(i, fmt.Sprintf("op 0x%02x %q", f.Op, f.Body))
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		maxOK := atkConnectBurst + int(math.Ceil(atkConnectRate*el.Seconds())) + 1
		t.Logf("%d logins from 127.0.0.4 in %s: %d accepted, %d refused at accept (documented: burst %d, %d/s -> at most %d)",
			n, el.Round(time.Millisecond), accepted.Load(), refused.Load(), atkConnectBurst, atkConnectRate, maxOK)
		odd.Range(func(k, v any) bool {
			t.Errorf("login %v: %v (want AUTH_OK, or closed at accept with no frame)", k, v)
			return true
		})
		if refused.Load() == 0 {
			t.Errorf("no connection refused: %d dialled from one IP in %s, want the connect rate (%d/s, burst %d) to refuse some", n, el, atkConnectRate, atkConnectBurst)
		}
		if a := int(accepted.Load()); a < atkConnectBurst || a > maxOK {
			t.Errorf("%d accepted, want %d..%d (burst %d, then %d/s)", a, atkConnectBurst, maxOK, atkConnectBurst, atkConnectRate)
		}
		freshLogin(t) // other source addresses are not affected
	})
}

// ---- uids, tokens (cases 8-9) ----

func attackBadUID(t *testing.T, h *harness) {
	uid := "nul\x00uid"
	r := testkit.Dial(t, h.room())
	r.Auth(1, uid, testkit.Token(1, uid), 30)
	r.ExpectError(proto.ErrCodeBadToken)
	r.ExpectClosed(3 * time.Second)

	code, out, _ := testkit.API(t, h.center(), "POST", "/v1/apps/1/push", testkit.Key1, `{"uids":["nul\u0000uid"],"text":"x"}`)
	if code != 400 || testkit.ErrCode(out) != "bad_request" {
		t.Errorf("push to a uid with NUL: %d %v, want 400 bad_request", code, out)
	}
	code, out, _ = testkit.API(t, h.center(), "GET", "/v1/apps/1/users/nul%00uid", testkit.Key1, "")
	if code != 400 || testkit.ErrCode(out) != "bad_request" {
		t.Errorf("GET users/nul%%00uid: %d %v, want 400 bad_request", code, out)
	}
}

func attackTokenLifetime(t *testing.T, h *harness) {
	r := testkit.Dial(t, h.room())
	r.Auth(1, "forever", token.Sign([]byte(testkit.Secret1), 1, "forever", math.MaxInt64), 30)
	r.ExpectError(proto.ErrCodeBadToken)
	r.ExpectClosed(3 * time.Second)

	// Within room.max_token_lifetime (30 days) a token is fine.
	ok := testkit.Dial(t, h.room())
	ok.Auth(1, "month", testkit.TokenUntil(1, "month", time.Now().Add(29*24*time.Hour)), 30)
	ok.Expect(proto.OpAuthOK)

	code, out, _ := testkit.API(t, h.center(), "POST", "/v1/apps/1/tokens", testkit.Key1, `{"uid":"forever","ttl":315360000}`)
	if code != 400 || testkit.ErrCode(out) != "bad_request" {
		t.Errorf("token with ttl 10 years: %d %v, want 400 bad_request", code, out)
	}
}

// ---- leaks (case 10) ----

func attackLeaks(t *testing.T, h *harness) {
	t.Run("users answer shows app 1 nothing of app 2", func(t *testing.T) {
		for i := range 3 {
			h.push(t, 2, testkit.Key2, "leaky", fmt.Sprintf("app 2 only %d", i), 1)
		}
		r := h.login(t, 1, "leaky")
		r.Send(proto.OpBind, 2, 0, mustJSON(proto.Bind{Token: testkit.Token(2, "leaky")}))
		r.Expect(proto.OpBindOK)
		for range 3 { // delivered, not ACKed: still pending for app 2
			r.ExpectPush()
		}
		code, out, _ := testkit.API(t, h.center(), "GET", "/v1/apps/1/users/leaky", testkit.Key1, "")
		if code != 200 {
			t.Fatalf("GET users/leaky with app 1's key: %d %v", code, out)
		}
		if p, ok := out["pending"]; ok && p != 0.0 {
			t.Errorf("app 1's key sees pending %v for a uid whose pending messages are app 2's, want 0", p)
		}
		if apps, _ := out["apps"].([]any); slices.Contains(apps, any(2.0)) {
			t.Errorf("app 1's key sees apps %v, want no app 2", apps)
		}
		_, out2, _ := testkit.API(t, h.center(), "GET", "/v1/apps/2/users/leaky", testkit.Key2, "")
		t.Logf("app 1's key sees %v; app 2's key sees %v", out, out2)
	})

	t.Run("metrics off loopback need the admin key", func(t *testing.T) {
		get := func(key string) int {
			req, _ := http.NewRequest("GET", "http://"+h.admin+"/metrics", nil)
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET /metrics: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		if c := get(""); c != 401 && c != 403 {
			t.Errorf("/metrics on 0.0.0.0 without a key: %d, want 401 or 403", c)
		}
		if c := get("wrong-key"); c != 401 && c != 403 {
			t.Errorf("/metrics on 0.0.0.0 with a wrong key: %d, want 401 or 403", c)
		}
		if c := get(testkit.AdminKey); c != 200 {
			t.Errorf("/metrics with the admin key: %d, want 200", c)
		}
	})

	t.Run("demo keys refused off loopback", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(testkit.FreePort(t))
		admin := testkit.FreePort(t)
		cmd := exec.Command(h.srv.bin, "-store", "memory", "-data", t.TempDir(),
			"-room-addr", testkit.FreePort(t), "-center-addr", "0.0.0.0:"+port,
			"-dispatch-addr", testkit.FreePort(t), "-admin-addr", admin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var exitErr error
		exited, ready := false, false
		testkit.WaitFor(t, "the demo-config server to exit (or to become ready)", 10*time.Second, func() bool {
			select {
			case exitErr = <-done:
				exited = true
				return true
			default:
			}
			if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
				resp.Body.Close()
				ready = resp.StatusCode == 200
			}
			return ready
		})
		if !exited {
			_ = cmd.Process.Kill()
			exitErr = <-done
			t.Errorf("the embedded demo config with -center-addr 0.0.0.0:%s started and served (ready %v): want a refusal naming the demo keys; log:\n%s", port, ready, out.String())
			return
		}
		if exitErr == nil {
			t.Errorf("the demo-config server exited 0, want non-zero; log:\n%s", out.String())
		}
		if !strings.Contains(strings.ToLower(out.String()), "demo") {
			t.Errorf("the refusal does not mention the demo keys:\n%s", out.String())
		}
		t.Logf("demo config off loopback: %v; output:\n%s", exitErr, out.String())
	})
}
