package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/push"
)

// The keeper tree in ZooKeeper, under ZKConfig.Root (default /lcpush):
//
//	<root>/config                  the YAML of pkg/config, whole; its znode
//	                               version is the compare-and-set token of writes
//	<root>/history/v-0000000042    one revision per write: JSON with the YAML,
//	                               author, time, note and the config version it made
//	<root>/members/<role>/<id>     ephemeral, JSON of push.Member, one per live instance
//
// A write sets config (at the expected version) and creates its history
// revision in one multi-op transaction, so history never misses a write done
// through keeper and two writers cannot both succeed from the same version.
//
// With ZKConfig.Auth every znode from the root down carries only that
// credential's digest ACL; without it they are open (zkauth.go).
const (
	DefaultRoot           = "/lcpush"
	DefaultSessionTimeout = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultHistoryLimit   = 200

	configNode  = "config"
	historyNode = "history"
	membersNode = "members"
	revPrefix   = "v-"
)

// Errors of the ZooKeeper backend.
var (
	// ErrConflict means the configuration changed since the version a write was based on.
	ErrConflict = errors.New("keeper: configuration changed since it was read")
	// ErrNoConfig means no configuration is stored under the root.
	ErrNoConfig = errors.New("keeper: no configuration stored")
	// ErrNoRevision means the history holds no such revision.
	ErrNoRevision = errors.New("keeper: no such revision")
	// ErrBadName means a root, role or id cannot be a znode path.
	ErrBadName = errors.New("keeper: bad znode name")
	// ErrTooLarge means a configuration is too big for one ZooKeeper write.
	ErrTooLarge = errors.New("keeper: configuration too large")
)

// ZKConfig says where the keeper tree lives.
type ZKConfig struct {
	Servers []string // host:port of the ensemble members
	Root    string   // default DefaultRoot
	// SessionTimeout is asked of the server, which clamps it to
	// [2, 20] x its tickTime; after it a lost process's members vanish.
	SessionTimeout time.Duration
	// ConnectTimeout bounds how long DialZK waits for a session when its
	// context has no deadline.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the session handshake on one connection (the
	// connect request and its answer) before the next server is tried;
	// default DefaultHandshakeTimeout, at most SessionTimeout (zkoutage.go).
	HandshakeTimeout time.Duration
	// OutageGrace is how long, after the session is back from an outage,
	// members known before it stay listed while their znodes are missing;
	// default SessionTimeout + 2 x HandshakeTimeout + 5 s (zkoutage.go).
	OutageGrace time.Duration
	// Seed, when set, is written as the first revision at Start if no
	// configuration is stored yet (author "keeper seed").
	Seed Source
	// HistoryLimit is how many revisions are kept; older ones are deleted.
	HistoryLimit int
	// Auth, when set, authenticates every session and protects every znode
	// keeper creates with it (see zkauth.go); zero leaves them open.
	Auth   ZKAuth
	Logger *slog.Logger

	dialer zk.Dialer // tests cut the network with it
}

