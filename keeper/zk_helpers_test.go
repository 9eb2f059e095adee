package keeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Integration tests run against the real ZooKeeper named by ZK_ADDR
// (scripts/services.sh start). Without ZK_ADDR they skip, unless
// LCPUSH_INTEGRATION=1 says the run must cover them: then they fail.

func zkServers(t *testing.T) []string {
	t.Helper()
	addr := os.Getenv("ZK_ADDR")
	if addr == "" {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatal("LCPUSH_INTEGRATION=1 but ZK_ADDR is not set: start ZooKeeper with scripts/services.sh start")
		}
		t.Skip("ZK_ADDR not set: ZooKeeper integration test skipped (scripts/services.sh start, then export ZK_ADDR)")
	}
	return strings.Split(addr, ",")
}

func testLogger() *slog.Logger {
	if os.Getenv("LCPUSH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testTree is a unique root on the real ZooKeeper, deleted after the test,
// and an admin client on it.
type testTree struct {
	servers []string
	root    string
	admin   *ZKClient
}

func newTestTree(t *testing.T) *testTree {
	t.Helper()
	servers := zkServers(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	root := "/lcpush-test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := DialZK(ctx, ZKConfig{Servers: servers, Root: root, Logger: testLogger()})
	if err != nil {
		t.Fatalf("ZK_ADDR=%s unreachable: %v", os.Getenv("ZK_ADDR"), err)
	}
	tt := &testTree{servers: servers, root: root, admin: admin}
	t.Cleanup(func() {
		if err := deleteTree(admin.conn, root); err != nil {
			t.Errorf("cleanup %s: %v", root, err)
		}
		admin.Close()
	})
	return tt
}

func deleteTree(conn *zk.Conn, p string) error {
	children, _, err := conn.Children(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := deleteTree(conn, p+"/"+c); err != nil {
			return err
		}
	}
	if err := conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	return nil
}

func (tt *testTree) zkConfig() ZKConfig {
	return ZKConfig{Servers: tt.servers, Root: tt.root, SessionTimeout: 2 * time.Second, Logger: testLogger()}
}

// startService starts a keeper on the tree and shuts it down after the test.
func (tt *testTree) startService(t *testing.T, zc ZKConfig) *Service {
	t.Helper()
	s, err := New(Config{ZK: zc, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("keeper start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// put stores yaml as the configuration, whatever is stored.
func (tt *testTree) put(t *testing.T, yaml []byte) Revision {
	t.Helper()
	rev, err := tt.admin.Put(context.Background(), yaml, VersionAny, WriteMeta{Author: "test"})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	return rev
}

// testYAML is a valid configuration told apart by its admin key.
func testYAML(adminKey string) []byte {
	return fmt.Appendf(nil, `admin_key: %s
apps:
  - id: 1
    name: test
    secret: test-secret-0123456789
    api_key: test-key-1
`, adminKey)
}

// netCutter dials ZooKeeper for one client and can cut it off, as a
// network partition would: open connections close, new dials fail.
type netCutter struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (c *netCutter) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("test: network cut")
	}
	conn, err := net.DialTimeout(network, addr, timeout)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *netCutter) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

// syncWriter lets a test read what a running RunCLI writes.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
