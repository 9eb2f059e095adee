package saver

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/internal/testkit"
)

// Integration tests need a real Redis and MySQL (or MariaDB): REDIS_ADDR
// (host:port) and MYSQL_DSN (go-sql-driver form) in the environment, as
// scripts/services.sh start gives them. Unset: the tests skip. With
// LCPUSH_INTEGRATION=1 (CI) a missing or unreachable server fails them.

// TestMain quiets the drivers' own loggers, which print to stderr (a cut
// connection is an expected event in these tests), unless LCPUSH_TEST_LOG
// asks for logs.
func TestMain(m *testing.M) {
	if os.Getenv("LCPUSH_TEST_LOG") == "" {
		redis.SetLogger(quietLog{})
		_ = mysql.SetLogger(quietLog{})
	}
	os.Exit(m.Run())
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}
func (quietLog) Print(...any)                           {}

func integrationEnv(t testing.TB) (redisAddr, dsn string) {
	t.Helper()
	redisAddr, dsn = os.Getenv("REDIS_ADDR"), os.Getenv("MYSQL_DSN")
	if redisAddr == "" || dsn == "" {
		missing(t, "REDIS_ADDR and MYSQL_DSN not set")
	}
	return redisAddr, dsn
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("LCPUSH_INTEGRATION") == "1" {
		t.Fatalf("integration test cannot run: %s", why)
	}
	t.Skipf("integration test skipped: %s", why)
}

// openDB opens a MySQL pool for dsn (optionally through another address),
// with interpolateParams on, as DialRedis does.
func openDB(t testing.TB, dsn, addr string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("MYSQL_DSN: %v", err)
	}
	cfg.InterpolateParams = true
	if addr != "" {
		cfg.Addr = addr
	}
	cfg.Timeout = 2 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mysqlAddr(t testing.TB, dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("MYSQL_DSN: %v", err)
	}
	return cfg.Addr
}

// redisEnv is one test's share of the servers: its own key prefix and table
// prefix, removed at cleanup.
type redisEnv struct {
	rc      *redis.Client
	db      *sql.DB
	dsn     string
	prefix  string
	tprefix string
}

func newRedisEnv(t testing.TB) *redisEnv {
	t.Helper()
	addr, dsn := integrationEnv(t)
	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	if err := rc.Ping(ctx).Err(); err != nil {
		missing(t, fmt.Sprintf("redis %s: %v", addr, err))
	}
	db := openDB(t, dsn, "")
	if err := db.PingContext(ctx); err != nil {
		missing(t, fmt.Sprintf("mysql: %v", err))
	}
	tok := newToken()[:10]
	e := &redisEnv{rc: rc, db: db, dsn: dsn, prefix: "lcpt" + tok + ":", tprefix: "t" + tok + "_"}
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

func (e *redisEnv) cleanup(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dropKeys(ctx, e.rc, e.prefix)
	tb := newTables(e.tprefix)
	for _, name := range []string{tb.inbox, tb.broadcast, tb.backs, tb.cursors, tb.version} {
		if _, err := e.db.ExecContext(ctx, "DROP TABLE IF EXISTS `"+name+"`"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	}
}

func dropKeys(ctx context.Context, rc *redis.Client, prefix string) {
	iter := rc.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		_ = rc.Del(ctx, keys[:n]...).Err()
		keys = keys[n:]
	}
}

// options fills o with the env's servers and names.
func (e *redisEnv) options(o RedisOptions) RedisOptions {
	if o.Client == nil {
		o.Client = e.rc
	}
	if o.DB == nil {
		o.DB = e.db
	}
	o.Prefix, o.TablePrefix = e.prefix, e.tprefix
	if o.Logger == nil && os.Getenv("LCPUSH_TEST_LOG") != "" {
		o.Logger = testLogger()
	}
	return o
}

func (e *redisEnv) open(t testing.TB, o RedisOptions) *RedisStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	st, err := OpenRedis(ctx, e.options(o))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// rows counts the rows of one of the env's tables matching where.
func (e *redisEnv) rows(t testing.TB, table, where string, args ...any) int {
	t.Helper()
	var n int
	q := "SELECT COUNT(*) FROM `" + e.tprefix + table + "`"
	if where != "" {
		q += " WHERE " + where
	}
	if err := e.db.QueryRowContext(bg, q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func newRedisStore(t *testing.T, lim Limits) Store {
	return newRedisEnv(t).open(t, RedisOptions{Limits: lim})
}

func TestRedisStore(t *testing.T) { testStore(t, newRedisStore) }

// testLogger writes the store's logs to stderr (LCPUSH_TEST_LOG=1).
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// loseRedis empties the env's Redis keys and waits for st to see a new
// epoch and to restore the broadcasts from MySQL (probe: one of them).
func loseRedis(t *testing.T, env *redisEnv, st *RedisStore, probe uint64) {
	t.Helper()
	ep := *st.epoch.Load()
	dropKeys(bg, env.rc, env.prefix)
	testkit.WaitFor(t, "a new epoch", 5*time.Second, func() bool { return *st.epoch.Load() != ep })
	testkit.WaitFor(t, "broadcasts restored", 5*time.Second, func() bool {
		return env.rc.HExists(bg, keyspace{env.prefix}.broadcasts(), "m"+id8(probe)).Val() && !st.restore.Load()
	})
}
