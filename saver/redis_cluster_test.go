package saver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/internal/testkit"
)

// The contract suite on a Redis Cluster of three masters started by the
// test: every script must touch one slot (the {uid} hash tags) and the
// pipelines must route each command to its node.
func TestRedisClusterStore(t *testing.T) {
	addrs := startCluster(t, 3)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rc.Close() })
	testStore(t, func(t *testing.T, lim Limits) Store {
		// Three MySQL writers here (one by default): users spread over them.
		return newRedisEnv(t).open(t, RedisOptions{Client: rc, DurableShards: 3, Limits: lim})
	})
	// The epoch fingerprint covers every master.
	st := newRedisEnv(t).open(t, RedisOptions{Client: rc})
	if fp := st.fingerprint(bg); strings.Count(fp, ",") != 2 {
		t.Errorf("fingerprint of 3 masters: %q", fp)
	}
}

// startCluster starts n cluster-enabled redis-servers (no persistence) and
// joins them into one cluster; it returns their addresses.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(t, bin+" not in PATH")
		}
	}
	dir := t.TempDir()
	var addrs []string
	for range n {
		port := clusterPort(t)
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--logfile", "")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		})
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	for _, a := range addrs {
		waitRedis(t, a)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		rc := redis.NewClient(&redis.Options{Addr: a})
		testkit.WaitFor(t, "cluster state ok on "+a, 5*time.Second, func() bool {
			info, err := rc.ClusterInfo(bg).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = rc.Close()
	}
	return addrs
}

// clusterPort picks a free port whose cluster bus port (+10000) is free
// too, both below the kernel's ephemeral range (32768 up).
func clusterPort(t *testing.T) int {
	for range 100 {
		p := 20000 + rand.IntN(2700)
		if free(p) && free(p+10000) {
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

func free(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func waitRedis(t *testing.T, addr string) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	testkit.WaitFor(t, "redis on "+addr, 5*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
		defer cancel()
		return rc.Ping(ctx).Err() == nil
	})
}
