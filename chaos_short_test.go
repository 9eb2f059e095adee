package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/chaos"
)

// chaosLogWriter sends the chaos tool's progress lines to t.Log.
type chaosLogWriter struct{ t *testing.T }

func (w chaosLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestChaosShort is the short chaos run of the test command (issue 10):
// the 9 processes of scripts/cluster.sh on the real Redis, MariaDB and
// ZooKeeper of the environment, 20 devices ACKing every push, 50 QoS 1
// pushes/s through both centers, and one kill -9 and restart of each role
// (room, register, saver, center, coordinator), each followed by a short
// settle. It asserts that no accepted message was lost at the end of a
// phase and that none waited for a reconnect of its device.
func TestChaosShort(t *testing.T) {
	zk := zkForTest(t)
	redisAddr, dsn := redisForTest(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	settle := 8 * time.Second
	if raceEnabled {
		settle = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := chaos.Run(ctx, chaos.Config{
		Cluster: chaos.ClusterOptions{Bin: bin, Dir: dir, ZK: zk, Store: "redis", RedisAddr: redisAddr, MySQLDSN: dsn},
		Devices: 20, Rate: 50, Settle: settle, Lead: time.Second, Drain: 10 * time.Second, Baseline: 3 * time.Second,
		Faults: []string{"room", "register", "saver", "center", "coordinator"},
		Log:    chaosLogWriter{t},
	})
	if err != nil {
		t.Fatalf("chaos run: %v", err)
	}
	var md strings.Builder
	chaos.Table(&md, res)
	t.Logf("short chaos run, %.0f s:\n%s", res.Seconds, md.String())
	if res.Total.Accepted == 0 {
		t.Fatal("no push was accepted")
	}
	failed := false
	for _, ph := range res.Phases {
		if ph.Lost > 0 {
			failed = true
			t.Errorf("%s: %d of %d accepted messages not delivered at the end of the phase (%d still missing at the end)", ph.Fault, ph.Lost, ph.Accepted, ph.LostAtEnd)
		}
		if ph.WaitedReconnect > 0 {
			failed = true
			t.Errorf("%s: %d accepted messages waited for a reconnect of their device", ph.Fault, ph.WaitedReconnect)
		}
		if ph.Wrong > 0 {
			failed = true
			t.Errorf("%s: %d deliveries to the wrong device", ph.Fault, ph.Wrong)
		}
	}
	if failed || os.Getenv("LCPUSH_TEST_LOG") != "" {
		for _, ph := range res.Phases {
			if ph.Target != "" {
				t.Logf("---- %s log (tail):\n%s", ph.Target, chaosLogTail(dir, ph.Target))
			}
		}
	}
}

func chaosLogTail(dir, name string) string {
	b, err := os.ReadFile(dir + "/" + name + ".log")
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
