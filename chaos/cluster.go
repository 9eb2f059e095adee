package chaos

import (
	"bufio"
	"context"
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

	"github.com/lcpush/lcpush/loadgen"
)

// ClusterOptions describe the 9 processes of scripts/cluster.sh: 2 rooms,
// 2 registers, 1 saver, 1 coordinator, 2 centers, 1 dispatcher.
type ClusterOptions struct {
	Bin       string // lcpush binary
	Dir       string // logs, data, the seed configuration
	ZK        string // ZooKeeper host:port
	Store     string // saver store: bolt or redis
	RedisAddr string // -store redis
	MySQLDSN  string // -store redis
	// ReadyTimeout bounds a process's start until /readyz (default 60 s).
	ReadyTimeout time.Duration
	Log          io.Writer // progress lines (nil: discard)
}

// proc is one lcpush process of the cluster; a restart reuses its
// arguments (same id, ports and data) as an operator would.
type proc struct {
	name     string
	args     []string
	admin    string
	cmd      *exec.Cmd
	done     chan struct{}
	restarts int
}

// Cluster is a running set of lcpush processes this package started. It
// starts them itself, not through scripts/cluster.sh: it needs each
// process's pid and exact command line to kill -9 and restart it, and to
// know when it died, and the test binary passes its own (-race) build.
type Cluster struct {
	o        ClusterOptions
	procs    []*proc
	byName   map[string]*proc
	Rooms    []string // device TCP addresses
	Centers  []string // Center API base URLs
	Dispatch string   // dispatcher base URL
	Root     string   // ZooKeeper root of this cluster
	auth     string   // ZooKeeper credential file
}

// Demo keys of the configuration the cluster is seeded with.
const (
	appID    = 1
	apiKey   = "demo-key-app-1"
	secret   = "demo-secret-app-1-change-me"
	adminKey = "demo-admin-key"
)

