package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target is the server under test: a process the tool started (lcpush or
// the naive baseline) or one given by address.
type Target struct {
	Kind  string   `json:"kind"`            // lcpush, lcpush-ws (-transport ws), naive, nats, mqtt, centrifugo or external
	Store string   `json:"store,omitempty"` // lcpush's -store when the tool started it
	Rooms []string `json:"rooms"`
	// WSRooms are the room's WebSocket listeners (lcpush with -transport
	// ws: -room-ws-addr); the clients dial them instead of Rooms.
	WSRooms []string `json:"ws_rooms,omitempty"`
	API     string   `json:"api"` // base URL of the push API
	// TTL is the broadcasts' ttl in seconds (0: 60).
	TTL int `json:"ttl,omitempty"`
	// APIs are more centers' push API base URLs (a cluster): the bcast
	// scenario reads its job through every one of them.
	APIs   []string `json:"apis,omitempty"`
	Admin  string   `json:"admin"` // base URL of /metrics and /debug/pprof
	PID    int      `json:"pid"`
	PIDs   []int    `json:"pids,omitempty"` // more server processes (several rooms): RSS is their sum
	App    uint32   `json:"app"`
	Secret string   `json:"-"`
	APIKey string   `json:"-"`

	cmd      *exec.Cmd
	dir      string
	done     chan struct{}
	publish  func(context.Context, []byte) error // peers: Broadcast publishes on this connection
	closePub func()
}

// Demo credentials of app 1 (config.demo.yaml), the default of every run.
const (
	demoSecret = "demo-secret-app-1-change-me"
	demoAPIKey = "demo-key-app-1"
)

// benchConfig is the demo configuration with the API throttles opened: the
// bench measures the gateway, not the per-app limits. The chaos run seeds
// its cluster with the same text (BenchConfig).
const benchConfig = `admin_key: demo-admin-key
apps:
  - id: 1
    name: demo-chat
    secret: demo-secret-app-1-change-me
    api_key: demo-key-app-1
    push_rate: 1000000
    broadcast_rate: 100000000
room:
  heartbeat_min: 10
  heartbeat_max: 600
  heartbeat_default: 60
  heartbeat_grace: 10s
  auth_deadline: 10s
  max_conns: %d
  max_conns_per_ip: 200000
  # Load from a few loopback addresses: lift the per-IP and pre-auth caps.
  max_unauthed: 200000
  max_unauthed_per_ip: 200000
  connect_rate_per_ip: -1
  limits:
    ack: {rate: 1000, burst: 65535}  # the load tool ACKs once per read
center:
  max_jobs_per_app: 64  # the stream scenario keeps 16 broadcasts in flight
`

// BenchConfig returns the configuration a started lcpush runs the bench
// with: the demo app 1 (config.demo.yaml's credentials), the API throttles
// opened, and the per-IP connection caps and connect rate lifted for a load
// from a few loopback addresses. maxConns is the room cap (0: the default);
// extra, when set, is YAML appended at the top level (a section the bench
// configuration does not set, e.g. "saver:").
func BenchConfig(maxConns int, extra string) string {
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	return fmt.Sprintf(benchConfig, maxConns) + extra
}

// serverYAMLEnv names YAML appended to a started lcpush's configuration
// (BenchConfig's extra): a setting a run compares, such as
// LCPUSH_BENCH_YAML=$'saver:\n  bolt_batch_delay: 4ms'.
const serverYAMLEnv = "LCPUSH_BENCH_YAML"

// defaultMaxConns is the room cap of a started lcpush unless -max-conns
// says otherwise: below the 20,000 open-files limit of the process.
const defaultMaxConns = 18000

// freePorts reserves n loopback ports by binding and releasing them.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startTarget starts kind ("lcpush" or "naive") from bin and waits until it
// answers. selfArgs reach loadgen's Main inside bin (for naive-server).
// maxConns is the room cap written into the lcpush configuration (0: the default).
// cpus, when set, pins the server with taskset (e.g. "0"), so the clients
// (pinned by the caller) and the server do not share a core.
// store is lcpush's -store (memory when empty).
func startTarget(ctx context.Context, kind, bin string, selfArgs []string, maxConns int, cpus, store string, withWS bool, stderr io.Writer) (*Target, error) {
	if store == "" {
		store = "memory"
	}
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-target-")
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	t := &Target{Kind: kind, App: 1, Secret: demoSecret, APIKey: demoAPIKey, dir: dir, done: make(chan struct{})}
	var args []string
	switch kind {
	case "lcpush":
		cfgPath := filepath.Join(dir, "bench.yaml")
		if err := os.WriteFile(cfgPath, []byte(BenchConfig(maxConns, os.Getenv(serverYAMLEnv))), 0o600); err != nil {
			return nil, err
		}
		args = []string{"-config", cfgPath, "-store", store, "-data", filepath.Join(dir, "data"),
			"-room-addr", addr(0), "-center-addr", addr(1), "-dispatch-addr", addr(2),
			"-admin-addr", addr(3), "-log-level", "warn"}
		t.Rooms, t.API, t.Admin, t.Store = []string{addr(0)}, "http://"+addr(1), "http://"+addr(3), store
		if withWS {
			args = append(args, "-room-ws-addr", addr(4))
			t.WSRooms, t.Kind = []string{addr(4)}, "lcpush-ws"
		}
	case "naive":
		args = append(append([]string{}, selfArgs...), "naive-server", "-addr", addr(0), "-http", addr(1),
			"-app", "1", "-secret", demoSecret)
		t.Rooms, t.API, t.Admin = []string{addr(0)}, "http://"+addr(1), "http://"+addr(1)
	default:
		return nil, fmt.Errorf("%w: unknown target %q (lcpush or naive)", ErrUsage, kind)
	}
	t.cmd = exec.Command(bin, args...)
	if cpus != "" {
		// taskset execs the server: the process id stays the server's.
		t.cmd = exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
	}
	t.cmd.Stdout, t.cmd.Stderr = stderr, stderr
	if err := t.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: start %s: %v", ErrTarget, bin, err)
	}
	t.PID = t.cmd.Process.Pid
	go func() { _ = t.cmd.Wait(); close(t.done) }()
	if err := t.waitReady(ctx, 60*time.Second); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

func (t *Target) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-t.done:
			return fmt.Errorf("%w: %s exited before it was ready", ErrTarget, t.Kind)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if t.get(ctx, t.Admin+"/healthz", io.Discard) != nil {
			continue
		}
		if c, err := net.DialTimeout("tcp", t.Rooms[0], time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("%w: %s not ready after %s", ErrTimeout, t.Kind, within)
}

// Stop ends a process the tool started (SIGTERM, then SIGKILL).
func (t *Target) Stop() {
	if t.closePub != nil {
		t.closePub()
	}
	if t.cmd == nil || t.cmd.Process == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(15 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
	os.RemoveAll(t.dir)
}

var httpc = &http.Client{Timeout: 10 * time.Second}

func (t *Target) get(ctx context.Context, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: %s", ErrTarget, url, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// Mem is a memory reading of the target.
type Mem struct {
	RSS       int64 `json:"rss_bytes"`        // VmRSS of the process (0 when unknown)
	HeapInuse int64 `json:"heap_inuse"`       // go_memstats_heap_inuse_bytes after a GC
	Goroutine int64 `json:"goroutines"`       // go_goroutines
	SockMem   int64 `json:"kernel_tcp_mem"`   // /proc/net/sockstat TCP mem, bytes, whole machine
	SockInuse int64 `json:"kernel_tcp_inuse"` // TCP sockets in use, whole machine
	Slab      int64 `json:"kernel_slab"`      // /proc/meminfo Slab, whole machine: socket, file and epoll structures
}

// Memory forces a GC in the target (pprof heap?gc=1), then reads its
// metrics, its RSS and the kernel's TCP memory.
func (t *Target) Memory(ctx context.Context) (Mem, error) {
	var m Mem
	if t.Admin != "" {
		_ = t.get(ctx, t.Admin+"/debug/pprof/heap?gc=1", io.Discard)
		var buf bytes.Buffer
		if err := t.get(ctx, t.Admin+"/metrics", &buf); err != nil {
			return m, err
		}
		m.HeapInuse = int64(metricValue(buf.Bytes(), "go_memstats_heap_inuse_bytes"))
		m.Goroutine = int64(metricValue(buf.Bytes(), "go_goroutines"))
	}
	for _, pid := range append([]int{t.PID}, t.PIDs...) {
		if pid > 0 {
			m.RSS += procRSS(pid)
		}
	}
	m.SockInuse, m.SockMem = sockstat()
	m.Slab = meminfoKB("Slab:") * 1024
	return m, nil
}

// metricValue finds an unlabelled sample in Prometheus text format.
func metricValue(text []byte, name string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// meminfoKB reads one "Name: N kB" line of /proc/meminfo.
func meminfoKB(name string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// sockstat reads "TCP: inuse X ... mem M" (M in pages) of /proc/net/sockstat.
func sockstat() (inuse, memBytes int64) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				inuse = v
			case "mem":
				memBytes = v * int64(os.Getpagesize())
			}
		}
	}
	return inuse, memBytes
}

// ErrRateLimited is a 429 from the push API.
var ErrRateLimited = errors.New("loadgen: push API rate limited")

// Broadcast sends payload to every connection of the app through the push
// API (Center's POST /v1/apps/{app}/broadcast, or the naive server's).
func (t *Target) Broadcast(ctx context.Context, payload []byte, qos int) error {
	_, err := t.BroadcastJob(ctx, payload, qos, 0)
	return err
}

// BroadcastJob is Broadcast with a delivery rate (0: the app's) that
// returns the job id of the answer ("" when the target names none).
func (t *Target) BroadcastJob(ctx context.Context, payload []byte, qos int, rate float64) (string, error) {
	if t.publish != nil {
		return "", t.publish(ctx, payload)
	}
	ttl := t.TTL
	if ttl <= 0 {
		ttl = 60
	}
	req := map[string]any{"data": base64.StdEncoding.EncodeToString(payload), "qos": qos, "ttl": ttl}
	if rate > 0 {
		req["rate"] = rate
	}
	body, _ := json.Marshal(req)
	url := fmt.Sprintf("%s/v1/apps/%d/broadcast", t.API, t.App)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Authorization", "Bearer "+t.APIKey)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(hreq)
	if err != nil {
		return "", fmt.Errorf("%w: broadcast: %v", ErrTarget, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return "", ErrRateLimited
	case resp.StatusCode/100 != 2:
		return "", fmt.Errorf("%w: broadcast: %s %s", ErrTarget, resp.Status, bytes.TrimSpace(msg))
	}
	var ans struct {
		JobID string `json:"job_id"`
	}
	_ = json.Unmarshal(msg, &ans) // the naive server and older answers may differ
	return ans.JobID, nil
}
