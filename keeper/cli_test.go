package keeper

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// cliRun runs RunCLI on the test tree and returns its stdout.
func (tt *testTree) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"-zk", strings.Join(tt.servers, ","), "-root", tt.root, "-author", "tester"}, args...)
	err := RunCLI(context.Background(), full, &out, &errOut)
	return out.String(), err
}

func (tt *testTree) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tt.cli(t, args...)
	if err != nil {
		t.Fatalf("keeper %v: %v", args, err)
	}
	return out
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLI(t *testing.T) {
	tt := newTestTree(t)
	dir := t.TempDir()

	if _, err := tt.cli(t, "get"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("get on an empty tree = %v", err)
	}
	if out := tt.mustCLI(t, "list"); !strings.Contains(out, "none stored") {
		t.Fatalf("list on an empty tree:\n%s", out)
	}

	// put refuses an invalid file and writes nothing.
	bad := writeFile(t, dir, "bad.yaml", []byte("admin_key: k\nrooom: {}\n"))
	if _, err := tt.cli(t, "put", bad); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("put invalid = %v", err)
	}
	// The first put needs no version: nothing is stored.
	first := writeFile(t, dir, "first.yaml", testYAML("first"))
	if out := tt.mustCLI(t, "put", "-m", "initial", first); !strings.Contains(out, "config version 0") {
		t.Fatalf("put: %s", out)
	}

	// get prints a header naming the version; the file goes back through put.
	got := tt.mustCLI(t, "get")
	if !strings.HasPrefix(got, "# lcpush-keeper: version=0 revision=") || !strings.HasSuffix(got, string(testYAML("first"))) {
		t.Fatalf("get:\n%s", got)
	}
	edited := writeFile(t, dir, "edited.yaml", bytes.Replace([]byte(got), []byte("admin_key: first"), []byte("admin_key: second"), 1))
	tt.mustCLI(t, "put", edited)
	// The same file again is based on a version no longer stored: refused.
	if _, err := tt.cli(t, "put", edited); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale put = %v, want ErrConflict", err)
	}
	// A file without a header is refused when a config is stored...
	plain := writeFile(t, dir, "plain.yaml", testYAML("third"))
	if _, err := tt.cli(t, "put", plain); !errors.Is(err, ErrUsage) {
		t.Fatalf("put without header = %v, want ErrUsage", err)
	}
	// ...unless -version names the stored one, or -force.
	if _, err := tt.cli(t, "put", "-version", "0", plain); !errors.Is(err, ErrConflict) {
		t.Fatalf("put -version 0 = %v, want ErrConflict", err)
	}
	tt.mustCLI(t, "put", "-version", "1", plain)
	tt.mustCLI(t, "put", "-force", "-m", "forced", writeFile(t, dir, "fourth.yaml", testYAML("fourth")))
	cur, _ := tt.admin.Get(context.Background())
	if string(cur.Data) != string(testYAML("fourth")) || cur.Version != 3 {
		t.Fatalf("stored version %d:\n%s", cur.Version, cur.Data)
	}

	// history lists the revisions, marks the running one, shows one.
	hist := tt.mustCLI(t, "history")
	lines := strings.Split(strings.TrimSpace(hist), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "REV") || !strings.HasPrefix(lines[4], "*") ||
		!strings.Contains(lines[1], "tester") || !strings.Contains(lines[1], "initial") || !strings.Contains(lines[4], "forced") {
		t.Fatalf("history:\n%s", hist)
	}
	firstRev := strings.Fields(lines[1])[0]
	if shown := tt.mustCLI(t, "history", firstRev); !strings.Contains(shown, "admin_key: first") || !strings.HasPrefix(shown, "# revision "+firstRev) {
		t.Fatalf("history %s:\n%s", firstRev, shown)
	}
	if out := tt.mustCLI(t, "history", "-n", "2"); len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
		t.Fatalf("history -n 2:\n%s", out)
	}

	// rollback writes the old revision as a new one and says what it replaced.
	out := tt.mustCLI(t, "rollback", firstRev)
	if !strings.Contains(out, "replacing version 3") {
		t.Fatalf("rollback: %s", out)
	}
	cur, _ = tt.admin.Get(context.Background())
	if string(cur.Data) != string(testYAML("first")) {
		t.Fatalf("after rollback:\n%s", cur.Data)
	}
	if _, err := tt.cli(t, "rollback", "-version", "1", firstRev); !errors.Is(err, ErrConflict) {
		t.Fatalf("rollback -version stale = %v", err)
	}
	if _, err := tt.cli(t, "rollback", "424242"); !errors.Is(err, ErrNoRevision) {
		t.Fatalf("rollback missing = %v", err)
	}

	// members and list see a live process's members.
	s := tt.startService(t, tt.zkConfig())
	s.Directory().Join(push.Member{Role: "room", ID: "room-1", Addrs: []string{"10.0.0.1:7000"}, IDC: "sh", Load: 3})
	s.Directory().Join(push.Member{Role: "register", ID: "reg-1", RPCAddr: "10.0.0.2:9000"})
	testkit.WaitFor(t, "members published", 10*time.Second, func() bool {
		out, _ := tt.cli(t, "members")
		return strings.Contains(out, "room-1") && strings.Contains(out, "reg-1")
	})
	out = tt.mustCLI(t, "members", "room")
	if !strings.Contains(out, "10.0.0.1:7000") || !strings.Contains(out, "sh") || strings.Contains(out, "reg-1") {
		t.Fatalf("members room:\n%s", out)
	}
	out = tt.mustCLI(t, "list")
	for _, want := range []string{"version 4", "5 revisions", "members/room", "members/register", "1 members"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
}

func TestCLIWatch(t *testing.T) {
	tt := newTestTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncWriter{}
	done := make(chan error, 1)
	go func() {
		done <- RunCLI(ctx, []string{"-zk", strings.Join(tt.servers, ","), "-root", tt.root, "watch"}, out, out)
	}()
	testkit.WaitFor(t, "watch to wait for a config", 10*time.Second, func() bool { return strings.Contains(out.String(), "no configuration stored") })

	tt.put(t, testYAML("one"))
	testkit.WaitFor(t, "version 0", 10*time.Second, func() bool { return strings.Contains(out.String(), "version 0 revision") })
	if _, err := tt.admin.conn.Set(tt.admin.path(configNode), []byte("admin_key: ''\n"), -1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the invalid version 1", 10*time.Second, func() bool {
		return strings.Contains(out.String(), "version 1 revision none: INVALID")
	})
	rev := tt.put(t, testYAML("two"))
	testkit.WaitFor(t, "version 2", 10*time.Second, func() bool {
		return strings.Contains(out.String(), "version 2 revision "+strconv.FormatInt(rev.Seq, 10)+": valid, 1 apps")
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop with its context")
	}
}
