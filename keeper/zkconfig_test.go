package keeper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
)

func TestZKPutGetValidation(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	z := tt.admin

	if _, err := z.Get(ctx); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("get on an empty tree = %v, want ErrNoConfig", err)
	}
	for _, tc := range []struct {
		name string
		yaml string
	}{
		{"empty admin key", "admin_key: ''\n"},
		{"unknown field", "admin_key: k\nno_such_setting: 1\n"},
		{"not yaml", "admin_key: [\n"},
		{"bad heartbeat", "admin_key: k\nroom:\n  heartbeat_min: 100\n  heartbeat_max: 10\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := z.Put(ctx, []byte(tc.yaml), VersionAny, WriteMeta{}); !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("put = %v, want config.ErrInvalid", err)
			}
		})
	}
	huge := append(testYAML("huge"), fmt.Appendf(nil, "  - id: 2\n    name: %s\n    secret: test-secret-0123456789\n    api_key: k2\n",
		strings.Repeat("x", 600*1000))...)
	if _, err := z.Put(ctx, huge, VersionAny, WriteMeta{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("put of %d bytes = %v, want ErrTooLarge", len(huge), err)
	}
	if _, err := z.Get(ctx); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("a refused put wrote something: %v", err)
	}
	if revs, _ := z.History(ctx, 0); len(revs) != 0 {
		t.Fatalf("a refused put left history: %v", revs)
	}

	first, err := z.Put(ctx, testYAML("one"), VersionNone, WriteMeta{Author: "alice", Note: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if first.ConfigVersion != 0 {
		t.Fatalf("first write made version %d, want 0", first.ConfigVersion)
	}
	cur, err := z.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(cur.Data) != string(testYAML("one")) || cur.Version != 0 || cur.Revision != first.Seq {
		t.Fatalf("get = %+v, want version 0 revision %d", cur, first.Seq)
	}
	// A header from get is dropped, not stored.
	second, err := z.Put(ctx, append([]byte(FormatHeader(cur)), testYAML("two")...), cur.Version, WriteMeta{Author: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ = z.Get(ctx)
	if string(cur.Data) != string(testYAML("two")) || cur.Version != 1 || cur.Revision != second.Seq || second.Seq <= first.Seq {
		t.Fatalf("after second put: %+v (revisions %d, %d)", cur, first.Seq, second.Seq)
	}
	if time.Since(cur.Modified) > time.Minute || time.Since(second.Time) > time.Minute {
		t.Fatalf("times: modified %v, revision %v", cur.Modified, second.Time)
	}
}

func TestZKCompareAndSet(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	tt.put(t, testYAML("base"))
	cur, _ := tt.admin.Get(ctx)

	// Two operators start from the same version; only the first write wins.
	if _, err := tt.admin.Put(ctx, testYAML("alice"), cur.Version, WriteMeta{Author: "alice"}); err != nil {
		t.Fatal(err)
	}
	_, err := tt.admin.Put(ctx, testYAML("bob"), cur.Version, WriteMeta{Author: "bob"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("second write from the same version = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "stored version is 1") {
		t.Fatalf("conflict message %q does not say the stored version", err)
	}
	now, _ := tt.admin.Get(ctx)
	if string(now.Data) != string(testYAML("alice")) {
		t.Fatalf("stored %q, want alice's", now.Data)
	}
	revs, _ := tt.admin.History(ctx, 0)
	if len(revs) != 2 {
		t.Fatalf("history has %d revisions, want 2: a refused write adds none", len(revs))
	}
	if _, err := tt.admin.Put(ctx, testYAML("again"), VersionNone, WriteMeta{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over a stored config = %v, want ErrConflict", err)
	}
	// Concurrent VersionAny writers all land, each with its own revision.
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := tt.admin.Put(ctx, testYAML("any"+string(rune('a'+i))), VersionAny, WriteMeta{})
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	now, _ = tt.admin.Get(ctx)
	if revs, _ = tt.admin.History(ctx, 0); len(revs) != 6 || now.Version != 5 || now.Revision != revs[5].Seq {
		t.Fatalf("after 4 concurrent writes: version %d revision %d, %d revisions", now.Version, now.Revision, len(revs))
	}
}

func TestZKHistoryRollback(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	z := tt.admin
	var revs []Revision
	for _, k := range []string{"v1", "v2", "v3"} {
		revs = append(revs, tt.put(t, testYAML(k)))
	}
	hist, err := z.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history = %d revisions", len(hist))
	}
	for i, r := range hist {
		if r.Seq != revs[i].Seq || r.ConfigVersion != int32(i) || r.Author != "test" || string(r.Data) != string(testYAML([]string{"v1", "v2", "v3"}[i])) {
			t.Fatalf("revision %d = %+v", i, r)
		}
	}
	if last, _ := z.History(ctx, 2); len(last) != 2 || last[0].Seq != revs[1].Seq {
		t.Fatalf("History(2) = %v", last)
	}

	rb, err := z.Rollback(ctx, revs[0].Seq, 2, WriteMeta{Author: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := z.Get(ctx)
	if string(cur.Data) != string(testYAML("v1")) || cur.Revision != rb.Seq || cur.Version != 3 {
		t.Fatalf("after rollback: %+v", cur)
	}
	if r, _ := z.Revision(ctx, rb.Seq); !strings.Contains(r.Note, "rollback to revision") || r.Author != "ops" {
		t.Fatalf("rollback revision = %+v", r)
	}
	if _, err := z.Rollback(ctx, revs[1].Seq, 2, WriteMeta{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("rollback from a stale version = %v, want ErrConflict", err)
	}
	if _, err := z.Rollback(ctx, 99999, VersionAny, WriteMeta{}); !errors.Is(err, ErrNoRevision) {
		t.Fatalf("rollback to a missing revision = %v", err)
	}
}

func TestZKHistoryLimit(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	z, err := DialZK(ctx, ZKConfig{Servers: tt.servers, Root: tt.root, HistoryLimit: 3, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var last Revision
	for i := range 5 {
		if last, err = z.Put(ctx, testYAML("k"+string(rune('0'+i))), VersionAny, WriteMeta{}); err != nil {
			t.Fatal(err)
		}
	}
	hist, _ := z.History(ctx, 0)
	if len(hist) != 3 || hist[2].Seq != last.Seq {
		t.Fatalf("history kept %d revisions ending at %v, want 3 ending at %d", len(hist), hist, last.Seq)
	}
}

func TestZKHotReload(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("first"))
	s := tt.startService(t, tt.zkConfig())
	h := s.Holder()
	if got := h.Load().AdminKey; got != "first" {
		t.Fatalf("admin key = %q", got)
	}
	reloads := make(chan string, 10)
	h.Subscribe(func(c *config.Config) { reloads <- c.AdminKey })

	tt.put(t, testYAML("second"))
	testkit.WaitFor(t, "the watch to deliver version 2", 10*time.Second, func() bool { return h.Load().AdminKey == "second" })

	// An invalid version is refused; the running one stays, and Reload says why.
	refusedBefore := counterValue(t, metricVersions.WithLabelValues("refused"))
	if _, err := tt.admin.conn.Set(tt.admin.path(configNode), []byte("admin_key: ''\n"), -1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the bad version to be refused", 10*time.Second, func() bool {
		return counterValue(t, metricVersions.WithLabelValues("refused")) > refusedBefore
	})
	if got := h.Load().AdminKey; got != "second" {
		t.Fatalf("after a bad version admin key = %q, want second kept", got)
	}
	if cur, _ := tt.admin.Get(context.Background()); cur.Revision != NoRevision {
		t.Fatalf("a hand-written version has revision %d, want NoRevision", cur.Revision)
	}
	if err := s.Reload(context.Background()); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Reload = %v, want the refusal", err)
	}

	// The watch is re-armed after every event, the refused one included.
	tt.put(t, testYAML("third"))
	testkit.WaitFor(t, "version 4", 10*time.Second, func() bool { return h.Load().AdminKey == "third" })
	if err := s.Reload(context.Background()); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	var seen []string
	for len(reloads) > 0 {
		seen = append(seen, <-reloads)
	}
	if strings.Join(seen, ",") != "second,third" {
		t.Fatalf("subscribers saw %v, want second,third once each", seen)
	}
}

func TestZKConfigDeletedKeepsRunning(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("kept"))
	s := tt.startService(t, tt.zkConfig())
	if err := tt.admin.conn.Delete(tt.admin.path(configNode), -1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the deletion to be seen", 10*time.Second, func() bool {
		return errors.Is(s.Reload(context.Background()), ErrNoConfig)
	})
	if s.Holder().Load().AdminKey != "kept" {
		t.Fatal("running config lost")
	}
	// Written again, it is picked up through the existence watch.
	tt.put(t, testYAML("back"))
	testkit.WaitFor(t, "the new config", 10*time.Second, func() bool { return s.Holder().Load().AdminKey == "back" })
}

func TestZKStartSeedsEmptyTree(t *testing.T) {
	tt := newTestTree(t)
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedPath, testYAML("seeded"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without a seed an empty tree cannot start.
	s, _ := New(Config{ZK: tt.zkConfig(), Logger: testLogger()})
	if err := s.Start(context.Background()); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("start on an empty tree = %v, want ErrNoConfig", err)
	}
	_ = s.Shutdown(context.Background())

	zc := tt.zkConfig()
	zc.Seed = &FileSource{Path: seedPath}
	a := tt.startService(t, zc)
	if got := a.Holder().Load().AdminKey; got != "seeded" {
		t.Fatalf("admin key = %q", got)
	}
	hist, _ := tt.admin.History(context.Background(), 0)
	if len(hist) != 1 || hist[0].Author != "keeper seed" || !strings.Contains(hist[0].Note, seedPath) {
		t.Fatalf("history = %+v", hist)
	}
	// A seed never overwrites what is stored.
	if err := os.WriteFile(seedPath, testYAML("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := tt.startService(t, zc)
	if got := b.Holder().Load().AdminKey; got != "seeded" {
		t.Fatalf("second process admin key = %q, want the stored seeded", got)
	}
	// An invalid seed is refused: nothing stored, Start fails.
	tt2 := newTestTree(t)
	if err := os.WriteFile(seedPath, []byte("admin_key: ''\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zc2 := tt2.zkConfig()
	zc2.Seed = &FileSource{Path: seedPath}
	s2, _ := New(Config{ZK: zc2})
	if err := s2.Start(context.Background()); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("start with an invalid seed = %v", err)
	}
	_ = s2.Shutdown(context.Background())
	if _, err := tt2.admin.Get(context.Background()); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("invalid seed stored: %v", err)
	}
}

func TestZKStartRefusesInvalidStored(t *testing.T) {
	tt := newTestTree(t)
	if err := tt.admin.ensure(context.Background(), tt.root); err != nil {
		t.Fatal(err)
	}
	if _, err := tt.admin.conn.Create(tt.admin.path(configNode), []byte("admin_key: ''\n"), 0, tt.admin.acl); err != nil {
		t.Fatal(err)
	}
	s, _ := New(Config{ZK: tt.zkConfig()})
	if err := s.Start(context.Background()); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("start = %v, want config.ErrInvalid", err)
	}
	_ = s.Shutdown(context.Background())
}
