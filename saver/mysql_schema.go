package saver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// tables names the MySQL tables of one store (RedisOptions.TablePrefix + name).
type tables struct {
	inbox, broadcast, backs, cursors, cursorLog, version string
}

func newTables(prefix string) tables {
	return tables{
		inbox:     prefix + "inbox",
		broadcast: prefix + "broadcast",
		backs:     prefix + "broadcast_ack",
		cursors:   prefix + "broadcast_cursor",
		cursorLog: prefix + "broadcast_cursor_log",
		version:   prefix + "schema_version",
	}
}

var tablePrefixRE = regexp.MustCompile(`^[A-Za-z0-9_]{0,40}$`)

// migration is one schema version: statements that are each idempotent
// (CREATE ... IF NOT EXISTS and the like), since MySQL DDL does not run in a
// transaction and a saver may die half way through a version.
type migration struct {
	version int
	stmts   []string // {inbox}, {broadcast}, {backs}, {cursors} are replaced by table names
	// apply runs after stmts, for what needs a look first (MySQL 8 has
	// no ADD COLUMN IF NOT EXISTS); it must be idempotent too.
	apply func(ctx context.Context, conn *sql.Conn, t tables) error
}

// migrations is the schema history; append, never edit a released version.
//
//	inbox             one row per (uid, message): the durable copy of a Redis entry
//	broadcast         one row per broadcast; seq (version 2) orders the cursors, 0: not given yet
//	broadcast_ack     (uid, broadcast) ACKed (state 2) or parked (state 1): version 1's
//	                  per-user records, read at reloads until the sweep has emptied it
//	broadcast_cursor  (uid, app) broadcast cursor (version 2): ver (its write count),
//	                  cur, exc (bcursor.appendTo of the exceptions alone)
//	broadcast_cursor_log  (version 3) one row per flush of a saver's log buffer:
//	                  ended sessions' cursors encoded together (redis_cursorlog.go);
//	                  read only after Redis lost data, deleted once keep_until passed
//
// expire_at is unix seconds, 0 = never; its index drives the expiry sweep.
// uid is VARBINARY: uids are bytes, compared byte by byte.
var migrations = []migration{
	{1, []string{
		"CREATE TABLE IF NOT EXISTS `{inbox}` (" +
			"uid VARBINARY(255) NOT NULL, id BIGINT UNSIGNED NOT NULL, app INT UNSIGNED NOT NULL, " +
			"qos TINYINT UNSIGNED NOT NULL, expire_at BIGINT NOT NULL, parked TINYINT NOT NULL DEFAULT 0, " +
			"payload MEDIUMBLOB NOT NULL, PRIMARY KEY (uid, id), KEY expire_at (expire_at)) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS `{broadcast}` (" +
			"id BIGINT UNSIGNED NOT NULL PRIMARY KEY, app INT UNSIGNED NOT NULL, qos TINYINT UNSIGNED NOT NULL, " +
			"expire_at BIGINT NOT NULL, payload MEDIUMBLOB NOT NULL, KEY expire_at (expire_at)) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS `{backs}` (" +
			"uid VARBINARY(255) NOT NULL, bid BIGINT UNSIGNED NOT NULL, state TINYINT NOT NULL, " +
			"PRIMARY KEY (uid, bid), KEY bid (bid)) ENGINE=InnoDB",
	}, nil},
	{2, []string{
		"CREATE TABLE IF NOT EXISTS `{cursors}` (" +
			"uid VARBINARY(255) NOT NULL, app INT UNSIGNED NOT NULL, ver BIGINT UNSIGNED NOT NULL, " +
			"cur BIGINT UNSIGNED NOT NULL, exc MEDIUMBLOB NOT NULL, PRIMARY KEY (uid, app)) ENGINE=InnoDB",
	}, addColumn("broadcast", "seq", "BIGINT UNSIGNED NOT NULL DEFAULT 0")},
	{3, []string{
		"CREATE TABLE IF NOT EXISTS `{cursorlog}` (" +
			"id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, created BIGINT NOT NULL, " +
			"keep_until BIGINT NOT NULL, data MEDIUMBLOB NOT NULL, KEY keep_until (keep_until), KEY created (created)) ENGINE=InnoDB",
	}, nil},
}

