package saver

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

func schemaVersions(t *testing.T, env *redisEnv) []int {
	t.Helper()
	rows, err := env.db.QueryContext(bg, "SELECT version FROM `"+newTables(env.tprefix).version+"` ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrations(t *testing.T) {
	env := newRedisEnv(t)
	tb := newTables(env.tprefix)
	last := migrations[len(migrations)-1].version
	next := append(slices.Clone(migrations), migration{version: last + 1, stmts: []string{
		"CREATE TABLE IF NOT EXISTS `{inbox}_extra` (id INT PRIMARY KEY)",
	}})
	all := make([]int, 0, last+1)
	for _, m := range next {
		all = append(all, m.version)
	}
	t.Cleanup(func() { _, _ = env.db.ExecContext(bg, "DROP TABLE IF EXISTS `"+tb.inbox+"_extra`") })
	for _, tc := range []struct {
		name    string
		ms      []migration
		applied []int
		err     error
	}{
		{"the previous version's schema", migrations[:1], []int{1}, nil},
		{"this version's", migrations, all[1:last], nil},
		{"again: nothing to do", migrations, nil, nil},
		{"a new version", next, []int{last + 1}, nil},
		{"an older binary refuses the newer schema", migrations, nil, ErrSchema},
	} {
		applied, err := migrate(bg, env.db, tb, tc.ms)
		if !errors.Is(err, tc.err) || !slices.Equal(applied, tc.applied) {
			t.Fatalf("%s: applied %v, err %v; want %v, %v", tc.name, applied, err, tc.applied, tc.err)
		}
	}
	if vs := schemaVersions(t, env); !slices.Equal(vs, all) {
		t.Fatalf("recorded versions %v", vs)
	}
}

// Savers starting together apply each version once; a version whose
// statements ran but was not recorded (a crash half way) runs again safely.
func TestMigrationsConcurrentAndReplayed(t *testing.T) {
	env := newRedisEnv(t)
	tb := newTables(env.tprefix)
	var wg sync.WaitGroup
	results := make([][]int, 4)
	for i := range results {
		wg.Go(func() {
			applied, err := migrate(bg, env.db, tb, migrations)
			if err != nil {
				t.Error(err)
			}
			results[i] = applied
		})
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += len(r)
	}
	var versions []int
	for _, m := range migrations {
		versions = append(versions, m.version)
	}
	if total != len(versions) {
		t.Fatalf("%d versions applied %d times: %v", len(versions), total, results)
	}
	if _, err := env.db.ExecContext(bg, "DELETE FROM `"+tb.version+"`"); err != nil {
		t.Fatal(err)
	}
	if applied, err := migrate(bg, env.db, tb, migrations); err != nil || !slices.Equal(applied, versions) {
		t.Fatalf("replay over existing tables: %v %v", applied, err)
	}
	if vs := schemaVersions(t, env); !slices.Equal(vs, versions) {
		t.Fatalf("recorded versions %v", vs)
	}
}

func TestOpenRedisOptions(t *testing.T) {
	env := newRedisEnv(t)
	for _, tc := range []struct {
		name string
		o    RedisOptions
	}{
		{"no client", RedisOptions{DB: env.db}},
		{"no db", RedisOptions{Client: env.rc}},
		{"brace in prefix", RedisOptions{Client: env.rc, DB: env.db, Prefix: "a{b}:"}},
		{"bad table prefix", RedisOptions{Client: env.rc, DB: env.db, TablePrefix: "x; DROP"}},
	} {
		if _, err := OpenRedis(bg, tc.o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}

// DialRedis makes its own clients and closes them with the store.
func TestDialRedis(t *testing.T) {
	env := newRedisEnv(t)
	addr, dsn := integrationEnv(t)
	st, err := DialRedis(bg, &redis.UniversalOptions{Addrs: []string{addr}}, dsn,
		RedisOptions{Prefix: env.prefix, TablePrefix: env.tprefix})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, st, msg(1, 1, 0), "u")
	wantLoad(t, st, "u", 0, 1)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.rc.Ping(bg).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("redis client after close: %v", err)
	}
	if _, err := DialRedis(bg, &redis.UniversalOptions{Addrs: []string{addr}}, "not a dsn", RedisOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad dsn: %v", err)
	}
}
