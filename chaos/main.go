package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const usageText = `lcpush chaos: faults one at a time against a cluster of 9 processes under load

usage: lcpush chaos [flags]

It starts the processes of scripts/cluster.sh itself (2 rooms, 2 registers,
saver, coordinator, 2 centers, dispatcher) on free loopback ports, on the
Redis, MariaDB and ZooKeeper of the environment (REDIS_ADDR, MYSQL_DSN,
ZK_ADDR and their REDIS_PID, MYSQL_PID, ZK_PID from scripts/services.sh;
without them it runs scripts/services.sh start itself, from the module
root, and stops them at the end). N devices connect and ACK every push;
pushers send QoS 1 unicasts through both centers; then each fault, one at a
time, each followed by the settle time. It prints a table, writes the
results file (-out) and, with -doc, the table into that markdown file.

  lcpush chaos                                  # the full run: 200 devices, 300/s, settle 30 s
  lcpush chaos -devices 20 -rate 50 -settle 8s -faults room,register,saver,center,coordinator
  lcpush chaos -doc docs/reliability.md -out docs/reliability.json

Faults: room (kill -9 of the room holding more devices), register, saver,
center, coordinator, dispatcher (kill -9 of register-1, saver-1, center-1,
coordinator-1, dispatcher-1), kill:PROCESS (any of the 9), each restarted
at once; redis (SIGKILL and an immediate restart); mariadb and zookeeper
(stopped -outage, then started).

Flags:
`