// addColumn adds a column to one of the tables unless it has it.
func addColumn(table, column, def string) func(context.Context, *sql.Conn, tables) error {
	return func(ctx context.Context, conn *sql.Conn, t tables) error {
		name := map[string]string{"inbox": t.inbox, "broadcast": t.broadcast, "broadcast_ack": t.backs,
			"broadcast_cursor": t.cursors}[table]
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLUMNS "+
			"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?", name, column).Scan(&n); err != nil {
			return fmt.Errorf("look for %s.%s: %w", name, column, err)
		}
		if n > 0 {
			return nil
		}
		if _, err := conn.ExecContext(ctx, "ALTER TABLE `"+name+"` ADD COLUMN `"+column+"` "+def); err != nil {
			return fmt.Errorf("add %s.%s: %w", name, column, err)
		}
		return nil
	}
}

// ErrSchema means the MySQL schema is newer than this binary knows.
var ErrSchema = errors.New("saver: mysql schema is newer than this binary")

// migrate brings the schema to the last version of ms. Concurrent savers
// starting together serialize on a named lock; versions already applied
// are skipped, and every statement is idempotent, so running it again (or
// after a crash half way) is safe. It returns the versions it applied.
// after, if not nil, runs last under the same lock (RedisStore's one-time
// steps on the data, which must not run twice at once either).
func migrate(ctx context.Context, db *sql.DB, t tables, ms []migration, after ...func(context.Context) error) ([]int, error) {
	conn, err := db.Conn(ctx) // GET_LOCK belongs to one connection
	if err != nil {
		return nil, fmt.Errorf("saver migrate: %w", err)
	}
	defer conn.Close()
	lock := "lcpush_migrate_" + t.version
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", lock, 30).Scan(&got); err != nil {
		return nil, fmt.Errorf("saver migrate: lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("saver migrate: lock %s not granted in 30s", lock)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "DO RELEASE_LOCK(?)", lock)
	}()

	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS `"+t.version+"` ("+
		"version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) ENGINE=InnoDB"); err != nil {
		return nil, fmt.Errorf("saver migrate: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM `"+t.version+"`").Scan(&current); err != nil {
		return nil, fmt.Errorf("saver migrate: read version: %w", err)
	}
	if latest := ms[len(ms)-1].version; current > latest {
		return nil, fmt.Errorf("saver migrate: schema version %d, this binary knows %d: %w", current, latest, ErrSchema)
	}
	repl := strings.NewReplacer("{inbox}", t.inbox, "{broadcast}", t.broadcast, "{backs}", t.backs, "{cursors}", t.cursors, "{cursorlog}", t.cursorLog)
	var applied []int
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		for _, stmt := range m.stmts {
			if _, err := conn.ExecContext(ctx, repl.Replace(stmt)); err != nil {
				return applied, fmt.Errorf("saver migrate: version %d: %w", m.version, err)
			}
		}
		if m.apply != nil {
			if err := m.apply(ctx, conn, t); err != nil {
				return applied, fmt.Errorf("saver migrate: version %d: %w", m.version, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT IGNORE INTO `"+t.version+"` (version, applied_at) VALUES (?, ?)",
			m.version, time.Now().Unix()); err != nil {
			return applied, fmt.Errorf("saver migrate: record version %d: %w", m.version, err)
		}
		applied = append(applied, m.version)
	}
	for _, f := range after {
		if err := f(ctx); err != nil {
			return applied, fmt.Errorf("saver migrate: %w", err)
		}
	}
	return applied, nil
}