func (c *ZKConfig) defaults() error {
	if len(c.Servers) == 0 {
		return fmt.Errorf("keeper zk: no servers: %w", push.ErrUnavailable)
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	c.Root = strings.TrimSuffix(c.Root, "/")
	if err := checkRoot(c.Root); err != nil {
		return err
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = min(DefaultHandshakeTimeout, c.SessionTimeout)
	}
	if c.OutageGrace <= 0 {
		c.OutageGrace = defaultGrace(c.SessionTimeout, c.HandshakeTimeout)
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = DefaultHistoryLimit
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ZKClient is one ZooKeeper session on the keeper tree: the operator CLI
// uses it directly, the Service watches through it.
type ZKClient struct {
	cfg  ZKConfig
	log  *slog.Logger
	conn *zk.Conn
	acl  []zk.ACL

	hook      atomic.Pointer[func(zk.Event)] // the Service's event handler
	shaking   atomic.Pointer[handshakeConn]  // the connection in its handshake
	ready     chan struct{}                  // closed at the first session
	treeOK    atomic.Bool                    // ensureTree succeeded once
	readyOnce sync.Once
	closeOnce sync.Once
}

// DialZK connects and waits, until ctx ends or cfg.ConnectTimeout passes, for
// a session. It fails with push.ErrUnavailable when no server answers.
func DialZK(ctx context.Context, cfg ZKConfig) (*ZKClient, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &ZKClient{cfg: cfg, log: cfg.Logger, acl: cfg.Auth.acl(), ready: make(chan struct{})}
	dialer := cfg.dialer
	if dialer == nil {
		dialer = net.DialTimeout
	}
	// Every connection starts with a bounded handshake (zkoutage.go).
	bounded := func(network, addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := dialer(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		hc := newHandshakeConn(conn, cfg.HandshakeTimeout)
		c.shaking.Store(hc)
		return hc, nil
	}
	// Events reach onEvent, which never blocks; the returned channel drops
	// what nobody reads, so it is ignored.
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout, zk.WithDialer(bounded),
		zk.WithLogger(zkLogger{c.log}), zk.WithLogInfo(false), zk.WithEventCallback(c.onEvent))
	if err != nil {
		return nil, fmt.Errorf("keeper zk connect %v: %w", cfg.Servers, err)
	}
	c.conn = conn
	wait, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	select {
	case <-c.ready:
		if err := c.addAuth(); err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: %w", err, push.ErrUnavailable)
		}
		return c, nil
	case <-wait.Done():
		c.Close()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("keeper zk connect %v: %w", cfg.Servers, err)
		}
		return nil, fmt.Errorf("keeper zk connect %v: no session after %v: %w", cfg.Servers, cfg.ConnectTimeout, push.ErrUnavailable)
	}
}

func (c *ZKClient) onEvent(ev zk.Event) {
	if ev.Type == zk.EventSession && ev.State == zk.StateHasSession {
		if hc := c.shaking.Swap(nil); hc != nil {
			hc.established()
		}
		c.readyOnce.Do(func() { close(c.ready) })
	}
	if h := c.hook.Load(); h != nil {
		(*h)(ev)
	}
}

// Close ends the session: the server deletes its ephemeral members at once.
func (c *ZKClient) Close() {
	c.closeOnce.Do(c.conn.Close)
}

// Root is the tree's root path.
func (c *ZKClient) Root() string { return c.cfg.Root }

// SessionID is the current ZooKeeper session, 0 while there is none.
func (c *ZKClient) SessionID() int64 { return c.conn.SessionID() }

func (c *ZKClient) hasSession() bool { return c.conn.State() == zk.StateHasSession }

func (c *ZKClient) path(elem ...string) string {
	return path.Join(append([]string{c.cfg.Root}, elem...)...)
}

// do runs one ZooKeeper call, returning early when ctx ends. zk has no
// contexts; an abandoned call finishes on its own when the server answers
// or the connection closes, so the goroutine does not outlive the client.
func do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx.Done() == nil {
		return fn()
	}
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ensure creates p and its missing parents as persistent empty znodes.
func (c *ZKClient) ensure(ctx context.Context, p string) error {
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		part := p[:i]
		err := do(ctx, func() error {
			_, err := c.conn.Create(part, nil, 0, c.aclFor(part))
			return err
		})
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return c.authHint(fmt.Errorf("keeper zk create %s: %w", part, err))
		}
	}
	return nil
}

// ensureTree creates the root, history and members znodes and, with a
// credential, closes what is still open below the root (secureTree).
func (c *ZKClient) ensureTree(ctx context.Context) error {
	if c.treeOK.Load() {
		return nil
	}
	for _, p := range []string{c.path(historyNode), c.path(membersNode)} {
		if err := c.ensure(ctx, p); err != nil {
			return err
		}
	}
	if _, err := c.secureTree(ctx); err != nil {
		return err
	}
	c.treeOK.Store(true)
	return nil
}

// checkRoot accepts an absolute znode path such as /lcpush or /a/b, outside
// the server's own /zookeeper.
func checkRoot(root string) error {
	if !strings.HasPrefix(root, "/") || root == "/" || root == "/zookeeper" || strings.HasPrefix(root, "/zookeeper/") {
		return fmt.Errorf("%w: root %q must be an absolute path below /", ErrBadName, root)
	}
	for _, part := range strings.Split(root[1:], "/") {
		if err := checkName(part); err != nil {
			return fmt.Errorf("%w: root %q", err, root)
		}
	}
	return nil
}

// checkName accepts one znode path element: not empty, not . or .., no slash,
// no control or format characters (ZooKeeper refuses those), at most 255 bytes.
func checkName(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 255 {
		return fmt.Errorf("%w: %q", ErrBadName, s)
	}
	for _, r := range s {
		if r == '/' || r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Co, unicode.Cs) {
			return fmt.Errorf("%w: %q", ErrBadName, s)
		}
	}
	return nil
}

// zkLogger sends the zk library's messages (errors only: WithLogInfo(false)) to slog.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "zookeeper")
}
