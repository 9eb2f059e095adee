package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

var testAuth = ZKAuth{User: "lcpush-test", Password: "s3cret:with-colon"}

// ---- without ZooKeeper ----

func TestParseZKAuth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ZKAuth
		ok   bool
	}{
		{"u:p", ZKAuth{"u", "p"}, true},
		{"lcpush:pa:ss:word", ZKAuth{"lcpush", "pa:ss:word"}, true},
		{"", ZKAuth{}, false},
		{"user", ZKAuth{}, false},
		{":pass", ZKAuth{}, false},
		{"user:", ZKAuth{}, false},
		{"user:pa\nss", ZKAuth{}, false},
		{"us\x00er:pass", ZKAuth{}, false},
	} {
		got, err := ParseZKAuth(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseZKAuth(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadAuth) {
			t.Errorf("ParseZKAuth(%q) = %v, not ErrBadAuth", tc.in, err)
		}
	}
}

func TestReadZKAuthFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data string
		mode os.FileMode
		want ZKAuth
		err  error // nil: ok
	}{
		{"one line", "u:p\n", 0o600, ZKAuth{"u", "p"}, nil},
		{"no newline", "u:p", 0o400, ZKAuth{"u", "p"}, nil},
		{"spaces and more lines", "  u:p w  \r\nignored:line\n", 0o600, ZKAuth{"u", "p w"}, nil},
		{"group readable", "u:p\n", 0o640, ZKAuth{}, ErrBadAuth},
		{"other readable", "u:p\n", 0o604, ZKAuth{}, ErrBadAuth},
		{"group writable", "u:p\n", 0o620, ZKAuth{}, ErrBadAuth},
		{"empty", "", 0o600, ZKAuth{}, ErrBadAuth},
		{"empty first line", "\nu:p\n", 0o600, ZKAuth{}, ErrBadAuth},
		{"no colon", "user\n", 0o600, ZKAuth{}, ErrBadAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil { // WriteFile's mode is masked by the umask
				t.Fatal(err)
			}
			got, err := ReadZKAuthFile(p)
			if tc.err == nil && (err != nil || got != tc.want) || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("ReadZKAuthFile = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "p w") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	if _, err := ReadZKAuthFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadZKAuthFile(dir); !errors.Is(err, ErrBadAuth) {
		t.Fatalf("directory: %v", err)
	}
}

func TestLoadZKAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(file, []byte("f:pf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value, file string
		want              ZKAuth
		err               error
	}{
		{"none", "", "", ZKAuth{}, nil},
		{"flag", "u:p", "", ZKAuth{"u", "p"}, nil},
		{"file", "", file, ZKAuth{"f", "pf"}, nil},
		{"both", "u:p", file, ZKAuth{}, ErrBadAuth},
		{"bad flag", "nocolon", "", ZKAuth{}, ErrBadAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadZKAuth(tc.value, tc.file)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) || got != tc.want {
				t.Fatalf("LoadZKAuth = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// The password never reaches logs or printed configurations.
func TestZKAuthHidesPassword(t *testing.T) {
	a := ZKAuth{User: "ops", Password: "hunter2"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "auth", a)
	cfg := ZKConfig{Servers: []string{"x:1"}, Auth: a}
	for _, s := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v %+v %#v", cfg, cfg, a), logged.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("password shown: %s", s)
		}
		if !strings.Contains(s, "ops") {
			t.Fatalf("user not shown: %s", s)
		}
	}
	if got := (ZKAuth{}).String(); got != "none" {
		t.Fatalf("zero = %q", got)
	}
	if acl := a.acl(); len(acl) != 1 || acl[0].Scheme != "digest" || acl[0].Perms != zk.PermAll || !strings.HasPrefix(acl[0].ID, "ops:") {
		t.Fatalf("acl = %+v", acl)
	}
	if acl := (ZKAuth{}).acl(); !slices.Equal(acl, zk.WorldACL(zk.PermAll)) {
		t.Fatalf("zero acl = %+v", acl)
	}
}

func TestCLIAuthFlags(t *testing.T) {
	dead := deadAddr(t)
	loose := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(loose, []byte("u:p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"malformed", []string{"-zk", dead, "-zk-auth", "nocolon", "get"}, ErrBadAuth},
		{"both", []string{"-zk", dead, "get", "-zk-auth", "u:p", "-zk-auth-file", loose}, ErrBadAuth},
		{"loose file", []string{"-zk", dead, "-zk-auth-file", loose, "members"}, ErrBadAuth},
		{"good, unreachable", []string{"-zk", dead, "-timeout", "200ms", "-zk-auth", "u:p", "get"}, push.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := RunCLI(context.Background(), tc.args, &out, &errOut); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// ---- against the real ZooKeeper ----

// authTree is a test tree whose znodes the test protects with testAuth; the
// unauthenticated admin client gets the credential at cleanup, to delete them.
func authTree(t *testing.T) *testTree {
	t.Helper()
	tt := newTestTree(t)
	t.Cleanup(func() {
		if err := tt.admin.conn.AddAuth("digest", []byte(testAuth.User+":"+testAuth.Password)); err != nil {
			t.Errorf("cleanup auth: %v", err)
		}
	})
	return tt
}

// dialAs is a client on the tree with auth (zero: none), closed after the test.
func (tt *testTree) dialAs(t *testing.T, auth ZKAuth) *ZKClient {
	t.Helper()
	zc := tt.zkConfig()
	zc.Auth = auth
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialZK(ctx, zc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// walkACLs returns the ACL of every znode from the root down.
func walkACLs(t *testing.T, conn *zk.Conn, root string) map[string][]zk.ACL {
	t.Helper()
	out := map[string][]zk.ACL{}
	var walk func(p string)
	walk = func(p string) {
		acl, _, err := conn.GetACL(p)
		if err != nil {
			t.Fatalf("get acl %s: %v", p, err)
		}
		out[p] = acl
		kids, _, err := conn.Children(p)
		if err != nil {
			t.Fatalf("children %s: %v", p, err)
		}
		for _, k := range kids {
			walk(p + "/" + k)
		}
	}
	walk(root)
	return out
}

// TestZKACLProtectsTree: a keeper with a credential creates every znode with
// its digest ACL only; a client without it, or with a wrong password, can
// read, list, write or create nothing, while the keeper works normally.
func TestZKACLProtectsTree(t *testing.T) {
	tt := authTree(t)
	zc := tt.zkConfig()
	zc.Auth = testAuth
	zc.Seed = &BytesSource{Name: "test", Data: testYAML("seeded")}
	s := tt.startService(t, zc)
	s.Directory().Join(push.Member{Role: "room", ID: "room-a", RPCAddr: "127.0.0.1:9100", Load: 1})
	owner := tt.dialAs(t, testAuth)
	memberPath := tt.admin.path(membersNode, "room", "room-a")
	testkit.WaitFor(t, "room-a published", 10*time.Second, func() bool {
		ok, _, _ := owner.conn.Exists(memberPath)
		return ok
	})

	// Every znode, ephemeral member included, has the digest ACL and nothing else.
	want := testAuth.acl()
	acls := walkACLs(t, owner.conn, tt.root)
	for _, p := range []string{tt.root, owner.path(configNode), owner.path(historyNode), owner.path(membersNode), owner.path(membersNode, "room"), memberPath} {
		if _, ok := acls[p]; !ok {
			t.Fatalf("%s missing from the tree %v", p, acls)
		}
	}
	for p, acl := range acls {
		if !slices.Equal(acl, want) {
			t.Errorf("%s: acl %+v, want only %+v", p, acl, want)
		}
	}

	wrong := tt.dialAs(t, ZKAuth{User: testAuth.User, Password: "wrong"})
	other := tt.dialAs(t, ZKAuth{User: "someone-else", Password: testAuth.Password})
	for _, who := range []struct {
		name string
		c    *ZKClient
	}{{"no credential", tt.admin}, {"wrong password", wrong}, {"other user", other}} {
		for _, op := range []struct {
			name string
			do   func(c *zk.Conn) error
		}{
			{"read config", func(c *zk.Conn) error { _, _, err := c.Get(owner.path(configNode)); return err }},
			{"read member", func(c *zk.Conn) error { _, _, err := c.Get(memberPath); return err }},
			{"list history", func(c *zk.Conn) error { _, _, err := c.Children(owner.path(historyNode)); return err }},
			{"list members", func(c *zk.Conn) error { _, _, err := c.Children(owner.path(membersNode, "room")); return err }},
			{"write config", func(c *zk.Conn) error { _, err := c.Set(owner.path(configNode), testYAML("evil"), -1); return err }},
			{"fake member", func(c *zk.Conn) error {
				_, err := c.Create(owner.path(membersNode, "room", "fake"), []byte(`{"rpc_addr":"6.6.6.6:1"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
				return err
			}},
			{"fake role", func(c *zk.Conn) error {
				_, err := c.Create(owner.path(membersNode, "center"), nil, 0, zk.WorldACL(zk.PermAll))
				return err
			}},
			{"delete member", func(c *zk.Conn) error { return c.Delete(memberPath, -1) }},
			{"reset acl", func(c *zk.Conn) error {
				_, err := c.SetACL(owner.path(configNode), zk.WorldACL(zk.PermAll), -1)
				return err
			}},
		} {
			t.Run(who.name+"/"+op.name, func(t *testing.T) {
				if err := op.do(who.c.conn); !errors.Is(err, zk.ErrNoAuth) {
					t.Fatalf("err = %v, want zk.ErrNoAuth", err)
				}
			})
		}
		t.Run(who.name+"/keeper client", func(t *testing.T) {
			ctx := context.Background()
			if _, err := who.c.Get(ctx); !errors.Is(err, zk.ErrNoAuth) || !strings.Contains(err.Error(), "protected") {
				t.Fatalf("Get = %v, want zk.ErrNoAuth with a hint", err)
			}
			if _, err := who.c.Put(ctx, testYAML("evil"), VersionAny, WriteMeta{}); !errors.Is(err, zk.ErrNoAuth) {
				t.Fatalf("Put = %v, want zk.ErrNoAuth", err)
			}
			if _, err := who.c.Members(ctx, "room"); !errors.Is(err, zk.ErrNoAuth) {
				t.Fatalf("Members = %v, want zk.ErrNoAuth", err)
			}
		})
	}

	// A keeper with a wrong password does not start.
	t.Run("wrong password keeper", func(t *testing.T) {
		bad := tt.zkConfig()
		bad.Auth = ZKAuth{User: testAuth.User, Password: "wrong"}
		k, err := New(Config{ZK: bad, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := k.Start(ctx); !errors.Is(err, zk.ErrNoAuth) || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("Start = %v, want zk.ErrNoAuth", err)
		}
		_ = k.Shutdown(ctx)
	})

	// Nothing of the above got through, and the credential works normally.
	if cur, err := owner.Get(context.Background()); err != nil || !bytes.Equal(cur.Data, testYAML("seeded")) {
		t.Fatalf("owner get = %q, %v", cur.Data, err)
	}
	if rooms := zkMembers(t, owner, "room"); !slices.Equal(ids(rooms), []string{"room-a"}) {
		t.Fatalf("rooms = %v", ids(rooms))
	}
	if _, err := owner.Put(context.Background(), testYAML("next"), VersionAny, WriteMeta{Author: "test"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the keeper to load the next config", 10*time.Second, func() bool { return s.Holder().Load().AdminKey == "next" })
	s.Directory().SetLoad("room", "room-a", 7)
	testkit.WaitFor(t, "the load update", 10*time.Second, func() bool {
		m, ok := member(zkMembers(t, owner, "room"), "room-a")
		return ok && m.Load == 7
	})
	if revs, err := owner.History(context.Background(), 0); err != nil || len(revs) != 2 {
		t.Fatalf("history = %v, %v", revs, err)
	}
	acls = walkACLs(t, owner.conn, tt.root)
	for p, acl := range acls {
		if !slices.Equal(acl, want) {
			t.Errorf("after writes %s: acl %+v", p, acl)
		}
	}

	// The CLI, with the credential from a file, and without it.
	file := filepath.Join(t.TempDir(), "zk-auth")
	if err := os.WriteFile(file, []byte(testAuth.User+":"+testAuth.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-zk", strings.Join(tt.servers, ","), "-root", tt.root}
	var out, errOut bytes.Buffer
	if err := RunCLI(context.Background(), append(base, "-zk-auth-file", file, "get"), &out, &errOut); err != nil || !strings.Contains(out.String(), "admin_key: next") {
		t.Fatalf("cli get with the credential: %v\n%s%s", err, out.String(), errOut.String())
	}
	out.Reset()
	if err := RunCLI(context.Background(), append(base, "-zk-auth-file", file, "members"), &out, &errOut); err != nil || !strings.Contains(out.String(), "room-a") {
		t.Fatalf("cli members with the credential: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"get"}, {"members"}, {"history"}, {"-zk-auth", testAuth.User + ":wrong", "get"}} {
		out.Reset()
		if err := RunCLI(context.Background(), append(base, args...), &out, &errOut); !errors.Is(err, zk.ErrNoAuth) {
			t.Fatalf("cli %v: %v, want zk.ErrNoAuth (stdout %q)", args, err, out.String())
		}
		if strings.Contains(out.String(), "test-secret") {
			t.Fatalf("cli %v printed the secret", args)
		}
	}
}

// TestZKACLReauth: the credential is sent again on every connection: after
// a reconnect to the same session and in a new session after expiry, the
// keeper still reads the configuration and writes its member.
func TestZKACLReauth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session time.Duration
		expire  bool // cut until the server expires the session
	}{
		{"reconnect, same session", 10 * time.Second, false},
		{"new session after expiry", 2 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := authTree(t)
			owner := tt.dialAs(t, testAuth)
			if _, err := owner.Put(context.Background(), testYAML("before"), VersionNone, WriteMeta{}); err != nil {
				t.Fatal(err)
			}
			cut := &netCutter{}
			zc := tt.zkConfig()
			zc.Auth = testAuth
			zc.SessionTimeout = tc.session
			zc.dialer = cut.dial
			s := tt.startService(t, zc)
			s.Directory().Join(push.Member{Role: "room", ID: "room-x", Load: 1})
			testkit.WaitFor(t, "room-x published", 10*time.Second, func() bool {
				m, ok := member(zkMembers(t, owner, "room"), "room-x")
				return ok && m.Load == 1
			})
			oldSession := s.ZK().SessionID()

			cut.set(true)
			if tc.expire {
				testkit.WaitFor(t, "the session to expire", 60*time.Second, func() bool { return len(zkMembers(t, owner, "room")) == 0 })
			} else {
				testkit.WaitFor(t, "the keeper to lose its connection", 10*time.Second, func() bool { return !s.ZK().hasSession() })
			}
			if _, err := owner.Put(context.Background(), testYAML("during"), VersionAny, WriteMeta{}); err != nil {
				t.Fatal(err)
			}
			s.Directory().SetLoad("room", "room-x", 2)
			cut.set(false)

			testkit.WaitFor(t, "the config written while cut off", 30*time.Second, func() bool { return s.Holder().Load().AdminKey == "during" })
			testkit.WaitFor(t, "the member written again", 30*time.Second, func() bool {
				m, ok := member(zkMembers(t, owner, "room"), "room-x")
				return ok && m.Load == 2
			})
			if got := s.ZK().SessionID(); (got != oldSession) != tc.expire {
				t.Fatalf("session %#x, was %#x; want a new one: %v", got, oldSession, tc.expire)
			}
			if _, err := owner.Put(context.Background(), testYAML("after"), VersionAny, WriteMeta{}); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "the next config", 10*time.Second, func() bool { return s.Holder().Load().AdminKey == "after" })
			for p, acl := range walkACLs(t, owner.conn, tt.root) {
				if !slices.Equal(acl, testAuth.acl()) {
					t.Errorf("%s: acl %+v", p, acl)
				}
			}
		})
	}
}

// TestZKACLUpgrade: a tree created open, before a credential was configured,
// is closed by the first keeper that starts with one: SetACL on every open
// znode, a running old process's member included; a znode with an ACL set by
// hand is left alone.
func TestZKACLUpgrade(t *testing.T) {
	tt := authTree(t)
	tt.put(t, testYAML("open"))
	tt.put(t, testYAML("open-2"))
	old := tt.startService(t, tt.zkConfig())
	old.Directory().Join(push.Member{Role: "room", ID: "old-room", Load: 1})
	testkit.WaitFor(t, "old-room published", 10*time.Second, func() bool { return len(zkMembers(t, tt.admin, "room")) == 1 })

	// Before: open to anyone.
	before := walkACLs(t, tt.admin.conn, tt.root)
	if len(before) < 8 { // root, config, history + 2 revisions, members, room, old-room
		t.Fatalf("tree %v", before)
	}
	for p, acl := range before {
		if !slices.Equal(acl, zk.WorldACL(zk.PermAll)) {
			t.Fatalf("%s starts with acl %+v", p, acl)
		}
	}
	// A znode an operator protected otherwise: ops may do all, keeper only read.
	custom := tt.admin.path("custom")
	customACL := append(zk.DigestACL(zk.PermAll, "ops", "ops-pass"), zk.DigestACL(zk.PermRead, testAuth.User, testAuth.Password)...)
	if _, err := tt.admin.conn.Create(custom, []byte("x"), 0, customACL); err != nil {
		t.Fatal(err)
	}

	zc := tt.zkConfig()
	zc.Auth = testAuth
	s := tt.startService(t, zc)
	if s.Holder().Load().AdminKey != "open-2" {
		t.Fatalf("the upgraded keeper runs %q", s.Holder().Load().AdminKey)
	}

	owner := tt.dialAs(t, testAuth)
	after := walkACLs(t, owner.conn, tt.root)
	for p := range before {
		if !slices.Equal(after[p], testAuth.acl()) {
			t.Errorf("%s: acl %+v after the upgrade, want %+v", p, after[p], testAuth.acl())
		}
	}
	// (Without ADMIN on it, keeper sees the digests masked: ask as ops.)
	if acl, _, err := tt.dialAs(t, ZKAuth{User: "ops", Password: "ops-pass"}).conn.GetACL(custom); err != nil || !slices.Equal(acl, customACL) {
		t.Errorf("%s: acl %+v, %v after the upgrade; want it left as set by hand %+v", custom, acl, err, customACL)
	}
	for _, p := range []string{owner.path(configNode), owner.path(historyNode), owner.path(membersNode, "room", "old-room")} {
		if _, _, err := tt.admin.conn.Get(p); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("get %s without the credential after the upgrade: %v, want zk.ErrNoAuth", p, err)
		}
	}
	// Idempotent: a second keeper (or a restart) finds nothing open.
	again := tt.dialAs(t, testAuth)
	if n, err := again.secureTree(context.Background()); err != nil || n != 0 {
		t.Fatalf("second secureTree = %d, %v; want 0", n, err)
	}
	// The old process without the credential keeps running its last configuration.
	if old.Holder().Load().AdminKey != "open-2" {
		t.Fatalf("old process runs %q", old.Holder().Load().AdminKey)
	}
}

// TestZKNoCredentialWarns: without a credential the keeper works as before
// (open znodes) and says so once, at start.
func TestZKNoCredentialWarns(t *testing.T) {
	tt := newTestTree(t)
	tt.put(t, testYAML("k"))
	var logs syncWriter
	s, err := New(Config{ZK: tt.zkConfig(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	s.Directory().Join(push.Member{Role: "room", ID: "r"})
	testkit.WaitFor(t, "r published", 10*time.Second, func() bool { return len(zkMembers(t, tt.admin, "room")) == 1 })
	if _, err := tt.admin.Put(ctx, testYAML("k2"), VersionAny, WriteMeta{}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "reload", 10*time.Second, func() bool { return s.Holder().Load().AdminKey == "k2" })
	if n := strings.Count(logs.String(), "open to anyone"); n != 1 || !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("%d warnings in:\n%s", n, logs.String())
	}
	for p, acl := range walkACLs(t, tt.admin.conn, tt.root) {
		if !slices.Equal(acl, zk.WorldACL(zk.PermAll)) {
			t.Errorf("%s: acl %+v, want open as before", p, acl)
		}
	}
}