// Main runs the chaos command; args follow "chaos".
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText); fs.PrintDefaults() }
	self, _ := os.Executable()
	bin := fs.String("bin", self, "lcpush binary the cluster processes run")
	dir := fs.String("dir", "", "logs, data and the seed config of the cluster (default: a new temp dir)")
	store := fs.String("store", "redis", "saver store: redis (Redis + MariaDB) or bolt")
	redisAddr := fs.String("redis", os.Getenv("REDIS_ADDR"), "Redis address")
	mysqlDSN := fs.String("mysql", os.Getenv("MYSQL_DSN"), "MySQL/MariaDB DSN")
	zkAddr := fs.String("zk", os.Getenv("ZK_ADDR"), "ZooKeeper address")
	svcEnv := fs.String("svc-env", "", "scripts/services.sh env file with the servers' pids (default $SVC_DIR/env, else the REDIS_PID, MYSQL_PID, ZK_PID variables)")
	devices := fs.Int("devices", 200, "devices")
	rate := fs.Float64("rate", 300, "QoS 1 pushes per second, through both centers")
	settle := fs.Duration("settle", 30*time.Second, "load after each fault is over")
	lead := fs.Duration("lead", 2*time.Second, "load before each fault")
	drainD := fs.Duration("drain", 10*time.Second, "after the settle, pushers paused: wait at most this long for the last deliveries")
	baseline := fs.Duration("baseline", 10*time.Second, "a phase without fault first (0: none)")
	outage := fs.Duration("outage", 10*time.Second, "how long mariadb and zookeeper stay stopped")
	faults := fs.String("faults", "", "comma separated faults (default: "+strings.Join(DefaultFaults, ",")+"; with -store bolt without redis and mariadb)")
	out := fs.String("out", "", "results file (JSON; default DIR/chaos-result.json)")
	doc := fs.String("doc", "", "markdown file whose generated section gets the table (e.g. docs/reliability.md)")
	render := fs.String("render", "", "run nothing: print the table of this results file (and write it into -doc)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("chaos: unexpected arguments %q", fs.Args())
	}
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			return err
		}
		var res Result
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("chaos: %s: %w", *render, err)
		}
		Table(stdout, &res)
		if *doc != "" {
			return UpdateDoc(*doc, &res)
		}
		return nil
	}
	cfg := Config{Devices: *devices, Rate: *rate, Settle: *settle, Lead: *lead, Drain: *drainD,
		Baseline: *baseline, Outage: *outage, Log: stderr, Servers: map[string]*Server{}}
	if *baseline == 0 {
		cfg.Baseline = -1
	}
	if *faults != "" {
		cfg.Faults = strings.Split(*faults, ",")
		if err := CheckFaults(cfg.Faults); err != nil {
			return err
		}
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "lcpush-chaos-")
		if err != nil {
			return err
		}
		*dir = d
	}
	if *bin == "" {
		return errors.New("chaos: -bin: no binary")
	}

	// The servers: given, or started here with scripts/services.sh.
	envFile := *svcEnv
	if envFile == "" && os.Getenv("SVC_DIR") != "" {
		envFile = filepath.Join(os.Getenv("SVC_DIR"), "env")
	}
	vars := map[string]string{}
	for _, k := range []string{"REDIS_PID", "MYSQL_PID", "ZK_PID"} {
		vars[k] = os.Getenv(k)
	}
	needRedis := *store == "redis" && (*redisAddr == "" || *mysqlDSN == "")
	if *zkAddr == "" || needRedis {
		svcDir := filepath.Join(*dir, "services")
		fmt.Fprintf(stderr, "chaos: servers not given: scripts/services.sh start (SVC_DIR=%s)\n", svcDir)
		cmd := exec.CommandContext(ctx, "bash", "scripts/services.sh", "start")
		cmd.Env = append(os.Environ(), "SVC_DIR="+svcDir)
		cmd.Stdout, cmd.Stderr = io.Discard, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("chaos: scripts/services.sh start (run from the module root): %w", err)
		}
		defer func() {
			c := exec.Command("bash", "scripts/services.sh", "stop")
			c.Env = append(os.Environ(), "SVC_DIR="+svcDir)
			c.Stdout, c.Stderr = io.Discard, io.Discard
			_ = c.Run()
		}()
		envFile = filepath.Join(svcDir, "env")
		vars = map[string]string{}
		*redisAddr, *mysqlDSN, *zkAddr = "", "", ""
	}
	if envFile != "" {
		if b, err := os.ReadFile(envFile); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "=")
				if ok {
					vars[k] = strings.Trim(v, "'")
				}
			}
		}
	}
	pick := func(cur *string, key string) {
		if *cur == "" {
			*cur = vars[key]
		}
	}
	pick(redisAddr, "REDIS_ADDR")
	pick(mysqlDSN, "MYSQL_DSN")
	pick(zkAddr, "ZK_ADDR")
	if *zkAddr == "" {
		return errors.New("chaos: no ZooKeeper (-zk or ZK_ADDR)")
	}
	for kind, keys := range map[string][2]string{
		"redis": {"REDIS_PID", *redisAddr}, "mariadb": {"MYSQL_PID", mysqlAddr(*mysqlDSN)}, "zookeeper": {"ZK_PID", *zkAddr},
	} {
		if pid, err := strconv.Atoi(vars[keys[0]]); err == nil && pid > 0 && keys[1] != "" {
			cfg.Servers[kind] = &Server{Kind: kind, Addr: keys[1], PID: pid, EnvFile: envFile, EnvKey: keys[0]}
		}
	}
	cfg.Cluster = ClusterOptions{Bin: *bin, Dir: *dir, ZK: *zkAddr, Store: *store, RedisAddr: *redisAddr, MySQLDSN: *mysqlDSN, Log: stderr}

	res, err := Run(ctx, cfg)
	if res == nil {
		return err
	}
	res.Args = append([]string{"lcpush", "chaos"}, args...)
	if wd, werr := os.Getwd(); werr == nil {
		res.Commit = gitCommit(wd)
	}
	if *out == "" {
		*out = filepath.Join(*dir, "chaos-result.json")
	}
	if werr := WriteJSON(*out, res); werr != nil {
		return errors.Join(err, werr)
	}
	fmt.Fprintln(stdout)
	Table(stdout, res)
	fmt.Fprintf(stdout, "\nresults: %s (logs in %s)\n", *out, *dir)
	if *doc != "" && err == nil {
		if werr := UpdateDoc(*doc, res); werr != nil {
			return errors.Join(err, werr)
		}
		fmt.Fprintf(stdout, "table written into %s\n", *doc)
	}
	if err != nil {
		return err
	}
	if res.Total.Lost > 0 || res.Total.WaitedReconnect > 0 {
		return ErrFailed
	}
	return nil
}

// mysqlAddr is the host:port of a DSN user:pass@tcp(host:port)/db.
func mysqlAddr(dsn string) string {
	_, rest, ok := strings.Cut(dsn, "@tcp(")
	if !ok {
		return ""
	}
	addr, _, _ := strings.Cut(rest, ")")
	return addr
}