// seedConfig is the bench's configuration (loadgen.BenchConfig: the demo
// app with the API throttles, per-IP connection caps and connect rate lifted,
// since a room killed under 100 devices sees them all come back at once from
// one loopback address), plus a short saver reconcile period. Everything
// else keeps its default.
var seedConfig = loadgen.BenchConfig(0, `saver:
  reconcile_every: 5s  # stats must agree with the store within 10 s of a run
`)

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// StartCluster starts the 9 processes in dependency order, each waited
// for until its /readyz answers.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Store == "" {
		o.Store = "bolt"
	}
	if o.Store == "redis" && (o.RedisAddr == "" || o.MySQLDSN == "") {
		return nil, errors.New("chaos: store redis needs a Redis address and a MySQL DSN")
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{o: o, byName: map[string]*proc{}, Root: fmt.Sprintf("/lcpush-chaos-%d", time.Now().UnixNano())}
	cfg := filepath.Join(o.Dir, "seed.yaml")
	if err := os.WriteFile(cfg, []byte(seedConfig), 0o600); err != nil {
		return nil, err
	}
	c.auth = filepath.Join(o.Dir, "zk-auth")
	if err := os.WriteFile(c.auth, []byte(fmt.Sprintf("chaos:%d\n", time.Now().UnixNano())), 0o600); err != nil {
		return nil, err
	}
	addrs := make([]string, 20)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	storeArgs := []string{"-data", filepath.Join(o.Dir, "saver-1")}
	if o.Store == "redis" {
		storeArgs = []string{"-store", "redis", "-redis", o.RedisAddr, "-mysql", o.MySQLDSN}
	} else if o.Store != "bolt" {
		return nil, fmt.Errorf("chaos: store %q (want bolt or redis)", o.Store)
	}
	c.Rooms = []string{addrs[4], addrs[5]}
	c.Centers = []string{"http://" + addrs[8], "http://" + addrs[9]}
	c.Dispatch = "http://" + addrs[10]
	specs := []struct {
		name string
		args []string
	}{
		{"register-1", []string{"-target", "register", "-id", "register-1", "-rpc-addr", addrs[0]}},
		{"register-2", []string{"-target", "register", "-id", "register-2", "-rpc-addr", addrs[1]}},
		{"saver-1", append([]string{"-target", "saver", "-id", "saver-1", "-rpc-addr", addrs[2]}, storeArgs...)},
		{"coordinator-1", []string{"-target", "coordinator", "-id", "coordinator-1", "-rpc-addr", addrs[3]}},
		{"room-a", []string{"-target", "room", "-room-id", "room-a", "-room-addr", addrs[4], "-rpc-addr", addrs[6]}},
		{"room-b", []string{"-target", "room", "-room-id", "room-b", "-room-addr", addrs[5], "-rpc-addr", addrs[7]}},
		{"center-1", []string{"-target", "center", "-id", "center-1", "-node", "1", "-center-addr", addrs[8]}},
		{"center-2", []string{"-target", "center", "-id", "center-2", "-node", "2", "-center-addr", addrs[9]}},
		{"dispatcher-1", []string{"-target", "dispatcher", "-id", "dispatcher-1", "-dispatch-addr", addrs[10]}},
	}
	for i, s := range specs {
		admin := addrs[11+i]
		p := &proc{name: s.name, admin: admin, args: append([]string{
			"-zk", o.ZK, "-zk-root", c.Root, "-zk-auth-file", c.auth, "-config", cfg, "-admin-addr", admin,
		}, s.args...)}
		c.procs = append(c.procs, p)
		c.byName[p.name] = p
		if err := c.Start(ctx, p.name); err != nil {
			c.Stop()
			return nil, err
		}
	}
	fmt.Fprintf(o.Log, "chaos: cluster up (store %s, ZooKeeper %s, root %s), logs in %s\n", o.Store, o.ZK, c.Root, o.Dir)
	return c, nil
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Start starts name (again) with its arguments and waits until it is ready.
func (c *Cluster) Start(ctx context.Context, name string) error {
	p := c.byName[name]
	if p == nil {
		return fmt.Errorf("chaos: no process %q", name)
	}
	if !isClosed(p.done) {
		return fmt.Errorf("chaos: %s is running", name)
	}
	logf, err := os.OpenFile(filepath.Join(c.o.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if p.cmd != nil {
		p.restarts++
		fmt.Fprintf(logf, "==== chaos: restart %d at %s\n", p.restarts, time.Now().UTC().Format(time.RFC3339Nano))
	}
	cmd := exec.Command(c.o.Bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The processes die with this one (a killed test binary leaves none).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start %s: %w", name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(p.done)
	return c.waitReady(ctx, p)
}

func (c *Cluster) waitReady(ctx context.Context, p *proc) error {
	deadline := time.Now().Add(c.o.ReadyTimeout)
	hc := http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := hc.Get("http://" + p.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if isClosed(p.done) {
			return fmt.Errorf("chaos: %s exited before it was ready; log: %s\n%s", p.name, c.LogPath(p.name), c.LogTail(p.name, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: %s not ready after %s; log %s:\n%s", p.name, c.o.ReadyTimeout, c.LogPath(p.name), c.LogTail(p.name, 20))
}

// Kill9 sends SIGKILL to name and waits until it is gone.
func (c *Cluster) Kill9(name string) error {
	p := c.byName[name]
	if p == nil || p.cmd == nil {
		return fmt.Errorf("chaos: no process %q", name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Alive lists the processes that are not running (they should all be).
func (c *Cluster) Dead() []string {
	var out []string
	for _, p := range c.procs {
		if isClosed(p.done) {
			out = append(out, p.name)
		}
	}
	return out
}

// Stop sends SIGTERM to every process and waits (15 s, then SIGKILL).
func (c *Cluster) Stop() {
	for _, p := range c.procs {
		if !isClosed(p.done) {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range c.procs {
		if p.done == nil {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// LogPath is the log file of name.
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.o.Dir, name+".log") }

// LogTail returns the last n lines of name's log.
func (c *Cluster) LogTail(name string, n int) string {
	b, _ := os.ReadFile(c.LogPath(name))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Server is an external server (Redis, MariaDB, ZooKeeper) the faults stop
// and restart. It is known by pid, as scripts/services.sh started it; a
// restart re-runs the same command line (read from /proc before the stop:
// argv, working directory, environment, where stdout and stderr went), and
// the new pid is written back into the services.sh env file so that
// `scripts/services.sh stop` stops the new process.
type Server struct {
	Kind    string // redis, mariadb or zookeeper
	Addr    string // host:port
	PID     int
	EnvFile string // $SVC_DIR/env (empty: not updated)
	EnvKey  string // REDIS_PID, MYSQL_PID or ZK_PID
	snap    *procSnap
}

type procSnap struct {
	exe      string // the binary (argv[0] may name a link to it, which matters: redis-server)
	argv     []string
	cwd      string
	env      []string
	out, err string
}

func snapshot(pid int) (*procSnap, error) {
	root := "/proc/" + strconv.Itoa(pid)
	raw, err := os.ReadFile(root + "/cmdline")
	if err != nil || len(raw) == 0 {
		return nil, fmt.Errorf("chaos: pid %d: no command line: %v", pid, err)
	}
	s := &procSnap{argv: strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")}
	s.cwd, _ = os.Readlink(root + "/cwd")
	if exe, err := os.Readlink(root + "/exe"); err == nil && strings.HasPrefix(exe, "/") && !strings.HasSuffix(exe, " (deleted)") {
		s.exe = exe
	}
	if f := strings.Fields(s.argv[0]); len(f) > 0 {
		s.argv[0] = f[0] // a process title ("redis-server host:port") keeps its name
	}
	if env, err := os.ReadFile(root + "/environ"); err == nil {
		s.env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	fdPath := func(fd int) string {
		p, err := os.Readlink(root + "/fd/" + strconv.Itoa(fd))
		if err != nil || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
			return os.DevNull
		}
		return p
	}
	s.out, s.err = fdPath(1), fdPath(2)
	return s, nil
}

func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// Stop sends sig and waits up to within for the process to be gone.
func (s *Server) Stop(sig syscall.Signal, within time.Duration) error {
	if s.PID <= 0 || !pidAlive(s.PID) {
		return fmt.Errorf("chaos: %s pid %d is not running", s.Kind, s.PID)
	}
	snap, err := snapshot(s.PID)
	if err != nil {
		return err
	}
	if s.Kind == "redis" {
		// Redis writes its title over its argv ("redis-server host:port"):
		// ask it for the settings services.sh gave it instead.
		if snap.argv, err = redisArgv(s.Addr, snap.argv[0]); err != nil {
			return err
		}
	}
	s.snap = snap
	if err := syscall.Kill(s.PID, sig); err != nil {
		return fmt.Errorf("chaos: %s: kill %d: %w", s.Kind, s.PID, err)
	}
	deadline := time.Now().Add(within)
	for pidAlive(s.PID) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(s.PID, syscall.SIGKILL)
			if time.Now().After(deadline.Add(5 * time.Second)) {
				return fmt.Errorf("chaos: %s pid %d still alive", s.Kind, s.PID)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Restart starts the stopped server with its old command line and waits
// until it answers (within).
func (s *Server) Restart(ctx context.Context, within time.Duration) error {
	if s.snap == nil {
		return fmt.Errorf("chaos: %s was not stopped by us", s.Kind)
	}
	open := func(p string) (*os.File, error) {
		return os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	out, err := open(s.snap.out)
	if err != nil {
		return err
	}
	defer out.Close()
	errf := out
	if s.snap.err != s.snap.out {
		if errf, err = open(s.snap.err); err != nil {
			return err
		}
		defer errf.Close()
	}
	cmd := exec.Command(s.snap.argv[0], s.snap.argv[1:]...)
	if s.snap.exe != "" {
		cmd.Path, cmd.Err = s.snap.exe, nil
	}
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = s.snap.cwd, s.snap.env, out, errf
	// Its own session: it outlives this tool, like the one services.sh started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: restart %s: %w", s.Kind, err)
	}
	s.PID = cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reaped while we run; init's child after
	if err := s.writeEnv(); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		if s.Ready() {
			return nil
		}
		if !pidAlive(s.PID) {
			return fmt.Errorf("chaos: %s exited after its restart", s.Kind)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s not answering %s after its restart", s.Kind, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeEnv replaces the PID line of the services.sh env file.
func (s *Server) writeEnv() error {
	if s.EnvFile == "" || s.EnvKey == "" {
		return nil
	}
	b, err := os.ReadFile(s.EnvFile)
	if err != nil {
		return nil // stopped already, or not ours: nothing to keep in step
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "export "+s.EnvKey+"=") {
			lines[i] = fmt.Sprintf("export %s='%d'", s.EnvKey, s.PID)
		}
	}
	return os.WriteFile(s.EnvFile, []byte(strings.Join(lines, "\n")), 0o644)
}

// Ready reports whether the server answers its protocol's probe.
func (s *Server) Ready() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	switch s.Kind {
	case "redis":
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return false
		}
		n, _ := io.ReadAtLeast(c, buf, 5)
		return strings.HasPrefix(string(buf[:n]), "+PONG")
	case "zookeeper":
		if _, err := c.Write([]byte("srvr")); err != nil {
			return false
		}
		b, _ := io.ReadAll(io.LimitReader(c, 4096))
		return strings.Contains(string(b), "Mode: standalone") || strings.Contains(string(b), "Mode: leader") || strings.Contains(string(b), "Mode: follower")
	default: // mariadb: the server greeting packet
		n, _ := io.ReadAtLeast(c, buf, 5)
		return n >= 5 && buf[4] == 10 // protocol version 10
	}
}

// redisArgv rebuilds a Redis command line from its running configuration
// (CONFIG GET), for the settings scripts/services.sh passes.
func redisArgv(addr, exe string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("chaos: redis %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	argv := []string{exe}
	for _, k := range []string{"port", "bind", "protected-mode", "save", "appendonly", "dir", "logfile", "daemonize"} {
		if _, err := fmt.Fprintf(c, "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k); err != nil {
			return nil, err
		}
		vals, err := readRESPArray(br)
		if err != nil || len(vals) != 2 {
			return nil, fmt.Errorf("chaos: redis CONFIG GET %s: %v %q", k, err, vals)
		}
		v := vals[1]
		if k == "bind" {
			v = strings.Fields(v + " 127.0.0.1")[0]
		}
		if k == "daemonize" {
			v = "no"
		}
		argv = append(argv, "--"+k, v)
	}
	return argv, nil
}

// readRESPArray reads an array of bulk strings.
func readRESPArray(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	for range n {
		h, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		h = strings.TrimRight(h, "\r\n")
		if !strings.HasPrefix(h, "$") {
			return nil, fmt.Errorf("unexpected reply %q", h)
		}
		l, err := strconv.Atoi(h[1:])
		if err != nil || l < 0 {
			return nil, fmt.Errorf("unexpected reply %q", h)
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		out = append(out, string(b[:l]))
	}
	return out, nil
}
